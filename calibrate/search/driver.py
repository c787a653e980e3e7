"""Self-adaptive mixed precision: sensitivity search and accuracy-decay-aware allocation.

1. **Sensitivity.** For every (layer, site) and every quantized option, the map that quantizes
   only that site is scored on the search data: the proxy (KL to FP32, or 1 - cosine) and,
   with labels, the metric drop. All candidates run through one compiled program
   (`calibrate.search.candidates.SwitchableModel`).
2. **Allocation.** (site, option) moves are ordered by proxy per millisecond saved (or per
   INT8 FLOP for `objective="int8_fraction"`). The greedy adds them one by one, re-measuring
   the *accumulated* map (interactions are not additive), and backs a move out when the
   tolerance would be crossed. Prefixes of the ordering are evaluated `chunk` at a time in
   the same compiled program, so a run costs about one chunk per rejected move.
3. **Latency target.** Alternatively, moves are added in the same order until the estimated
   latency is under the target: the most accurate map the greedy finds within it.

Tolerance semantics: `tolerance_mode="relative"` (default) accepts a map when
`drop <= tolerance * fp32_metric`; `"absolute"` when `drop <= tolerance` (metric units). The
drop is measured on the search split against the FP32 model and includes a one-sided 95%
confidence margin: of the paired per-example difference for accuracy, of a paired bootstrap
over sentences for entity F1 (`calibrate.search.objectives`). The allocation's own pick, the fastest
of the maps it measured that passed, is then judged with the margin widened for how many maps it
chose among (`guard_selection`, Bonferroni), and the fastest map that passes there is kept: the
best of many maps that each pass at 95% has usually had luck on the search split. Without
labels the tolerance bounds the proxy instead (no margin, no widening).

The presets bound the work (`stop_early`, on by default): the result is never slower than the
fastest preset that passes (`fastest_passing_preset`), so when that preset is already the
fastest map the options allow, the search ends after the presets; otherwise the allocation only
evaluates maps that could be faster than it (the greedy stops once even every pending move
could not get below it). A map is never run twice (`Runner` keeps its outputs).

The search runs in six phases, each a public function that can be run (and tested) alone;
`search` composes them around one `Runner`:

- `choose_static_calibration`: with several candidate calibrations and a static INT8 option,
  each site's static clip from the calibrator whose single-site map harms the model least;
- `evaluate_presets`: the FP32 reference and the presets the options allow (`preset_maps`);
- `measure_sensitivity`: every single-site move (`single_site_moves`) on a few batches;
- `order_moves`: positive-gain moves (`move_gains`) by proxy per unit gained;
- `tolerance_greedy`: chunked prefixes of the ordering, accepted while `acceptance` holds (or
  `allocate` for the knapsack and revert strategies), then `guard_selection`;
- `latency_greedy`: moves in order until the estimated latency meets a target.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import warnings
from typing import Callable, Mapping, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from calibrate.search.allocation import harm_and_cost, knapsack_search, revert_search, validate_strategy
from calibrate.calibration.api import Calibration, calibrate_candidates, per_site_calibration
from calibrate.search.candidates import SwitchableModel
from calibrate.search.latency import LatencyTable, cached_table, int8_flop_fraction, site_flops, table_for_target
from calibrate.search.targets import Target, resolve_target
from calibrate.search.objectives import (Z_ONE_SIDED_95, Objective, UnlabelledObjective, selection_z,
                                  task_objective)
from samp_jax.models.config import EncoderConfig
from samp_jax.core.precision import SITES, PrecisionMap, SitePrecision, as_precision
from samp_jax.tasks import Task, get_task

MAX_RELATIVE_TOLERANCE = 0.5
# The options of a search given neither a target nor options (the H100 set, with static INT8).
DEFAULT_OPTIONS = ("fp16", "int8-dynamic", "int8-static", "fp8_e4m3")
# Added to a move's proxy before dividing by its gain: moves that measure no harm at all then
# rank by gain (largest first) instead of all tying at zero.
ORDER_EPS = 1e-12
# Preset maps evaluated first (the search never returns a map slower than the fastest of them
# that meets the tolerance), after the all-default map: (name, preset, INT8 activation scheme).
SEARCH_PRESETS = (("quant_ffn_only", "quant_ffn_only", "per_token_dynamic"),
                  ("fully_quant", "fully_quant", "per_token_dynamic"),
                  ("quant_ffn_only_static", "quant_ffn_only", "per_tensor_static"),
                  ("fully_quant_static", "fully_quant", "per_tensor_static"),
                  ("fp8", "fp8", "per_token_dynamic"))
# The allocation a search uses unless told otherwise: in docs/search.md it found the fastest
# map within tolerance on every task's held-out test split (tied with revert on SNLI), in
# about half the greedy's search time.
DEFAULT_STRATEGY = "knapsack"
# Latencies are sums of per-site costs whose rounding depends on the order of summation: a
# target within this relative distance of a latency counts as meeting it.
LATENCY_RTOL = 1e-9

Outputs = list[np.ndarray]  # one candidate's outputs, one array per search batch


class Kind(enum.StrEnum):
    """What an `Evaluated` map is; the value is the string reports and JSON write."""

    REFERENCE = "reference"  # the FP32 model
    PRESET = "preset"  # a named preset map
    GREEDY = "greedy"  # a prefix of the ordering the tolerance greedy measured
    CANDIDATE = "candidate"  # a map the knapsack or revert strategy measured
    CHOSEN = "chosen"  # the map the search returns


@dataclasses.dataclass
class Evaluated:
    """One map the search measured."""

    name: str
    kind: Kind
    precision_map: PrecisionMap
    metric: float | None
    proxy: float
    latency_ms: float
    int8_fraction: float


@dataclasses.dataclass(frozen=True)
class SelectionGuard:
    """How the allocation's pick was judged against the number of maps it chose among.

    Attributes:
      maps_compared: distinct maps the allocation measured (and could have picked).
      z: the margin's z for the pick (`calibrate.search.objectives.selection_z` of `maps_compared`).
      allocation_pick: the name of the fastest map that passed at the plain 95% margin
        (None: none did).
      kept: the name of the fastest map that passes at `z` (None: none does).
    """

    maps_compared: int
    z: float
    allocation_pick: str | None
    kept: str | None

    @property
    def stepped_back(self) -> bool:
        """Whether the allocation's pick missed at `z`, so a slower map (or none) was kept."""
        return self.kept != self.allocation_pick


