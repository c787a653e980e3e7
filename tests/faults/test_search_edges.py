"""Fault 8: edge cases of the precision search's targets and tolerances.

- a latency target that is NaN, infinite, zero, negative or not a number is refused;
- a target equal to the fastest map's latency is accepted (it was refused by a summation
  rounding difference) and the latency greedy reaches it;
- `tolerance=0`, which not even the all-FP16 map meets, says so: `SearchResult.tolerance_met`
  is False, with a `UserWarning`, instead of silently returning a map that exceeds it.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
from flax import nnx

from calibrate.search.latency import LatencyTable, estimate_table
from calibrate.search.report import write_report
from calibrate.search.driver import search
from calibrate.search.latency_target import latency_greedy
from calibrate.search.phases import fastest_map
from calibrate.search.plan import check_latency_target
from calibrate.search.runner import Move, meets_latency
from samp_jax import EncoderModel, PrecisionMap, SequenceClassifier
from samp_jax.core.precision import SITES, as_precision
from tests.helpers import TINY_CONFIG, random_batches, small_split_warnings

OPTIONS = tuple(as_precision(o) for o in ("fp16", "int8-dynamic", "fp8_e4m3"))
LAYERS = 12
# Per-site costs whose sum over 12 layers rounds differently summed pairwise (numpy) and in
# order (`LatencyTable.map_ms`): the old floor came out 2e-16 above the fastest map's latency.
SITE_MS = {"qkv/fp16": 0.825, "qkv/int8-dynamic": 0.083, "qkv/fp8_e4m3": 0.056,
           "attn_out/fp16": 0.357, "attn_out/int8-dynamic": 0.015, "attn_out/fp8_e4m3": 0.045,
           "ffn_in/fp16": 0.468, "ffn_in/int8-dynamic": 0.014, "ffn_in/fp8_e4m3": 0.014,
           "ffn_out/fp16": 0.999, "ffn_out/int8-dynamic": 0.069, "ffn_out/fp8_e4m3": 0.031}


@pytest.fixture(scope="module")
def table():
    return LatencyTable("test device", "test", 1, 1, LAYERS, SITE_MS, 0.1)


def _map_of(choices: np.ndarray) -> PrecisionMap:
    cells = {(layer, SITES[site]): OPTIONS[int(choices[layer, site])]
             for layer in range(choices.shape[0]) for site in range(len(SITES))}
    return PrecisionMap.from_table(cells, choices.shape[0])


@pytest.mark.parametrize("target", [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, "5",
                                    None, True])
def test_invalid_latency_targets_are_refused(table, target):
    with pytest.raises(ValueError, match="latency_target_ms=.* must be a positive"):
        check_latency_target(target, table, OPTIONS, LAYERS)


def test_a_target_equal_to_the_fastest_map_is_accepted(table):
    floor = table.map_ms(fastest_map(table, OPTIONS, LAYERS))
    fastest = np.array([[min(table.site(s, o) for o in OPTIONS) for s in SITES]] * LAYERS)
    assert table.other_ms + fastest.sum() != floor  # the rounding difference that refused it
    check_latency_target(floor, table, OPTIONS, LAYERS)  # no error
    check_latency_target(floor * (1 + 1e-12), table, OPTIONS, LAYERS)
    with pytest.raises(ValueError, match="below the fastest possible map"):
        check_latency_target(floor * (1 - 1e-6), table, OPTIONS, LAYERS)


def test_the_latency_greedy_reaches_the_fastest_map(table):
    """INT8 moves come first in the ordering, but FP8 is faster at some sites: a later, faster
    move for a site replaces the earlier one, so a target at the floor is met."""
    floor = table.map_ms(fastest_map(table, OPTIONS, LAYERS))
    moves = [Move(layer, site, option) for option in (1, 2)
             for layer in range(LAYERS) for site in range(len(SITES))]
    choices = latency_greedy(moves, lambda c: table.map_ms(_map_of(c)), floor, LAYERS)
    assert meets_latency(table.map_ms(_map_of(choices)), floor)
    assert _map_of(choices)[0, "qkv"] == as_precision("fp8_e4m3")  # 0.056 ms beats INT8's 0.083


CONFIG = TINY_CONFIG.replace(num_layers=1)  # one layer: the searches compile quickly


@pytest.fixture(scope="module")
def tiny():
    rngs = nnx.Rngs(5)
    return EncoderModel(CONFIG, SequenceClassifier(CONFIG, 3, rngs=rngs), rngs=rngs)


def _search(tiny, **kwargs):
    return search(tiny, random_batches(1, rows=4, width=8), target="h100", options=("fp16", "int8-dynamic"),
                  latency_table=estimate_table(CONFIG, 32, 128), sensitivity_batches=1,
                  progress=False, **kwargs)


@pytest.mark.parametrize("tolerance, met", [(0.0, False), (0.4, True)])
def test_a_tolerance_not_even_fp16_meets_is_reported(tiny, tolerance, met, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _search(tiny, tolerance=tolerance)
    missed = [w for w in caught if "no map meets tolerance" in str(w.message)]
    assert result.tolerance_met is met and result.summary()["tolerance_met"] is met
    assert len(missed) == (0 if met else 1) and all(w.category is UserWarning for w in missed)
    if not met:
        assert result.precision_map == PrecisionMap.preset("fp16", CONFIG.num_layers)
        assert "fp16 at every site" in str(missed[0].message)
    # the report says it too, in its first lines, or not at all
    report = write_report(result, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert ("**The tolerance is not met:**" in text) is (not met)
    assert report["tolerance_met"] is met


def test_latency_target_mode_has_no_tolerance_verdict(tiny):
    table = estimate_table(CONFIG, 32, 128)
    floor = table.map_ms(fastest_map(table, ("fp16", "int8-dynamic"), CONFIG.num_layers))
    result = _search(tiny, latency_target_ms=floor)  # exactly the floor: accepted and met
    assert result.tolerance_met is None and meets_latency(result.chosen.latency_ms, floor)
    summary = result.summary()  # the tolerance was not applied: the target is what it met
    assert summary["latency_target_ms"] == floor and summary["tolerance"] is None


def test_a_latency_target_returns_a_preset_closer_to_fp32_than_the_greedys_map(tiny, monkeypatch):
    """A greedy that overshoots (every site INT8) with a target even FP16 meets: the FP16
    preset reaches it too and is closer to FP32, so it is returned, and the report says why."""
    latency_target = importlib.import_module("calibrate.search.latency_target")
    monkeypatch.setattr(latency_target, "latency_greedy",
                        lambda ordered, latency_ms, target, layers: np.ones((layers, len(SITES)), np.int32))
    fp16 = estimate_table(CONFIG, 32, 128).map_ms(PrecisionMap.preset("fp16", CONFIG.num_layers))
    result = _search(tiny, latency_target_ms=fp16)
    assert result.chosen_from == "fp16" and result.precision_map.items() and all(
        p.precision == "fp16" for _, p in result.precision_map.items())
    greedy_proxy = next(e.proxy for e in result.evaluated if e.name == "fully_quant")
    assert result.chosen.proxy < greedy_proxy
    from calibrate.search.report import report_markdown
    assert ("(the preset fp16: it reaches the latency target and is closer to FP32 by the proxy"
            in report_markdown(result, result.summary()))


@pytest.mark.parametrize("metric, rows, said", [
    # 1% of 0.9 allows a drop of 0.009: accuracy's margin for a map that changes no row is
    # 1.645 sqrt(2) / (rows + 2), 0.29 on 6 rows and 0.0115 on 200, past it; 0.0046 on 500
    ("accuracy", 6, "the search split has 6 rows: even a map that changes none of them is "
                    "bounded at a drop of 0.291 in accuracy (the 95% margin), more than the 0.009"),
    ("accuracy", 200, "the search split has 200 rows: even a map that changes none of them is "
                      "bounded at a drop of 0.0115 in accuracy"),
    ("accuracy", 500, None),
    # a bootstrapped metric: one of 6 sentences moves entity F1 by about 1/6
    ("entity_f1", 6, "the search split has 6 rows: one row moves entity_f1 by about 0.167, "
                     "more than the 0.009"),
    ("entity_f1", 500, None)])
def test_a_search_split_too_small_for_the_tolerance_is_said(metric, rows, said):
    messages = small_split_warnings(metric, rows, 0.9)
    assert len(messages) == (said is not None)
    if said is not None:
        assert said in messages[0]


def test_a_report_says_its_presets_are_the_targets_when_they_are_not_fp16(tiny):
    from calibrate.search.report import report_markdown
    result = search(tiny, random_batches(1, rows=4, width=8), target="cpu",
                    options=("fp32", "int8-dynamic"), latency_table=estimate_table(CONFIG, 32, 128),
                    sensitivity_batches=1, progress=False, tolerance=0.4)
    assert ("The presets are the target's (cpu): the sites they leave in float run fp32, and "
            "activations between sites are float32" in report_markdown(result, result.summary()))


@pytest.mark.parametrize("sentences, warned", [(40, True), (2000, False)])
def test_an_f1_split_whose_unchanged_margin_passes_the_tolerance_is_said(sentences, warned):
    """Entity F1 with its pseudo-rows: a map that changes no sentence of 40 (3 entities each,
    all found) is bounded past 1% of F1 1.0; of 2,000 it is not."""
    from samp_jax.tasks.metrics import ENTITY_F1
    evidence = np.tile([3.0, 3.0, 3.0], (sentences, 1))
    floor = ENTITY_F1.guarded_drop(evidence, evidence)
    messages = small_split_warnings("entity_f1", sentences, 1.0, evidence)
    assert (floor > 0.01) is warned and len(messages) == warned
    if warned:
        assert (f"the search split has 40 rows: even a map that changes none of them is bounded "
                f"at a drop of {floor:.3g} in entity_f1 (the 95% margin), more than the 0.01") in messages[0]


def test_a_roc_auc_split_with_one_positive_is_said():
    """One positive among 120 search rows: the whole ROC-AUC rides on its rank, and the
    search says that no map can be judged (it had certified a 95% INT8 map at margin 0)."""
    gold = (np.arange(120) < 1).astype(np.float64)
    evidence = np.column_stack([np.random.default_rng(0).normal(size=120) + 2 * gold, gold])
    messages = small_split_warnings("roc_auc", 120, 0.95, evidence)
    assert len(messages) == 1
    assert ("the search split has 120 rows: even a map that changes none of them is bounded at "
            "a drop of") in messages[0] and "in roc_auc (the 95% margin)" in messages[0]


def test_a_report_lists_what_its_run_warned_of_before_its_result(tiny):
    """report.md is read alone, later: the warnings of the run (`run_search` keeps them in the
    summary's `warnings`) head it, one bullet each, and the rows of each split are said."""
    from calibrate.search.report import report_markdown
    result = search(tiny, random_batches(1, rows=4, width=8), target="cpu",
                    options=("fp32", "int8-dynamic"), latency_table=estimate_table(CONFIG, 32, 128),
                    sensitivity_batches=1, progress=False, tolerance=0.4)
    summary = result.summary() | {"warnings": ["the search split has 6 rows:\n  few", "at chance"],
                                  "split_sizes": {"train": 0, "search": 600, "test": 6},
                                  "split_seed": 0,
                                  "max_length": 32, "truncation": {  # the rows scored
                                      "search": {"max_length": 32, "rows": 256, "rows_truncated": 0},
                                      "test": {"max_length": 32, "rows": 6, "rows_truncated": 0}}}
    text = report_markdown(result, summary)
    assert "## Warnings\n\n- the search split has 6 rows: few\n- at chance\n" in text
    assert text.index("## Warnings") < text.index("- target:") < text.index("## Result")
    assert "- rows per split: search 600, test 6 (split seed 0); scored: search 256, test 6\n" in text
    assert "## Warnings" not in report_markdown(result, result.summary() | {"warnings": []})


def test_a_report_says_when_no_site_moved_and_never_shows_a_negative_zero(tiny):
    """An allocation that moved no site off the default is said to have done so (it read as a
    choice of the strategy's); a drop of -0.0 shows as 0; a lower-is-better metric says so."""
    import dataclasses

    from calibrate.search.report import report_markdown, tolerance_table
    from calibrate.search.result import ToleranceCheck
    batches = random_batches(1, rows=4, width=8)
    common = dict(target="cpu", options=("fp32", "int8-dynamic"), sensitivity_batches=1,
                  latency_table=estimate_table(CONFIG, 32, 128), progress=False)
    still = search(tiny, batches, tolerance=0.0, **common)  # only FP32's own outputs pass
    assert f"chosen by: {still.chosen_from} (no site moved off the default: no faster map " \
           "passed)" in report_markdown(still, still.summary())
    moved = search(tiny, batches, tolerance=0.4, **common)
    assert moved.chosen.int8_fraction > 0 and "no site moved" not in report_markdown(
        moved, moved.summary())
    check = ToleranceCheck(map_name="chosen", drop=-0.0, bounded=0.01, allowed=0.02)
    table = tolerance_table(dataclasses.replace(moved, metric_name="accuracy",
                                                tolerance_checks=(check,)))
    assert "| chosen | 0 | 0.01 | 0.01 | 0.02 | yes |" in table and "-0" not in table
    from samp_jax.tasks.metrics import METRICS
    lower = dataclasses.replace(METRICS["accuracy"], name="test_error_rate", higher_is_better=False,
                                display_name="error rate")
    METRICS["test_error_rate"] = lower  # what a plugin's register_metric adds
    try:
        table = tolerance_table(dataclasses.replace(moved, metric_name="test_error_rate",
                                                    tolerance_checks=(check,)))
        assert "bounds the error rate (lower is better) drop against FP32" in table
    finally:
        METRICS.pop("test_error_rate")
