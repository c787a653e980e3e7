"""Embed sentence pairs with the real all-MiniLM-L6-v2 and score them (bi-encoder matching).

Run: .venv/bin/python examples/embed_and_compare.py
"""

import jax.numpy as jnp
import numpy as np

import samp_jax as sj

path = sj.minilm_path()  # fetched into the cache once, then re-used
tokenizer = sj.Tokenizer.from_pretrained(path)
model = sj.load_pretrained(path)  # sentence-embedding head detected from 1_Pooling/config.json
model_bf16 = sj.load_pretrained(path, dtype=jnp.bfloat16)

left = tokenizer(["A dog runs in the park.", "The market closed higher today."])
right = tokenizer(["An animal is outside.", "A child is asleep."])
for name, m in (("fp32", model), ("bf16", model_bf16)):
    scores = np.asarray(sj.cosine_similarity(m(**left), m(**right)))
    print(name, "cosine:", np.round(scores, 3))