@dataclasses.dataclass
class SearchResult:
    """The chosen map and everything measured on the way."""

    precision_map: PrecisionMap
    objective_name: str
    metric_name: str | None
    fp32_metric: float | None
    chosen: Evaluated
    sensitivity: dict[str, dict[str, float]]
    evaluated: list[Evaluated]
    latency_table: LatencyTable
    options: tuple[str, ...]
    tolerance: float
    tolerance_mode: str
    mode: str
    seconds: float
    compilations: int
    # Tolerance mode: whether the chosen map meets the tolerance. False only when not even the
    # all-default map (the most precise candidate, e.g. FP16 everywhere) does: it is returned
    # anyway, and the search warns. None in latency-target mode (no tolerance applies).
    tolerance_met: bool | None = None
    target: str | None = None  # the device the map and the latency model are for
    chosen_from: str = "greedy"  # the strategy, or the preset that was faster and passed
    strategy: str = "greedy"  # the allocation strategy that ran (`calibrate.search.allocation`)
    maps_run: int = 0  # maps run on the whole search data (sensitivity subsets not counted)
    # Why the search ended after the presets (the fastest passing preset is the fastest map
    # the latency model allows), or None when it ran every phase.
    stopped_early: str | None = None
    # How the allocation's pick was judged for the number of maps it chose among
    # (`guard_selection`); None when no allocation ran, without labels, or when turned off.
    selection: SelectionGuard | None = None
    # The calibration the static sites ran with (quantize with it), or None without one.
    calibration: Calibration | None = None
    # Each static INT8 site's clip, picked from several calibrators (`choose_static_calibration`);
    # None when one calibration was given or no option is static INT8.
    static_calibration: StaticCalibrationChoice | None = None

    @property
    def default_option(self) -> str:
        """The high-precision option every site falls back to ('fp16'; 'fp32' on a CPU target)."""
        return self.options[0]

    @property
    def default_latency_ms(self) -> float:
        """Estimated latency of the all-default map (every site at `default_option`)."""
        pmap = PrecisionMap.from_table({}, self.precision_map.num_layers, default=self.default_option)
        return self.latency_table.map_ms(pmap)

    @property
    def fp16_latency_ms(self) -> float:
        return self.latency_table.map_ms(PrecisionMap.preset("fp16", self.precision_map.num_layers))

    def summary(self) -> dict:
        return {
            "objective": self.objective_name, "metric": self.metric_name,
            "fp32_search_metric": self.fp32_metric, "chosen_search_metric": self.chosen.metric,
            "chosen_proxy": self.chosen.proxy, "int8_flop_fraction": self.chosen.int8_fraction,
            "estimated_latency_ms": self.chosen.latency_ms,
            "default_option": self.default_option,
            "estimated_speedup_vs_default": self.default_latency_ms / self.chosen.latency_ms,
            "target": self.target,
            "chosen_from": self.chosen_from, "strategy": self.strategy,
            "latency_source": f"{self.latency_table.source} ({self.latency_table.device}, "
                              f"{self.latency_table.batch}x{self.latency_table.seq})",
            "latency_executed": self.latency_table.executed_by_precision(),
            "tolerance": self.tolerance, "tolerance_mode": self.tolerance_mode, "mode": self.mode,
            "tolerance_met": self.tolerance_met,
            "options": list(self.options), "maps_evaluated": len(self.evaluated),
            "maps_run": self.maps_run, "stopped_early": self.stopped_early,
            "selection": None if self.selection is None else {
                **dataclasses.asdict(self.selection), "stepped_back": self.selection.stepped_back},
            "calibration": None if self.calibration is None else self.calibration.method,
            "static_calibration": None if self.static_calibration is None else {
                "methods": list(self.static_calibration.methods),
                "sites_per_method": self.static_calibration.counts(),
                "site_methods": dict(self.static_calibration.calibration.options["methods"])},
            "compilations": self.compilations, "search_seconds": self.seconds,
        }


