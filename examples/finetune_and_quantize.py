"""Fine-tune MiniLM on movie-review polarity, quantize it two ways, print the accuracy table.

Run: .venv/bin/python examples/finetune_and_quantize.py
The first run fine-tunes (about 10 minutes on a 2-core CPU) and caches the model under
$SAMP_JAX_CACHE/finetuned/; later runs load it from there.
"""

from samp_jax.workflows.experiments import Variant, accuracy_table, format_table, make_evaluator
from samp_jax.training.finetuning import finetuned_model

TASK = "polarity"

model, tokenizer, info = finetuned_model(TASK)  # cached HF folder, or fine-tune now
print(f"fine-tuned {TASK}: dev {info['metric']} {info['dev_metric']:.4f} after {info['steps']} steps "
      f"({info['seconds'] / 60:.1f} min)")

evaluator = make_evaluator(TASK, tokenizer)  # the held-out test split
rows = accuracy_table(model, evaluator, [
    Variant("quant_ffn_only"),                                   # SAMP: FFN in INT8, attention FP16
    Variant("fully_quant", "per_tensor_static", "percentile"),   # every GEMM INT8, calibrated scales
])
print(format_table(rows, metric=evaluator.metric, agreement=evaluator.agreement))
