"""`SearchConfig`: every setting of a search in one frozen, validated value, passed from the CLI
through `samp_jax.workflows.run_search` to `calibrate.search.driver.search`.

A config is checked when it is made (tolerance, objective, strategy, latency target, calibration
method, batches), so a bad setting fails before any model or data is read. What needs the model
(the device target's options and latency table) is resolved by `calibrate.search.plan`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import calibrate.search.strategies  # noqa: F401  registers the built-in strategies
from calibrate.calibration.calibrators import CALIBRATORS
from calibrate.search.static_clips import AUTO as AUTO_CALIBRATION
from calibrate.search.strategy import OBJECTIVES, get_strategy, strategies_for
from calibrate.search.targets import AUTO as AUTO_TARGET
from calibrate.search.targets import Target
from samp_jax.core.precision import SitePrecision
from samp_jax.tasks.task import CALIBRATION_EXAMPLES

MAX_RELATIVE_TOLERANCE = 0.5
TOLERANCE_MODES = ("relative", "absolute")
EVALUATION_MODES = ("map", "vmap")
# `SearchConfig.attention`: 'auto' tries INT8 attention where the latency table prices it
# cheaper (`calibrate.search.attention_step`); 'float' keeps every layer's attention float.
ATTENTION_MODES = ("auto", "float")
# The allocation a tolerance search uses unless told otherwise, per objective: knapsack solves
# the latency allocation exactly under the latency model, measures fewer maps than the greedy
# and judges its pick at the widened selection margin (docs/results/search.md compares them).
DEFAULT_STRATEGY = {"latency": "knapsack", "int8_fraction": "greedy"}
# A latency-target search adds moves in the greedy's order (`calibrate.search.latency_target`).
LATENCY_TARGET_STRATEGY = "greedy"


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The settings of one search.

    Attributes:
      tolerance: allowed metric drop (relative: `drop <= tolerance * |fp32_metric|`; absolute:
        `drop <= tolerance` in metric units; without labels it bounds the proxy).
      tolerance_mode: 'relative' or 'absolute'.
      latency_target_ms: if given, ignore the tolerance and reach this estimated latency
        (`calibrate.search.latency_target`); None: meet the tolerance
        (`calibrate.search.tolerance`).
      objective: 'latency' (order moves by proxy per ms saved) or 'int8_fraction' (per FLOP
        moved to INT8; only INT8 options count).
      strategy: the allocation (`calibrate.search.strategy.STRATEGIES`: 'greedy', 'knapsack',
        'revert', or one you registered). None: `DEFAULT_STRATEGY` of the objective; with a
        latency target, the greedy's order.
      target: the device the map is for ('auto' for this one, 'h100', 'a100', 'l4', 'cpu', or
        a `Target`): its options, the dtype between sites and the latency model (measured when
        running on it, else estimated from its spec sheet).
      options: precisions each site may take (names as `Target.search_options` takes them),
        narrowed to what the target offers; None: all it offers.
      calibration: how the search calibrates static scales when it is not given a calibration
        and the data is a task: 'auto' (every method of `calibrate.AUTO_METHODS`, each static
        INT8 site keeping the clip that harms the model least) or one calibrator's name.
      calibration_examples: the calibration split's first rows the static scales are
        calibrated on, when the search calibrates (default 512, None for all of them; fewer
        calibrate faster, with clips less sure to cover what the model sees).
      max_search_examples: search on a fixed seeded subset of the task's search split.
      seed: seed of a registered task's splits and of the search subset.
      batch, seq: the serving shape the latency model describes.
      sensitivity_batches: search batches used for single-site sensitivities; None for all.
      chunk: candidates per compiled call.
      mode: 'map' (lax.map: one branch per site runs) or 'vmap'.
      stop_early: use what the presets showed (a tolerance search with objective='latency'):
        end after them when the fastest passing preset is the fastest map the options allow,
        else evaluate only maps that could be faster than it. False: every phase in full.
      selection_margin: judge the allocation's pick with the margin widened for the number of
        maps it chose among (`calibrate.search.tolerance.guard_selection`). False: keep the
        fastest map that passed at 95%.
      progress: a progress bar on standard error: None draws it on a terminal or in a
        notebook but not in a log or a pipe, True always, False never.
      measure_again: measure the target's latency table now, replacing the cached one (a
        table is cached per machine, versions and model shape, and read back by later
        searches; measure again after the machine's load or setup changed). Only where this
        machine is the target: an estimate is not cached.
      attention: 'auto' (a tolerance search with objective 'latency' tries the chosen map with
        INT8 attention in the layers the latency table prices it cheaper, kept when within the
        tolerance: `calibrate.search.attention_step`) or 'float' (attention stays float).

    Raises:
      ValueError: on construction, for a bad tolerance, objective, strategy (unknown, or not
        for the objective or a latency target), latency target, calibration method, count or
        attention mode.
    """

    tolerance: float = 0.01
    tolerance_mode: str = "relative"
    latency_target_ms: float | None = None
    objective: str = "latency"
    strategy: str | None = None
    target: str | Target = AUTO_TARGET
    options: tuple[str, ...] | None = None
    calibration: str = AUTO_CALIBRATION
    calibration_examples: int | None = CALIBRATION_EXAMPLES
    max_search_examples: int | None = None
    seed: int = 0
    batch: int = 32
    seq: int = 128
    sensitivity_batches: int | None = 4
    chunk: int = 8
    mode: str = "map"
    stop_early: bool = True
    selection_margin: bool = True
    progress: bool | None = None
    measure_again: bool = False
    attention: str = "auto"

    def __post_init__(self):
        if self.options is not None:
            if isinstance(self.options, (str, SitePrecision)):
                raise ValueError(f"options={str(self.options)!r} is one option; expected a sequence "
                                 "of them, e.g. ('fp16', 'int8-dynamic')")
            if len(self.options) == 0:
                raise ValueError("options=() is empty; expected the precisions each site may take, "
                                 "the high-precision default first, e.g. ('fp16', 'int8-dynamic')")
            object.__setattr__(self, "options", tuple(str(o) for o in self.options))
        validate_tolerance(self.tolerance, self.tolerance_mode)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r} is not one of {OBJECTIVES}")
        if self.latency_target_ms is not None:
            check_target_ms(self.latency_target_ms)
        self._check_strategy()
        if self.calibration not in (AUTO_CALIBRATION, *CALIBRATORS):
            raise ValueError(f"calibration={self.calibration!r} is not one of "
                             f"{[AUTO_CALIBRATION, *sorted(CALIBRATORS)]}")
        if self.mode not in EVALUATION_MODES:
            raise ValueError(f"mode={self.mode!r} is not one of {EVALUATION_MODES}")
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention={self.attention!r} is not one of {ATTENTION_MODES}")
        for name in ("batch", "seq", "chunk", "sensitivity_batches", "max_search_examples",
                     "calibration_examples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}={value!r} must be a positive integer")

    def _check_strategy(self) -> None:
        if self.strategy is None:
            return
        strategy = get_strategy(self.strategy)  # an unknown name fails here
        if self.latency_target_ms is not None and self.strategy != LATENCY_TARGET_STRATEGY:
            raise ValueError(f"strategy={self.strategy!r} allocates within a tolerance; a latency "
                             f"target adds moves in the {LATENCY_TARGET_STRATEGY} order (leave "
                             f"strategy unset or {LATENCY_TARGET_STRATEGY!r})")
        if self.objective not in strategy.objectives:
            fitting = " or ".join(f"strategy={name!r}" for name in strategies_for(self.objective))
            raise ValueError(f"strategy={self.strategy!r} allocates under "
                             f"{' or '.join(strategy.objectives)}; objective={self.objective!r} "
                             f"needs {fitting}")

    @property
    def strategy_name(self) -> str:
        """The strategy that runs: the one given, or the default of the mode and objective."""
        if self.strategy is not None:
            return self.strategy
        if self.latency_target_ms is not None:
            return LATENCY_TARGET_STRATEGY
        return DEFAULT_STRATEGY[self.objective]

    @property
    def mode_name(self) -> str:
        """'latency_target' or 'tolerance': which entry point the search takes."""
        return "tolerance" if self.latency_target_ms is None else "latency_target"

    def replace(self, **changes) -> "SearchConfig":
        """A copy with `changes` (validated as a new config)."""
        return dataclasses.replace(self, **changes)


