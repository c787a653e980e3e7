"""Knapsack allocation (ModelOpt `auto_quantize`-style): for a latency budget, the map that
minimises the summed single-site harm is an integer program over sites × options
(`min_harm_allocation`, solved exactly with `scipy.optimize.milp`). `knapsack_search` evaluates
the optimal maps of several budgets in one compiled call and narrows the budget between the
fastest that passes and the next faster that fails.

It works on arrays, not a model: `harm[layer, site, option]` (option 0, the default, harms
nothing) and `cost[layer, site, option]` in milliseconds, so it is tested on planted numbers
against brute force.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from calibrate.search.strategy import (Accept, Allocation, AllocationProblem, Evaluate, Strategy,
                                       harm_and_cost, map_cost, recording_evaluate,
                                       register_strategy, site_budget_ms)
from samp_jax.core.precision import SITES


def min_harm_allocation(harm: np.ndarray, cost: np.ndarray, budget_ms: float,
                        allowed: np.ndarray | None = None) -> np.ndarray | None:
    """The option per site that minimises the summed harm with the summed cost within
    `budget_ms` (a multiple-choice knapsack, solved as a mixed-integer program).

    Args:
      harm: `[L, S, O]` harm of each option at each site (option 0: the default, 0).
      cost: `[L, S, O]` milliseconds of each option at each site.
      budget_ms: the most the sites may cost together.
      allowed: `[L, S, O]` bool, options a site may take (default: all).

    Returns:
      `[L, S]` option indices, or None when no assignment fits the budget. Ties in harm go to
      the cheaper map.
    """
    # imported here: scipy.optimize takes about 0.7 s to import, which every command (even
    # `samp-jax --help`, whose parser reads the strategy registry) paid before
    from scipy.optimize import Bounds, LinearConstraint, milp

    harm, cost = np.asarray(harm, np.float64), np.asarray(cost, np.float64)
    if harm.shape != cost.shape or harm.ndim != 3:
        raise ValueError(f"harm {harm.shape} and cost {cost.shape} must both be [L, S, O]")
    layers, sites, options = harm.shape
    allowed = np.ones(harm.shape, bool) if allowed is None else np.asarray(allowed, bool)
    allowed = allowed & np.isfinite(harm)  # an unmeasured move is never taken
    harm = np.where(allowed, harm, 0.0)
    cells = layers * sites
    # a tiny cost term breaks ties towards the faster map without changing the optimum's harm
    span = max(float(np.abs(harm).max()), 1e-12)
    tie = 1e-9 * span / max(float(cost.max()), 1e-12)
    objective = (harm + tie * cost).reshape(-1)
    one_per_site = np.kron(np.eye(cells), np.ones(options))
    constraints = [LinearConstraint(one_per_site, 1, 1),
                   LinearConstraint(cost.reshape(1, -1), -np.inf, budget_ms)]
    upper = allowed.reshape(-1).astype(np.float64)
    with _stdout_to_stderr():  # HiGHS prints solver lines to fd 1, where --json output goes
        result = milp(objective, constraints=constraints, integrality=np.ones(objective.size),
                      bounds=Bounds(np.zeros(objective.size), upper))
    if not result.success:
        return None
    picks = np.asarray(result.x).reshape(cells, options).argmax(axis=1)
    return picks.reshape(layers, sites).astype(np.int32)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Points file descriptor 1 at stderr for the block: the MILP solver (HiGHS) writes lines
    to the process's stdout from C, below Python's `sys.stdout`."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def knapsack_search(evaluate: Evaluate, accept: Accept, harm: np.ndarray, cost: np.ndarray, *,
                    probes: int = 8, rounds: int = 2, allowed: np.ndarray | None = None,
                    below_ms: float | None = None) -> tuple[np.ndarray, object | None]:
    """The fastest minimum-harm map that passes, over a bracketed latency budget.

    Round 1 spreads `probes` budgets evenly from the fastest possible map to the all-default
    one (or to just under `below_ms`), solves each (`min_harm_allocation`) and evaluates the
    distinct maps in one call. Each further round spreads budgets between the fastest budget
    that passed and the next faster one that failed.

    Args:
      below_ms: only maps that cost less than this are worth evaluating (a map already known
        to pass costs this much); None: no bound.

    Returns:
      `(choices [L, S], outputs)` of the fastest passing map seen, or `(all-default, None)`
      when none passed.
    """
    allowed = np.isfinite(harm) if allowed is None else allowed & np.isfinite(harm)
    masked = np.where(allowed, cost, np.inf)
    low = float(masked.min(axis=-1).sum())
    high = float(cost[..., 0].sum())
    if below_ms is not None:
        high = min(high, below_ms * (1 - 1e-9))
        if high < low:  # no map can be cheaper than the bound
            return np.zeros(cost.shape[:2], np.int32), None
    best, best_outputs, best_ms = np.zeros(cost.shape[:2], np.int32), None, np.inf
    seen: dict[bytes, bool] = {}
    for _ in range(rounds):
        budgets = np.linspace(low, high, probes)
        candidates = []
        for budget in budgets:
            choices = min_harm_allocation(harm, cost, budget * (1 + 1e-12), allowed)
            if choices is not None and choices.tobytes() not in seen and \
                    not any((choices == c).all() for c in candidates):
                candidates.append(choices)
        if not candidates:
            break
        outputs = evaluate(np.stack(candidates))
        passed_ms, failed_ms = [], []
        for choices, out in zip(candidates, outputs):
            ms = map_cost(choices, cost)
            ok = bool(accept(out))
            seen[choices.tobytes()] = ok
            (passed_ms if ok else failed_ms).append(ms)
            if ok and ms < best_ms:
                best, best_outputs, best_ms = choices, out, ms
        if not passed_ms:  # nothing passed: the bracket is [low, high] already tried
            break
        faster_failures = [ms for ms in failed_ms if ms < best_ms]
        high, low = best_ms, (max(faster_failures) if faster_failures else low)
        if high - low <= 1e-9 * max(high, 1e-12):
            break
    return best, best_outputs


def allocate_knapsack(problem: AllocationProblem) -> Allocation:
    """`knapsack_search` on the problem's harms and costs, `runner.chunk` budgets per round,
    every map it measures recorded as `knapsack#<n>`."""
    runner = problem.runner
    harm, cost = harm_and_cost(problem.sensitivity, runner.options, runner.table, runner.num_layers, SITES)
    return knapsack_search(recording_evaluate(runner, "knapsack"), problem.acceptable, harm, cost,
                           probes=runner.chunk, below_ms=site_budget_ms(problem))


KNAPSACK = register_strategy(Strategy(
    "knapsack", "minimum summed harm under a latency budget (MILP), budget bracketed by evaluation",
    allocate_knapsack))
