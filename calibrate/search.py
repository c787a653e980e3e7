"""Self-adaptive mixed precision: sensitivity search and accuracy-decay-aware allocation.

1. **Sensitivity.** For every (layer, site) and every quantized option, the map that quantizes
   only that site is scored on the search data: the proxy (KL to FP32, or 1 - cosine) and,
   with labels, the metric drop. All candidates run through one compiled program
   (`calibrate.candidates.SwitchableModel`).
2. **Allocation.** (site, option) moves are ordered by proxy per millisecond saved (or per
   INT8 FLOP for `objective="int8_fraction"`). The greedy adds them one by one, re-measuring
   the *accumulated* map (interactions are not additive), and backs a move out when the
   tolerance would be crossed. Prefixes of the ordering are evaluated `chunk` at a time in
   the same compiled program, so a run costs about one chunk per rejected move.
3. **Latency target.** Alternatively, moves are added in the same order until the estimated
   latency is under the target: the most accurate map the greedy finds within it.

Tolerance semantics: `tolerance_mode="relative"` (default) accepts a map when
`drop <= tolerance * fp32_metric`; `"absolute"` when `drop <= tolerance` (metric units). The
drop is measured on the search split against the FP32 model and, for accuracy, includes a
one-sided 95% confidence margin of the paired per-example difference. Without labels the
tolerance bounds the proxy instead.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import numpy as np

from calibrate.candidates import SwitchableModel
from calibrate.objectives import (Objective, TaskObjective, UnlabelledObjective,
                                  snli_embed_objective)
from calibrate.latency import LatencyTable, cached_table, int8_flop_fraction, site_flops
from samp_jax.quant.precision import SITES, PrecisionMap, SitePrecision, as_precision
from tqdm.auto import tqdm

MAX_RELATIVE_TOLERANCE = 0.5


@dataclasses.dataclass
class Evaluated:
    """One map the search measured."""

    name: str
    kind: str  # 'reference', 'preset', 'sensitivity', 'greedy' or 'chosen'
    precision_map: PrecisionMap
    metric: float | None
    proxy: float
    latency_ms: float
    int8_fraction: float


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

    @property
    def fp16_latency_ms(self) -> float:
        return self.latency_table.map_ms(PrecisionMap.preset("fp16", self.precision_map.num_layers))

    def summary(self) -> dict:
        return {
            "objective": self.objective_name, "metric": self.metric_name,
            "fp32_search_metric": self.fp32_metric, "chosen_search_metric": self.chosen.metric,
            "chosen_proxy": self.chosen.proxy, "int8_flop_fraction": self.chosen.int8_fraction,
            "estimated_latency_ms": self.chosen.latency_ms,
            "estimated_speedup_vs_fp16": self.fp16_latency_ms / self.chosen.latency_ms,
            "latency_source": f"{self.latency_table.source} ({self.latency_table.device}, "
                              f"{self.latency_table.batch}x{self.latency_table.seq})",
            "tolerance": self.tolerance, "tolerance_mode": self.tolerance_mode, "mode": self.mode,
            "options": list(self.options), "maps_evaluated": len(self.evaluated),
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
    if isinstance(data, str):
        if tokenizer is None:
            raise ValueError(f"task {data!r} needs a tokenizer")
        if data == "snli-embed":
            return snli_embed_objective(model, tokenizer, seed=seed)
        return TaskObjective(model, data, tokenizer, seed=seed)
    return UnlabelledObjective(model, list(data))


def search(model, data, *, tokenizer=None, tolerance: float = 0.01, tolerance_mode: str = "relative",
           objective: str = "latency", latency_target_ms: float | None = None,
           options: Sequence[str | SitePrecision] = ("fp16", "int8-dynamic", "fp8_e4m3"),
           calibration=None, latency_table: LatencyTable | None = None, batch: int = 32, seq: int = 128,
           sensitivity_batches: int | None = 4, chunk: int = 8, mode: str = "map", seed: int = 0,
           progress: bool = True) -> SearchResult:
    """Finds the precision map that meets a tolerance (or a latency target) on search data.

    Args:
      model: the float `EncoderModel`.
      data: a task name ('snli', 'polarity', 'wnut16', or 'snli-embed' for zero-shot matching),
        an `Objective`, or unlabelled batches (proxy only).
      tokenizer: needed with a task name.
      tolerance: allowed metric drop (see the module docstring for its semantics).
      tolerance_mode: 'relative' or 'absolute'.
      objective: 'latency' (order moves by proxy per ms saved) or 'int8_fraction' (per FLOP
        moved to INT8; only INT8 options count).
      latency_target_ms: if given, ignore the tolerance and reach this estimated latency.
      options: precisions each site may take; the first is the high-precision default.
      calibration: required when an option has static scales (FP8, INT8 static).
      latency_table: per-site costs; default `samp_jax.latency.cached_table(model, batch, seq)`.
      batch, seq: the serving shape the latency model describes.
      sensitivity_batches: batches of search data used for single-site sensitivities (the proxy
        has low variance); None for all.
      chunk: candidates per compiled call.
      mode: 'map' (lax.map: one branch per site runs) or 'vmap'.
      progress: show a progress bar.

    Raises:
      ValueError: bad tolerance, objective, options, or an unreachable latency target.
    """

    start = time.perf_counter()
    validate_tolerance(tolerance, tolerance_mode)
    if objective not in ("latency", "int8_fraction"):
        raise ValueError(f"{objective=} is not one of ('latency', 'int8_fraction')")
    options = tuple(as_precision(o) for o in options)
    if options[0].is_quantized:
        raise ValueError(f"the first option is the high-precision default; got {options[0]}")
    obj = _make_objective(model, data, tokenizer, seed)
    table = latency_table or cached_table(model, batch, seq)
    config = model.config
    num_layers = config.num_layers
    fastest = np.array([[min(table.site(s, o) for o in options) for s in SITES]] * num_layers)
    if latency_target_ms is not None:
        floor = table.other_ms + fastest.sum()
        if latency_target_ms < floor:
            raise ValueError(f"latency target {latency_target_ms:.3f} ms is below the fastest "
                             f"possible map ({floor:.3f} ms estimated, {table.source})")
    switch = SwitchableModel(model, options, calibration)
    bar = tqdm(desc=f"search {obj.name}", unit="map", disable=not progress)
    evaluated: list[Evaluated] = []

    def run(choices: np.ndarray, batches=None) -> list[list[np.ndarray]]:
        batches = obj.batches if batches is None else batches
        per_batch = [switch.evaluate(choices, b, mode=mode, chunk=chunk) for b in batches]
        bar.update(len(choices))
        return [[out[c] for out in per_batch] for c in range(len(choices))]

    def record(name, kind, choices, outputs) -> Evaluated:
        pmap = switch.map_for(choices)
        e = Evaluated(name, kind, pmap, obj.metric(outputs), obj.proxy(outputs), table.map_ms(pmap),
                      int8_flop_fraction(pmap, config))
        evaluated.append(e)
        return e

    fp32_map = PrecisionMap.preset("fp32", num_layers)
    fp32_metric = obj.metric(obj.reference)
    evaluated.append(Evaluated("fp32", "reference", fp32_map, fp32_metric, 0.0,
                               table.map_ms(fp32_map), 0.0))

    # ---- presets (for the Pareto report), fp16 first
    presets = {"fp16": PrecisionMap.preset("fp16", num_layers)}
    for name, pmap in (("quant_ffn_only", PrecisionMap.preset("quant_ffn_only", num_layers)),
                       ("fully_quant", PrecisionMap.preset("fully_quant", num_layers)),
                       ("fp8", PrecisionMap.preset("fp8", num_layers))):
        if all(p in options for _, p in pmap.items()):
            presets[name] = pmap
    preset_choices = np.stack([switch.choices_for(p) for p in presets.values()])
    preset_outputs = run(preset_choices)
    for name, choices, outputs in zip(presets, preset_choices, preset_outputs):
        record(name, "preset", choices, outputs)
    current_outputs = preset_outputs[0]  # outputs of `current` below (all FP16), when known

    # ---- single-site sensitivities
    moves = [(layer, si, oi) for layer in range(num_layers) for si in range(len(SITES))
             for oi in range(1, len(options))
             if objective == "latency" or options[oi].precision == "int8"]
    sens_choices = np.zeros((len(moves), num_layers, len(SITES)), np.int32)
    for i, (layer, si, oi) in enumerate(moves):
        sens_choices[i, layer, si] = oi
    sens_obj = obj.subset(sensitivity_batches)
    sens_outputs = run(sens_choices, sens_obj.batches)
    sensitivity = {}
    for (layer, si, oi), outputs in zip(moves, sens_outputs):
        entry = {"proxy": sens_obj.proxy(outputs)}
        metric = sens_obj.metric(outputs)
        if metric is not None and fp32_metric is not None:
            entry["drop"] = fp32_metric - metric
        sensitivity[f"{layer}.{SITES[si]}/{options[oi]}"] = entry

    # ---- ordering: least harm per unit gained
    def gain(layer, si, oi) -> float:
        site = SITES[si]
        if objective == "int8_fraction":
            return float(site_flops(config, 1)[site])
        return table.site(site, options[0]) - table.site(site, options[oi])

    ordered = sorted((m for m in moves if gain(*m) > 0),
                     key=lambda m: (sensitivity[f"{m[0]}.{SITES[m[1]]}/{options[m[2]]}"]["proxy"] + 1e-12) / gain(*m))

    base_outputs = obj.reference
    if obj.metric_name is not None:
        allowed = tolerance * fp32_metric if tolerance_mode == "relative" else tolerance

        def acceptable(outputs) -> bool:
            return obj.guarded_drop(outputs, base_outputs) <= allowed
    else:
        def acceptable(outputs) -> bool:
            return obj.proxy(outputs) <= tolerance

    current = np.zeros((num_layers, len(SITES)), np.int32)
    assigned = np.zeros((num_layers, len(SITES)), bool)
    if latency_target_ms is not None:
        for layer, si, oi in ordered:
            if table.map_ms(switch.map_for(current)) <= latency_target_ms:
                break
            if not assigned[layer, si]:
                current[layer, si], assigned[layer, si] = oi, True
                current_outputs = None
    else:
        pending = list(ordered)
        while pending:
            group, prefix, trial = [], [], current.copy()
            taken = assigned.copy()
            for move in pending:
                layer, si, oi = move
                if taken[layer, si]:
                    continue
                trial = trial.copy()
                trial[layer, si] = oi
                taken[layer, si] = True
                group.append(move)
                prefix.append(trial)
                if len(group) == chunk:
                    break
            if not group:
                break
            outputs = run(np.stack(prefix))
            accepted = 0
            for k, (move, out) in enumerate(zip(group, outputs)):
                record(f"greedy+{move[0]}.{SITES[move[1]]}/{options[move[2]]}", "greedy", prefix[k], out)
                if not acceptable(out):
                    break
                accepted = k + 1
            for layer, si, oi in group[:accepted]:
                current[layer, si], assigned[layer, si] = oi, True
            if accepted:
                current_outputs = outputs[accepted - 1]
            consumed = group[:accepted + 1]  # accepted moves, plus the one that failed
            pending = [m for m in pending if m not in consumed and not assigned[m[0], m[1]]]
    if current_outputs is None:  # latency-target mode moves without measuring
        current_outputs = run(current[None])[0]
    chosen = record("chosen", "chosen", current, current_outputs)
    bar.close()
    return SearchResult(
        precision_map=chosen.precision_map, objective_name=obj.name, metric_name=obj.metric_name,
        fp32_metric=fp32_metric, chosen=chosen, sensitivity=sensitivity, evaluated=evaluated,
        latency_table=table, options=tuple(str(o) for o in options), tolerance=tolerance,
        tolerance_mode=tolerance_mode, mode="latency_target" if latency_target_ms is not None else "tolerance",
        seconds=time.perf_counter() - start, compilations=switch.traces)

