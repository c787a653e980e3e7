"""`samp-jax search`'s options and what it prints: the `SearchConfig` of its arguments, and the
summary lines of a finished search (with the numbers behind its tolerance verdict)."""

from __future__ import annotations

import shlex
from pathlib import Path

from calibrate.search.config import SearchConfig, validate_tolerance
from samp_jax.app.outputs import UsageError

DEFAULT_TOLERANCE = 0.01
"""`samp-jax search`'s tolerance when neither it nor a latency target is given: 1%."""

TOLERANCE_NOT_MET = 3
"""`samp-jax search`'s exit code when no map meets the tolerance on the search split: its
outputs are written, for a look at why, and the run is not a success a pipeline may deploy."""


def search_config(args) -> SearchConfig:
    """The `SearchConfig` of `samp-jax search`'s arguments (validated: a bad tolerance or
    strategy fails here, before any model or data is read)."""
    if args.tolerance is not None and args.latency_target is not None:
        raise UsageError("--tolerance and --latency-target choose the map two ways; give one "
                         "(a latency target keeps the map closest to FP32 that reaches it)")
    if args.tolerance is not None:  # in its mode; against the metric's largest value once known
        try:
            validate_tolerance(args.tolerance, args.tolerance_mode)
        except ValueError as e:
            raise UsageError(f"--tolerance: {e}") from None
    return SearchConfig(
        tolerance=DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
        tolerance_mode=args.tolerance_mode,
        latency_target_ms=args.latency_target, objective=args.objective, strategy=args.strategy,
        target=args.target, options=args.options, calibration=args.calibration,
        calibration_examples=args.calibration_examples,
        max_search_examples=args.max_search_examples, seed=args.seed,
        selection_margin=not args.no_selection_margin, progress=False if args.json else None,
        measure_again=args.measure_latency_again, attention=args.attention)


def print_summary(out, summary: dict, measure: str | None = None) -> None:
    """The lines `samp-jax search` prints without `--json`: what it wrote, the summary's main
    fields, the chosen map's tolerance check and the test metrics; `measure`, when given, is
    the command that measures the estimated speed-up on this machine (`bench_command`)."""
    model = Path(out) / summary["quantized_model"]  # recorded relative to `out`
    print(f"wrote {out}/precision_map.json, report.md, pareto.png, the Pareto-front maps "
          f"(pareto/) and the quantized model {model} (load it with samp_jax.load)")
    shown = ("label_threshold",) if summary.get("label_threshold") is not None else ()
    for key in ("target", "chosen_from", *shown, "max_length", "fp32_search_metric",
                "chosen_search_metric", "int8_flop_fraction", "estimated_speedup_vs_default",
                "latency_source", "search_seconds"):
        print(f"  {key}: {summary[key]}")
        if key == "estimated_speedup_vs_default" and measure is not None:
            print(f"  (estimated by the latency model; measured end to end: {measure})")
        if key == "target" and summary.get("float_overflows"):
            print(f"  default_option: {summary['default_option']} ("
                  + "; ".join(f"{o['float_option']} overflowed on {o['non_finite_rows']} of "
                              f"{o['rows']} search rows" for o in summary["float_overflows"])
                  + ")")
    if summary.get("tolerance_checks"):
        print(f"  within tolerance: {chosen_check_line(summary['tolerance_checks'][-1])}")
    if summary.get("attention"):  # the attention step: what it chose, or why it did not run
        print(f"  attention: {summary['attention']['note']}")
    print(f"  test: {summary['test']}")
    if summary.get("test_proxy"):  # texts only: the chosen map's divergence from FP32 on test
        print(f"  test_proxy: {summary['test_proxy']}")


def bench_command(model: str | None, out, default_option: str,
                  shape: tuple[int, int] | None = None) -> str | None:
    """`samp-jax bench` timing the all-`default_option` map and the searched one of the float
    model at `model` (a folder as given to `--model`, or None for a built-in model, which
    has no folder to name), at `shape` (batch, seq: the latency table's) when given."""
    if model is None:
        return None
    shapes = "" if shape is None else f" --shapes {shape[0]}x{shape[1]}"
    return (f"samp-jax bench --model {shlex.quote(str(model))} --precision "
            + shlex.quote(f"{default_option},{Path(out) / 'precision_map.json'}") + shapes)


def chosen_check_line(check: dict) -> str:
    """The chosen map's tolerance check (`ToleranceCheck.as_json`) in words: 'yes (drop
    0.004 + margin 0.0065 = 0.0105 <= allowed 0.011)', or the proxy against its bound."""
    verdict = "yes" if check["passes"] else "no"
    sign = "<=" if check["passes"] else ">"
    if check["drop"] is None:
        return f"{verdict} (proxy {check['bounded']:.4g} {sign} allowed {check['allowed']:.4g})"
    at = "" if check.get("z") is None else f" at z {check['z']:.3g}"
    return (f"{verdict} (drop {check['drop']:.4g} + margin{at} {check['margin']:.4g} = "
            f"{check['bounded']:.4g} {sign} allowed {check['allowed']:.4g}, on the search split)")


def tolerance_not_met(summary: dict) -> str:
    """The error line of a search whose tolerance no map met (`summary["tolerance_met"]` False):
    the tolerance, the closest map's check and where its outputs are."""
    tolerance = summary["tolerance"]
    asked = (f"{100 * tolerance:g}% relative" if summary["tolerance_mode"] == "relative"
             else f"{tolerance:g} absolute")
    checks = summary.get("tolerance_checks") or []
    closest = f" (the closest map: {chosen_check_line(checks[-1])})" if checks else ""
    kept = [o for o in summary.get("float_overflows") or []
            if o["float_option"] == summary.get("default_option")]
    if kept:  # the float option the search ran with overflowed: say so, it is the likely cause
        closest += (f"; {kept[-1]['float_option']} overflowed on {kept[-1]['non_finite_rows']} "
                    f"of {kept[-1]['rows']} search rows")
    return (f"no map meets the tolerance ({asked}) on the search split, not even the most "
            f"precise candidate{closest}; {summary['out']} holds that map, its model and "
            f"report to look at, not a map within tolerance (exit code {TOLERANCE_NOT_MET})")
