"""What the command-line fault tests share: a tiny HF model folder (MiniLM's tokenizer, labels
neg/pos) and a CSV of random reviews beside it."""

from pathlib import Path

import numpy as np
from flax import nnx

import samp_jax as sj
from samp_jax.models import make_head, save_pretrained

TINY = dict(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=64)


def write_model_and_reviews(root: Path, minilm_dir: Path, rows: int) -> Path:
    """`root/model` (a random tiny BERT classifier) and `root/data.csv` (`rows` reviews,
    alternating neg/pos); returns `root`."""
    config = sj.EncoderConfig(**TINY)
    rngs = nnx.Rngs(5)
    model = sj.EncoderModel(config, make_head("sequence_classification", config, num_labels=2,
                                              rngs=rngs), rngs=rngs)
    save_pretrained(model, root / "model", tokenizer_dir=minilm_dir, labels=("neg", "pos"))
    rng = np.random.default_rng(1)
    words = "good bad movie plot day night fine awful".split()
    (root / "data.csv").write_text("text,label\n" + "".join(
        f"{' '.join(rng.choice(words, 8))},{'pos' if i % 2 else 'neg'}\n" for i in range(rows)))
    return root
