"""Checks the additive latency model against real end-to-end forwards on this device.

Measures a per-site table for MiniLM at one shape, predicts each preset's forward latency from
it, times the real forwards, and reports the relative error.

Usage: .venv/bin/python tools/latency_check.py [--batch 8] [--seq 64]
Writes docs/latency_check_<device>.json.
"""

import argparse
import json
from pathlib import Path

import jax

from calibrate import calibrate
from calibrate.latency import check_against_forward, estimate_table, measure_table
from samp_jax import PrecisionMap, Tokenizer, load_pretrained, minilm_path
from samp_jax.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    path = minilm_path()
    model, tokenizer = load_pretrained(path), Tokenizer.from_pretrained(path)
    batches = get_task("snli-embed").calibration_batches(tokenizer, max_examples=128)
    cal = calibrate(model, batches, "minmax")
    table = measure_table(model, args.batch, args.seq, repeats=args.repeats)
    layers = model.config.num_layers
    maps = {name: PrecisionMap.preset(name, layers) for name in ("fp16", "quant_ffn_only", "fully_quant", "fp8")}
    rows = check_against_forward(model, table, maps, cal, repeats=args.repeats)
    for row in rows:
        print(f"{row['map']:<16} predicted {row['predicted_ms']:8.2f} ms  measured {row['measured_ms']:8.2f} ms  "
              f"error {100 * row['relative_error']:+.1f}%")
    device = jax.devices()[0].device_kind
    estimate = estimate_table(model.config, args.batch, args.seq)
    out = {"command": f"python tools/latency_check.py --batch {args.batch} --seq {args.seq} --repeats {args.repeats}",
           "device": device, "table": json.loads(table.to_json()), "rows": rows,
           "h100_estimate_ms": {name: estimate.map_ms(m) for name, m in maps.items()}}
    Path(f"docs/latency_check_{device.replace(' ', '_')}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
