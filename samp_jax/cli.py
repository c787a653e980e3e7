"""The `samp-jax` command line.

Exit codes: 0 success, 1 a runtime error (bad map, missing file, calibration failure), 2 bad
command-line usage.
"""

from __future__ import annotations

import argparse
import json
import sys

ACTIVATIONS = {"dynamic": "per_token_dynamic", "static": "per_tensor_static"}


def _load_model(name: str):
    from samp_jax import Tokenizer, load_pretrained, minilm_path
    path = minilm_path() if name == "minilm" else name
    return load_pretrained(path), Tokenizer.from_pretrained(path)


def _eval(args: argparse.Namespace) -> int:
    from samp_jax.experiments import SnliEmbedTask, Variant, accuracy_table, format_table

    model, tokenizer = _load_model(args.model)
    variants = [Variant(p.strip(), ACTIVATIONS[args.activation], args.calibration, args.smoothing)
                for p in args.precision.split(",") if p.strip()]
    for v in variants:  # validate every map before the slow part
        v.precision_map(model.config.num_layers)
    task = SnliEmbedTask(tokenizer, max_pairs=args.max_pairs)
    progress = None if args.json else (lambda row: print(f"  done: {row['variant']}", file=sys.stderr))
    rows = accuracy_table(model, task, variants, progress=progress)
    if args.json:
        print(json.dumps({"model": args.model, "task": args.task, "pairs": task.labels.size,
                          "rows": rows}, indent=1))
    else:
        print(format_table(rows))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from samp_jax import demo
    demo.run(max_pairs=args.max_pairs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samp-jax", description="Mixed-precision BERT inference in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate precision variants on a task against FP32")
    ev.add_argument("--model", default="minilm", help="'minilm' or an HF checkpoint folder")
    ev.add_argument("--task", default="snli-embed", choices=["snli-embed"])
    ev.add_argument("--precision", default="fp16",
                    help="comma-separated presets (fp32, fp16, bf16, fp8, quant_ffn_only, "
                         "fully_quant) or precision-map JSON files")
    ev.add_argument("--activation", default="dynamic", choices=sorted(ACTIVATIONS),
                    help="INT8 activation scheme for presets")
    ev.add_argument("--calibration", default="percentile",
                    choices=["minmax", "percentile", "mse", "entropy"])
    ev.add_argument("--smoothing", type=float, default=None, help="SmoothQuant alpha in [0, 1]")
    ev.add_argument("--max-pairs", type=int, default=2400, help="SNLI test pairs to score")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(func=_eval)

    demo = sub.add_parser("demo", help="the main pipeline on the real MiniLM and SNLI")
    demo.add_argument("--max-pairs", type=int, default=2400)
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
