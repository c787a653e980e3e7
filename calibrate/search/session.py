"""What both searches share before and after they differ: a `Session` holds the planned config,
the objective, the calibration and the `Runner`, with phase 0 (each static site's clip) and the
presets done (`open_session`); `measure_and_order` measures and orders the single-site moves;
`finish` records the chosen map and builds the `SearchResult`, whose map carries each static
site's calibrator and clip and the dtype between sites (`searched_map`)."""

from __future__ import annotations

import dataclasses
import time
from typing import Mapping

import jax.numpy as jnp
import numpy as np

from calibrate.calibration.api import map_with_calibration

from calibrate.search.candidates import SwitchableModel
from calibrate.search.config import SearchConfig, check_tolerance_for_metric
from calibrate.search.objectives import Objective, UnlabelledObjective, task_objective
from calibrate.search.phases import (default_preset_name, evaluate_presets, measure_sensitivity,
                                     move_gains, order_moves, single_site_moves)
from calibrate.search.plan import SearchPlan
from calibrate.search.result import (AttentionChoice, SearchResult, SelectionGuard,
                                     ToleranceCheck, pareto_entries)
from calibrate.search.runner import Evaluated, Kind, Move, Outputs, Runner, move_key
from calibrate.search.static_clips import (StaticCalibrationChoice, choose_static_calibration,
                                           search_calibration)
from samp_jax.core.precision import PrecisionMap, SitePrecision
from samp_jax.core.progress import progress_bar
from samp_jax.tasks import Task, get_task
from samp_jax.tasks.metrics import Metric, get_metric


@dataclasses.dataclass
class Session:
    """One search in progress, after phase 0 and the presets.

    Attributes:
      plan: the config resolved for the model (target, options, latency table).
      runner: evaluates and records candidate maps.
      reference: the FP32 reference entry (its metric is the FP32 metric).
      preset_outputs: each preset's outputs by name, the all-default map first.
      calibration: the calibration the static sites run with (per site after phase 0).
      static_choice: each static INT8 site's calibrator (phase 0), or None.
      static_sensitivity: the static single-site moves phase 0 already measured.
      start: `time.perf_counter()` when the search began.
      calibrated: the calibration before phase 0 picked each static site's clip (every
        candidate clip; None without static options): of the FP32 model, the same for every
        float option, so a session for another float option starts from it.
    """

    plan: SearchPlan
    runner: Runner
    reference: Evaluated
    preset_outputs: dict[str, Outputs]
    calibration: object
    static_choice: StaticCalibrationChoice | None
    static_sensitivity: Mapping[Move, dict]
    start: float
    calibrated: object = None
    float_overflows: tuple = ()  # the `FloatOverflow`s of the float options tried before

    @property
    def config(self) -> SearchConfig:
        return self.plan.config

    @property
    def objective(self) -> Objective:
        return self.runner.objective

    @property
    def options(self) -> tuple[SitePrecision, ...]:
        return self.plan.options


def make_objective(model, data, tokenizer, config: SearchConfig) -> Objective:
    """The objective of `data`: itself (an `Objective`), a task's search split (a `Task` or a
    registered name; `config.max_search_examples`, `config.seed`), or unlabelled batches."""
    if isinstance(data, Objective):
        return data
    if isinstance(data, str):
        data = get_task(data, seed=config.seed)
    check_tolerance_for_metric(config, data_metric(data))
    if isinstance(data, Task):
        return task_objective(model, data, tokenizer, seed=config.seed,
                              max_examples=config.max_search_examples)
    return UnlabelledObjective(model, list(data))


def data_metric(data) -> Metric | None:
    """The metric a search on `data` is judged by: a `Task`'s, an `Objective`'s
    (`metric_name`); None for unlabelled batches (the proxy). A built-in task's name is loaded
    into its `Task` by the caller first (`search`, `make_objective`), once."""
    if isinstance(data, Task):
        return data.task_metric
    name = getattr(data, "metric_name", None) if isinstance(data, Objective) else None
    return None if name is None else get_metric(name)


def open_session(model, data, plan: SearchPlan, *, tokenizer=None, calibration=None,
                 start: float | None = None) -> Session:
    """Builds the objective, calibrates (`search_calibration`), picks each static site's clip
    (phase 0, with several candidate calibrations) and evaluates the presets."""
    start = time.perf_counter() if start is None else start
    config = plan.config
    objective = make_objective(model, data, tokenizer, config)
    calibration, candidates = search_calibration(model, data, tokenizer, calibration, plan.options,
                                                 method=config.calibration, seed=config.seed,
                                                 examples=config.calibration_examples)
    calibrated = calibration if candidates is None else candidates
    runner = Runner(SwitchableModel(model, plan.options, calibration, dtype=plan.dtype), objective,
                    plan.table, mode=config.mode, chunk=config.chunk,
                    bar=progress_bar(config.progress, desc=f"search {objective.name}", unit="map"))
    static_choice, static_sensitivity = None, {}
    # phase 0 measures once per candidate calibration, phase 2 once more
    per_run = len(objective.subset(config.sensitivity_batches).batches)
    runner.planned_sensitivity_batches = per_run * (1 + (0 if candidates is None else len(candidates)))
    if candidates is not None:
        static_choice, static_sensitivity = choose_static_calibration(
            runner, candidates, batches=config.sensitivity_batches,
            fp32_metric=objective.metric(objective.reference))
        calibration = static_choice.calibration
    reference, preset_outputs = evaluate_presets(runner)
    return Session(plan, runner, reference, preset_outputs, calibration, static_choice,
                   static_sensitivity, start, calibrated)


