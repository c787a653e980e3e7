"""Every script in examples/ runs, as a user would run it, in quick mode
(`SAMP_JAX_EXAMPLES_QUICK=1`: small subsets and a few training steps), in a fresh process
from a scratch folder. A new example is picked up without a test edit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from samp_jax import PrecisionMap, QuantizedModel, Tokenizer
from samp_jax.core.assets import minilm_path
from samp_jax.tasks import get_task
from tests.helpers import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


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


# Each example is a fresh process that loads the real model and compiles its programs: slow.
# finetune_and_quantize.py repeats workflows `make test` runs elsewhere on the real model
# (fine-tuning and its cache: tests/samp_jax/tasks/test_tasks.py; the accuracy table of
# precision variants: `samp-jax eval` in tests/samp_jax/app/test_cli.py): `make test-full` runs it.
FULL_ONLY = {"finetune_and_quantize.py"}


@pytest.mark.slow
@pytest.mark.parametrize("example", [pytest.param(p, marks=pytest.mark.full) if p.name in FULL_ONLY
                                     else p for p in EXAMPLES], ids=lambda p: p.name)
def test_example_runs_in_quick_mode(example, tmp_path):
    out = _run(example, tmp_path)
    assert out.strip()
    if example.name == "search_precision_map.py":
        _check_search_outputs(tmp_path / "search_out")
    if example.name == "your_own_data.py":
        assert (tmp_path / "your_data_out" / "model" / "quantization.json").is_file()


def _check_search_outputs(out):
    """fetch → calibrate → search → quantize → test split → report, as the example ran it on
    zero-shot SNLI: the CLI's default target (this machine, a measured table), the chosen map
    within tolerance on the search split, static clips carried by the map, the saved
    model built from that map."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == "cpu" and summary["latency_source"].startswith("measured")
    pmap = PrecisionMap.from_json(out / "precision_map.json")
    assert QuantizedModel.load(out / "model").precision_map == pmap and pmap.num_layers == 6
    assert summary["test_examples"] == 64
    assert {"fp32", "chosen", "chosen_relative_change", "fully_quant"} <= set(summary["test"])
    assert 0.5 < summary["test"]["fp32"] <= 1.0
    assert summary["compilations"] >= 1 and summary["maps_evaluated"] >= 4
    assert (out / "pareto.png").stat().st_size > 0
    # within tolerance on the search split (snli-embed's ROC AUC: the plain relative drop)
    assert summary["chosen_search_metric"] >= summary["fp32_search_metric"] * 0.99 - 1e-12
    # the quick run's one calibrator (each site's pick of several: tests/calibrate/
    # test_search_phases.py, tests/samp_jax/app/test_user_data.py); the map alone carries each
    # static site's calibrator and clip
    assert summary["calibration"] == "percentile" and summary["static_calibration"] is None
    # calibrated on the quick run's 128 calibration rows: all their tokens, no more
    calibration_rows = get_task("snli-embed").calibration_batches(
        Tokenizer.from_pretrained(minilm_path()), max_examples=128)
    assert summary["calibration_tokens"] == sum(int(b["attention_mask"].sum()) for b in calibration_rows)
    static_sites = {key for key, p in pmap.items() if p.needs_calibration}
    assert set(pmap.stored_clips()) == static_sites
    assert pmap.site_methods() == dict.fromkeys(static_sites, "percentile")
    report = (out / "report.md").read_text()
    # the allocation's pick was judged at the margin widened for the maps it compared
    if summary["stopped_early"] is None:
        assert summary["selection"]["z"] >= 1.645 and summary["selection"]["maps_compared"] >= 0
        assert "- selection margin:" in report
    else:
        assert summary["selection"] is None
