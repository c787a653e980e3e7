"""What a search returns: the chosen map and everything measured on the way."""

from __future__ import annotations

import dataclasses

import numpy as np

from calibrate.calibration.api import Calibration
from calibrate.search.latency import LatencyTable
from calibrate.search.plan import SearchPlan
from calibrate.search.runner import Evaluated, Kind
from calibrate.search.static_clips import StaticCalibrationChoice
from samp_jax.core.precision import PrecisionMap
from samp_jax.tasks.metrics import get_metric
from samp_jax.tasks.truncation import Truncation


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


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower latency and higher value is better), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_file(index: int) -> str:
    """Where a search's output folder holds the precision map of its `index`-th Pareto-front
    map (0: the fastest): `pareto/01.json`, ... (`samp-jax eval --precision OUT/pareto/01.json`)."""
    return f"pareto/{index + 1:02d}.json"


def pareto_entries(evaluated: list[Evaluated], metric_name: str | None) -> list[Evaluated]:
    """The maps on the Pareto front of estimated latency against the search-split metric (or
    against the proxy, lower being better, without a metric), fastest first; the FP32
    reference and maps without a value are left out. Of maps with equal latency and value the
    chosen one stands for them (it is the map the search returned), else the first recorded."""
    metric = None if metric_name is None else get_metric(metric_name)
    if metric is None:
        value = lambda e: -e.proxy  # noqa: E731
    else:
        sign = metric.direction
        value = lambda e: None if e.metric is None else sign * e.metric  # noqa: E731
    entries = [e for e in evaluated if e.kind != Kind.REFERENCE and value(e) is not None]
    entries.sort(key=lambda e: e.kind != Kind.CHOSEN)  # stable: first among ties, by kind
    return [entries[i] for i in pareto_front([(e.latency_ms, value(e)) for e in entries])]


@dataclasses.dataclass(frozen=True)
class AttentionChoice:
    """What the attention step of a tolerance search did (`calibrate.search.attention_step`).

    Attributes:
      priced: {layer: (float ms, INT8 ms)} of each layer's attention by the latency table;
        empty when the table prices no attention.
      offered: the layers whose INT8 attention the table priced cheaper (tried when the step ran).
      int8_layers: the layers whose attention the chosen map runs INT8.
      tried: each map tried: (its INT8-attention layers, whether it passed).
      maps_compared: the maps the step ran.
      z: the margin's z each was judged at (widened for every map compared), or None: the
        plain check (no selection margin, or no metric).
      note: one line: what was chosen, or why nothing was tried.
    """

    priced: dict[int, tuple[float, float]]
    offered: tuple[int, ...]
    int8_layers: tuple[int, ...]
    tried: tuple[tuple[tuple[int, ...], bool], ...]
    maps_compared: int
    z: float | None
    note: str

    def as_json(self) -> dict:
        return {"int8_layers": list(self.int8_layers), "offered": list(self.offered),
                "note": self.note, "maps_compared": self.maps_compared, "z": self.z,
                "tried": [{"layers": list(layers), "passes": ok} for layers, ok in self.tried],
                "priced_ms": {str(layer): {"float": f, "int8": i}
                              for layer, (f, i) in self.priced.items()}}


@dataclasses.dataclass(frozen=True)
class FloatOverflow:
    """A float option the model overflowed on the search split: with every GEMM site and the
    values between sites in it, `non_finite_rows` of `rows` gave NaN or Inf outputs (values
    past its range: FP16's largest is 65,504), so no answer could be read from them.

    Attributes:
      float_option: the float precision ('fp16', 'bf16', 'fp32').
      non_finite_rows: the search split's rows with NaN or Inf outputs.
      rows: the search split's rows.
    """

    float_option: str
    non_finite_rows: int
    rows: int

    def describe(self) -> str:
        """One line: what overflowed, and on how many rows."""
        verb = "gives" if self.non_finite_rows == 1 else "give"
        return (f"the model overflows {self.float_option}: with every site and the values "
                f"between sites in {self.float_option}, {self.non_finite_rows} of {self.rows} "
                f"search rows {verb} NaN or Inf outputs (values past its range)")


