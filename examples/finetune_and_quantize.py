"""Fine-tune MiniLM on movie-review polarity, quantize it two ways, print the accuracy table.

Run: .venv/bin/python examples/finetune_and_quantize.py
The first run fine-tunes (about 10 minutes on a 2-core CPU) and caches the model under
$SAMP_JAX_CACHE/finetuned/; later runs load it from there. SAMP_JAX_EXAMPLES_QUICK=1 fine-tunes
for a few steps on 64 examples and scores 64 test examples (as the tests run it).
"""

import dataclasses
import os

from samp_jax.training.finetuning import DEFAULT_CONFIGS, finetuned_model
from samp_jax.workflows.experiments import Variant, accuracy_table, format_table, make_evaluator

TASK = "polarity"
QUICK = os.environ.get("SAMP_JAX_EXAMPLES_QUICK") == "1"
config = dataclasses.replace(DEFAULT_CONFIGS[TASK], max_train_examples=64, max_dev_examples=64,
                             epochs=1.0, batch_size=16) if QUICK else None

model, tokenizer, info = finetuned_model(TASK, config, progress=False if QUICK else None)  # cached, or fine-tune now
print(f"fine-tuned {TASK}: dev {info['metric']} {info['dev_metric']:.4f} after {info['steps']} steps "
      f"({info['seconds'] / 60:.1f} min)")

evaluator = make_evaluator(TASK, tokenizer, max_examples=64 if QUICK else None)  # held-out test split
rows = accuracy_table(model, evaluator, [
    Variant("quant_ffn_only"),                                   # SAMP: FFN in INT8, attention FP16
    Variant("fully_quant", "per_tensor_static", "percentile"),   # every GEMM INT8, calibrated scales
])
print(format_table(rows, metric=evaluator.metric, agreement=evaluator.agreement))