def validate_tolerance(tolerance: float, tolerance_mode: str) -> None:
    """Raises ValueError for a negative, non-finite or absurd tolerance."""
    if tolerance_mode not in ("relative", "absolute"):
        raise ValueError(f"{tolerance_mode=} is not one of ('relative', 'absolute')")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"{tolerance=} must be a finite number >= 0")
    if tolerance >= MAX_RELATIVE_TOLERANCE:
        raise ValueError(f"{tolerance=} would allow losing half the metric or more; "
                         f"use a value below {MAX_RELATIVE_TOLERANCE} (0.01 means 1%)")


def _make_objective(model, data, tokenizer, seed) -> Objective:
    if isinstance(data, Objective):
        return data
    if isinstance(data, (str, Task)):
        return task_objective(model, data, tokenizer, seed=seed)
    return UnlabelledObjective(model, list(data))


class Move(NamedTuple):
    """One site of one layer put at one option: the step the greedies take."""

    layer: int
    site: int  # index into SITES
    option: int  # index into the search options; never 0, the high-precision default


def move_key(move: Move, options: Sequence[SitePrecision]) -> str:
    """'layer.site/option': the key in `SearchResult.sensitivity` and in greedy map names."""
    return f"{move.layer}.{SITES[move.site]}/{options[move.option]}"


@dataclasses.dataclass
class Runner:
    """Evaluates candidate maps on the search data and records what the search measured.

    Attributes:
      switch: the compiled candidate program.
      objective: scores a candidate's outputs (metric, proxy) against FP32.
      table: the latency model that prices a map.
      mode: 'map' or 'vmap', passed to `SwitchableModel.evaluate`.
      chunk: candidates per compiled call.
      bar: progress bar, advanced by one per candidate run; None for none.
      evaluated: every map recorded so far, in order.
      maps_run: candidate maps actually run on the whole search data (a map run before is
        answered from memory, not run again).
    """

    switch: SwitchableModel
    objective: Objective
    table: LatencyTable
    mode: str = "map"
    chunk: int = 8
    bar: tqdm | None = None
    evaluated: list[Evaluated] = dataclasses.field(default_factory=list)
    maps_run: int = 0
    _seen: dict[bytes, Outputs] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def options(self) -> tuple[SitePrecision, ...]:
        return self.switch.options

    @property
    def num_layers(self) -> int:
        return self.switch.num_layers

    def run(self, choices: np.ndarray, batches: Sequence[dict] | None = None) -> list[Outputs]:
        """Outputs of every candidate of `choices` `[candidates, layers, 4]`, one list per candidate.

        Args:
          choices: option indices of each candidate map.
          batches: the batches to run on; default all of the objective's.
        """
        choices = np.asarray(choices, np.int32)
        if batches is not None:
            return self._run(choices, batches)
        keys = [c.tobytes() for c in choices]
        fresh = {k: i for i, k in reversed(list(enumerate(keys))) if k not in self._seen}  # first of each
        if fresh:
            rows = sorted(fresh.values())
            for i, out in zip(rows, self._run(choices[rows], self.objective.batches)):
                self._seen[keys[i]] = out
            self.maps_run += len(rows)
        return [self._seen[k] for k in keys]

    def _run(self, choices: np.ndarray, batches: Sequence[dict]) -> list[Outputs]:
        per_batch = [self.switch.evaluate(choices, b, mode=self.mode, chunk=self.chunk) for b in batches]
        if self.bar is not None:
            self.bar.update(len(choices))
        return [[out[c] for out in per_batch] for c in range(len(choices))]

    def record(self, name: str, kind: Kind, choices: np.ndarray, outputs: Outputs) -> Evaluated:
        """Scores one candidate's outputs and appends it to `evaluated`."""
        pmap = self.switch.map_for(choices)
        entry = Evaluated(name, kind, pmap, self.objective.metric(outputs), self.objective.proxy(outputs),
                          self.table.map_ms(pmap), int8_flop_fraction(pmap, self.switch.config))
        self.evaluated.append(entry)
        return entry

    def latency_ms(self, choices: np.ndarray) -> float:
        """Estimated latency of the map of `choices` `[layers, 4]`."""
        return self.table.map_ms(self.switch.map_for(choices))


# ---- phase 1: presets

def default_preset_name(default: SitePrecision) -> str:
    """The name of the all-default map: the option's name ('fp16'), or 'fp32-sites' for FP32
    (so it never reads as the FP32 reference model)."""
    return "fp32-sites" if str(default) == "fp32" else str(default)


def preset_maps(options: Sequence[str | SitePrecision], num_layers: int) -> dict[str, PrecisionMap]:
    """The all-default map, then the `SEARCH_PRESETS` whose every precision is one of `options`
    (attention sites of `quant_ffn_only` at the default option).

    Args:
      options: the precisions a site may take; the first is the default.
      num_layers: layers of the model.

    Returns:
      Preset maps by name, the all-default map (`default_preset_name`) first.
    """
    options = tuple(as_precision(o) for o in options)
    default = options[0]
    maps = {default_preset_name(default): PrecisionMap.from_table({}, num_layers, default=default)}
    for name, preset, activation in SEARCH_PRESETS:
        pmap = PrecisionMap.preset(preset, num_layers, activation=activation,
                                   float_precision=default.precision)
        if all(p in options for _, p in pmap.items()):
            maps[name] = pmap
    return maps