@dataclasses.dataclass(frozen=True)
class ToleranceCheck:
    """What "within tolerance" measured for one map on the search split.

    With a metric, the tolerance bounds `drop + margin`: the metric's drop against FP32 (the
    direction of improvement taken into account: a gain is a negative drop) plus a one-sided
    95% margin for the examples' noise (`Objective.guarded_drop`). Without one it bounds the
    proxy (`drop` and `margin` None).

    Attributes:
      map_name: the preset's name, or 'chosen'.
      drop: the metric drop against FP32, or None without a metric.
      bounded: what the tolerance bounds: `drop + margin`, or the proxy.
      allowed: the largest `bounded` the tolerance allows.
    """

    map_name: str
    drop: float | None
    bounded: float
    allowed: float
    z: float | None = None  # the margin's z when wider than 95% (a pick among many maps)

    @property
    def margin(self) -> float | None:
        """The margin added to the drop (one-sided 95%, or at `z`), or None without a metric."""
        return None if self.drop is None else self.bounded - self.drop

    @property
    def passes(self) -> bool:
        return self.bounded <= self.allowed

    def as_json(self) -> dict:
        return {"map": self.map_name, "drop": self.drop, "margin": self.margin,
                "bounded": self.bounded, "allowed": self.allowed, "passes": self.passes} | (
            {} if self.z is None else {"z": self.z})