def validate_tolerance(tolerance: float, tolerance_mode: str, bound: float | None = None,
                       metric: str = "the metric") -> None:
    """Raises ValueError for a negative or non-finite tolerance, an unknown mode, or an absurd
    tolerance: a relative one of half the metric or more (`MAX_RELATIVE_TOLERANCE`), or an
    absolute one of half the largest magnitude the metric takes or more (its `bound`,
    `Metric.bound`: 1 for every built-in metric, so 0.5 points; `metric` names it). An
    absolute tolerance with no bound known (None: a metric in units of its own, the proxy of
    unlabelled data, or the metric not known yet) is any finite number >= 0."""
    if tolerance_mode not in TOLERANCE_MODES:
        raise ValueError(f"{tolerance_mode=} is not one of {TOLERANCE_MODES}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.integer, np.floating)):
        raise ValueError(f"tolerance={tolerance!r} must be a number")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"{tolerance=} must be a finite number >= 0")
    if tolerance_mode == "relative" and tolerance >= MAX_RELATIVE_TOLERANCE:
        raise ValueError(f"{tolerance=} would allow losing half the metric or more; "
                         f"use a value below {MAX_RELATIVE_TOLERANCE} (0.01 means 1%)")
    if tolerance_mode == "absolute" and bound is not None and \
            tolerance >= MAX_RELATIVE_TOLERANCE * bound:
        raise ValueError(f"{tolerance=} (absolute) would allow losing half or more of the "
                         f"largest value {metric} takes ({bound:g}); use a value below "
                         f"{MAX_RELATIVE_TOLERANCE * bound:g} in {metric} points, or a relative "
                         "tolerance (a share of the FP32 metric)")


