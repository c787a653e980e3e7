"""Every script in examples/ runs, as a user would run it, in quick mode
(`SAMP_JAX_EXAMPLES_QUICK=1`: small subsets and a few training steps), in a fresh process
from a scratch folder. A new example is picked up without a test edit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# Quick enough for `make test-fast`: no fine-tune, no search.
FAST = {"embed_and_compare.py"}


def test_every_example_is_listed():
    assert {p.name for p in EXAMPLES} >= {"embed_and_compare.py", "finetune_and_quantize.py",
                                          "search_precision_map.py", "serve_and_evaluate.py",
                                          "your_own_data.py"}


def _run(example, tmp_path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAMP_JAX_EXAMPLES_QUICK": "1"}
    done = subprocess.run([sys.executable, str(example)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{example.name} failed:\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.parametrize("example", [p for p in EXAMPLES if p.name in FAST], ids=lambda p: p.name)
def test_fast_example_runs(example, tmp_path):
    assert _run(example, tmp_path).strip()


@pytest.mark.slow
@pytest.mark.parametrize("example", [p for p in EXAMPLES if p.name not in FAST], ids=lambda p: p.name)
def test_example_runs_in_quick_mode(example, tmp_path):
    out = _run(example, tmp_path)
    assert out.strip()
    if example.name == "search_precision_map.py":  # the CLI's default: this machine's target
        summary = (tmp_path / "search_out" / "summary.json").read_text()
        assert '"target": "cpu"' in summary and '"latency_source": "measured' in summary
    if example.name == "your_own_data.py":
        assert (tmp_path / "your_data_out" / "model" / "quantization.json").is_file()
