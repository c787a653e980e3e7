"""Runs the search with every allocation strategy on one task and target, in one process, and
writes the comparison (JSON + a markdown table) that docs/results/search.md quotes.

    .venv/bin/python tools/compare_strategies.py --data snli-embed --target cpu \
        --max-search-examples 256 --max-examples 2000 --out benchmarks/results/search-snli-embed-cpu

Each row: the chosen map on the held-out test split against FP32 and the presets, its INT8
share (static and dynamic FLOPs), its latency by the target's model (measured or estimated),
and the search time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibrate.search.config import SearchConfig  # noqa: E402
from calibrate.search.strategy import STRATEGIES  # noqa: E402
from calibrate.search.latency import flops_by_precision, validate_table  # noqa: E402
from calibrate.calibration.calibrators import CALIBRATORS  # noqa: E402
from samp_jax.workflows.pipeline import builtin_model, run_search  # noqa: E402
from samp_jax.serving.timing import keep_cpu_buffers_for_timing  # noqa: E402
from samp_jax.tasks import get_task  # noqa: E402
from tools.render_docs import strategy_table  # noqa: E402


def int8_shares(pmap, config, seq_len: int) -> dict[str, float]:
    """Shares of the matmul FLOPs (attention's included, `flops_by_precision`) in static INT8,
    dynamic INT8 and FP8."""
    flops = flops_by_precision(pmap, config, seq_len)
    total = sum(flops.values())
    return {"int8_static": flops.get("int8-static", 0) / total,
            "int8_dynamic": flops.get("int8-dynamic", 0) / total,
            "fp8": flops.get("fp8_e4m3", 0) / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="snli-embed")
    parser.add_argument("--target", default="auto")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--max-search-examples", type=int, default=None)
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--strategies", default=",".join(["greedy-full", *STRATEGIES]),
                        help="comma-separated; NAME-full runs NAME with stop_early=False (every "
                             "phase in full: the search as it was before the presets bound it); "
                             "NAME-unguarded with selection_margin=False (the allocation's pick "
                             "kept at the plain 95%% margin)")
    parser.add_argument("--latency-table", type=Path, default=None, metavar="JSON",
                        help="price maps with this table instead of the target's (a "
                             "LatencyTable's JSON, or a tools/latency_check.py record holding "
                             "one under 'table'): replays another machine's latency model")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    keep_cpu_buffers_for_timing("compare_strategies")  # as the samp-jax command serves and measures
    table = None
    if args.latency_table is not None:
        try:
            record = json.loads(args.latency_table.read_text())
            table = validate_table(record.get("table", record) if isinstance(record, dict) else record)
        except ValueError as e:  # not JSON, or not a usable table
            parser.error(f"--latency-table {args.latency_table}: {e}")
    model, tokenizer, description = builtin_model(args.data, progress=False)
    task = get_task(args.data)
    rows = []
    for i, name in enumerate(args.strategies.split(",")):
        strategy, *flags = name.split("-")
        calibrators = set(flags) & set(CALIBRATORS)
        if strategy not in STRATEGIES or not set(flags) <= {"full", "unguarded", *CALIBRATORS} \
                or len(calibrators) > 1:
            parser.error(f"--strategies: {name!r} is not one of {sorted(STRATEGIES)} "
                         "(or NAME-full, NAME-unguarded, NAME-<calibrator>)")
        start = time.perf_counter()
        config = SearchConfig(tolerance=args.tolerance, progress=False, target=args.target,
                              strategy=strategy, max_search_examples=args.max_search_examples,
                              stop_early="full" not in flags,
                              selection_margin="unguarded" not in flags,
                              calibration=calibrators.pop() if calibrators else "auto")
        run = run_search(model, tokenizer, task, config, description=description,
                         out=args.out / name, max_test_examples=args.max_examples,
                         latency_table=table, compare_presets=i == 0)
        s, result = run.summary, run.result
        presets = {e.name: {"search_metric": e.metric, "latency_ms": e.latency_ms}
                   for e in result.evaluated if e.kind == "preset"}
        if i == 0:
            test_presets = {k: v for k, v in s["test"].items() if not k.endswith("relative_change")}
        rows.append({"strategy": name, "chosen_from": s["chosen_from"],
                     "stopped_early": s["stopped_early"], "maps_run": s["maps_run"],
                     "selection": s["selection"], "calibration": s["calibration"],
                     "static_sites_per_method": (s["static_calibration"] or {}).get("sites_per_method"),
                     "test": s["test"], "search_fp32": s["fp32_search_metric"],
                     "search_chosen": s["chosen_search_metric"],
                     "latency_ms": s["estimated_latency_ms"], "latency_source": s["latency_source"],
                     "speedup_vs_default": s["estimated_speedup_vs_default"],
                     "maps_evaluated": s["maps_evaluated"], "search_seconds": s["search_seconds"],
                     "total_seconds": time.perf_counter() - start, "presets_on_search": presets,
                     **int8_shares(result.precision_map, model.config, result.latency_table.seq)})
        print(json.dumps(rows[-1], default=str), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.json").write_text(json.dumps(
        {"data": args.data, "target": args.target, "tolerance": args.tolerance, "model": description,
         "latency_table": None if args.latency_table is None else str(args.latency_table),
         "max_search_examples": args.max_search_examples, "max_examples": args.max_examples,
         "presets_on_test": test_presets, "rows": rows}, indent=1, default=str))
    lines = strategy_table(rows)
    (args.out / "comparison.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
