"""Static activation clips for the search, in one place: the calibration it runs with
(`search_calibration`: given, or calibrated on the task's calibration split) and, from several
candidate calibrators, each static INT8 site's clip (`choose_static_calibration`, phase 0)."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from calibrate.calibration.api import calibrate, calibrate_candidates, per_site_calibration
from calibrate.search.phases import measure_sensitivity
from calibrate.search.runner import Move, Runner
from samp_jax.core.precision import SITES, SitePrecision
from samp_jax.tasks import Task, get_task
from samp_jax.tasks.task import CALIBRATION_EXAMPLES

AUTO = "auto"  # every method of `calibrate.AUTO_METHODS`, each static site keeping its least harmful


def calibrate_for_search(model, batches, method: str = AUTO):
    """What a search calibrates with: for 'auto', one calibration per method of
    `calibrate.AUTO_METHODS` (the search keeps each static site's least harmful clip); for a
    method name, that calibrator's clips at every site."""
    if method == AUTO:
        return calibrate_candidates(model, batches)
    return calibrate(model, batches, method)


def search_calibration(model, data, tokenizer, calibration, options: Sequence[SitePrecision], *,
                       method: str = AUTO, seed: int = 0,
                       examples: int | None = CALIBRATION_EXAMPLES):
    """`(calibration, candidates)`: the calibration the search starts from and, when each static
    INT8 site picks among several, the candidates (`choose_static_calibration`), else None.

    Without a `calibration`, when an option has static scales and `data` is a task (or a
    registered task name), the first `examples` rows of the task's calibration split (None:
    all) are calibrated (`calibrate_for_search` with `method`): never the search or the test
    split.
    """
    if calibration is None and any(o.needs_calibration for o in options) and \
            isinstance(data, (str, Task)):
        task = get_task(data, seed=seed) if isinstance(data, str) else data
        batches = task.calibration_batches(tokenizer, max_examples=examples)
        calibration = calibrate_for_search(model, batches, method)
    return calibration_candidates(calibration, options)


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


def calibration_candidates(calibration, options: Sequence[SitePrecision]):
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