def measure_and_order(session: Session) -> tuple[dict[Move, dict], list[Move]]:
    """Phases 2 and 3: every single-site move's sensitivity (the static moves phase 0 measured
    are not run again), and the moves with a positive gain, least harm per unit gained first."""
    config, runner, options = session.config, session.runner, session.options
    moves = single_site_moves(runner.num_layers, options, config.objective)
    fresh = [m for m in moves if m not in session.static_sensitivity]
    measured = measure_sensitivity(runner, fresh, batches=config.sensitivity_batches,
                                   fp32_metric=session.reference.metric)
    sensitivity = {m: session.static_sensitivity.get(m) or measured[m] for m in moves}
    gains = move_gains(moves, options, runner.table, runner.switch.config, config.objective)
    return sensitivity, order_moves(moves, {m: s["proxy"] for m, s in sensitivity.items()}, gains)


def outputs_of(session: Session, choices: np.ndarray, outputs: Outputs | None) -> Outputs:
    """`outputs`, or those of `choices` when None: the all-default map was measured as a
    preset; any other map (a latency target's) is run now."""
    if outputs is not None:
        return outputs
    if not choices.any():
        return session.preset_outputs[default_preset_name(session.options[0])]
    return session.runner.run(choices[None])[0]


def searched_map(session: Session, pmap: PrecisionMap) -> PrecisionMap:
    """`pmap` with what rebuilds the searched model written in: each static site's calibrator
    and clip (`map_with_calibration`) and the dtype between sites. A smoothed calibration's
    per-channel scales have no place in a map: its clips stay with `SearchResult.calibration`."""
    dtype = jnp.dtype(session.plan.dtype).name
    calibration = session.calibration
    if calibration is not None and calibration.smoothing is not None:
        return dataclasses.replace(pmap, compute_dtype=dtype)
    return map_with_calibration(pmap, calibration, compute_dtype=dtype)


def finish(session: Session, choices: np.ndarray, outputs: Outputs, *,
           sensitivity: Mapping[Move, dict], tolerance_met: bool | None, chosen_from: str,
           stopped_early: str | None = None, selection: SelectionGuard | None = None,
           tolerance_checks: tuple[ToleranceCheck, ...] = (), attention: np.ndarray | None = None,
           attention_choice: AttentionChoice | None = None) -> SearchResult:
    """Records the chosen map (its GEMM `choices` and `attention` indices) and returns the
    `SearchResult`."""
    config, runner, obj = session.config, session.runner, session.objective
    chosen = runner.record("chosen", Kind.CHOSEN, choices, outputs, attention=attention)
    runner.bar.close()
    front = pareto_entries(runner.evaluated, obj.metric_name)
    return SearchResult(
        precision_map=searched_map(session, chosen.precision_map), objective_name=obj.name, metric_name=obj.metric_name,
        proxy_name=obj.proxy_kind.name,
        fp32_metric=session.reference.metric, chosen=chosen,
        sensitivity={move_key(m, session.options): s for m, s in sensitivity.items()},
        evaluated=runner.evaluated, latency_table=runner.table,
        options=tuple(str(o) for o in session.options), tolerance=config.tolerance,
        tolerance_mode=config.tolerance_mode, mode=config.mode_name,
        search_objective=config.objective, seconds=time.perf_counter() - session.start, compilations=runner.switch.traces,
        tolerance_met=tolerance_met, target=session.plan.target.name, chosen_from=chosen_from,
        strategy=config.strategy_name, maps_run=runner.maps_run,
        subset_maps_run=runner.subset_maps_run, stopped_early=stopped_early,
        sensitivity_resumed_batches=runner.sensitivity_batches[True],
        sensitivity_full_batches=runner.sensitivity_batches[False],
        selection=selection, calibration=session.calibration,
        static_calibration=session.static_choice, tolerance_checks=tolerance_checks,
        pareto_maps={e.name: searched_map(session, e.precision_map) for e in front},
        latency_target_ms=config.latency_target_ms,
        search_truncation=getattr(getattr(obj, "evaluation", None), "truncation", None),
        float_overflows=session.float_overflows, plan=session.plan, attention=attention_choice)
