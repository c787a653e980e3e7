"""`make demo`: the most complete pipeline that exists, on the real all-MiniLM-L6-v2."""

from __future__ import annotations

import time

import jax
import numpy as np
from flax import nnx

from samp_jax import Tokenizer, cosine_similarity, load_pretrained, minilm_path

# SNLI-style pairs (premise, hypothesis, gold label).
PAIRS = [
    ("A man inspects the uniform of a figure in some East Asian country.", "The man is sleeping.", "contradiction"),
    ("An older and younger man smiling.", "Two men are smiling and laughing at the cats playing on the floor.", "neutral"),
    ("A black race car starts up in front of a crowd of people.", "A man is driving down a lonely road.", "contradiction"),
    ("A soccer game with multiple males playing.", "Some men are playing a sport.", "entailment"),
    ("A smiling costumed woman is holding an umbrella.", "A happy woman in a fairy costume holds an umbrella.", "neutral"),
    ("A woman is walking across the street eating a banana.", "A woman eats a banana.", "entailment"),
    ("Two women are embracing while holding to go packages.", "The men are fighting outside a deli.", "contradiction"),
    ("A boy is jumping on skateboard in the middle of a red bridge.", "The boy does a skateboarding trick.", "entailment"),
]


def run(batch_repeats: int = 20) -> None:
    """Fetches MiniLM, embeds the built-in pairs with a jitted forward, prints scores and timings."""
    t0 = time.perf_counter()
    path = minilm_path()
    model = load_pretrained(path)
    tokenizer = Tokenizer.from_pretrained(path)
    print(f"loaded {path.name} ({model.config.num_layers} layers, hidden {model.config.hidden_size}) "
          f"in {time.perf_counter() - t0:.1f}s on {jax.devices()[0].device_kind}")

    forward = nnx.jit(lambda m, batch: m(**batch))
    premises = tokenizer([p for p, _, _ in PAIRS], padding=64)
    hypotheses = tokenizer([h for _, h, _ in PAIRS], padding=64)
    t0 = time.perf_counter()
    jax.block_until_ready(forward(model, premises))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(batch_repeats):
        a = forward(model, premises)
    jax.block_until_ready(a)
    step_ms = (time.perf_counter() - t0) / batch_repeats * 1e3
    b = forward(model, hypotheses)
    scores = np.asarray(cosine_similarity(a, b))

    print(f"\n{'cosine':>7}  {'gold':<13}  premise → hypothesis")
    for (premise, hypothesis, label), score in zip(PAIRS, scores):
        print(f"{score:7.3f}  {label:<13}  {premise[:48]} → {hypothesis[:48]}")
    by_label = {lab: np.mean([s for (_, _, l), s in zip(PAIRS, scores) if l == lab])
                for lab in ("entailment", "neutral", "contradiction")}
    print("\nmean cosine: " + ", ".join(f"{k} {v:.3f}" for k, v in by_label.items()))
    print(f"jit compile {compile_s:.2f}s; forward {len(PAIRS)}x64 tokens: {step_ms:.2f} ms "
          f"(mean of {batch_repeats} back-to-back calls, one sync, FP32)")
