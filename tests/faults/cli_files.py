"""What the command-line fault tests share: a tiny HF model folder (MiniLM's tokenizer, labels
neg/pos) and a CSV of random reviews beside it."""

from pathlib import Path

import numpy as np

from samp_jax.models import save_pretrained
from tests.helpers import tiny_classifier

def write_model_and_reviews(root: Path, minilm_dir: Path, rows: int) -> Path:
    """`root/model` (a random tiny BERT classifier) and `root/data.csv` (`rows` reviews,
    alternating neg/pos); returns `root`."""
    model = tiny_classifier()
    save_pretrained(model, root / "model", tokenizer_dir=minilm_dir, labels=("neg", "pos"))
    rng = np.random.default_rng(1)
    words = "good bad movie plot day night fine awful".split()
    (root / "data.csv").write_text("text,label\n" + "".join(
        f"{' '.join(rng.choice(words, 8))},{'pos' if i % 2 else 'neg'}\n" for i in range(rows)))
    return root
