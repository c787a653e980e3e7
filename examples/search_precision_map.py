"""Search the precision map for zero-shot SNLI matching at 1% tolerance and write a report.

Run: .venv/bin/python examples/search_precision_map.py   (a few minutes on a 2-core CPU)
"""

from samp_jax.workflows.pipeline import builtin_model, run_search
from samp_jax.tasks import get_task

model, tokenizer, description = builtin_model("snli-embed")  # the packaged MiniLM, zero-shot
summary = run_search(model, tokenizer, get_task("snli-embed"), description=description,
                     tolerance=0.01, out="search_out", max_search_examples=400,
                     max_test_examples=1000).summary
print(f"chosen map: {100 * summary['int8_flop_fraction']:.0f}% of GEMM FLOPs in INT8; "
      f"test ROC-AUC {summary['test']['chosen']:.4f} vs FP32 {summary['test']['fp32']:.4f}")
print("see search_out/report.md and search_out/pareto.png")
