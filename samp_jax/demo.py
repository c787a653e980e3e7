"""`make demo`: the most complete pipeline that exists, on the real all-MiniLM-L6-v2.

fetch MiniLM → FP32 reference on SNLI test pairs → calibrate on SNLI train sentences →
quantize with the presets → compare ROC-AUC, embedding agreement and parameter memory.
"""

from __future__ import annotations

import time

import jax

from samp_jax import Tokenizer, load_pretrained, minilm_path
from samp_jax.experiments import SnliEmbedTask, Variant, accuracy_table, format_table

DEMO_VARIANTS = [
    Variant("fp16"),
    Variant("quant_ffn_only"),
    Variant("fully_quant"),
    Variant("fully_quant", "per_tensor_static", "percentile", smoothing=0.5),
    Variant("fp8"),
]


def run(max_pairs: int = 2400) -> None:
    t0 = time.perf_counter()
    path = minilm_path()
    model = load_pretrained(path)
    tokenizer = Tokenizer.from_pretrained(path)
    print(f"all-MiniLM-L6-v2: {model.config.num_layers} layers, hidden {model.config.hidden_size}; "
          f"loaded in {time.perf_counter() - t0:.1f}s on {jax.devices()[0].device_kind}")
    task = SnliEmbedTask(tokenizer, max_pairs=max_pairs)
    print(f"zero-shot SNLI test: {task.labels.size} entailment/contradiction pairs "
          f"({len(task.texts)} unique sentences), scored by cosine similarity; "
          f"calibration: {len(task.calibration_texts)} SNLI train sentences\n")
    rows = accuracy_table(model, task, DEMO_VARIANTS,
                          progress=lambda r: print(f"  evaluated {r['variant']}", flush=True))
    print()
    print(format_table(rows))
    print("\nROC-AUC: how well cosine separates entailment from contradiction (higher is better).\n"
          "cosine to FP32: agreement of each variant's embeddings with FP32's. Non-FP32 rows run\n"
          "activations in FP16 between sites; params are the stored parameter bytes.\n"
          "Times are CPU wall-clock including compilation, not speed measurements.")
