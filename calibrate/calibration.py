"""`calibrate(model, batches, method=...)`: static activation scales for every GEMM site."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Iterable, Mapping

import numpy as np
from tqdm.auto import tqdm

from calibrate.calibrators import TINY_AMAX, HistogramStats, get_calibrator
from calibrate.observers import SiteKey, channel_absmax_reduce, histogram_reduce, make_pass
from samp_jax.models.model import check_ids
from samp_jax.quant.precision import SITES, PrecisionMap
from samp_jax.quant.primitives import smoothing_factors
from samp_jax.quant.quantized import SiteCalibration

# Sites whose input is a LayerNorm output, where per-channel outliers live (Bondarenko et al.).
SMOOTHABLE_SITES = ("qkv", "ffn_in")
# Fewer real tokens than this give scales that follow a handful of activations (one token gave
# a cosine of 0.81 to FP32): `calibrate` warns below it.
MIN_CALIBRATION_TOKENS = 512


class CalibrationError(ValueError):
    """The calibration data cannot produce scales (empty, all padding, or non-finite)."""


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Per-site activation statistics for `samp_jax.quantize`.

    Attributes:
      method: the calibrator used for INT8 clips ('minmax', 'percentile', 'mse', 'entropy').
      options: the calibrator's options (e.g. {'p': 99.99}).
      smoothing: SmoothQuant alpha, or None.
      sites: {(layer, site): SiteCalibration}.
      tokens: real tokens observed.
    """

    method: str
    options: Mapping[str, Any]
    smoothing: float | None
    sites: Mapping[SiteKey, SiteCalibration]
    tokens: int

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (stored in a quantized model's sidecar)."""
        return {"method": self.method, "options": dict(self.options), "smoothing": self.smoothing,
                "tokens": self.tokens, "sites": {f"{l}.{s}": {"absmax": c.absmax, "amax": c.amax}
                                                 for (l, s), c in self.sites.items()}}


def calibrate(model, batches: Iterable[Mapping[str, np.ndarray]], method: str = "percentile", *,
              precision_map: PrecisionMap | None = None, smoothing: float | None = None,
              bins: int = 2048, progress: bool = False, **method_options) -> Calibration:
    """Collects activation statistics over calibration batches and picks per-site clips.

    Two jit-compiled passes over the batches (see `calibrate.observers`): per-channel absmax,
    then a histogram of the quantizer's input, from which `method` picks the INT8 clip.

    Args:
      model: the float `EncoderModel` to calibrate.
      batches: dicts with `input_ids`, `attention_mask`, `token_type_ids` (`[batch, seq]`).
        Keep the shapes few (pad to length buckets): each new shape compiles once.
      method: 'minmax', 'percentile', 'mse' or 'entropy'.
      precision_map: when given and no site needs static scales (all INT8 sites dynamic, no
        FP8) and there is no smoothing, no pass runs: only the weights need statistics.
      smoothing: SmoothQuant alpha in [0, 1] for `qkv` and `ffn_in`, or None.
      bins: histogram bins.
      progress: show a progress bar over the two passes.
      **method_options: passed to the calibrator (e.g. `p=99.99` for percentile).

    Warns:
      UserWarning: fewer than `MIN_CALIBRATION_TOKENS` (512) real tokens, too few for stable
        scales.

    Raises:
      CalibrationError: no batches, no real tokens, or NaN/Inf activations (names the site).
      ValueError: unknown method or bad smoothing alpha, or a batch the model cannot embed:
        ids outside its vocabulary (or token types outside its type table), or a mask that is
        not 0/1 (`samp_jax.models.model.check_ids`; names the batch).
    """
    calibrator = get_calibrator(method, **method_options)
    if smoothing is not None and not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing={smoothing} must lie in [0, 1]")
    if precision_map is not None and not precision_map.needs_calibration() and smoothing is None:
        return Calibration(method, method_options, None, {}, 0)
    batches = list(batches)
    if not batches:
        raise CalibrationError("empty calibration set: no batches")
    for number, batch in enumerate(batches):
        # out-of-range ids would be clamped inside the passes: scales from the wrong rows
        check_ids(model.config, batch["input_ids"], batch.get("attention_mask"),
                  batch.get("token_type_ids"), allow_padding_rows=True,
                  source=f"calibration batch {number}")

    bar = tqdm(total=2 * len(batches), desc=f"calibrate ({method})", unit="batch", disable=not progress)
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
    if tokens == 0:
        raise CalibrationError(f"calibration set has no real tokens (every position of its "
                               f"{len(batches)} batch(es) is padding); expected at least "
                               f"{MIN_CALIBRATION_TOKENS}")
    if tokens < MIN_CALIBRATION_TOKENS:
        warnings.warn(f"calibration saw only {tokens} real token(s); at least "
                      f"{MIN_CALIBRATION_TOKENS} are recommended for stable activation scales "
                      "(a handful of tokens gives scales that clip or waste the INT8 range)",
                      UserWarning, stacklevel=2)

    encoder = getattr(model, "model", model)
    input_scales: dict[SiteKey, np.ndarray] = {}
    for (layer, site), absmax in channel_absmax.items():
        scale = np.ones_like(absmax)
        if smoothing is not None and site in SMOOTHABLE_SITES:
            kernel = getattr(encoder.encoder.layers[layer], site).kernel[...]
            scale = 1.0 / np.asarray(smoothing_factors(absmax, kernel, smoothing))
        input_scales[(layer, site)] = scale.astype(np.float32)
    hist_max = {key: float(max(np.max(a * input_scales[key]), TINY_AMAX))
                for key, a in channel_absmax.items()}

    histogram_pass = make_pass(model, functools.partial(histogram_reduce, bins=bins))
    extra = {key: (input_scales[key], np.float32(hist_max[key])) for key in channel_absmax}
    counts = {key: np.zeros(bins, np.float64) for key in channel_absmax}
    for batch in batches:
        bar.update()
        for key, c in histogram_pass(batch, extra).items():
            counts[key] += np.asarray(c, np.float64)
    bar.close()

    sites = {}
    for key in sorted(channel_absmax):
        stats = HistogramStats(counts=counts[key], hist_max=hist_max[key], absmax=hist_max[key])
        smoothed = smoothing is not None and key[1] in SMOOTHABLE_SITES
        sites[key] = SiteCalibration(absmax=hist_max[key], amax=float(calibrator(stats)),
                                     input_scale=input_scales[key] if smoothed else None)
    return Calibration(method, dict(method_options), smoothing, sites, tokens)
