"""Shared fixtures: the real MiniLM (fetched once into the asset cache) and golden files.

Markers (registered in pyproject.toml): `slow` (minutes; `make test-fast` skips them) and
`gpu` (needs a GPU; skipped without one).
"""

import json

import jax
import numpy as np
import pytest

from samp_jax import load_pretrained
from samp_jax.core.assets import minilm_path
from tests.helpers import GOLDEN


def pytest_collection_modifyitems(config, items):
    if jax.default_backend() == "gpu":
        return
    skip = pytest.mark.skip(reason=f"needs a GPU; this run's JAX backend is {jax.default_backend()}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def minilm_dir():
    return minilm_path()


@pytest.fixture(scope="session")
def minilm(minilm_dir):
    """The real all-MiniLM-L6-v2 in FP32 with its sentence-embedding head."""
    return load_pretrained(minilm_dir)


@pytest.fixture(scope="session")
def minilm_golden():
    return dict(np.load(GOLDEN / "minilm.npz"))


@pytest.fixture(scope="session")
def minilm_texts():
    return json.loads((GOLDEN / "minilm_texts.json").read_text())
