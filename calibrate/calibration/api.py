"""`calibrate(model, batches, method=...)`: static activation scales for every GEMM site."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from calibrate.calibration.calibrators import TINY_AMAX, HistogramStats, get_calibrator
from calibrate.calibration.observers import SiteKey, channel_absmax_reduce, histogram_reduce, make_pass
from samp_jax.core.errors import SampJaxError
from samp_jax.models.model import check_ids
from samp_jax.tasks.task import check_model
from samp_jax.core.precision import CALIBRATOR_NAMES, SITES, PrecisionMap
from samp_jax.core.primitives import smoothing_factors
from samp_jax.core.progress import progress_bar
from samp_jax.ptq.quantized import SiteCalibration
from samp_jax.ptq.site_calibration import clips_for_model, model_fingerprint

# Sites whose input is a LayerNorm output, where per-channel outliers live (Bondarenko et al.).
SMOOTHABLE_SITES = ("qkv", "ffn_in")
# Fewer real tokens than this give scales that follow a handful of activations (one token gave
# a cosine of 0.81 to FP32): `calibrate` warns below it.
MIN_CALIBRATION_TOKENS = 512
# The calibrators a search tries at every static INT8 site (`calibrate_candidates`), the first
# kept on ties: MSE balances clipping against rounding, percentile clips the outliers most
# sites can lose, minmax keeps every outlier (the sites that cannot lose them).
AUTO_METHODS = ("mse", "percentile", "minmax")


class CalibrationError(SampJaxError, ValueError):
    """The calibration data cannot produce scales (empty, all padding, or non-finite)."""


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Per-site activation statistics for `samp_jax.quantize`.

    Attributes:
      method: the calibrator used for INT8 clips ('minmax', 'percentile', 'mse', 'entropy'),
        or 'per-site' (`per_site_calibration`: `options['methods']` names each site's).
      options: the calibrator's options (e.g. {'p': 99.99}).
      smoothing: SmoothQuant alpha, or None.
      sites: {(layer, site): SiteCalibration}.
      tokens: real tokens observed.
      model_fingerprint: `samp_jax.ptq.model_fingerprint` of the model observed (None: not
        known), which `map_with_calibration` writes beside the clips.
    """

    method: str
    options: Mapping[str, Any]
    smoothing: float | None
    sites: Mapping[SiteKey, SiteCalibration]
    tokens: int
    model_fingerprint: str | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (stored in a quantized model's sidecar); a calibration of no
        site names no method (no pass ran: no static site, or each one's clip is stored in
        the precision map)."""
        if not self.sites and self.smoothing is None:
            return {"method": None, "options": {}, "smoothing": None, "tokens": self.tokens,
                    "sites": {}, "note": "no pass ran: no static site needed statistics (none, "
                                         "or each one's clip is stored in the precision map)"}
        return {"method": self.method, "options": dict(self.options), "smoothing": self.smoothing,
                "tokens": self.tokens, "sites": {f"{l}.{s}": {"absmax": c.absmax, "amax": c.amax}
                                                 for (l, s), c in self.sites.items()}}


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the two observation passes saw: enough to pick clips with any calibrator.

    Attributes:
      smoothing: SmoothQuant alpha the histograms were taken under, or None.
      input_scales: per site, the `1 / s` smoothing scale (ones where nothing is smoothed).
      hist_max: per site, the max |x| of the (smoothed) quantizer input: the histogram range.
      counts: per site, the histogram of |x| over `[0, hist_max]`.
      tokens: real tokens observed.
      model_fingerprint: `samp_jax.ptq.model_fingerprint` of the model observed.
    """

    smoothing: float | None
    input_scales: Mapping[SiteKey, np.ndarray]
    hist_max: Mapping[SiteKey, float]
    counts: Mapping[SiteKey, np.ndarray]
    tokens: int
    model_fingerprint: str | None = None

    def calibration(self, method: str = "percentile", **method_options) -> Calibration:
        """Per-site clips picked by `method` from these statistics (no pass runs)."""
        calibrator = get_calibrator(method, **method_options)
        sites = {}
        for key in sorted(self.counts):
            stats = HistogramStats(counts=self.counts[key], hist_max=self.hist_max[key],
                                   absmax=self.hist_max[key])
            smoothed = self.smoothing is not None and key[1] in SMOOTHABLE_SITES
            sites[key] = SiteCalibration(absmax=self.hist_max[key], amax=float(calibrator(stats)),
                                         input_scale=self.input_scales[key] if smoothed else None)
        return Calibration(method, dict(method_options), self.smoothing, sites, self.tokens,
                           self.model_fingerprint)


def calibrate(model, batches: Iterable[Mapping[str, np.ndarray]], method: str = "percentile", *,
              precision_map: PrecisionMap | None = None, smoothing: float | None = None,
              bins: int = 2048, progress: bool = False, **method_options) -> Calibration:
    """Collects activation statistics over calibration batches and picks per-site clips.

    Two jit-compiled passes over the batches (see `calibrate.calibration.observers`): per-channel absmax,
    then a histogram of the quantizer's input, from which `method` picks the INT8 clip.

    Args:
      model: the float `EncoderModel` to calibrate.
      batches: dicts with `input_ids`, `attention_mask`, `token_type_ids` (`[batch, seq]`).
        Keep the shapes few (pad to length buckets): each new shape compiles once.
      method: 'minmax', 'percentile', 'mse' or 'entropy': the calibrator of every site whose
        rule in `precision_map` names none.
      precision_map: when given, its rules' calibration is followed: a site whose rule names a
        calibrator (`"calibration": "mse"`) takes that one's clip (the result is then a
        'per-site' calibration); a site with a stored clip needs no statistics (`quantize`
        uses the clip), unless the map's clips were measured on another model (its
        `model_fingerprint` is not this model's: `quantize` does not use them, so they are
        calibrated here). When no static site is left to calibrate and there is no smoothing,
        no pass runs.
      smoothing: SmoothQuant alpha in [0, 1] for `qkv` and `ffn_in`, or None.
      bins: histogram bins.
      progress: show a progress bar over the two passes.
      **method_options: passed to the calibrator (e.g. `p=99.99` for percentile).

    Warns:
      UserWarning: fewer than `MIN_CALIBRATION_TOKENS` (512) real tokens, too few for stable
        scales.

    Raises:
      CalibrationError: no batches, no real tokens, or NaN/Inf activations (names the site).
      ValueError: unknown method (given or named by the map) or bad smoothing alpha, smoothing
        with a map that stores clips (chosen without it), or a batch the model cannot embed:
        ids outside its vocabulary (or token types outside its type table), or a mask that is
        not 0/1 (`samp_jax.models.model.check_ids`; names the batch).
    """
    get_calibrator(method, **method_options)  # an unknown method fails before any pass
    if precision_map is not None:  # clips of another model are calibrated (`quantize` warns)
        precision_map, _ = clips_for_model(precision_map, model)
    site_methods = {} if precision_map is None else map_site_methods(precision_map, smoothing)
    if precision_map is not None and smoothing is None and not sites_to_calibrate(precision_map):
        return Calibration(method, method_options, None, {}, 0)
    observed = observe(model, batches, smoothing=smoothing, bins=bins, progress=progress,
                       description=f"calibrate ({method})")
    if not site_methods:
        return observed.calibration(method, **method_options)
    candidates = {method: observed.calibration(method, **method_options)}
    for name in dict.fromkeys(site_methods.values()):
        candidates.setdefault(name, observed.calibration(name))
    return per_site_calibration(candidates, site_methods)


def sites_to_calibrate(precision_map: PrecisionMap) -> list[SiteKey]:
    """The static sites of `precision_map` that store no clip (they need statistics)."""
    return [key for key, p in precision_map.items() if p.needs_calibration and p.clip is None]


def map_site_methods(precision_map: PrecisionMap, smoothing: float | None) -> dict[SiteKey, str]:
    """The calibrator each site's rule names, for the sites that store no clip.

    Raises:
      ValueError: an unknown calibrator (named with its site), or smoothing with stored clips.
    """
    if smoothing is not None and precision_map.stored_clips():
        raise ValueError(f"smoothing={smoothing}: the precision map stores clips chosen without "
                         "smoothing; calibrate without smoothing (or use a map without clips)")
    methods = {}
    for key, name in precision_map.site_methods().items():
        if precision_map[key].clip is None:
            try:
                get_calibrator(name)
            except ValueError as e:
                raise ValueError(f"precision map, site {key[0]}.{key[1]}: {e}") from None
            methods[key] = name
    return methods


def map_with_calibration(precision_map: PrecisionMap, calibration: Calibration | None, *,
                         compute_dtype: str | None = None) -> PrecisionMap:
    """`precision_map` with every static site's calibrator and clip from `calibration` written
    in (`PrecisionMap.with_calibration`), and `compute_dtype`: a map that alone rebuilds the
    model `quantize(model, precision_map, calibration, dtype=compute_dtype)` builds. A map names
    only calibrators `calibrate` runs: a clip from a calibration of another name (one the
    caller made and named) is written alone. With the clips goes the calibration's
    `model_fingerprint` (the model they were measured on), when it has one.

    Raises:
      ValueError: a smoothed calibration (its per-channel scales have no place in a map).
    """
    if calibration is not None and calibration.smoothing is not None:
        raise ValueError("a smoothed calibration cannot be written into a precision map")
    methods, clips = {}, {}
    per_site = calibration.options.get("methods", {}) if calibration is not None else {}
    for (layer, site), p in precision_map.items():
        stats = None if calibration is None else calibration.sites.get((layer, site))
        if not p.needs_calibration or stats is None:
            continue
        if p.precision == "int8":
            name = per_site.get(f"{layer}.{site}", calibration.method)
            if name in CALIBRATOR_NAMES:
                methods[(layer, site)] = name
            clips[(layer, site)] = stats.amax
        else:  # FP8: max |x|, whatever the calibrator
            clips[(layer, site)] = stats.absmax
    fingerprint = getattr(calibration, "model_fingerprint", None) if clips else None
    return precision_map.with_calibration(methods, clips, compute_dtype=compute_dtype,
                                          model_fingerprint=fingerprint)


def calibrate_candidates(model, batches: Iterable[Mapping[str, np.ndarray]],
                         methods: Sequence[str] = AUTO_METHODS, *, smoothing: float | None = None,
                         bins: int = 2048, progress: bool = False) -> dict[str, Calibration]:
    """One `Calibration` per method, all from the same two observation passes.

    For a search that picks each site's static clip from several calibrators
    (`calibrate.search.static_clips.choose_static_calibration`): clipping outliers (percentile, entropy)
    is what most sites want and what breaks a few (Bondarenko et al. 2021), so no single
    method is right for every site of every model.

    Raises:
      ValueError: no methods, a repeated or unknown method (before any pass runs).
      CalibrationError: as `calibrate`.
    """
    methods = tuple(methods)
    if not methods or len(set(methods)) != len(methods):
        raise ValueError(f"methods={methods!r} must name at least one calibrator, each once")
    for method in methods:
        get_calibrator(method)
    observed = observe(model, batches, smoothing=smoothing, bins=bins, progress=progress,
                       description=f"calibrate ({', '.join(methods)})")
    return {method: observed.calibration(method) for method in methods}


def per_site_calibration(candidates: Mapping[str, Calibration],
                         choice: Mapping[SiteKey, str]) -> Calibration:
    """A `Calibration` that takes each site's clip from the candidate `choice` names.

    Args:
      candidates: calibrations of the same observation (`calibrate_candidates`), by method.
      choice: the method per site; a site it leaves out keeps the first candidate's clip.

    Returns:
      A calibration with method `'per-site'` whose options record every site's method
      (`{'methods': {'0.qkv': 'mse', ...}}`), so a quantized model's sidecar says which.

    Raises:
      ValueError: no candidates, candidates from different observations (sites, tokens or
        smoothing differ), or a choice that names an unknown site or method.
    """
    if not candidates:
        raise ValueError("per_site_calibration needs at least one candidate calibration")
    first = next(iter(candidates.values()))
    for method, c in candidates.items():
        if set(c.sites) != set(first.sites) or c.tokens != first.tokens or c.smoothing != first.smoothing:
            raise ValueError(f"candidate {method!r} was not calibrated on the same observation "
                             f"as {first.method!r} (sites, tokens or smoothing differ)")
    for key, method in choice.items():
        if key not in first.sites:
            raise ValueError(f"choice names site {key}, which the calibration does not have")
        if method not in candidates:
            raise ValueError(f"choice puts site {key} at {method!r}, not one of {sorted(candidates)}")
    default = next(iter(candidates))
    methods = {key: choice.get(key, default) for key in sorted(first.sites)}
    sites = {key: candidates[method].sites[key] for key, method in methods.items()}
    return Calibration("per-site", {"methods": {f"{l}.{s}": m for (l, s), m in methods.items()}},
                       first.smoothing, sites, first.tokens, first.model_fingerprint)


def observe(model, batches: Iterable[Mapping[str, np.ndarray]], *, smoothing: float | None = None,
            bins: int = 2048, progress: bool = False, description: str = "calibrate") -> Observed:
    """The two observation passes of `calibrate`: per-channel absmax, then histograms.

    Raises:
      CalibrationError, ValueError: as `calibrate`.
    """
    batches = _checked_batches(model, batches, smoothing)
    bar = progress_bar(progress, total=2 * len(batches), desc=description, unit="batch")
    channel_absmax, tokens = _absmax_pass(model, batches, bar)
    if tokens == 0:
        raise CalibrationError(f"calibration set has no real tokens (every position of its "
                               f"{len(batches)} batch(es) is padding); expected at least "
                               f"{MIN_CALIBRATION_TOKENS}")
    if tokens < MIN_CALIBRATION_TOKENS:
        warnings.warn(f"calibration saw only {tokens} real token(s); at least "
                      f"{MIN_CALIBRATION_TOKENS} are recommended for stable activation scales "
                      "(a handful of tokens gives scales that clip or waste the INT8 range)",
                      UserWarning, stacklevel=3)
    input_scales = _input_scales(model, channel_absmax, smoothing)
    hist_max = {key: float(max(np.max(a * input_scales[key]), TINY_AMAX))
                for key, a in channel_absmax.items()}
    counts = _histogram_pass(model, batches, bar, input_scales, hist_max, bins=bins)
    bar.close()
    return Observed(smoothing, input_scales, hist_max, counts, tokens, model_fingerprint(model))


def _checked_batches(model, batches: Iterable[Mapping[str, np.ndarray]],
                     smoothing: float | None) -> list[Mapping[str, np.ndarray]]:
    """`batches` as a list, after checking `smoothing`, that there is a batch, and every
    batch's ids against the model."""
    if smoothing is not None and not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing={smoothing} must lie in [0, 1]")
    check_model(model, what="calibrate", float_only=True)
    if isinstance(batches, (Mapping, str)):  # one batch, or a text: not a list of batches
        got = "one batch" if isinstance(batches, Mapping) else "a str"
        raise TypeError(f"calibrate: batches is {got}; expected a list of tokenized batches, "
                        "e.g. [tokenizer(texts)]")
    batches = list(batches)
    if not batches:
        raise CalibrationError("empty calibration set: no batches")
    for number, batch in enumerate(batches):
        if not isinstance(batch, Mapping) or "input_ids" not in batch:
            raise TypeError(f"calibrate: batch {number} is {batch!r:.60} ({type(batch).__name__}); "
                            "expected a dict with input_ids, attention_mask and token_type_ids, "
                            "as tokenizer(texts) gives (texts are tokenized first)")
        # out-of-range ids would be clamped inside the passes: scales from the wrong rows
        check_ids(model.config, batch["input_ids"], batch.get("attention_mask"),
                  batch.get("token_type_ids"), allow_padding_rows=True,
                  source=f"calibration batch {number}")
    return batches


def _absmax_pass(model, batches, bar) -> tuple[dict[SiteKey, np.ndarray], int]:
    """The first pass: each site's per-channel max |x| over every batch, and the real tokens
    seen; non-finite activations raise `CalibrationError`."""
    absmax_pass = make_pass(model, channel_absmax_reduce)
    channel_absmax: dict[SiteKey, np.ndarray] = {}
    tokens = 0
    for number, batch in enumerate(batches):
        bar.update()
        stats = absmax_pass(batch)
        for key, s in stats.items():
            if int(s["non_finite"]):
                raise CalibrationError(
                    f"non-finite activations at layer {key[0]} site {key[1]!r} in batch {number}")
            a = np.asarray(s["channel_absmax"])
            channel_absmax[key] = a if key not in channel_absmax else np.maximum(channel_absmax[key], a)
        tokens += int(stats[(0, SITES[0])]["tokens"])
    return channel_absmax, tokens


def _input_scales(model, channel_absmax: dict[SiteKey, np.ndarray],
                  smoothing: float | None) -> dict[SiteKey, np.ndarray]:
    """Each site's SmoothQuant `1 / s` per input channel (ones where it is not smoothed)."""
    encoder = getattr(model, "model", model)
    input_scales: dict[SiteKey, np.ndarray] = {}
    for (layer, site), absmax in channel_absmax.items():
        scale = np.ones_like(absmax)
        if smoothing is not None and site in SMOOTHABLE_SITES:
            kernel = getattr(encoder.encoder.layers[layer], site).kernel[...]
            scale = 1.0 / np.asarray(smoothing_factors(absmax, kernel, smoothing))
        input_scales[(layer, site)] = scale.astype(np.float32)
    return input_scales


def _histogram_pass(model, batches, bar, input_scales: dict[SiteKey, np.ndarray],
                    hist_max: dict[SiteKey, float], *, bins: int) -> dict[SiteKey, np.ndarray]:
    """The second pass: each site's histogram of |x * input_scale| over `[0, hist_max]`."""
    histogram_pass = make_pass(model, functools.partial(histogram_reduce, bins=bins))
    extra = {key: (input_scales[key], np.float32(hist_max[key])) for key in input_scales}
    counts = {key: np.zeros(bins, np.float64) for key in input_scales}
    for batch in batches:
        bar.update()
        for key, c in histogram_pass(batch, extra).items():
            counts[key] += np.asarray(c, np.float64)
    return counts
