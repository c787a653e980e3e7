"""tools/margin_coverage.py: its plain accuracy margin is the paired standard error the
adjusted one replaces, and a short run writes the record docs/results/search.md renders."""

import importlib.util
import json
import sys

import numpy as np
import pytest

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("margin_coverage", ROOT / "tools" / "margin_coverage.py")
margin_coverage = importlib.util.module_from_spec(spec)
sys.modules["margin_coverage"] = margin_coverage
spec.loader.exec_module(margin_coverage)


def test_the_plain_margin_is_the_paired_standard_error_that_vanishes_without_changes():
    base, candidate = np.array([1, 1, 1, 1, 0.0]), np.array([1, 0, 1, 1, 0.0])
    # mean 0.2, sample std sqrt(0.8 / 4), standard error that over sqrt(5)
    assert margin_coverage.wald_drop(base, candidate) == pytest.approx(0.2 + 1.645 * 0.2, abs=1e-9)
    assert margin_coverage.wald_drop(base, base) == 0.0


def test_a_short_run_records_both_margins_for_every_cell(tmp_path, monkeypatch):
    monkeypatch.setattr(margin_coverage, "_sentences", lambda rng, n, real=margin_coverage._sentences:
                        real(rng, min(n, 20_000)))  # a smaller population, same shape
    monkeypatch.setattr(margin_coverage, "_classes", lambda rng, n, real=margin_coverage._classes:
                        real(rng, min(n, 20_000)))
    monkeypatch.setattr(margin_coverage, "_scored", lambda rng, n, prevalence,
                        real=margin_coverage._scored: real(rng, min(n, 20_000), prevalence))
    monkeypatch.setattr(margin_coverage, "_rated", lambda rng, n, real=margin_coverage._rated:
                        real(rng, min(n, 20_000)))
    out = tmp_path / "coverage.json"
    assert margin_coverage.main(["--draws", "40", "--entity-draws", "10", "--rank-draws", "2",
                                 "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["provenance"]) == {"command", "commit", "device", "date"}
    cells = {(r["metric"], r["rows"], r["true_drop_over_allowed"], r.get("prevalence"))
             for r in record["rows"]}
    # accuracy, entity F1, macro-F1; ROC-AUC at two prevalences; Spearman
    assert len(cells) == len(record["rows"]) == 2 * 5 + 2 * 4 + 2 * 3 + 2 * (4 + 2) + 2 * 4
    only = tmp_path / "scores.json"
    assert margin_coverage.main(["--only", "spearman", "--rank-draws", "2", "--out", str(only)]) == 0
    assert {r["metric"] for r in json.loads(only.read_text())["rows"]} == {"spearman"}
    assert all(0.0 <= r[k] <= 1.0 for r in record["rows"] for k in ("plain", "adjusted"))
