"""Shared fixtures: the real MiniLM (fetched once into the asset cache) and golden files."""

import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from samp_jax.assets import minilm_path
    return minilm_path()


@pytest.fixture(scope="session")
def minilm(minilm_dir):
    """The real all-MiniLM-L6-v2 in FP32 with its sentence-embedding head."""
    from samp_jax import load_pretrained
    return load_pretrained(minilm_dir)


@pytest.fixture(scope="session")
def minilm_golden():
    return dict(np.load(GOLDEN / "minilm.npz"))


@pytest.fixture(scope="session")
def minilm_texts():
    return json.loads((GOLDEN / "minilm_texts.json").read_text())


def golden_inputs(golden, name):
    return tuple(golden[f"{name}_{key}"] for key in ("input_ids", "attention_mask", "token_type_ids"))


def run_benchmark_quick(script: str, out: Path, timeout: int = 900) -> dict:
    """Runs `benchmarks/<script> --quick --out <out>` in a fresh process; returns its JSON."""
    import os
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(root / "benchmarks" / script), "--quick", "--out", str(out)],
                   check=True, cwd=root, capture_output=True, text=True, timeout=timeout,
                   env={**os.environ, "PYTHONPATH": str(root)})
    return json.loads(out.read_text())
