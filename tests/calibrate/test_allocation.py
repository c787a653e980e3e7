"""The allocation strategies on planted harms and costs, against brute force; and each one
end to end in `search` on a tiny model."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from calibrate.search.strategies.knapsack import knapsack_search, min_harm_allocation
from calibrate.search.strategies.revert import revert_order, revert_search
from calibrate.search.strategy import STRATEGIES, map_cost
from calibrate.search.latency import estimate_table
from calibrate.search.driver import search
from calibrate.search.runner import Kind
from calibrate.search.targets import resolve_target
from tests.helpers import TINY_CONFIG, random_batches


def _planted(seed: int, layers: int = 2, sites: int = 2, options: int = 3):
    """Random harms (option 0 harmless) and costs (option 0 the slowest)."""
    rng = np.random.default_rng(seed)
    harm = rng.uniform(0.0, 1.0, (layers, sites, options))
    harm[..., 0] = 0.0
    cost = rng.uniform(1.0, 2.0, (layers, sites, options))
    cost[..., 0] = 3.0
    return harm, cost


def _all_maps(shape):
    layers, sites, options = shape
    for combo in itertools.product(range(options), repeat=layers * sites):
        yield np.array(combo, np.int32).reshape(layers, sites)


def _summed(values, choices):
    return float(np.take_along_axis(values, choices[..., None], axis=-1).sum())


@pytest.mark.parametrize("seed", range(6))
def test_min_harm_allocation_is_the_brute_force_optimum(seed):
    harm, cost = _planted(seed)
    maps = list(_all_maps(harm.shape))
    for budget in np.linspace(4.0, 12.0, 9):
        feasible = [m for m in maps if _summed(cost, m) <= budget + 1e-9]
        choices = min_harm_allocation(harm, cost, budget)
        if not feasible:
            assert choices is None
            continue
        best = min(_summed(harm, m) for m in feasible)
        assert _summed(harm, choices) == pytest.approx(best, abs=1e-9)
        assert map_cost(choices, cost) <= budget + 1e-9


def test_min_harm_allocation_respects_allowed_options_and_unmeasured_moves():
    harm, cost = _planted(0)
    harm[0, 0, 2] = np.inf  # never measured: never taken
    allowed = np.ones(harm.shape, bool)
    allowed[1, 1, 1] = False
    choices = min_harm_allocation(harm, cost, budget_ms=7.0, allowed=allowed)
    assert choices is not None
    assert choices[0, 0] != 2 and choices[1, 1] != 1


def _additive(harm, tolerance, calls):
    """A fake evaluation: a map's outputs are its choices; it passes when its summed harm is
    within `tolerance` (interactions planted as additive)."""
    def evaluate(choices):
        calls.append(len(choices))
        return list(choices)
    return evaluate, (lambda choices: _summed(harm, choices) <= tolerance)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tolerance", [0.0, 0.3, 0.9, 10.0])
def test_knapsack_search_finds_the_fastest_passing_map(seed, tolerance):
    harm, cost = _planted(seed)
    calls = []
    evaluate, accept = _additive(harm, tolerance, calls)
    choices, outputs = knapsack_search(evaluate, accept, harm, cost, probes=8, rounds=8)
    optimum = min(_summed(cost, m) for m in _all_maps(harm.shape) if _summed(harm, m) <= tolerance)
    assert _summed(cost, choices) == pytest.approx(optimum, abs=1e-9)
    assert _summed(harm, choices) <= tolerance
    assert sum(calls) <= 64  # evaluations, against 81 maps in all


def test_revert_search_reverts_the_most_harmful_sites_first():
    harm = np.zeros((1, 4, 2))
    harm[0, :, 1] = [0.5, 0.1, 0.3, 0.05]  # planted single-site harms of the fast option
    cost = np.ones((1, 4, 2))
    cost[..., 0] = 2.0
    start = np.ones((1, 4), np.int32)
    assert revert_order(harm, start) == [(0, 0), (0, 2), (0, 1), (0, 3)]
    calls = []
    evaluate, accept = _additive(harm, 0.2, calls)
    choices, _ = revert_search(evaluate, accept, harm, cost, chunk=2)
    # 0.95 -> revert 0.5 -> 0.45 -> revert 0.3 -> 0.15 <= 0.2: sites 1 and 3 stay fast
    assert choices.tolist() == [[0, 1, 0, 1]]
    assert calls == [2, 2]  # two chunks of prefixes: [all fast, -0], [-0-2, -0-2-1]
    nothing, outputs = revert_search(*_additive(harm, -1.0, []), harm, cost)
    assert not nothing.any() and outputs is None


@pytest.mark.parametrize("seed", range(4))
def test_knapsack_search_evaluates_only_maps_cheaper_than_a_known_pass(seed):
    harm, cost = _planted(seed)
    tolerance = 0.9
    passing = [m for m in _all_maps(harm.shape) if _summed(harm, m) <= tolerance]
    bound = float(np.median([_summed(cost, m) for m in passing]))
    seen = []

    def evaluate(choices):
        seen.extend(_summed(cost, c) for c in choices)
        return list(choices)
    accept = lambda choices: _summed(harm, choices) <= tolerance  # noqa: E731
    choices, outputs = knapsack_search(evaluate, accept, harm, cost, probes=8, rounds=8, below_ms=bound)
    assert seen and max(seen) < bound
    optimum = min(_summed(cost, m) for m in passing)
    assert _summed(cost, choices) == pytest.approx(optimum, abs=1e-9)
    # a bound below the fastest possible map: nothing is evaluated
    seen.clear()
    floor = float(cost.min(axis=-1).sum())
    nothing, outputs = knapsack_search(evaluate, accept, harm, cost, below_ms=floor)
    assert seen == [] and outputs is None and not nothing.any()


def test_revert_search_stops_before_prefixes_as_slow_as_a_known_pass():
    harm = np.zeros((1, 4, 2))
    harm[0, :, 1] = [0.5, 0.1, 0.3, 0.05]
    cost = np.ones((1, 4, 2))
    cost[..., 0] = 2.0
    calls = []
    evaluate, accept = _additive(harm, 0.2, calls)
    # prefixes cost 4, 5, 6 (passes), 7; a pass known at 6 ms leaves 4 and 5 to try
    choices, outputs = revert_search(evaluate, accept, harm, cost, chunk=8, below_ms=6.0)
    assert calls == [2] and outputs is None and not choices.any()
    choices, _ = revert_search(evaluate, accept, harm, cost, chunk=8, below_ms=6.5)
    assert choices.tolist() == [[0, 1, 0, 1]]


def test_every_strategy_is_documented():
    assert set(STRATEGIES) == {"greedy", "knapsack", "revert"}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["knapsack", "revert"])
def test_each_strategy_meets_the_tolerance_in_a_real_search(tiny, calibration, strategy):
    table = estimate_table(TINY_CONFIG, 32, 128, spec=resolve_target("h100").spec)
    result = search(tiny, random_batches(2, seed=3), tolerance=0.05, target="h100",
                    options=["int8-dynamic", "int8-static"], calibration=calibration,
                    latency_table=table, progress=False, sensitivity_batches=1, strategy=strategy,
                    stop_early=False)  # all-static passes here: early, nothing would be searched
    assert result.strategy == strategy and result.tolerance_met and result.stopped_early is None
    assert any(e.kind == Kind.CANDIDATE for e in result.evaluated)
    presets = [e for e in result.evaluated if e.kind == Kind.PRESET]
    fastest_passing = min(e.latency_ms for e in presets if e.proxy <= 0.05)
    assert result.chosen.latency_ms <= fastest_passing * (1 + 1e-9)
    assert result.chosen.proxy <= 0.05


def test_knapsack_and_revert_need_the_latency_objective(tiny, calibration):
    with pytest.raises(ValueError, match="needs strategy='greedy'"):
        search(tiny, random_batches(1), objective="int8_fraction", strategy="revert",
               calibration=calibration, progress=False)
    with pytest.raises(ValueError, match="strategy='ilp' is not one of"):
        search(tiny, random_batches(1), strategy="ilp", calibration=calibration, progress=False)


def test_the_solver_writes_nothing_to_stdout(capfd):
    """`samp-jax search --json` puts the result alone on stdout; HiGHS writes from C to fd 1."""
    from calibrate.search.strategies import knapsack
    with knapsack._stdout_to_stderr():
        os.write(1, b"solver line\n")
    out, err = capfd.readouterr()
    assert out == "" and err == "solver line\n"
    print("after")
    assert capfd.readouterr().out == "after\n"  # stdout is back
