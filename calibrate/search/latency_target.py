"""The latency-target search: the map closest to FP32 the greedy's order finds within an
estimated latency. Nothing beyond the presets and the sensitivities is measured: moves are
added in order (least harm per millisecond saved first) until the target is met; a preset that
meets the target and is closer to FP32 by the proxy (KL to FP32 for a classifier) is returned
instead. The target is
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
    """Reaches `session.config.latency_target_ms` (`latency_greedy` over the ordered moves),
    never further from FP32 than a preset that reaches it too (`closest_preset_within`); the
    result has no tolerance verdict (`tolerance_met` None)."""
    config, runner, obj = session.config, session.runner, session.objective
    sensitivity, ordered = measure_and_order(session)
    choices = latency_greedy(ordered, runner.latency_ms, config.latency_target_ms, runner.num_layers)
    outputs = outputs_of(session, choices, None)
    chosen_from = config.strategy_name
    preset = closest_preset_within(session, config.latency_target_ms)
    if preset is not None and preset[2] < obj.proxy(outputs):
        chosen_from, choices, _ = preset
        outputs = session.preset_outputs[chosen_from]
    return finish(session, choices, outputs, sensitivity=sensitivity, tolerance_met=None,
                  chosen_from=chosen_from)


def closest_preset_within(session: Session, target_ms: float
                          ) -> tuple[str, np.ndarray, float] | None:
    """`(name, choices, proxy)` of the preset closest to FP32 by the proxy (the first of
    equals) among those whose estimated latency meets `target_ms`, or None when none does.
    The proxy, not the metric, decides: it is the measure of closeness with the least noise,
    and the one the greedy's order minimizes."""
    runner, best = session.runner, None
    entries = {e.name: e for e in runner.evaluated}
    for name in session.preset_outputs:
        entry = entries[name]
        if meets_latency(entry.latency_ms, target_ms) and (best is None or entry.proxy < best[2]):
            best = (name, runner.switch.choices_for(entry.precision_map), entry.proxy)
    return best


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
