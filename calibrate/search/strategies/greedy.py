"""The decay-aware greedy (SAMP-style): moves by harm per millisecond saved (or per INT8 FLOP),
accepted one by one while the accumulated map passes, each failing move backed out."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from calibrate.search.runner import LATENCY_RTOL, Kind, Move, Outputs, Runner, move_key
from calibrate.search.strategy import Allocation, AllocationProblem, Strategy, register_strategy
from samp_jax.core.precision import SITES


def _best_case_ms(runner: Runner, current: np.ndarray, assigned: np.ndarray,
                  pending: Sequence[Move]) -> float:
    """The least latency the greedy could still reach from `current`: every unassigned site
    takes the pending move that saves it the most."""
    saving = {}
    for move in pending:
        if not assigned[move.layer, move.site]:
            site = SITES[move.site]
            gain = runner.table.site(site, runner.options[current[move.layer, move.site]]) - \
                runner.table.site(site, runner.options[move.option])
            key = (move.layer, move.site)
            saving[key] = max(saving.get(key, 0.0), gain)
    return runner.latency_ms(current) - sum(saving.values())


def tolerance_greedy(runner: Runner, ordered: Sequence[Move],
                     acceptable: Callable[[Outputs], bool],
                     ceiling_ms: float | None = None) -> tuple[np.ndarray, Outputs | None]:
    """Phase 4: adds moves in order while the accumulated map stays acceptable.

    From the all-default map, the next `runner.chunk` moves (at most one per site) are
    evaluated as prefixes, each the map so far plus one more move, in one compiled call.
    Prefixes are accepted up to the first that fails; that failing move is backed out (dropped
    for good) and the next chunk starts after it. A site takes at most one move. Each prefix
    is recorded as `greedy+<move>`.

    Args:
      runner: evaluates and records the prefixes (uses `run`, `record`, `options`, `chunk`,
        `num_layers`).
      ordered: the moves, best first (`order_moves`).
      acceptable: the test a map's outputs must pass (`acceptance`).
      ceiling_ms: a map known to pass has this latency (the fastest passing preset): the
        greedy stops once even accepting every pending move could not get below it
        (`_best_case_ms`). None: no bound.

    Returns:
      The chosen option indices `[layers, 4]`, and their outputs, or None when no move was
      accepted (the all-default map).
    """
    current = np.zeros((runner.num_layers, len(SITES)), np.int32)
    assigned = np.zeros((runner.num_layers, len(SITES)), bool)
    current_outputs = None
    pending = list(ordered)
    while pending:
        if ceiling_ms is not None and \
                _best_case_ms(runner, current, assigned, pending) >= ceiling_ms * (1.0 - LATENCY_RTOL):
            break
        group, prefix, trial = [], [], current.copy()
        taken = assigned.copy()
        for move in pending:
            if taken[move.layer, move.site]:
                continue
            trial = trial.copy()
            trial[move.layer, move.site] = move.option
            taken[move.layer, move.site] = True
            group.append(move)
            prefix.append(trial)
            if len(group) == runner.chunk:
                break
        if not group:
            break
        outputs = runner.run(np.stack(prefix))
        accepted = 0
        for k, (move, out) in enumerate(zip(group, outputs)):
            runner.record(f"greedy+{move_key(move, runner.options)}", Kind.GREEDY, prefix[k], out)
            if not acceptable(out):
                break
            accepted = k + 1
        for move in group[:accepted]:
            current[move.layer, move.site], assigned[move.layer, move.site] = move.option, True
        if accepted:
            current_outputs = outputs[accepted - 1]
        consumed = group[:accepted + 1]  # accepted moves, plus the one that failed
        pending = [m for m in pending if m not in consumed and not assigned[m.layer, m.site]]
    return current, current_outputs


def allocate_greedy(problem: AllocationProblem) -> Allocation:
    """`tolerance_greedy` over the problem's ordered moves."""
    return tolerance_greedy(problem.runner, problem.ordered, problem.acceptable, problem.ceiling_ms)


GREEDY = register_strategy(Strategy(
    "greedy", "decay-aware greedy: moves by harm per ms saved, accepted while the map passes",
    allocate_greedy, objectives=("latency", "int8_fraction")))
