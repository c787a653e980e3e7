"""Checks the additive latency model against real end-to-end forwards on this device.

Takes the latency table a search on this device uses (`table_for_target`, measured per site),
predicts each preset's forward latency from it, times the real forwards of the same presets
with the same dtype between sites, and reports the relative error.

Usage: .venv/bin/python tools/latency_check.py [--batch 32] [--seq 128] [--repeats 10]
Writes docs/results/latency_check_<device>.json.
"""

import argparse
import json
from pathlib import Path

import jax

from calibrate import calibrate
from calibrate.search.latency import check_against_forward, estimate_table, table_for_target
from calibrate.search.phases import preset_maps
from samp_jax.serving.timing import device_description, keep_cpu_buffers_for_timing
from calibrate.search.targets import TARGETS, resolve_target
from samp_jax import Tokenizer, load_pretrained, minilm_path
from samp_jax.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    keep_cpu_buffers_for_timing("latency_check")  # as the samp-jax command serves and measures
    path = minilm_path()
    model, tokenizer = load_pretrained(path), Tokenizer.from_pretrained(path)
    target = resolve_target("auto")
    batches = get_task("snli-embed").calibration_batches(tokenizer, max_examples=256)
    cal = calibrate(model, batches, "percentile")
    table = table_for_target(model, target, args.batch, args.seq)
    layers = model.config.num_layers
    maps = preset_maps(target.allowed(), layers)
    rows = check_against_forward(model, table, maps, cal, repeats=args.repeats, dtype=target.dtype)
    for row in rows:
        print(f"{row['map']:<22} predicted {row['predicted_ms']:8.2f} ms  measured {row['measured_ms']:8.2f} ms  "
              f"error {100 * row['relative_error']:+.1f}%")
    device = jax.devices()[0].device_kind  # the file's name; the JSON names the processor
    estimate = estimate_table(model.config, args.batch, args.seq, spec=TARGETS["h100"].spec)
    out = {"command": f"python tools/latency_check.py --batch {args.batch} --seq {args.seq} --repeats {args.repeats}",
           "device": device_description(), "target": target.name, "dtype": str(target.dtype.__name__ if hasattr(target.dtype, "__name__") else target.dtype),
           "table": json.loads(table.to_json()), "rows": rows,
           "h100_estimate_ms": {name: estimate.map_ms(m) for name, m in maps.items()
                                if all(f"{s}/{p}" in estimate.site_ms for (_, s), p in m.items())}}
    Path(f"docs/results/latency_check_{device.replace(' ', '_')}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
