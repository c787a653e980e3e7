"""Which sites of a chosen map carry its change on test: each site at one precision is moved to
another, one at a time, and the map is scored again on the search and the test split.

    .venv/bin/python tools/studies/site_swaps.py --data wnut16 \
        --map benchmarks/results/search-wnut16-cpu/knapsack/precision_map.json

Calibration is the one the search quantized with (the map names each static site's calibrator
and stores its clip; a map without clips is calibrated on the task's calibration split); the
maps run with
FP32 between sites, as a CPU target runs them, through the real quantized model.
Prints the map as given and one line per moved site: the relative change against FP32 on
each split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from calibrate.search.objectives import task_objective  # noqa: E402
from calibrate.search.targets import resolve_target  # noqa: E402
from samp_jax import quantize  # noqa: E402
from samp_jax.workflows.experiments import make_evaluator  # noqa: E402
from calibrate import calibrate  # noqa: E402
from samp_jax.workflows.pipeline import builtin_model  # noqa: E402
from samp_jax.serving.timing import keep_cpu_buffers_for_timing  # noqa: E402
from samp_jax.core.precision import PrecisionMap, as_precision  # noqa: E402
from samp_jax.serving.forward import jit_forward  # noqa: E402
from samp_jax.tasks import get_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a built-in task (its fine-tuned MiniLM)")
    parser.add_argument("--map", type=Path, required=True, help="a precision_map.json")
    parser.add_argument("--move", default="int8-static", help="the precision of the sites to move")
    parser.add_argument("--to", default="int8-dynamic", help="the precision to move them to")
    parser.add_argument("--target", default="cpu", help="sets the dtype between sites")
    args = parser.parse_args()
    keep_cpu_buffers_for_timing("site_swaps")
    move, to = as_precision(args.move), as_precision(args.to)
    model, tokenizer, description = builtin_model(args.data, progress=False)
    task = get_task(args.data)
    evaluator = make_evaluator(task, tokenizer)
    search = task_objective(model, task, tokenizer)
    pmap = PrecisionMap.from_json(args.map)  # a searched map carries its calibrators and clips
    dtype = pmap.compute_dtype or resolve_target(args.target).dtype  # as the map was searched
    calibration = calibrate(model, evaluator.calibration_batches(), precision_map=pmap)
    table = dict(pmap.items())
    fp32_test = evaluator.score(evaluator.outputs(model))["value"]
    fp32_search = search.metric(search.reference)

    def changes(sites: dict) -> str:
        quantized = quantize(model, PrecisionMap.from_table(sites, pmap.num_layers), calibration, dtype=dtype)
        test = evaluator.score(evaluator.outputs(quantized))["value"] / fp32_test - 1
        on_search = search.metric(search.evaluation.outputs(jit_forward(quantized))) / fp32_search - 1
        return f"test {100 * test:+.2f}%  search {100 * on_search:+.2f}%"

    moved = [site for site, p in table.items() if p == move]
    print(f"{description}; {len(moved)} site(s) at {move}")
    print(f"as given: {changes(table)}", flush=True)
    for layer, site in moved:
        print(f"{layer}.{site} -> {to}: {changes({**table, (layer, site): to})}", flush=True)


if __name__ == "__main__":
    main()
