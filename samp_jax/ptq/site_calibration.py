"""What `quantize` takes from a calibration: each GEMM site's statistics (`SiteCalibration`),
with the clips a precision map stores in their place (`site_calibrations`), and the checks that
the calibration fits the model and the map (`check_calibration_fits`,
`check_named_calibrators`): a calibration of another model, or a clip of another calibrator than
the one a site's rule names, is refused rather than run."""

from __future__ import annotations

import dataclasses

import numpy as np

from samp_jax.core.precision import SITES, PrecisionMap
from samp_jax.models.model import EncoderModel


@dataclasses.dataclass(frozen=True)
class SiteCalibration:
    """Calibrated statistics of one GEMM site's (possibly smoothed) input.

    Attributes:
      absmax: max |x| over the calibration set (the FP8 clip).
      amax: the calibrator's INT8 clip (e.g. a percentile of |x|).
      input_scale: SmoothQuant `1 / s` per input channel, or None without smoothing.
    """

    absmax: float
    amax: float
    input_scale: np.ndarray | None = None


def site_calibrations(precision_map: PrecisionMap, calibration=None) -> dict:
    """`{(layer, site): SiteCalibration}`: the calibration's, with every clip the map stores
    in its place (an INT8 site's `amax`, an FP8 site's max |x|).

    Raises:
      ValueError: a stored clip at a site the calibration smooths (the clip was chosen on
        unsmoothed inputs), or a site whose rule names a calibrator (and stores no clip) where
        the calibration's clip is another calibrator's.
    """
    sites = dict(calibration.sites) if calibration is not None else {}
    check_named_calibrators(precision_map, calibration)
    for key, clip in precision_map.stored_clips().items():
        given = sites.get(key)
        if given is not None and given.input_scale is not None:
            raise ValueError(f"site {key[0]}.{key[1]}: the precision map stores clip={clip} (chosen "
                             "without smoothing) but the calibration smooths this site")
        sites[key] = SiteCalibration(absmax=clip, amax=clip)
    return sites


def check_named_calibrators(precision_map: PrecisionMap, calibration) -> None:
    """Refuses a calibration whose clip at an INT8 static site is another calibrator's than
    the one the site's rule names (a map that names one and stores no clip, calibrated
    without `precision_map=`): the model would run, and its map would claim, a clip it
    does not have."""
    if calibration is None:
        return
    for (layer, site), p in precision_map.items():
        named = p.calibration
        if named is None or p.clip is not None or p.precision != "int8" or \
                (layer, site) not in calibration.sites:
            continue
        used = calibration.options.get("methods", {}).get(f"{layer}.{site}", calibration.method)
        if used != named:
            raise ValueError(
                f"site {layer}.{site}: the precision map names calibrator {named!r}, but the "
                f"calibration's clip there is {used!r}'s; calibrate with the map "
                "(calibrate.calibrate(model, batches, precision_map=precision_map)) so each "
                "site gets the calibrator its rule names")


def check_calibration_fits(model: EncoderModel, calibration) -> None:
    """Refuses a calibration made for another model: statistics of a layer or site the model
    does not have, or SmoothQuant scales of another width."""
    if calibration is None:
        return
    layers = model.config.num_layers
    foreign = sorted(f"{l}.{s}" for l, s in calibration.sites if not (0 <= l < layers and s in SITES))
    if foreign:
        raise ValueError(f"the calibration has statistics of sites {foreign[:6]} that the model "
                         f"({layers} layers, sites {SITES}) does not have: it was made for "
                         "another model; calibrate this one (calibrate.calibrate(model, batches))")
    for (layer, site), stats in calibration.sites.items():
        width = getattr(model.encoder.layers[layer], site).shape[0]
        if stats.input_scale is not None and np.shape(stats.input_scale)[-1] != width:
            raise ValueError(f"site {layer}.{site}: the calibration's smoothing scales have "
                             f"{np.shape(stats.input_scale)[-1]} channels, the model's input "
                             f"there has {width}: it was made for another model; calibrate "
                             "this one")