def check_tolerance_for_metric(config: "SearchConfig", metric) -> None:
    """`validate_tolerance` of `config`'s tolerance against `metric` (a `Metric`: its `bound`
    and name), once the data names it and before any slow step; nothing for a search with a
    latency target (no tolerance) or without a metric (the proxy).

    Raises:
      ValueError: as `validate_tolerance`.
    """
    if metric is not None and config.latency_target_ms is None:
        validate_tolerance(config.tolerance, config.tolerance_mode, metric.bound, metric.name)


def allowed_drop(tolerance: float, tolerance_mode: str, fp32_metric: float | None) -> float:
    """The largest metric drop against FP32 a tolerance allows: `tolerance * |fp32_metric|`
    (relative; the size of the metric, so that a negative one -- a Spearman whose gold scores
    rank the other way -- still allows a drop) or `tolerance` (absolute, metric units)."""
    if tolerance_mode == "relative":
        return tolerance * abs(fp32_metric)
    return tolerance


def check_target_ms(target_ms) -> None:
    """Raises ValueError unless `target_ms` is a positive finite number of milliseconds (NaN,
    Inf, 0, a negative or a non-number are refused)."""
    if isinstance(target_ms, bool) or not isinstance(target_ms, (int, float, np.integer, np.floating)):
        raise ValueError(f"latency_target_ms={target_ms!r} must be a positive number of milliseconds")
    if not (np.isfinite(target_ms) and target_ms > 0):
        raise ValueError(f"latency_target_ms={target_ms} must be a positive finite number of "
                         "milliseconds")