def evaluate_presets(runner: Runner) -> tuple[Evaluated, dict[str, Outputs]]:
    """Phase 1: records the FP32 reference, then runs and records every allowed preset.

    The FP32 reference is the objective's own reference outputs (nothing is run for it).

    Returns:
      The reference entry (its metric is the FP32 metric) and each preset's outputs by name,
      the all-default map first.
    """
    obj = runner.objective
    fp32_map = PrecisionMap.preset("fp32", runner.num_layers)
    reference = Evaluated("fp32", Kind.REFERENCE, fp32_map, obj.metric(obj.reference), 0.0,
                          runner.table.map_ms(fp32_map), 0.0)
    runner.evaluated.append(reference)
    presets = preset_maps(runner.options, runner.num_layers)
    choices = np.stack([runner.switch.choices_for(p) for p in presets.values()])
    outputs = runner.run(choices)
    for name, preset_choices, preset_outputs in zip(presets, choices, outputs):
        runner.record(name, Kind.PRESET, preset_choices, preset_outputs)
    return reference, dict(zip(presets, outputs))


# ---- phase 2: single-site sensitivities

def single_site_moves(num_layers: int, options: Sequence[str | SitePrecision],
                      objective: str = "latency") -> list[Move]:
    """Every single-site move, by layer, then site, then option.

    Args:
      num_layers: layers of the model.
      options: the precisions a site may take; the first is the default and is no move.
      objective: 'latency' (every quantized option) or 'int8_fraction' (INT8 options only).
    """
    options = tuple(as_precision(o) for o in options)
    return [Move(layer, si, oi) for layer in range(num_layers) for si in range(len(SITES))
            for oi in range(1, len(options))
            if objective == "latency" or options[oi].precision == "int8"]


def measure_sensitivity(runner: Runner, moves: Sequence[Move], *, batches: int | None,
                        fp32_metric: float | None) -> dict[Move, dict[str, float]]:
    """Phase 2: scores each move alone (only its site quantized) on the first `batches` batches.

    Args:
      runner: evaluates the maps; nothing is recorded in `runner.evaluated`.
      moves: the single-site moves.
      batches: how many search batches to use; None for all.
      fp32_metric: the FP32 metric on the whole search data, or None without labels.

    Returns:
      Per move, {'proxy': ...} and, when the batches cover the whole search data (a subset has
      no metric) and there are labels, 'drop': the FP32 metric minus the move's.
    """
    if not moves:
        return {}
    choices = np.zeros((len(moves), runner.num_layers, len(SITES)), np.int32)
    for i, move in enumerate(moves):
        choices[i, move.layer, move.site] = move.option
    subset = runner.objective.subset(batches)
    sensitivity = {}
    # run with explicit batches: never answered from (or stored in) the runner's memory, which
    # holds whole-data outputs under the switch's current static scales
    for move, outputs in zip(moves, runner.run(choices, subset.batches)):
        entry = {"proxy": subset.proxy(outputs)}
        metric = subset.metric(outputs)
        if metric is not None and fp32_metric is not None:
            entry["drop"] = fp32_metric - metric
        sensitivity[move] = entry
    return sensitivity


@dataclasses.dataclass(frozen=True)
class StaticCalibrationChoice:
    """Which calibrator's clip each static INT8 site took (`choose_static_calibration`).

    Attributes:
      calibration: the per-site calibration the search ran with (`per_site_calibration`).
      methods: the candidate calibrators, in order (the first is kept on ties).
      proxy: `{'layer.site': {method: proxy}}` of the single-site static map under each.
    """

    calibration: object
    methods: tuple[str, ...]
    proxy: dict[str, dict[str, float]]

    def counts(self) -> dict[str, int]:
        """How many sites took each method's clip."""
        chosen = self.calibration.options["methods"]
        return {m: sum(1 for v in chosen.values() if v == m) for m in self.methods}


def static_int8_options(options: Sequence[SitePrecision]) -> list[int]:
    """Indices of the options that are INT8 with a calibrated (static) activation scale."""
    return [i for i, o in enumerate(options) if o.needs_calibration and o.precision == "int8"]


def choose_static_calibration(runner: Runner, candidates: Mapping[str, object], *,
                              batches: int | None, fp32_metric: float | None
                              ) -> tuple[StaticCalibrationChoice, dict[Move, dict[str, float]]]:
    """Phase 0: each site's static INT8 clip from the candidate that harms the model least.

    For every candidate calibration (`calibrate_candidates`: the same observation, clipped by
    different calibrators), every single-site static INT8 map is scored on the first `batches`
    search batches; each site keeps the clip whose map has the lowest proxy (KL or 1 - cosine
    to FP32), the first candidate on ties. Clipping outliers is right at most sites and breaks
    a few (Bondarenko et al. 2021), and which is which depends on the model and the data.
    The choice is set on `runner.switch` before anything else runs, so the presets and every
    later map use it. Nothing is recorded in `runner.evaluated`.

    Args:
      runner: its switch must have an INT8 static option.
      candidates: calibrations by method name, in order of preference on ties.
      batches, fp32_metric: as `measure_sensitivity`.

    Returns:
      The choice, and the static single-site moves' sensitivity under it (as
      `measure_sensitivity` gives it, so phase 2 need not measure them again).

    Raises:
      ValueError: no candidates, or candidates from different observations.
    """
    methods = tuple(candidates)
    per_site_calibration(candidates, {})  # fails early: no candidates, or mixed observations
    moves = [Move(layer, site, option) for layer in range(runner.num_layers)
             for site in range(len(SITES)) for option in static_int8_options(runner.options)]
    measured = {}
    for method in methods:
        runner.switch.set_calibration(candidates[method])
        measured[method] = measure_sensitivity(runner, moves, batches=batches, fp32_metric=fp32_metric)
    harm = {m: {} for m in methods}  # per method, the summed proxy of each site's static moves
    for m in methods:
        for mv in moves:
            key = (mv.layer, SITES[mv.site])
            harm[m][key] = harm[m].get(key, 0.0) + measured[m][mv]["proxy"]
    choice = {key: min(methods, key=lambda m: (harm[m][key], methods.index(m))) for key in harm[methods[0]]}
    merged = per_site_calibration(candidates, choice)
    runner.switch.set_calibration(merged)
    sensitivity = {mv: measured[choice[(mv.layer, SITES[mv.site])]][mv] for mv in moves}
    proxy = {f"{mv.layer}.{SITES[mv.site]}": {m: measured[m][mv]["proxy"] for m in methods}
             for mv in moves}
    return StaticCalibrationChoice(merged, methods, proxy), sensitivity


