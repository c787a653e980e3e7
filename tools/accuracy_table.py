"""Measures an accuracy table (FP32 and every preset/calibrator variant) for one task.

Usage: .venv/bin/python tools/accuracy_table.py --task snli-embed [--max-examples 2400]
       .venv/bin/python tools/accuracy_table.py --task polarity --variants short
Writes docs/results/accuracy_<task>.json; docs/results/accuracy.md quotes these files.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from samp_jax.serving.timing import device_description, keep_cpu_buffers_for_timing
from samp_jax.workflows.experiments import Variant, accuracy_table, default_variants, format_table, make_evaluator
from samp_jax.workflows.pipeline import builtin_model

SHORT_VARIANTS = [Variant("fp16"), Variant("bf16"), Variant("fp8"), Variant("quant_ffn_only"),
                  Variant("fully_quant"), Variant("fully_quant", "per_tensor_static", "percentile", 0.5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="snli-embed", choices=["snli-embed", "snli", "polarity", "wnut16"])
    parser.add_argument("--max-examples", type=int, default=None,
                        help="a fixed seeded subset of the test split (docs: 2400 for snli-embed)")
    parser.add_argument("--variants", default="all", choices=["all", "short"],
                        help="short: fp16, bf16, fp8, quant_ffn_only, fully_quant dynamic and static")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    keep_cpu_buffers_for_timing("accuracy_table")  # as the samp-jax command serves and measures
    out = args.out or Path(f"docs/results/accuracy_{args.task.replace('-', '_')}.json")
    model, tokenizer, description = builtin_model(args.task)
    evaluator = make_evaluator(args.task, tokenizer, max_examples=args.max_examples)
    variants = default_variants() if args.variants == "all" else SHORT_VARIANTS
    start = time.perf_counter()
    rows = accuracy_table(model, evaluator, variants,
                          progress=lambda r: print(f"{r['variant']}: {r['value']:.4f}", flush=True))
    command = " ".join(["python tools/accuracy_table.py", *sys.argv[1:]])
    result = {"command": command, "model": description, "task": args.task, "metric": evaluator.metric,
              "agreement": evaluator.agreement, "device": device_description(),
              "machine": platform.machine(), "examples": rows[0]["examples"],
              "total_seconds": time.perf_counter() - start, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(format_table(rows, metric=evaluator.metric, agreement=evaluator.agreement))


if __name__ == "__main__":
    main()
