"""Search the precision map for zero-shot SNLI matching at 1% tolerance and write a report.

Run: .venv/bin/python examples/search_precision_map.py   (a few minutes on a 2-core CPU)
"""

from samp_jax.app.pipeline import run_search

summary = run_search(task="snli-embed", tolerance=0.01, out="search_out", max_search_examples=400).summary
print(f"chosen map: {100 * summary['int8_flop_fraction']:.0f}% of GEMM FLOPs in INT8; "
      f"test ROC-AUC {summary['test']['chosen']:.4f} vs FP32 {summary['test']['fp32']:.4f}")
print("see search_out/report.md and search_out/pareto.png")
