"""What the command-line fault tests share: a tiny HF model folder (MiniLM's tokenizer, labels
neg/pos) and a CSV of random reviews beside it; the `no_slow_work` fixture and the check of a
one-line error (`one_line_error`)."""

from pathlib import Path

import numpy as np
import pytest

from samp_jax.app import cli
from samp_jax.models import save_pretrained
from tests.helpers import tiny_classifier


@pytest.fixture
def no_slow_work(monkeypatch):
    """Fails the test if the command gets as far as loading a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command loaded a model before checking its arguments")
    monkeypatch.setattr(cli, "load", refuse)
    monkeypatch.setattr(cli, "builtin_model", refuse)


def one_line_error(capsys, code: int, expected_code: int, *needles: str) -> str:
    """Checks a command's exit code and that stderr holds one error line with every needle and
    no traceback; returns stderr."""
    err = capsys.readouterr().err
    assert code == expected_code, err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if ": error: " in line]) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


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
