"""The `samp-jax` command line: `eval`, `calibrate`, `search`, `bench` and `demo`.

Exit codes: 0 success, 1 a runtime error (bad map, missing file, calibration failure), 2 bad
command-line usage. Progress goes to stderr; `--json` puts the machine-readable result alone
on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

from calibrate import CalibrationError, calibrate
from samp_jax.app import bench, demo
from samp_jax.app.experiments import Variant, accuracy_table, format_table, make_evaluator
from samp_jax.app.pipeline import load_task_model, run_search
from samp_jax.quant.quantized import quantize

ACTIVATIONS = {"dynamic": "per_token_dynamic", "static": "per_tensor_static"}


def _eval(args: argparse.Namespace) -> int:

    if args.model != "minilm":
        raise ValueError("only --model minilm is packaged; pass a checkpoint through the Python API")
    variants = [Variant(p.strip(), ACTIVATIONS[args.activation], args.calibration, args.smoothing)
                for p in args.precision.split(",") if p.strip()]
    model, tokenizer, description = load_task_model(args.task, progress=not args.json)
    for v in variants:  # validate every map before the slow part
        v.precision_map(model.config.num_layers)
    options = {"max_pairs": args.max_pairs} if args.task == "snli-embed" else {}
    evaluator = make_evaluator(args.task, tokenizer, **options)
    progress = None if args.json else (lambda row: print(f"  done: {row['variant']}", file=sys.stderr))
    rows = accuracy_table(model, evaluator, variants, progress=progress)
    if args.json:
        print(json.dumps({"model": description, "task": args.task, "metric": evaluator.metric,
                          "split": "test", "examples": rows[0]["examples"], "rows": rows}, indent=1))
    else:
        print(f"{description}; {evaluator.metric} on the test split ({rows[0]['examples']} examples)")
        print(format_table(rows, metric=evaluator.metric, agreement=evaluator.agreement))
    return 0


def parse_tolerance(text: str) -> float:
    """'1%' -> 0.01; '0.01' -> 0.01."""
    text = text.strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tolerance {text!r} is not a number or a percentage") from None


def _search(args: argparse.Namespace) -> int:
    summary = run_search(task=args.task, tolerance=args.tolerance, tolerance_mode=args.tolerance_mode,
                         latency_target_ms=args.latency_target, out=args.out, objective=args.objective,
                         calibration_method=args.calibration, progress=not args.json,
                         command="samp-jax " + " ".join(sys.argv[1:])).summary
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"wrote {args.out}/precision_map.json, report.md, pareto.png")
        for key in ("fp32_search_metric", "chosen_search_metric", "int8_flop_fraction",
                    "estimated_speedup_vs_fp16"):
            print(f"  {key}: {summary[key]}")
        print(f"  test: {summary['test']}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:

    variant = Variant(args.precision, ACTIVATIONS[args.activation], args.method, args.smoothing)
    model, tokenizer, description = load_task_model(args.task, progress=not args.json)
    pmap = variant.precision_map(model.config.num_layers)  # validates before the slow part
    evaluator = make_evaluator(args.task, tokenizer)
    batches = evaluator.calibration_batches()
    if args.max_batches is not None:
        batches = batches[:args.max_batches]
    try:
        calibration = calibrate(model, batches, args.method, precision_map=pmap,
                                smoothing=args.smoothing, progress=not args.json)
    except CalibrationError as e:
        raise ValueError(f"calibration failed: {e}") from None
    quantized = quantize(model, pmap, calibration)
    path = quantized.save(args.out)
    summary = {"model": description, "task": args.task, "precision": variant.label,
               "calibration": calibration.describe(), "saved_to": str(path),
               "memory": quantized.memory_report()}
    if args.eval:
        summary["test"] = evaluator.score(evaluator.outputs(quantized))
        summary["test_fp32"] = evaluator.score(evaluator.outputs(model))
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        print(f"{description}: {variant.label}, {args.method} calibration over "
              f"{len(batches)} batches; saved the quantized model to {path}")
        if args.eval:
            print(f"  test {summary['test']['metric']}: {summary['test']['value']:.4f} "
                  f"(FP32 {summary['test_fp32']['value']:.4f})")
    return 0


def _bench(args: argparse.Namespace) -> int:
    return bench.run_from_args(args)


def _demo(args: argparse.Namespace) -> int:
    demo.run(tolerance=args.tolerance)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samp-jax", description="Mixed-precision BERT inference in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate precision variants on a task against FP32")
    ev.add_argument("--model", default="minilm", help="the packaged all-MiniLM-L6-v2")
    ev.add_argument("--task", default="snli-embed", choices=["snli-embed", "snli", "polarity", "wnut16"],
                    help="zero-shot snli-embed, or a task fine-tuned from MiniLM (cached; trained if missing)")
    ev.add_argument("--precision", default="fp16",
                    help="comma-separated presets (fp32, fp16, bf16, fp8, quant_ffn_only, "
                         "fully_quant) or precision-map JSON files")
    ev.add_argument("--activation", default="dynamic", choices=sorted(ACTIVATIONS),
                    help="INT8 activation scheme for presets")
    ev.add_argument("--calibration", default="percentile",
                    choices=["minmax", "percentile", "mse", "entropy"])
    ev.add_argument("--smoothing", type=float, default=None, help="SmoothQuant alpha in [0, 1]")
    ev.add_argument("--max-pairs", type=int, default=2400, help="snli-embed: SNLI test pairs to score")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(func=_eval)

    ca = sub.add_parser("calibrate", help="calibrate static scales and save a quantized model")
    ca.add_argument("--task", default="snli-embed", choices=["snli-embed", "snli", "polarity", "wnut16"],
                    help="whose calibration split and model (fine-tuned from the cache) to use")
    ca.add_argument("--precision", default="fully_quant",
                    help="a preset (fp16, bf16, fp8, quant_ffn_only, fully_quant) or a map JSON file")
    ca.add_argument("--activation", default="static", choices=sorted(ACTIVATIONS),
                    help="INT8 activation scheme for presets")
    ca.add_argument("--method", default="percentile", choices=["minmax", "percentile", "mse", "entropy"])
    ca.add_argument("--smoothing", type=float, default=None, help="SmoothQuant alpha in [0, 1]")
    ca.add_argument("--max-batches", type=int, default=None, help="use only the first N calibration batches")
    ca.add_argument("--out", default="quantized_model", help="folder for the saved QuantizedModel")
    ca.add_argument("--eval", action="store_true", help="also score the test split (quantized and FP32)")
    ca.add_argument("--json", action="store_true", help="print the JSON summary")
    ca.set_defaults(func=_calibrate)

    se = sub.add_parser("search", help="find the precision map that meets a tolerance or latency target")
    se.add_argument("--task", default="snli-embed", choices=["snli", "polarity", "wnut16", "snli-embed"],
                    help="a fine-tuned task (from the cache, trained if missing) or zero-shot snli-embed")
    se.add_argument("--tolerance", type=parse_tolerance, default=0.01, help="e.g. 1%% or 0.01")
    se.add_argument("--tolerance-mode", default="relative", choices=["relative", "absolute"])
    se.add_argument("--latency-target", type=float, default=None, metavar="MS",
                    help="reach this estimated latency instead of a tolerance")
    se.add_argument("--objective", default="latency", choices=["latency", "int8_fraction"])
    se.add_argument("--calibration", default="percentile",
                    choices=["minmax", "percentile", "mse", "entropy"])
    se.add_argument("--out", default="search_out", help="report folder")
    se.add_argument("--json", action="store_true", help="print the JSON summary")
    se.set_defaults(func=_search)

    be = sub.add_parser("bench", help="end-to-end latency: samp-jax precisions vs HF PyTorch",
                        description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(be)
    be.set_defaults(func=_bench)

    demo = sub.add_parser("demo", help="the main pipeline on the real MiniLM and SNLI")
    demo.add_argument("--tolerance", type=parse_tolerance, default=0.01)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"samp-jax {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
