"""Helpers shared by tests (fixtures live in `conftest.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


def golden_inputs(golden, name):
    """`(input_ids, attention_mask, token_type_ids)` of golden batch `name`."""
    return tuple(golden[f"{name}_{key}"] for key in ("input_ids", "attention_mask", "token_type_ids"))


def run_benchmark_quick(script: str, out: Path, timeout: int = 900) -> dict:
    """Runs `benchmarks/<script> --quick --out <out>` in a fresh process; returns its JSON."""
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out", str(out)],
                   check=True, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.read_text())
