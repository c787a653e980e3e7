"""The rows a fine-tune trained on, kept beside the model as digests, so that a later `eval`,
`calibrate` or `search` can tell when its held-out splits hold them.

A split is drawn from a file by position with a seed: the same file and seed give the same
splits, but another seed, a reordered or an extended file puts some of the fine-tune's
training rows into the test split, and the model's score there overstates it. `samp-jax
finetune` writes `TRAINED_ROWS_FILE` (an 8-byte BLAKE2b digest of each training row's inputs:
its text, text pair or words, not its label); `overlap` counts the rows of a split whose inputs
are among them. A row that the data repeats counts too: it was trained on all the same.

The checkpoint's `config.json` says it has that file (`TRAINED_ROWS_CONFIG`): a copy of the
folder that drops it (the HF files alone: config, weights, tokenizer) is then told apart from a
model nothing guards, and `trained_rows` says, in a warning, that the check cannot be made.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

TRAINED_ROWS_FILE = "finetune_train_rows.npy"
TRAINED_ROWS_KEY = "samp_jax_trained_rows"
TRAINED_ROWS_CONFIG = {TRAINED_ROWS_KEY: TRAINED_ROWS_FILE}
"""The `config.json` key of a fine-tune that saved its training rows' digests (HF's config keeps
it as an attribute and its classes ignore it)."""
INPUT_FIELDS = ("text", "text_pair", "tokens")


def _digests(examples: Iterable[dict]) -> np.ndarray:
    """The uint64 digest of each example's inputs (`INPUT_FIELDS`), in order."""
    return np.asarray([int.from_bytes(hashlib.blake2b(
        json.dumps([e.get(field) for field in INPUT_FIELDS], ensure_ascii=False).encode(),
        digest_size=8).digest(), "little") for e in examples], dtype=np.uint64)


def row_digests(examples: Iterable[dict]) -> np.ndarray:
    """The sorted, distinct uint64 digests of the examples' inputs (`INPUT_FIELDS`)."""
    return np.unique(_digests(examples))


def save_trained_rows(folder: str | Path, examples: Iterable[dict]) -> Path:
    """Writes the digests of `examples` (a fine-tune's training rows) into `folder`."""
    path = Path(folder) / TRAINED_ROWS_FILE
    np.save(path, row_digests(examples), allow_pickle=False)
    return path


def trained_rows(folder: str | Path) -> np.ndarray | None:
    """The digests a fine-tune saved in `folder`, or None: none saved, or a file that is not
    a plain uint64 array, or none beside a `config.json` that says one was saved (a warning
    says the check is skipped)."""
    path = Path(folder) / TRAINED_ROWS_FILE
    if not path.is_file():
        if _promised(Path(folder) / "config.json"):
            broken = path.is_symlink() and not path.exists()  # a link whose target is absent
            how = f" (a link to {path.readlink()}, which does not exist)" if broken else ""
            warnings.warn(f"{Path(folder) / 'config.json'} says {folder} was fine-tuned by "
                          f"samp-jax with a guard against scoring its training rows "
                          f"({TRAINED_ROWS_KEY}), but its {TRAINED_ROWS_FILE} is missing{how}: "
                          "whether the held-out rows overlap the rows it was trained on cannot "
                          "be told (copy that file with the model's)")
        return None
    try:
        # mapped, not read: a header that claims more rows than the file holds is refused
        # by the mapping instead of allocating them
        digests = np.load(path, allow_pickle=False, mmap_mode="r")
        if digests.dtype != np.uint64 or digests.ndim != 1:
            raise ValueError(f"it holds {digests.dtype} of shape {digests.shape}, not uint64 digests")
        digests = np.array(digests)
    except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file
        warnings.warn(f"cannot read {path} ({e or type(e).__name__}): whether the held-out rows were trained on "
                      "is not checked")
        return None
    return digests


def _promised(config_file: Path) -> bool:
    """Whether `config_file` (a checkpoint's `config.json`) says a fine-tune saved its training
    rows beside it (`TRAINED_ROWS_KEY`)."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none, or not JSON: the model's reader names it
        return False
    return isinstance(config, dict) and TRAINED_ROWS_KEY in config


def overlap(trained: np.ndarray, examples: Iterable[dict]) -> int:
    """How many of `examples` have the inputs of a row in `trained` (`row_digests`)."""
    return int(np.isin(_digests(examples), trained).sum())
