"""How a sentence embedder's two embeddings are compared: sentence-transformers'
`similarity_fn_name` (in `config_sentence_transformers.json`), the score a bi-encoder gives a
pair of texts.

A registry of data: each name maps to a row-wise numpy function of two `[n, dim]` embedding
arrays, larger meaning more similar, as sentence-transformers defines it:

- `cosine` (the default, and what a folder stating none or `null` uses);
- `dot`: the dot product (a model trained for it, e.g. without a Normalize module);
- `euclidean` / `manhattan`: the negative L2 / L1 distance.

`pair_similarity(name, a, b)` scores pairs; `read_similarity(folder)` reads a folder's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from samp_jax.core.input_files import check_regular
from samp_jax.models.config import ConfigError, read_json

SIMILARITY_KEY = "similarity_fn_name"
SIMILARITY_FILE = "config_sentence_transformers.json"  # sentence-transformers' own name for it
DEFAULT_SIMILARITY = "cosine"
NORM_FLOOR = 1e-12  # the smallest norm divided by (L2 normalisation, cosine): zero stays zero


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of `a` with the same row of `b` (the last axis); a zero
    embedding's is 0."""
    norms = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), NORM_FLOOR)
    return np.sum(a * b, -1) / norms


SIMILARITIES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "cosine": cosine,
    "dot": lambda a, b: np.sum(a * b, -1),
    "euclidean": lambda a, b: -np.linalg.norm(a - b, axis=-1),
    "manhattan": lambda a, b: -np.sum(np.abs(a - b), -1),
}


def check_similarity(name, where: str = "similarity") -> str:
    """`name` if it is a registered similarity.

    Raises:
      ValueError: it is not one of `SIMILARITIES` (naming `where`, what was found and the names).
    """
    if not isinstance(name, str) or name not in SIMILARITIES:
        raise ValueError(f"{where}={name!r} is not a similarity samp-jax computes; expected one "
                         f"of {sorted(SIMILARITIES)}")
    return name


def pair_similarity(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The similarity `name` of each row of `a` with the same row of `b`: `[n]`."""
    return SIMILARITIES[check_similarity(name)](np.asarray(a), np.asarray(b))


def read_similarity(folder: str | Path) -> str:
    """The similarity a sentence-transformers folder declares (`similarity_fn_name` of its
    `config_sentence_transformers.json`), or `DEFAULT_SIMILARITY` when it declares none.

    Raises:
      ConfigError: the file is not a JSON object, or names a similarity samp-jax does not
        compute (naming the file, the value and the names it knows).
    """
    file = Path(folder) / SIMILARITY_FILE
    if not check_regular(file):
        return DEFAULT_SIMILARITY
    config = read_json(file)
    if not isinstance(config, dict):
        raise ConfigError(f"{file} must be a JSON object, found a {type(config).__name__}")
    name = config.get(SIMILARITY_KEY)
    if name is None:
        return DEFAULT_SIMILARITY
    try:
        return check_similarity(name, SIMILARITY_KEY)
    except ValueError as e:
        raise ConfigError(f"{file}: {e}") from None


def write_similarity(folder: str | Path, name: str) -> None:
    """States similarity `name` in the folder's `config_sentence_transformers.json` (its other
    keys kept), where sentence-transformers and `read_similarity` read it; a folder without
    the file gets one only for a similarity other than the default."""
    file = Path(folder) / SIMILARITY_FILE
    config = read_json(file) if file.is_file() else {}
    if not isinstance(config, dict):
        raise ConfigError(f"{file} must be a JSON object, found a {type(config).__name__}")
    if config.get(SIMILARITY_KEY, DEFAULT_SIMILARITY) == check_similarity(name) or \
            (not file.is_file() and name == DEFAULT_SIMILARITY):
        return
    file.write_text(json.dumps(config | {SIMILARITY_KEY: name}, indent=2, ensure_ascii=False),
                    encoding="utf-8")


def similarity_of(model) -> str:
    """The similarity of a model's sentence-embedding head (`SentenceEmbedder.similarity`), for
    a float or quantized model; `DEFAULT_SIMILARITY` for any other head."""
    inner = getattr(model, "model", model)  # a QuantizedModel's float skeleton
    return getattr(getattr(inner, "head", None), "similarity", DEFAULT_SIMILARITY)