# ---- phase 3: ordering

def move_gains(moves: Sequence[Move], options: Sequence[SitePrecision], table: LatencyTable,
               config: EncoderConfig, objective: str = "latency") -> dict[Move, float]:
    """What each move gains: milliseconds saved, or INT8 FLOPs for objective='int8_fraction'.

    Args:
      moves: the single-site moves.
      options: the search options (index 0 is the default a move replaces).
      table: per-site costs; the saving is the default's cost minus the move's.
      config: the model config (site FLOPs).
      objective: 'latency' or 'int8_fraction'.
    """
    flops = site_flops(config, 1)
    gains = {}
    for move in moves:
        site = SITES[move.site]
        if objective == "int8_fraction":
            gains[move] = float(flops[site])
        else:
            gains[move] = table.site(site, options[0]) - table.site(site, options[move.option])
    return gains


def order_moves(moves: Sequence[Move], proxy: Mapping[Move, float],
                gain: Mapping[Move, float]) -> list[Move]:
    """Phase 3: least harm per unit gained first.

    Moves that gain nothing (or lose) are dropped; the rest are sorted by
    `(proxy + ORDER_EPS) / gain`, ties keeping the order of `moves`.

    Args:
      moves: the single-site moves.
      proxy: each move's single-site proxy (its harm).
      gain: each move's gain (`move_gains`).
    """
    return sorted((m for m in moves if gain[m] > 0), key=lambda m: (proxy[m] + ORDER_EPS) / gain[m])


# ---- phase 4: tolerance greedy

def tolerance_measure(objective: Objective, fp32_metric: float | None, tolerance: float,
                      tolerance_mode: str, *, z: float = Z_ONE_SIDED_95
                      ) -> tuple[str, Callable[[Outputs], float], float]:
    """What the tolerance bounds: `(name, measure(outputs), allowed)`.

    With a metric: the guarded drop against FP32 (its margin `z` standard errors), allowed
    `tolerance * fp32_metric` (relative) or `tolerance` (absolute). Without one: the proxy,
    allowed `tolerance`.
    """
    if objective.metric_name is not None:
        allowed = tolerance * fp32_metric if tolerance_mode == "relative" else tolerance
        base = objective.reference
        return (f"{objective.metric_name} drop",
                lambda outputs: objective.guarded_drop(outputs, base, z=z), allowed)
    return "proxy", lambda outputs: objective.proxy(outputs), tolerance


def acceptance(objective: Objective, fp32_metric: float | None, tolerance: float,
               tolerance_mode: str) -> Callable[[Outputs], bool]:
    """The test a greedy map must pass (see the module docstring for the semantics).

    With a metric: the guarded drop against FP32 is at most `tolerance * fp32_metric`
    (relative) or `tolerance` (absolute). Without one: the proxy is at most `tolerance`.
    """
    _, measure, allowed = tolerance_measure(objective, fp32_metric, tolerance, tolerance_mode)
    return lambda outputs: measure(outputs) <= allowed


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


# ---- phase 5: latency greedy

def meets_latency(latency: float, target_ms: float) -> bool:
    """`latency <= target_ms`, up to `LATENCY_RTOL` of summation rounding."""
    return latency <= target_ms * (1.0 + LATENCY_RTOL)


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


def allocate(runner: Runner, strategy: str, sensitivity: Mapping[Move, dict],
             acceptable: Callable[[Outputs], bool],
             ceiling_ms: float | None = None) -> tuple[np.ndarray, Outputs | None]:
    """Phase 4 by the knapsack or revert strategy (`calibrate.search.allocation`), every map it
    measures recorded as `<strategy>#<n>`; with `ceiling_ms` (the latency of a map known to
    pass), only maps faster than it are evaluated."""
    harm, cost = harm_and_cost(sensitivity, runner.options, runner.table, runner.num_layers, SITES)
    count = [0]

    def evaluate(choices: np.ndarray) -> list[Outputs]:
        outputs = runner.run(choices)
        for c, out in zip(choices, outputs):
            count[0] += 1
            runner.record(f"{strategy}#{count[0]}", Kind.CANDIDATE, c, out)
        return outputs
    search_fn = knapsack_search if strategy == "knapsack" else revert_search
    options = {"probes": runner.chunk} if strategy == "knapsack" else {"chunk": runner.chunk}
    if ceiling_ms is not None:  # site costs leave out the table's fixed part
        options["below_ms"] = ceiling_ms - runner.table.other_ms
    return search_fn(evaluate, acceptable, harm, cost, **options)


