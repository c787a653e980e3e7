"""The latency-target search: the most accurate map the greedy's order finds within an
estimated latency. Nothing beyond the presets and the sensitivities is measured: moves are
added in order (least harm per millisecond saved first) until the target is met. The target is
checked against the fastest possible map when the search is planned
(`calibrate.search.plan.check_latency_target`)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from calibrate.search.result import SearchResult
from calibrate.search.runner import Move, meets_latency
from calibrate.search.session import Session, finish, measure_and_order, outputs_of
from samp_jax.core.precision import SITES


def search_latency_target(session: Session) -> SearchResult:
    """Reaches `session.config.latency_target_ms` (`latency_greedy` over the ordered moves);
    the result has no tolerance verdict (`tolerance_met` None)."""
    config, runner = session.config, session.runner
    sensitivity, ordered = measure_and_order(session)
    choices = latency_greedy(ordered, runner.latency_ms, config.latency_target_ms, runner.num_layers)
    return finish(session, choices, outputs_of(session, choices, None), sensitivity=sensitivity,
                  tolerance_met=None, chosen_from=config.strategy_name)


def latency_greedy(ordered: Sequence[Move], latency_ms: Callable[[np.ndarray], float],
                   target_ms: float, num_layers: int) -> np.ndarray:
    """Phase 5: adds moves in order until the estimated latency meets the target.

    Nothing is measured: the ordering already puts the least harmful savings first. A site
    takes its first move; a later move for the same site replaces it only when it is faster,
    so that once every move is taken each site sits at its fastest option and any target at
    or above the fastest map's latency (`check_latency_target`) is met.

    Args:
      ordered: the moves, best first (`order_moves`).
      latency_ms: estimated latency of option indices `[layers, 4]` (`Runner.latency_ms`).
      target_ms: stop once the latency is at or below this (`meets_latency`).
      num_layers: layers of the model.

    Returns:
      The chosen option indices `[layers, 4]` (all moves, if the target is never met).
    """
    current = np.zeros((num_layers, len(SITES)), np.int32)
    assigned = np.zeros((num_layers, len(SITES)), bool)
    for move in ordered:
        now = latency_ms(current)
        if meets_latency(now, target_ms):
            break
        trial = current.copy()
        trial[move.layer, move.site] = move.option
        if not assigned[move.layer, move.site] or latency_ms(trial) < now:
            current, assigned[move.layer, move.site] = trial, True
    return current
