"""How often a map the search accepts on its search split misses the tolerance on the held-out
test split: at the plain one-sided 95% margin, and at the selection margin the search now
judges its pick with (`calibrate.search.tolerance.guard_selection`).

    .venv/bin/python tools/studies/selection_study.py --data wnut16 --target cpu \
        --out benchmarks/results/selection-wnut16-cpu

For each strategy the search runs as `samp-jax search` runs it (static clips picked per site
from several calibrators on the calibration split, the target's options and latency model, or `--latency-table`). Then every
map its allocation measured is scored again on the search split (the guarded drop at both
margins, through the search's compiled candidate program) and on the test split with the
real quantized model (`samp_jax.quantize`, as `samp-jax search` scores its pick). Each row says
whether the map passes on the search split at each margin and whether it is within the
tolerance on test; the totals count the misses among the maps each margin accepts, the
pick (the fastest accepted map) at each, and the map each search returned (the pick, or a
preset that was faster and passed), also scored on test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from calibrate.search.candidates import SwitchableModel  # noqa: E402
from calibrate.search.latency import LatencyTable, validate_table  # noqa: E402
from calibrate.search.objectives import Z_ONE_SIDED_95, task_objective  # noqa: E402
from calibrate.search.driver import search  # noqa: E402
from calibrate.search.runner import Kind, Runner  # noqa: E402
from calibrate.search.static_clips import calibrate_for_search  # noqa: E402
from calibrate.search.tolerance import tolerance_measure  # noqa: E402
from samp_jax import quantize  # noqa: E402
from samp_jax.workflows.experiments import make_evaluator  # noqa: E402
from samp_jax.workflows.pipeline import builtin_model  # noqa: E402
from samp_jax.serving.timing import keep_cpu_buffers_for_timing  # noqa: E402
from samp_jax.core.precision import as_precision  # noqa: E402
from samp_jax.tasks import get_task  # noqa: E402


def study(model, *, target: str, strategy: str, tolerance: float, calibration,
          search_objective, evaluator, fp32_test: float, table: LatencyTable | None) -> dict:
    """One strategy's search, then every map its allocation measured on both splits."""
    result = search(model, search_objective, tolerance=tolerance, target=target,
                    calibration=calibration, latency_table=table, strategy=strategy, progress=False)
    dtype = result.plan.dtype  # the float option the search ran with (BF16 after an overflow)
    calibration = result.calibration  # per site when given candidates, as run_search quantizes
    score = lambda m: evaluator.score(evaluator.outputs(m))["value"]  # noqa: E731  real quantized path
    returned_test = score(quantize(model, result.precision_map, calibration, dtype=dtype))
    returned = {"name": result.chosen.name, "chosen_from": result.chosen_from,
                "latency_ms": result.chosen.latency_ms,
                "test_change": returned_test / fp32_test - 1,
                "within_on_test": bool(returned_test >= fp32_test * (1 - tolerance))}
    if result.selection is None:
        return {"strategy": strategy, "stopped_early": result.stopped_early,
                "returned": returned, "maps": []}
    options = tuple(as_precision(o) for o in result.options)
    switch = SwitchableModel(model, options, calibration, dtype=dtype)
    on_search = Runner(switch, search_objective, result.latency_table)
    _, _, allowed = tolerance_measure(search_objective, result.fp32_metric, tolerance, "relative")
    entries = {}
    for entry in result.evaluated:
        if entry.kind in (Kind.GREEDY, Kind.CANDIDATE):
            entries.setdefault(entry.precision_map, entry)
    maps = []
    for entry in sorted(entries.values(), key=lambda e: e.latency_ms):
        choices = switch.choices_for(entry.precision_map)
        search_out = on_search.run(choices[None])[0]
        test_metric = score(quantize(model, entry.precision_map, calibration, dtype=dtype))
        drop = lambda z: search_objective.guarded_drop(search_out, search_objective.reference, z=z)  # noqa: E731
        maps.append({
            "name": entry.name, "latency_ms": entry.latency_ms,
            "search_change": search_objective.metric(search_out) / result.fp32_metric - 1,
            "passes_95": bool(drop(Z_ONE_SIDED_95) <= allowed),
            "passes_selection": bool(drop(result.selection.z) <= allowed),
            "test_change": test_metric / fp32_test - 1,
            "within_on_test": bool(test_metric >= fp32_test * (1 - tolerance))})
    return {"strategy": strategy, "maps_compared": result.selection.maps_compared,
            "z": result.selection.z, "allocation_pick": result.selection.allocation_pick,
            "kept": result.selection.kept, "returned": returned, "maps": maps}


def totals(runs: list[dict]) -> dict:
    """Misses on test among the maps (and the picks) each margin accepts, and among the maps
    the searches returned (the pick, or the preset that was faster and passed)."""
    out = {"returned": {"maps": len(runs),
                        "missed_on_test": sum(not r["returned"]["within_on_test"] for r in runs)}}
    for margin in ("passes_95", "passes_selection"):
        accepted = [m for r in runs for m in r["maps"] if m[margin]]
        picks = [next((m for m in r["maps"] if m[margin]), None) for r in runs if r["maps"]]
        picks = [p for p in picks if p is not None]
        out[margin] = {"accepted": len(accepted),
                       "missed_on_test": sum(not m["within_on_test"] for m in accepted),
                       "picks": len(picks), "picks_missed": sum(not p["within_on_test"] for p in picks)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="wnut16")
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--strategies", default="greedy,knapsack,revert")
    parser.add_argument("--latency-table", type=Path, default=None, metavar="JSON",
                        help="price maps with this table (as tools/compare_strategies.py takes it)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    keep_cpu_buffers_for_timing("selection_study")
    table = None
    if args.latency_table is not None:
        try:
            record = json.loads(args.latency_table.read_text())
            table = validate_table(record.get("table", record) if isinstance(record, dict) else record)
        except ValueError as e:  # not JSON, or not a usable table
            parser.error(f"--latency-table {args.latency_table}: {e}")
    model, tokenizer, description = builtin_model(args.data, progress=False)
    task = get_task(args.data)
    evaluator = make_evaluator(task, tokenizer)
    calibration = calibrate_for_search(model, evaluator.calibration_batches())  # as run_search
    search_objective = task_objective(model, task, tokenizer)
    fp32_test = evaluator.score(evaluator.outputs(model))["value"]
    runs = []
    for strategy in args.strategies.split(","):
        runs.append(study(model, target=args.target, strategy=strategy,
                          tolerance=args.tolerance, calibration=calibration,
                          search_objective=search_objective, evaluator=evaluator,
                          fp32_test=fp32_test, table=table))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "maps"}), flush=True)
    record = {"command": "python " + " ".join(["tools/studies/selection_study.py", *sys.argv[1:]]),
              "data": args.data, "target": args.target, "model": description,
              "tolerance": args.tolerance, "latency_table": str(args.latency_table or "target's"),
              "totals": totals(runs), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "study.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record["totals"], indent=1))


if __name__ == "__main__":
    main()
