"""`JAX_PLATFORMS` naming a platform this machine lacks: one line saying so, not JAX's bare
`AssertionError`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CUDA_PLUGIN = any(importlib.util.find_spec(name) for name in ("jax_cuda13_plugin",
                                                               "jax_cuda12_plugin"))


@pytest.mark.slow
@pytest.mark.skipif(CUDA_PLUGIN, reason="JAX_PLATFORMS=cuda starts where the plugin is installed")
@pytest.mark.parametrize("flags", [[], ["-O"]], ids=["asserts", "python-O"])
def test_a_platform_that_is_not_installed_is_named(minilm_dir, tmp_path, flags):
    """Also under `python -O`, which strips the assert JAX fails with (JAX then fails later,
    on its missing backend)."""
    env = os.environ | {"JAX_PLATFORMS": "cuda", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, *flags, "-m", "samp_jax.app", "eval", "--model", "minilm",
                          "--data", "snli-embed", "--precision", "fp32", "--max-examples", "8"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines() == [
        "samp-jax eval: error: JAX could not start the platform JAX_PLATFORMS='cuda' asks for "
        "(it is not installed here); unset JAX_PLATFORMS to use the platforms this machine has, "
        "or install the one named (a GPU: pip install -e '.[cuda]')"]


def test_another_error_is_not_blamed_on_the_platform(monkeypatch):
    from samp_jax.app import jax_platforms
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert jax_platforms.explain(ValueError("/x is not a folder")) is None
    assert jax_platforms.explain(AssertionError("a message of its own")) is None
    assert jax_platforms.explain(AttributeError("'NoneType' object has no attribute 'x'")) is None
    monkeypatch.delenv("JAX_PLATFORMS")
    assert jax_platforms.explain(AssertionError()) is None
