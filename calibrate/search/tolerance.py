"""The tolerance search: the fastest map whose guarded metric drop (or proxy, without labels)
stays within the tolerance.

After the presets (`calibrate.search.session`), the fastest passing preset bounds the work
(`stop_early`); the single-site sensitivities are measured and ordered; the configured
`Strategy` allocates; its pick is judged with the margin widened for the number of maps it chose
among (`guard_selection`); and the result is never slower than the fastest passing preset.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable

import numpy as np

from calibrate.search.attention_step import attention_step
from calibrate.search.config import allowed_drop
from calibrate.search.objectives import Z_ONE_SIDED_95, Objective, selection_z
from calibrate.search.phases import (fastest_map, fastest_passing_preset, objective_cost,
                                     never_slower_than_presets)
from calibrate.search.result import SearchResult, SelectionGuard, ToleranceCheck
from calibrate.search.runner import LATENCY_RTOL, Kind, Outputs, Runner
from calibrate.search.session import Session, finish, measure_and_order, outputs_of
from calibrate.search.strategy import AllocationProblem, get_strategy
from samp_jax.core.precision import SITES
from samp_jax.tasks.chance import at_chance, below_no_skill, undefined_metric
from samp_jax.tasks.metrics import get_metric, unchanged_margin


def search_tolerance(session: Session) -> SearchResult:
    """Meets `session.config.tolerance`: allocation, selection guard, preset floor, verdict.

    Returns:
      The `SearchResult`; its `tolerance_met` is False (with a `UserWarning`) when not even the
      all-default map meets the tolerance -- that map is returned anyway. Its
      `tolerance_checks` give each preset's and the chosen map's drop, margin and allowed drop.
    """
    config, runner, obj = session.config, session.runner, session.objective
    refuse_undefined_reference(session)
    warn_if_rows_too_few(session)
    warn_if_at_chance(session)
    name, measure, allowed = tolerance_measure(obj, session.reference.metric, config.tolerance,
                                               config.tolerance_mode)
    measure = measured_once(measure)
    accept = lambda outputs: measure(outputs) <= allowed  # noqa: E731  (`acceptance`, measured once)
    cost = objective_cost(runner, config.objective)  # what "faster" means to this search
    passing = fastest_passing_preset(runner, session.preset_outputs, measure, allowed, cost)
    ceiling_ms = passing[3] if passing is not None and config.stop_early and \
        config.objective == "latency" else None
    stopped_early = early_stop(session, ceiling_ms, None if passing is None else passing[0])
    sensitivity, selection = {}, None
    choices, outputs = np.zeros((runner.num_layers, len(SITES)), np.int32), None
    if stopped_early is None:
        sensitivity, ordered = measure_and_order(session)
        problem = AllocationProblem(runner, ordered, sensitivity, accept, ceiling_ms)
        choices, outputs = get_strategy(config.strategy_name).allocate(problem)
        choices = record_allocation(runner, config.strategy_name, choices, outputs)
        if config.selection_margin and obj.metric_name is not None:
            choices, outputs, selection = guard_selection(
                runner, lambda out, z: obj.guarded_drop(out, obj.reference, z=z), allowed, cost)
    choices, outputs, chosen_from = never_slower_than_presets(runner, choices, outputs, passing,
                                                              measure, cost)
    outputs = outputs_of(session, choices, outputs)

    def passes(out: Outputs, z: float | None) -> bool:
        """Within the tolerance: at the plain 95% margin, and at `z` when given."""
        return measure(out) <= allowed and (
            z is None or obj.guarded_drop(out, obj.reference, z=z) <= allowed)
    attention, outputs, attention_choice = attention_step(session, choices, outputs, passes,
                                                          selection)
    checks = tolerance_checks(session, session.preset_outputs | {"chosen": outputs}, measure,
                              allowed)
    z = attention_choice.z if attention_choice.int8_layers else None
    if z is None and selection is not None and chosen_from == "greedy":
        z = selection.z  # the allocation's pick was judged at the margin widened for its maps
    if z is not None and obj.metric_name is not None:
        at_z = obj.guarded_drop(outputs, obj.reference, z=z)
        checks = checks[:-1] + (dataclasses.replace(checks[-1], bounded=float(at_z), z=z),)
    return finish(session, choices, outputs, sensitivity=sensitivity,
                  tolerance_met=tolerance_verdict(session, checks[-1], name),
                  chosen_from=config.strategy_name if chosen_from == "greedy" else chosen_from,
                  stopped_early=stopped_early, selection=selection, tolerance_checks=checks,
                  attention=attention, attention_choice=attention_choice)


def record_allocation(runner: Runner, strategy: str, choices, outputs: Outputs | None
                      ) -> np.ndarray:
    """The strategy's returned map, recorded as `<strategy>#returned` (`Kind.CANDIDATE`) when
    it passed (`outputs` not None) and the strategy did not record it itself: the selection
    guard judges the maps recorded, so an unrecorded pick would otherwise be dropped for the
    all-default map. The built-in strategies record every map they measure.

    Returns:
      `choices` as `int32` option indices `[layers, 4]`.

    Raises:
      ValueError: `choices` is not `[layers, 4]` indices into the search options.
    """
    choices = np.asarray(choices)
    shape = (runner.num_layers, len(SITES))
    if choices.shape != shape or not np.issubdtype(choices.dtype, np.integer) or \
            choices.min(initial=0) < 0 or choices.max(initial=0) >= len(runner.options):
        raise ValueError(f"strategy {strategy!r} returned choices of shape {choices.shape} "
                         f"({choices.dtype}); expected integer option indices of shape {shape}, "
                         f"each below {len(runner.options)} (the search options)")
    choices = choices.astype(np.int32)
    if outputs is None:
        return choices
    recorded = {runner.switch.choices_for(e.precision_map).tobytes() for e in runner.evaluated
                if e.kind in (Kind.GREEDY, Kind.CANDIDATE)}
    if choices.tobytes() not in recorded:
        runner.record(f"{strategy}#returned", Kind.CANDIDATE, choices, outputs)
    return choices


def measured_once(measure: Callable[[Outputs], float]) -> Callable[[Outputs], float]:
    """`measure`, computed once per outputs object (a guarded drop can bootstrap): the presets'
    are asked for by the preset floor and again by the report."""
    seen: dict[int, tuple[Outputs, float]] = {}

    def measure_once(outputs: Outputs) -> float:
        if id(outputs) not in seen:  # the outputs are kept, so their id is not reused
            seen[id(outputs)] = (outputs, measure(outputs))
        return seen[id(outputs)][1]
    return measure_once


def tolerance_checks(session: Session, named_outputs: dict[str, Outputs],
                     measure: Callable[[Outputs], float], allowed: float
                     ) -> tuple[ToleranceCheck, ...]:
    """Each map's `ToleranceCheck`: its metric drop against FP32 (None without a metric),
    `measure` of it (the guarded drop, or the proxy) and `allowed`, in `named_outputs` order."""
    obj, fp32 = session.objective, session.reference.metric
    task_metric = None if obj.metric_name is None else get_metric(obj.metric_name)
    checks = []
    for name, outputs in named_outputs.items():
        metric = None if task_metric is None else obj.metric(outputs)
        drop = None if metric is None or fp32 is None else task_metric.drop(fp32, metric)
        checks.append(ToleranceCheck(name, drop, float(measure(outputs)), allowed))
    return tuple(checks)


def early_stop(session: Session, ceiling_ms: float | None, preset: str | None) -> str | None:
    """Why the search can end after the presets -- the fastest passing preset (`preset`, at
    `ceiling_ms`) is the fastest map the latency model allows -- or None."""
    if ceiling_ms is None:
        return None
    table = session.runner.table
    floor_ms = table.map_ms(fastest_map(table, session.options, session.runner.num_layers))
    if ceiling_ms <= floor_ms * (1.0 + LATENCY_RTOL):
        return f"preset {preset!r} passes and no map is faster by the latency model"
    return None


def warn_if_rows_too_few(session: Session) -> None:
    """Warns (`UserWarning`) when the search split is too small for the tolerance to mean
    much: one row of it moves the task metric by more than the tolerance allows (about
    1/rows of it: exactly so for accuracy), so the verdict only tells whether any row changed;
    or the margin of a map that changes no row (`unchanged_margin`: accuracy's adjusted bound,
    about 2.3/rows; an F1's from its pseudo-rows) is already past the allowed drop, so no map
    that changes a row can pass. A ranking metric counts queries (`Metric.units`), its unit."""
    config, obj = session.config, session.objective
    evaluation, fp32 = getattr(obj, "evaluation", None), session.reference.metric
    if obj.metric_name is None or evaluation is None or fp32 is None:
        return
    metric = get_metric(obj.metric_name)
    reference = getattr(obj, "reference", None)
    evidence = None if reference is None else evaluation.evidence(reference)
    # the units the margin counts: rows, or a ranking metric's queries (one evidence row each)
    rows = evaluation.num_examples if evidence is None or metric.unit == "row" else len(evidence)
    unit, units = metric.unit, metric.units
    allowed = allowed_drop(config.tolerance, config.tolerance_mode, fp32)
    if not rows:
        return
    floor = unchanged_margin(metric, rows, evidence)
    if floor > allowed:
        warnings.warn(
            f"the search split has {rows} {units}: even a map that changes none of them is "
            f"bounded at a drop of {floor:.3g} in {obj.metric_name} (the 95% margin), more than "
            f"the {allowed:.3g} the tolerance allows, so a map passes only where it gains more "
            f"than it loses; give more {units} (or a wider tolerance) for a verdict", UserWarning,
            stacklevel=3)
    elif 1.0 / rows > allowed:
        warnings.warn(
            f"the search split has {rows} {units}: one {unit} moves {obj.metric_name} by about "
            f"{1.0 / rows:.3g}, more than the {allowed:.3g} the tolerance allows, so the search "
            f"can only tell whether any {unit} changes; give more {units} for a verdict that "
            "means something", UserWarning, stacklevel=3)


def refuse_undefined_reference(session: Session) -> None:
    """Raises ValueError when the FP32 model's search-split metric is undefined (NaN: e.g.
    Spearman or ROC-AUC of a head that gives every row the same score): no drop can be measured
    against it, and every map would fail the tolerance with NaN figures."""
    obj, fp32 = session.objective, session.reference.metric
    if obj.metric_name is None or fp32 is None or not math.isnan(fp32):
        return  # no metric, or a number: the evidence is read only to say why it is not
    evaluation, reference = getattr(obj, "evaluation", None), getattr(obj, "reference", None)
    evidence = None if evaluation is None or reference is None else evaluation.evidence(reference)
    why = undefined_metric(obj.metric_name, fp32, "the FP32 model's search-split", evidence)
    raise ValueError(f"{why}; no drop can be measured against it, so the tolerance cannot be "
                     "checked")


def warn_if_at_chance(session: Session) -> None:
    """Warns (`UserWarning`) when the FP32 model's search-split metric is no better than always
    predicting the most frequent class (or label set): a tolerance relative to it bounds
    nothing that matters (is the model trained for this data?); or when a ranking metric is
    below what a model that learned nothing scores (`below_no_skill`): the search then counts
    a move toward that level, a worse ranking, as a gain."""
    evaluation, fp32 = getattr(session.objective, "evaluation", None), session.reference.metric
    below = below_no_skill(session.objective.metric_name, fp32, "the FP32 model's search-split")
    if below is not None:
        warnings.warn(f"{below}, and the tolerance does not bound it", UserWarning, stacklevel=3)
    verdict = at_chance(evaluation, fp32, "the FP32 model's search-split")
    if verdict is not None:
        warnings.warn(f"{verdict}: a tolerance relative to it bounds nothing that matters (is "
                      "the model trained for this data?)", UserWarning, stacklevel=3)


def tolerance_verdict(session: Session, chosen: ToleranceCheck, measured: str) -> bool:
    """Whether the chosen map's check passes; warns (`UserWarning`) when it does not (no move
    accepted, and the all-default map itself misses the tolerance). `measured` names what the
    check bounds ('accuracy drop', 'proxy')."""
    config = session.config
    if chosen.passes:
        return True
    why = (" (its outputs hold NaN or Inf: values past the range of "
           f"{session.options[0]})" if chosen.bounded == math.inf else "")
    warnings.warn(
        f"no map meets tolerance={config.tolerance} ({config.tolerance_mode}): even the most "
        f"precise candidate, {session.options[0]} at every site, has {measured} "
        f"{chosen.bounded:.6g}{why} > allowed {chosen.allowed:.6g}; returning that map "
        "(SearchResult.tolerance_met is False)", UserWarning, stacklevel=4)
    return False


def tolerance_measure(objective: Objective, fp32_metric: float | None, tolerance: float,
                      tolerance_mode: str, *, z: float = Z_ONE_SIDED_95
                      ) -> tuple[str, Callable[[Outputs], float], float]:
    """What the tolerance bounds: `(name, measure(outputs), allowed)`.

    With a metric: the guarded drop against FP32 (its margin `z` standard errors), allowed
    `tolerance * |fp32_metric|` (relative) or `tolerance` (absolute). Without one: the proxy,
    allowed `tolerance`.
    """
    if objective.metric_name is not None:
        allowed = allowed_drop(tolerance, tolerance_mode, fp32_metric)
        base = objective.reference
        return (f"{objective.metric_name} drop",
                lambda outputs: objective.guarded_drop(outputs, base, z=z), allowed)
    return "proxy", lambda outputs: objective.proxy(outputs), tolerance


def acceptance(objective: Objective, fp32_metric: float | None, tolerance: float,
               tolerance_mode: str) -> Callable[[Outputs], bool]:
    """The test a greedy map must pass (see the module docstring for the semantics).

    With a metric: the guarded drop against FP32 is at most `tolerance * |fp32_metric|`
    (relative) or `tolerance` (absolute). Without one: the proxy is at most `tolerance`.
    """
    _, measure, allowed = tolerance_measure(objective, fp32_metric, tolerance, tolerance_mode)
    return lambda outputs: measure(outputs) <= allowed


def guard_selection(runner: Runner, measure_at: Callable[[Outputs, float], float],
                    allowed: float, cost: Callable[[np.ndarray], float] | None = None
                    ) -> tuple[np.ndarray, Outputs | None, SelectionGuard]:
    """Phase 4b: the fastest allocation map (the cheapest by `cost`, `objective_cost`; default
    the latency; equals in latency order) that passes with the margin widened for the number
    of maps the allocation compared.

    Each map the greedy, knapsack or revert strategy measured passed or failed at the plain 95%
    margin; returning the fastest that passed favours one whose search-split score was lucky
    (on WNUT-16 such a map gained 4.1% entity F1 on the search split and lost 1.9% on test).
    The pick is judged again at `selection_z(maps compared)`; when it misses, the next-fastest
    map that passes there is kept. Outputs come from the runner's memory: nothing is run again.

    Args:
      runner: its `evaluated` holds the allocation's maps (`Kind.GREEDY`, `Kind.CANDIDATE`),
        the strategy's returned map among them (`record_allocation`).
      measure_at: `(outputs, z) -> guarded drop` (`tolerance_measure` at that z).
      allowed: the largest drop the tolerance allows.

    Returns:
      `(choices, outputs, guard)`: the kept map, or `(all-default, None, guard)` when no
      allocation map passes at the wider margin.
    """
    maps = {}
    for entry in runner.evaluated:
        if entry.kind in (Kind.GREEDY, Kind.CANDIDATE):
            choices = runner.switch.choices_for(entry.precision_map)
            maps.setdefault(choices.tobytes(), (entry, choices))
    ordered = sorted(maps.values(), key=lambda item: (  # stable: first of equals
        item[0].latency_ms if cost is None else cost(item[1]), item[0].latency_ms))
    z = selection_z(max(len(ordered), 1))
    pick = kept = None
    for entry, choices in ordered:
        outputs = runner.run(choices[None])[0]
        if pick is None and measure_at(outputs, Z_ONE_SIDED_95) <= allowed:
            pick = entry.name
        if measure_at(outputs, z) <= allowed:
            kept = entry.name
            return choices, outputs, SelectionGuard(len(ordered), z, pick, kept)
    return (np.zeros((runner.num_layers, len(SITES)), np.int32), None,
            SelectionGuard(len(ordered), z, pick, kept))
