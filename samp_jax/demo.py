"""`make demo`: the most complete pipeline that exists, on the real all-MiniLM-L6-v2.

fetch MiniLM → the fine-tuned SNLI cross-encoder from the cache (or, when it is not cached,
the zero-shot SNLI bi-encoder) → calibrate → search for the precision map at 1% tolerance →
report → compare the chosen map with the presets on the held-out test split.
"""

from __future__ import annotations

import time

import jax

from samp_jax.training import DEFAULT_CONFIGS, finetuned_dir
from samp_jax.pipeline import ZERO_SHOT, run_search

OUT = "demo_out"


def run(*, tolerance: float = 0.01, max_search_examples: int = 256, max_test_examples: int = 2000) -> dict:
    start = time.perf_counter()
    cached = (finetuned_dir("snli", DEFAULT_CONFIGS["snli"]) / "finetune.json").is_file()
    task = "snli" if cached else ZERO_SHOT
    print(f"device: {jax.devices()[0].device_kind}; task: {task}"
          + ("" if cached else " (no fine-tuned SNLI model in the cache: `samp-jax finetune --task "
                               "snli` makes one; the zero-shot bi-encoder is used instead)"))
    summary = run_search(task=task, tolerance=tolerance, out=OUT, command="make demo",
                         max_search_examples=max_search_examples, max_test_examples=max_test_examples)
    test = summary["test"]
    metric = summary["metric"]
    print(f"\nmodel: {summary['model']}")
    print(f"search: {summary['maps_evaluated']} maps in {summary['search_seconds']:.0f} s, "
          f"{summary['compilations']} compilation(s); latency model: {summary['latency_source']}")
    print(f"\n{'map':<16} {metric + ' (test)':>16}  rel. to FP32   "
          f"({summary['test_examples']} held-out test examples, fixed seeded subset)")
    for name in ("fp32", "fp16", "quant_ffn_only", "fully_quant", "chosen"):
        print(f"{name:<16} {test[name]:>16.4f}  {100 * (test[name] / test['fp32'] - 1):+.2f}%")
    print(f"\nchosen map: {100 * summary['int8_flop_fraction']:.0f}% of GEMM FLOPs in INT8, "
          f"estimated {summary['estimated_speedup_vs_fp16']:.2f}x FP16 "
          f"({summary['estimated_latency_ms']:.3f} ms)")
    print(f"report: {OUT}/report.md, {OUT}/pareto.png, {OUT}/precision_map.json "
          f"(total {time.perf_counter() - start:.0f} s)")
    return summary