def never_slower_than_presets(runner: Runner, choices: np.ndarray, outputs: Outputs | None,
                              passing: tuple[str, np.ndarray, Outputs, float] | None
                              ) -> tuple[np.ndarray, Outputs | None, str]:
    """The allocation's map, or the fastest preset that passes when that is strictly faster or
    the allocation found no map that passes (`outputs` None).

    The greedy adds moves in sensitivity order and stops at the first that fails, so it can end
    short of a preset that passes as a whole (e.g. all-INT8). Presets were scored first
    (`evaluate_presets`); `passing` is the fastest that passes (`fastest_passing_preset`), or
    None. This keeps the promise that the search returns at least that preset.

    Returns:
      `(choices, outputs, chosen_from)` with `chosen_from` 'greedy' or the preset's name.
    """
    if passing is not None and (outputs is None or
                                passing[3] < runner.latency_ms(choices) * (1.0 - LATENCY_RTOL)):
        name, preset_choices, preset_outputs, _ = passing  # faster beyond rounding
        return preset_choices, preset_outputs, name
    return choices, outputs, "greedy"


def guard_selection(runner: Runner, measure_at: Callable[[Outputs, float], float],
                    allowed: float) -> tuple[np.ndarray, Outputs | None, SelectionGuard]:
    """Phase 4b: the fastest allocation map that passes with the margin widened for the number
    of maps the allocation compared.

    Each map the greedy, knapsack or revert strategy measured passed or failed at the plain 95%
    margin; returning the fastest that passed favours one whose search-split score was lucky
    (on WNUT-16 such a map gained 4.1% entity F1 on the search split and lost 1.9% on test).
    The pick is judged again at `selection_z(maps compared)`; when it misses, the next-fastest
    map that passes there is kept. Outputs come from the runner's memory: nothing is run again.

    Args:
      runner: its `evaluated` holds the allocation's maps (`Kind.GREEDY`, `Kind.CANDIDATE`).
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
    ordered = sorted(maps.values(), key=lambda item: item[0].latency_ms)  # stable: first of equals
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


def fastest_passing_preset(runner: Runner, preset_outputs: Mapping[str, Outputs],
                           acceptable: Callable[[Outputs], bool]
                           ) -> tuple[str, np.ndarray, Outputs, float] | None:
    """`(name, choices, outputs, latency_ms)` of the fastest preset that passes (the first of
    equals, in `preset_maps` order), or None when none does."""
    best = None
    for name, out in preset_outputs.items():
        preset = runner.switch.choices_for(
            next(e.precision_map for e in runner.evaluated if e.kind == Kind.PRESET and e.name == name))
        ms = runner.latency_ms(preset)
        if (best is None or ms < best[3] * (1.0 - LATENCY_RTOL)) and acceptable(out):
            best = (name, preset, out, ms)
    return best


def _checked_options(tolerance: float, tolerance_mode: str, objective: str,
                     options: Sequence[str | SitePrecision]) -> tuple[SitePrecision, ...]:
    validate_tolerance(tolerance, tolerance_mode)
    if objective not in ("latency", "int8_fraction"):
        raise ValueError(f"{objective=} is not one of ('latency', 'int8_fraction')")
    options = tuple(as_precision(o) for o in options)
    if options[0].is_quantized:
        raise ValueError(f"the first option is the high-precision default; got {options[0]}")
    return options


def fastest_map(table: LatencyTable, options: Sequence[str | SitePrecision],
                num_layers: int) -> PrecisionMap:
    """The map with every site at its cheapest option (the first of equals) by `table`."""
    options = tuple(as_precision(o) for o in options)
    cells = {(layer, site): min(options, key=lambda o: table.site(site, o))
             for layer in range(num_layers) for site in SITES}
    return PrecisionMap.from_table(cells, num_layers, default=options[0])


def check_latency_target(target_ms: float, table: LatencyTable, options: Sequence[SitePrecision],
                         num_layers: int) -> None:
    """Raises ValueError when `target_ms` is not a positive finite number (NaN, Inf, 0, a
    negative or a non-number included) or is below the fastest map the options allow
    (estimated by `table`; a target equal to it, up to `LATENCY_RTOL`, is accepted)."""
    if isinstance(target_ms, bool) or not isinstance(target_ms, (int, float, np.integer, np.floating)):
        raise ValueError(f"latency_target_ms={target_ms!r} must be a positive number of milliseconds")
    if not (np.isfinite(target_ms) and target_ms > 0):
        raise ValueError(f"latency_target_ms={target_ms} must be a positive finite number of "
                         "milliseconds")
    floor = table.map_ms(fastest_map(table, options, num_layers))  # summed as the search sums
    if not meets_latency(floor, target_ms):
        raise ValueError(f"latency_target_ms={target_ms:.6g} is below the fastest "
                         f"possible map ({floor:.6g} ms estimated, {table.source}); expected a "
                         "target at or above it")


def search(model, data, *, tokenizer=None, tolerance: float = 0.01, tolerance_mode: str = "relative",
           objective: str = "latency", latency_target_ms: float | None = None,
           target: str | Target | None = None, options: Sequence[str | SitePrecision] | None = None,
           calibration=None, latency_table: LatencyTable | None = None, batch: int = 32, seq: int = 128,
           sensitivity_batches: int | None = 4, chunk: int = 8, mode: str = "map", seed: int = 0,
           progress: bool = True, strategy: str | None = None, stop_early: bool = True,
           selection_margin: bool = True) -> SearchResult:
    """Finds the precision map that meets a tolerance (or a latency target) on search data.

    Args:
      model: the float `EncoderModel`.
      data: a `samp_jax.tasks.Task` (its search split; e.g. from `samp_jax.tasks.load_task` on
        your own file), a registered task name ('snli', 'snli-embed', 'polarity', 'wnut16'), an
        `Objective`, or unlabelled batches (proxy only).
      tokenizer: the model's tokenizer; needed with a task.
      tolerance: allowed metric drop (see the module docstring for its semantics).
      tolerance_mode: 'relative' or 'absolute'.
      objective: 'latency' (order moves by proxy per ms saved) or 'int8_fraction' (per FLOP
        moved to INT8; only INT8 options count).
      latency_target_ms: if given, ignore the tolerance and reach this estimated latency.
      target: the device the map is for (`calibrate.search.targets`: 'auto' for this one, 'h100',
        'a100', 'l4', 'cpu'). It sets the options (FP8 only where the device has it), the dtype
        between sites, and the latency model: measured when running on the target, else a
        roofline estimate of its spec sheet. None: `DEFAULT_OPTIONS` at FP16 between sites,
        priced by `cached_table` (measured on a GPU, an H100 estimate on CPU).
      options: precisions each site may take; the first is the high-precision default. With a
        target: narrowed to what it offers (names as `Target.search_options` takes them).
      calibration: needed when an option has static scales (FP8, INT8 static): a
        `Calibration`, or several by method (`calibrate_candidates`), from which each static
        INT8 site takes the clip that harms the model least (`choose_static_calibration`). With
        a task and no calibration, the task's calibration split is calibrated with every
        method of `AUTO_METHODS` and each site picks.
      latency_table: per-site costs; default: the target's (`table_for_target`).
      batch, seq: the serving shape the latency model describes.
      sensitivity_batches: batches of search data used for single-site sensitivities (the proxy
        has low variance); None for all.
      chunk: candidates per compiled call.
      mode: 'map' (lax.map: one branch per site runs) or 'vmap'.
      progress: show a progress bar.
      strategy: how the tolerance is met (`calibrate.search.allocation.STRATEGIES`): 'greedy' (moves
        by harm per ms), 'knapsack' (minimum summed harm under a bracketed latency budget) or
        'revert' (all fastest, most harmful sites reverted). None: `DEFAULT_STRATEGY`
        (knapsack: the fastest maps within tolerance on the held-out test splits of
        docs/search.md), or 'greedy' for objective='int8_fraction' or a latency target. Knapsack and revert need
        objective='latency'; a latency target always uses the greedy's ordering.
      stop_early: with objective='latency' in tolerance mode, use what the presets showed:
        when the fastest passing preset is the fastest map the options allow, return it
        without measuring sensitivities; otherwise evaluate only maps that could be faster
        than it. False: run every phase in full (the result is the same or slower; it is
        kept for comparison).
      selection_margin: with a metric in tolerance mode, judge the allocation's pick with the
        margin widened for the number of maps it chose among (`guard_selection`), keeping the
        fastest map that passes there. False: keep the fastest map that passed at 95% (faster
        maps, more often outside the tolerance on unseen data).

    Returns:
      A `SearchResult`; in tolerance mode its `tolerance_met` is False (with a `UserWarning`)
      when not even the all-default map meets the tolerance -- that map is returned anyway.
      The chosen map is never slower (by the latency model) than the fastest preset that meets
      the tolerance: when the greedy ends slower, that preset is returned (`chosen_from`).

    Raises:
      ValueError: bad tolerance, objective, options, or a latency target that is not a
        positive finite number or is below the fastest map the options allow.
    """

    start = time.perf_counter()
    if strategy is None:
        strategy = DEFAULT_STRATEGY if objective == "latency" and latency_target_ms is None else "greedy"
    validate_strategy(strategy)
    if strategy != "greedy" and objective != "latency":
        raise ValueError(f"strategy={strategy!r} allocates under latency; objective={objective!r} "
                         "needs strategy='greedy'")
    target = None if target is None else resolve_target(target)
    if target is None:
        options, dtype = DEFAULT_OPTIONS if options is None else options, jnp.float16
    else:
        options, dtype = target.search_options(None if options is None else [str(o) for o in options]), target.dtype
    options = _checked_options(tolerance, tolerance_mode, objective, options)
    obj = _make_objective(model, data, tokenizer, seed)
    if calibration is None and any(o.needs_calibration for o in options) and \
            isinstance(data, (str, Task)):
        # static scales from the task's own calibration split (never the search or test split)
        task = get_task(data, seed=seed) if isinstance(data, str) else data
        calibration = calibrate_candidates(model, task.calibration_batches(tokenizer))
    calibration, candidates = _calibration_candidates(calibration, options)
    if latency_table is not None:
        table = latency_table
    elif target is None:
        table = cached_table(model, batch, seq)
    else:
        table = table_for_target(model, target, batch, seq, options=options)
    if latency_target_ms is not None:
        check_latency_target(latency_target_ms, table, options, model.config.num_layers)
    runner = Runner(SwitchableModel(model, options, calibration, dtype=dtype), obj, table, mode=mode, chunk=chunk,
                    bar=tqdm(desc=f"search {obj.name}", unit="map", disable=not progress))

    static_choice, static_sensitivity = None, {}
    if candidates is not None:
        static_choice, static_sensitivity = choose_static_calibration(
            runner, candidates, batches=sensitivity_batches, fp32_metric=obj.metric(obj.reference))
        calibration = static_choice.calibration
    reference, preset_outputs = evaluate_presets(runner)
    tolerance_met, ceiling_ms, stopped_early, selection = None, None, None, None
    if latency_target_ms is None:
        accept = acceptance(obj, reference.metric, tolerance, tolerance_mode)
        passing = fastest_passing_preset(runner, preset_outputs, accept)
        if stop_early and objective == "latency":
            ceiling_ms = None if passing is None else passing[3]
            floor_ms = table.map_ms(fastest_map(table, options, runner.num_layers))
            if ceiling_ms is not None and ceiling_ms <= floor_ms * (1.0 + LATENCY_RTOL):
                stopped_early = (f"preset {passing[0]!r} passes and no map is faster by the "
                                 "latency model")
    sensitivity, moves = {}, []
    if stopped_early is None:
        moves = single_site_moves(runner.num_layers, options, objective)
        measured = measure_sensitivity(runner, [m for m in moves if m not in static_sensitivity],
                                       batches=sensitivity_batches, fp32_metric=reference.metric)
        sensitivity = {m: static_sensitivity.get(m) or measured[m] for m in moves}
    ordered = order_moves(moves, {m: s["proxy"] for m, s in sensitivity.items()},
                          move_gains(moves, options, table, model.config, objective))
    if latency_target_ms is None:
        if stopped_early is not None:
            choices, outputs = np.zeros((runner.num_layers, len(SITES)), np.int32), None
        elif strategy == "greedy":
            choices, outputs = tolerance_greedy(runner, ordered, accept, ceiling_ms)
        else:
            choices, outputs = allocate(runner, strategy, sensitivity, accept, ceiling_ms)
        if selection_margin and stopped_early is None and obj.metric_name is not None:
            _, _, allowed = tolerance_measure(obj, reference.metric, tolerance, tolerance_mode)
            choices, outputs, selection = guard_selection(
                runner, lambda out, z: obj.guarded_drop(out, obj.reference, z=z), allowed)
    else:
        choices = latency_greedy(ordered, runner.latency_ms, latency_target_ms, runner.num_layers)
        outputs = None
    chosen_from = "greedy"
    if latency_target_ms is None:
        choices, outputs, chosen_from = never_slower_than_presets(runner, choices, outputs, passing)
    if outputs is None:
        # The all-default map was measured as a preset; a latency-target map never was.
        default_name = default_preset_name(options[0])
        outputs = preset_outputs[default_name] if not choices.any() else runner.run(choices[None])[0]
    if latency_target_ms is None:
        name, measure, allowed = tolerance_measure(obj, reference.metric, tolerance, tolerance_mode)
        found = measure(outputs)
        tolerance_met = bool(found <= allowed)
        if not tolerance_met:  # no move accepted, and the all-default map itself misses it
            warnings.warn(
                f"no map meets tolerance={tolerance} ({tolerance_mode}): even the most precise "
                f"candidate, {options[0]} at every site, has {name} {found:.6g} > allowed "
                f"{allowed:.6g}; returning that map (SearchResult.tolerance_met is False)",
                UserWarning, stacklevel=2)
    chosen = runner.record("chosen", Kind.CHOSEN, choices, outputs)
    runner.bar.close()
    return SearchResult(
        precision_map=chosen.precision_map, objective_name=obj.name, metric_name=obj.metric_name,
        fp32_metric=reference.metric, chosen=chosen,
        sensitivity={move_key(m, options): s for m, s in sensitivity.items()},
        evaluated=runner.evaluated, latency_table=table, options=tuple(str(o) for o in options),
        tolerance=tolerance, tolerance_mode=tolerance_mode,
        mode="latency_target" if latency_target_ms is not None else "tolerance",
        seconds=time.perf_counter() - start, compilations=runner.switch.traces,
        tolerance_met=tolerance_met, target=None if target is None else target.name,
        chosen_from=chosen_from if chosen_from != "greedy" else strategy, strategy=strategy,
        maps_run=runner.maps_run, stopped_early=stopped_early, selection=selection,
        calibration=calibration, static_calibration=static_choice)


def _calibration_candidates(calibration, options: Sequence[SitePrecision]):
    """`(calibration, candidates)`: a mapping of several calibrations becomes candidates for
    `choose_static_calibration` (None when no option is static INT8 or there is only one)
    and its first entry the calibration to start from; a single calibration stays as it is."""
    if not isinstance(calibration, Mapping):
        return calibration, None
    if not calibration:
        raise ValueError("calibration={} names no candidate calibrations")
    candidates = dict(calibration)
    first = next(iter(candidates.values()))
    if len(candidates) == 1 or not static_int8_options(options):
        return first, None
    return first, candidates