@dataclasses.dataclass
class SearchResult:
    """The chosen map and everything measured on the way."""

    def __repr__(self) -> str:
        """The outcome in one line (`summary()` has the rest, `evaluated` every map)."""
        chosen = self.chosen
        return (f"SearchResult(objective={self.objective_name!r}, {self.metric_name or 'metric'}"
                f"={chosen.metric!r} (FP32 {self.fp32_metric!r}), tolerance_met="
                f"{self.tolerance_met}, int8_fraction={chosen.int8_fraction:.2f}, "
                f"estimated_latency_ms={chosen.latency_ms:.4g}, maps_evaluated="
                f"{len(self.evaluated)}, precision_map=PrecisionMap(default="
                f"{self.precision_map.default}, {len(self.precision_map.rules)} rule(s)))")

    precision_map: PrecisionMap
    objective_name: str
    metric_name: str | None
    proxy_name: str  # the objective's proxy (`samp_jax.tasks.PROXIES`): what sensitivities rank by
    fp32_metric: float | None
    chosen: Evaluated
    sensitivity: dict[str, dict[str, float]]
    evaluated: list[Evaluated]
    latency_table: LatencyTable
    options: tuple[str, ...]
    tolerance: float
    tolerance_mode: str
    mode: str
    search_objective: str  # what "faster" means: 'latency', or 'int8_fraction' (more INT8)
    seconds: float
    compilations: int
    # Tolerance mode: whether the chosen map meets the tolerance. False only when not even the
    # all-default map (the most precise candidate, e.g. FP16 everywhere) does: it is returned
    # anyway, and the search warns. None in latency-target mode (no tolerance applies).
    tolerance_met: bool | None = None
    target: str | None = None  # the device the map and the latency model are for
    chosen_from: str = "greedy"  # the strategy, or the preset that was faster and passed
    strategy: str = "greedy"  # the allocation strategy that ran (`calibrate.search.strategy`)
    maps_run: int = 0  # maps run on the whole search data (sensitivity subsets not counted)
    subset_maps_run: int = 0  # single-site maps run on a subset (clip choice, sensitivity)
    # sensitivity batches run from each move's own layer, and with the full forward
    # (`SwitchableModel.resume_pays` chose; the same sensitivities either way)
    sensitivity_resumed_batches: int = 0
    sensitivity_full_batches: int = 0
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
    # Tolerance mode: each preset's and the chosen map's tolerance check on the search split
    # (the chosen map's last); empty in latency-target mode.
    tolerance_checks: tuple[ToleranceCheck, ...] = ()
    # The maps on the Pareto front (`pareto_entries`), fastest first, each as the search writes
    # a map (static sites' calibrators and clips in it), by the name of its `evaluated` entry.
    pareto_maps: dict[str, PrecisionMap] = dataclasses.field(default_factory=dict)
    # Latency-target mode: the estimated latency the map had to reach (the tolerance is not
    # applied then); None in tolerance mode.
    latency_target_ms: float | None = None
    # What cutting the search split's rows at the task's length left out (its evaluation's
    # `Truncation`), or None for inputs given as batches.
    search_truncation: Truncation | None = None
    # The float options the model overflowed on the search split, in the order tried: the
    # search moved on to the target's next float option after each (`options[0]` is the one
    # it ran with), unless the options named it or it was the last.
    float_overflows: tuple[FloatOverflow, ...] = ()
    # The plan the search ran with (its target's float option, options and latency table),
    # or None for a result built by hand.
    plan: SearchPlan | None = None
    # Tolerance mode: what the attention step did (INT8 attention in which layers, or why it
    # was not offered); None in latency-target mode and for a result built by hand.
    attention: AttentionChoice | None = None

    @property
    def default_option(self) -> str:
        """The float option every site falls back to ('fp16' on a GPU target unless the model
        overflowed it or the options named another; 'fp32' on a CPU target)."""
        return self.options[0]

    @property
    def default_latency_ms(self) -> float:
        """Estimated latency of the all-default map (every site at `default_option`)."""
        pmap = PrecisionMap.from_table({}, self.precision_map.num_layers, default=self.default_option)
        return self.latency_table.map_ms(pmap)

    def pareto_summary(self) -> list[dict]:
        """Each map on the Pareto front, fastest first: its name, the file `write_report` saves
        its precision map in (`pareto_file`), kind, search-split metric and proxy, estimated
        latency, INT8 FLOP fraction and precision map (the JSON `PrecisionMap.from_dict` reads)."""
        entries = {e.name: e for e in self.evaluated}
        return [{"map": name, "file": pareto_file(index), "kind": str(entries[name].kind),
                 "metric": entries[name].metric,
                 "proxy": entries[name].proxy, "estimated_latency_ms": entries[name].latency_ms,
                 "int8_flop_fraction": entries[name].int8_fraction,
                 "precision_map": pmap.to_dict()}
                for index, (name, pmap) in enumerate(self.pareto_maps.items())]

    def summary(self) -> dict:
        return {
            "objective": self.objective_name, "metric": self.metric_name,
            "fp32_search_metric": self.fp32_metric, "chosen_search_metric": self.chosen.metric,
            "chosen_proxy": self.chosen.proxy, "int8_flop_fraction": self.chosen.int8_fraction,
            "estimated_latency_ms": self.chosen.latency_ms,
            "default_option": self.default_option,
            "float_overflows": [dataclasses.asdict(o) for o in self.float_overflows],
            "estimated_speedup_vs_default": self.default_latency_ms / self.chosen.latency_ms,
            "target": self.target,
            "chosen_from": self.chosen_from, "strategy": self.strategy,
            "search_objective": self.search_objective,
            "latency_source": self.latency_table.describe(),
            "latency_executed": self.latency_table.executed_by_precision(),
            "tolerance": None if self.latency_target_ms is not None else self.tolerance,
            "tolerance_mode": None if self.latency_target_ms is not None else self.tolerance_mode,
            "latency_target_ms": self.latency_target_ms, "mode": self.mode,
            "tolerance_met": self.tolerance_met,
            "options": list(self.options), "maps_evaluated": len(self.evaluated),
            "maps_run": self.maps_run, "subset_maps_run": self.subset_maps_run,
            "sensitivity_batches": {"resumed": self.sensitivity_resumed_batches,
                                    "full_forward": self.sensitivity_full_batches},
            "stopped_early": self.stopped_early,
            "selection": None if self.selection is None else {
                **dataclasses.asdict(self.selection), "stepped_back": self.selection.stepped_back},
            "calibration": None if self.calibration is None else self.calibration.method,
            "calibration_tokens": None if self.calibration is None else self.calibration.tokens,
            "static_calibration": None if self.static_calibration is None else {
                "methods": list(self.static_calibration.methods),
                "sites_per_method": self.static_calibration.counts(),
                "site_methods": dict(self.static_calibration.calibration.options["methods"])},
            "tolerance_checks": [check.as_json() for check in self.tolerance_checks],
            "attention": None if self.attention is None else self.attention.as_json(),
            "pareto_front": self.pareto_summary(),
            "compilations": self.compilations, "search_seconds": self.seconds,
        }
