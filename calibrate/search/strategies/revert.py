"""Revert allocation (NNCF / Intel Neural Compressor accuracy-aware tuning): every site at its
fastest option; the most harmful sites go back to the default, one more at a time, until the
map passes (`revert_search`, prefixes evaluated a chunk at a time). Works on arrays of harm and
cost, as `calibrate.search.strategies.knapsack`."""

from __future__ import annotations

import numpy as np

from calibrate.search.strategy import (Accept, Allocation, AllocationProblem, Evaluate, Strategy,
                                       harm_and_cost, map_cost, recording_evaluate,
                                       register_strategy, site_budget_ms)
from samp_jax.core.precision import SITES


def revert_order(harm: np.ndarray, start: np.ndarray) -> list[tuple[int, int]]:
    """Sites of the all-fastest map `start`, most harmful first (ties: layer, then site)."""
    layers, sites = start.shape
    cells = [(layer, site) for layer in range(layers) for site in range(sites)
             if start[layer, site] != 0]
    return sorted(cells, key=lambda c: -harm[c[0], c[1], start[c]])


def revert_search(evaluate: Evaluate, accept: Accept, harm: np.ndarray, cost: np.ndarray, *,
                  chunk: int = 8, allowed: np.ndarray | None = None,
                  below_ms: float | None = None) -> tuple[np.ndarray, object | None]:
    """All sites at their fastest option, then the most harmful reverted to the default one
    more at a time, until the map passes (prefixes evaluated `chunk` at a time).

    Args:
      below_ms: stop before the first prefix that costs this much or more (a map already known
        to pass costs this much); None: no bound.

    Returns:
      `(choices [L, S], outputs)` of the first passing map, or `(all-default, None)` when
      only the all-default map is left (or every cheaper prefix failed).
    """
    allowed = np.isfinite(harm) if allowed is None else allowed & np.isfinite(harm)
    start = np.where(allowed, cost, np.inf).argmin(axis=-1).astype(np.int32)
    order = revert_order(harm, start)
    prefixes = []
    current = start.copy()
    prefixes.append(current.copy())
    for layer, site in order[:-1]:  # the last prefix would be the all-default map
        current[layer, site] = 0
        prefixes.append(current.copy())
    if below_ms is not None:  # reverting only adds cost: the prefixes are in cost order
        prefixes = [p for p in prefixes if map_cost(p, cost) < below_ms * (1 - 1e-9)]
    for begin in range(0, len(prefixes), chunk):
        group = prefixes[begin:begin + chunk]
        for choices, out in zip(group, evaluate(np.stack(group))):
            if accept(out):
                return choices, out
    return np.zeros_like(start), None


def allocate_revert(problem: AllocationProblem) -> Allocation:
    """`revert_search` on the problem's harms and costs, `runner.chunk` prefixes per call,
    every map it measures recorded as `revert#<n>`."""
    runner = problem.runner
    harm, cost = harm_and_cost(problem.sensitivity, runner.options, runner.table, runner.num_layers, SITES)
    return revert_search(recording_evaluate(runner, "revert"), problem.acceptable, harm, cost,
                         chunk=runner.chunk, below_ms=site_budget_ms(problem))


REVERT = register_strategy(Strategy(
    "revert", "all sites fastest, most harmful reverted to the default until the map passes",
    allocate_revert))
