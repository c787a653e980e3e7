"""Strategies are data: a new one is one file that registers itself (here a test-only strategy),
and the search, `SearchConfig` and the CLI's `--strategy` read it from the registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from calibrate import STRATEGIES, SearchConfig, Strategy, register_strategy, search
from calibrate.search.latency import estimate_table
from calibrate.search.objectives import UnlabelledObjective
from calibrate.search.runner import Kind
from calibrate.search.strategy import AllocationProblem, recording_evaluate
from samp_jax.app.cli import build_parser
from samp_jax.app.search_command import search_config
from samp_jax.core.precision import SITES
from tests.helpers import TINY_CONFIG, random_batches


def all_or_nothing(problem: AllocationProblem):
    """Every site at its cheapest option if that map passes, else nothing (the all-default map)."""
    runner = problem.runner
    costs = [[[runner.table.site(site, o) for o in runner.options] for site in SITES]] * runner.num_layers
    fastest = np.argmin(np.array(costs), axis=-1).astype(np.int32)
    (outputs,) = recording_evaluate(runner, "all_or_nothing")(fastest[None])
    if problem.acceptable(outputs):
        return fastest, outputs
    return np.zeros_like(fastest), None


@pytest.fixture
def registered():
    """The test-only strategy, registered as a strategy file would register itself."""
    strategy = register_strategy(Strategy("all_or_nothing", "the fastest map or nothing", all_or_nothing))
    yield strategy
    del STRATEGIES[strategy.name]


def test_a_registered_strategy_runs_in_the_search(tiny, calibration, registered):
    result = search(tiny, random_batches(2, seed=3), SearchConfig(
        tolerance=0.45, target="h100", options=("int8-dynamic",), strategy="all_or_nothing",
        stop_early=False, sensitivity_batches=1, progress=False),
        calibration=calibration, latency_table=estimate_table(TINY_CONFIG, 32, 128))
    candidates = [e for e in result.evaluated if e.kind == Kind.CANDIDATE]
    assert result.strategy == "all_or_nothing" and [e.name for e in candidates] == ["all_or_nothing#1"]
    # the fastest map passes at this tolerance, so the strategy's map is the one returned
    assert result.precision_map == candidates[0].precision_map and result.tolerance_met
    assert result.chosen_from == "all_or_nothing" and result.chosen.int8_fraction > 0


class OnlyOneMapPasses(UnlabelledObjective):
    """A labelled objective on the tiny model under which only the outputs in `passing` pass
    (guarded drop 0, accuracy 1); every other map (presets included) drops by 1."""

    metric_name = "accuracy"
    passing = None

    def _passes(self, outputs):
        return self.passing is not None and all(np.array_equal(a, b) for a, b in zip(outputs, self.passing))

    def metric(self, outputs):
        return 1.0 if outputs is self.reference or self._passes(outputs) else 0.0

    def guarded_drop(self, outputs, base, *, z=None):
        return 0.0 if self._passes(outputs) else 1.0


def one_site(problem: AllocationProblem):
    """One site (layer 1's ffn_out) at the last option, a map no preset has; run, never
    recorded (the contract asks only for the returned map and its outputs)."""
    runner = problem.runner
    choices = np.zeros((runner.num_layers, len(SITES)), np.int32)
    choices[1, SITES.index("ffn_out")] = len(runner.options) - 1
    (outputs,) = runner.run(choices[None])
    runner.objective.passing = outputs  # planted: this map, and only it, passes
    assert problem.acceptable(outputs)
    return choices, outputs


@pytest.mark.parametrize("margin", [True, False])
def test_a_strategy_that_does_not_record_its_map_still_gets_it_returned(tiny, calibration, margin):
    strategy = register_strategy(Strategy("one_site", "one site, not recorded", one_site))
    try:
        batches = random_batches(2, seed=3)
        result = search(tiny, OnlyOneMapPasses(tiny, batches), SearchConfig(
            tolerance=0.1, target="h100", options=("int8-dynamic",), strategy="one_site",
            selection_margin=margin, sensitivity_batches=1, progress=False),
            calibration=calibration, latency_table=estimate_table(TINY_CONFIG, 32, 128))
    finally:
        del STRATEGIES[strategy.name]
    # the search records the returned map, so the selection guard judges it (before, with the
    # margin on, it kept only recorded maps and fell back to the all-default map)
    returned = [e for e in result.evaluated if e.kind == Kind.CANDIDATE]
    assert [e.name for e in returned] == ["one_site#returned"]
    assert result.chosen_from == "one_site" and result.tolerance_met
    assert {(k, str(v)) for k, v in result.precision_map.items() if str(v) != "fp16"} == \
        {((1, "ffn_out"), "int8-dynamic")}
    if margin:
        assert result.selection.kept == "one_site#returned" and result.selection.maps_compared == 1


def test_a_strategy_returning_bad_choices_is_named(tiny, calibration):
    strategy = register_strategy(Strategy(
        "bad_shape", "returns one row", lambda problem: (np.zeros((1, len(SITES)), np.int32), None)))
    try:
        with pytest.raises(ValueError, match="strategy 'bad_shape' returned choices of shape"):
            search(tiny, random_batches(1, seed=3), SearchConfig(
                tolerance=0.45, target="h100", options=("int8-dynamic",), strategy="bad_shape",
                stop_early=False, sensitivity_batches=1, progress=False),
                calibration=calibration, latency_table=estimate_table(TINY_CONFIG, 32, 128))
    finally:
        del STRATEGIES[strategy.name]


def test_a_strategy_registration_is_checked(registered):
    with pytest.raises(ValueError, match="strategy 'greedy' is already registered; pass replace=True"):
        register_strategy(Strategy("greedy", "not the greedy", all_or_nothing))
    assert STRATEGIES["greedy"].description.startswith("decay-aware greedy")
    with pytest.raises(TypeError, match="allocate=None is not callable"):
        Strategy("mine", "no allocation", None)
    with pytest.raises(ValueError, match="objectives=.*expected a tuple of names from"):
        Strategy("mine", "an unknown objective", all_or_nothing, objectives=("memory",))
    with pytest.raises(ValueError, match="Strategy name=''"):
        Strategy("", "no name", all_or_nothing)
    with pytest.raises(TypeError, match="expected a Strategy, got str"):
        register_strategy("mine")
    again = Strategy(registered.name, "a new version", all_or_nothing)
    assert register_strategy(again, replace=True) is again and STRATEGIES[registered.name] is again


def test_the_cli_reads_strategies_from_the_registry(registered):
    search_parser = build_parser()._subparsers._group_actions[0].choices["search"]
    action = next(a for a in search_parser._actions if a.dest == "strategy")
    assert "all_or_nothing" in action.choices and "the fastest map or nothing" in action.help
    for name, strategy in STRATEGIES.items():
        assert name in action.choices and strategy.description in action.help


def test_unknown_or_unfit_strategies_fail_when_the_config_is_made():
    with pytest.raises(ValueError, match="strategy='ilp' is not one of"):
        SearchConfig(strategy="ilp")
    with pytest.raises(ValueError, match="objective='int8_fraction' needs strategy='greedy'"):
        SearchConfig(strategy="knapsack", objective="int8_fraction")
    with pytest.raises(ValueError, match="a latency target adds moves in the greedy order"):
        SearchConfig(strategy="revert", latency_target_ms=5.0)
    assert SearchConfig().strategy_name == "knapsack"
    assert SearchConfig(objective="int8_fraction").strategy_name == "greedy"
    assert SearchConfig(latency_target_ms=5.0).strategy_name == "greedy"


@pytest.mark.parametrize("changes, message", [
    ({"tolerance": 0.6}, "half the metric"), ({"tolerance_mode": "percent"}, "tolerance_mode="),
    ({"objective": "memory"}, "objective='memory'"), ({"latency_target_ms": 0.0}, "positive finite"),
    ({"calibration": "magic"}, "calibration='magic'"), ({"chunk": 0}, "chunk=0"),
    ({"mode": "scan"}, "mode='scan'"), ({"sensitivity_batches": 1.5}, "sensitivity_batches=1.5"),
])
def test_a_config_is_checked_when_made_and_cannot_change(changes, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**changes)
    config = SearchConfig(options=["int8-static"])
    assert config.options == ("int8-static",) and config.target == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tolerance = 0.02


def test_the_cli_builds_one_config_for_the_search():
    args = build_parser().parse_args(["search", "--data", "polarity", "--tolerance", "2%",
                                      "--strategy", "revert", "--options", "int8-dynamic",
                                      "--max-search-examples", "64", "--no-selection-margin", "--json",
                                      "--calibration-examples", "100"])
    config = search_config(args)
    assert config == SearchConfig(tolerance=0.02, strategy="revert", options=("int8-dynamic",),
                                  max_search_examples=64, selection_margin=False, progress=False,
                                  calibration_examples=100)
    default = search_config(build_parser().parse_args(["search", "--data", "polarity"]))
    assert default.calibration_examples == SearchConfig().calibration_examples == 512
