"""Search the precision map for zero-shot SNLI matching at 1% tolerance and write a report.

Run: .venv/bin/python examples/search_precision_map.py   (a few minutes on a 2-core CPU)
The same as `samp-jax search --data snli-embed --tolerance 1% --target auto`: the device target
is this machine (its options, the dtype between sites and a latency table measured here).
SAMP_JAX_EXAMPLES_QUICK=1 runs it on small subsets (128 calibration rows instead of 512), with
one calibrator for the static clips (instead of each site's pick of several) and the latency
table measured at a small serving shape (as the tests do).
"""

import os

from calibrate import SearchConfig
from samp_jax.workflows.pipeline import builtin_model, run_search
from samp_jax.tasks import get_task

QUICK = os.environ.get("SAMP_JAX_EXAMPLES_QUICK") == "1"

model, tokenizer, description = builtin_model("snli-embed")  # the packaged MiniLM, zero-shot
config = SearchConfig(tolerance=0.01, target="auto", max_search_examples=32 if QUICK else 400,
                      progress=False if QUICK else None,
                      # the serving shape the latency table is measured at (the default: 32x128)
                      batch=8 if QUICK else 32, seq=32 if QUICK else 128,
                      calibration="percentile" if QUICK else "auto",
                      calibration_examples=128 if QUICK else 512)
summary = run_search(model, tokenizer, get_task("snli-embed"), config, description=description,
                     out="search_out", max_test_examples=64 if QUICK else 1000).summary
print(f"chosen map: {100 * summary['int8_flop_fraction']:.0f}% of matmul FLOPs in INT8; "
      f"test ROC-AUC {summary['test']['chosen']:.4f} vs FP32 {summary['test']['fp32']:.4f}")
print("see search_out/report.md and search_out/pareto.png")
