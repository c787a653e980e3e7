"""What `quantize` takes from a calibration: each GEMM site's statistics (`SiteCalibration`),
with the clips a precision map stores in their place (`site_calibrations`), and the checks that
the calibration fits the model and the map (`check_calibration_fits`,
`check_named_calibrators`): a calibration of another model, or a clip of another calibrator than
the one a site's rule names, is refused rather than run. A map's clips measured on another model
(its `model_fingerprint` is not `model_fingerprint(model)`) are not used (`clips_for_model`); a
calibration measured on another model is said (`foreign_calibration`)."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import weakref
from typing import Sequence

import jax
import numpy as np
from flax import nnx

from samp_jax.core.errors import SampJaxError
from samp_jax.core.precision import SITES, PrecisionMap
from samp_jax.core.transfers import own_transfers
from samp_jax.models.model import EncoderModel

# The prefix of a fingerprint that messages show.
SHOWN = 12


class ForeignClipsError(SampJaxError, ValueError):
    """A precision map's stored clips were measured on another model, and no calibration of
    this one was given to replace them."""


# model -> (its parameters when last fingerprinted, as (path, weak reference) pairs, and the
# fingerprint): a JAX array never changes, so while each parameter is the same array object
# the fingerprint holds, and a model whose parameters were replaced (fine-tuned, loaded into)
# is hashed again. Weak both ways: it keeps neither the model nor an old weight alive.
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FINGERPRINTS_LOCK = threading.Lock()


@own_transfers
def model_fingerprint(model: EncoderModel) -> str:
    """The sha256 (64 hex digits) of a float model's parameters: each one's path, dtype, shape
    and bytes, in path order. Two models of equal weights (a folder loaded twice, or copied
    to another machine) have the same; a model fine-tuned further, another checkpoint of the
    same architecture, or the same one with a weight changed, another. A precision map records
    it beside the clips measured on the model (`PrecisionMap.model_fingerprint`). Computed
    once while the model's parameters stay the same arrays."""
    params = [(tuple(map(str, path)), variable.get_value()) for path, variable in
              sorted(nnx.to_flat_state(nnx.state(model, nnx.Param)),
                     key=lambda item: tuple(map(str, item[0])))]
    cacheable = all(isinstance(value, jax.Array) for _, value in params)  # numpy may change
    if cacheable:
        with _FINGERPRINTS_LOCK:
            cached = _FINGERPRINTS.get(model)
        if cached is not None and len(cached[0]) == len(params) and all(
                path == old_path and ref() is value
                for (path, value), (old_path, ref) in zip(params, cached[0])):
            return cached[1]
    digest = hashlib.sha256()
    for path, value in params:
        array = np.ascontiguousarray(np.asarray(value))
        head = f"{'.'.join(path)}:{array.dtype.str}:{array.shape}".encode()
        for part in (head, array.tobytes()):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
    fingerprint = digest.hexdigest()
    if cacheable:
        with _FINGERPRINTS_LOCK:
            _FINGERPRINTS[model] = ([(path, weakref.ref(value)) for path, value in params],
                                    fingerprint)
    return fingerprint


def foreign_clips(precision_map: PrecisionMap, model: EncoderModel) -> str | None:
    """The model's fingerprint when `precision_map` stores clips measured on another model
    (its `model_fingerprint` differs), else None: no clip, no fingerprint (clips its writer
    vouches for), or this model's (the fingerprint is computed only when the map names one)."""
    if not precision_map.stored_clips():
        return None
    return other_model(precision_map.model_fingerprint, model)


def other_model(recorded: str | None, model: EncoderModel) -> str | None:
    """`model`'s fingerprint when `recorded` (a map's or a calibration's) names another model,
    else None (None recorded: nothing to compare)."""
    if recorded is None:
        return None
    fingerprint = model_fingerprint(model)
    return None if fingerprint == recorded else fingerprint


def foreign_calibration(calibration, model: EncoderModel,
                        used: Sequence[tuple[int, str]]) -> str | None:
    """What to say when `calibration`'s statistics, used at the sites `used`, were measured on
    another model (its `model_fingerprint` is not this model's), else None: no site uses them,
    the calibration records no fingerprint, or it is this model's (the fingerprint is computed
    only when a site uses the calibration)."""
    recorded = getattr(calibration, "model_fingerprint", None)
    fingerprint = other_model(recorded, model) if used else None
    if fingerprint is None:
        return None
    listed = ", ".join(f"{l}.{s}" for l, s in sorted(used)[:6]) + (", ..." if len(used) > 6 else "")
    return (f"the calibration was measured on another model (model_fingerprint "
            f"{recorded[:SHOWN]}...), not on this one ({fingerprint[:SHOWN]}...): its "
            f"statistics at {len(used)} site(s) ({listed}) are another model's activations")


def map_name(precision_map: PrecisionMap) -> str:
    """How messages name a map: its file, else `the precision map`."""
    return f"precision map {precision_map.source}" if precision_map.source else "the precision map"


def foreign_clips_note(precision_map: PrecisionMap, fingerprint: str) -> str:
    """`<map>: its N clips were measured on model <prefix>..., not on this one (<prefix>...)`."""
    return (f"{map_name(precision_map)}: its {len(precision_map.stored_clips())} stored clip(s) "
            f"were measured on another model (model_fingerprint "
            f"{precision_map.model_fingerprint[:SHOWN]}...), not on this one "
            f"({fingerprint[:SHOWN]}...)")


def clips_for_model(precision_map: PrecisionMap, model: EncoderModel) -> tuple[PrecisionMap, str | None]:
    """`(map, note)`: `precision_map` as it applies to `model`, without its stored clips where
    they were measured on another model (`foreign_clips`; the note says so, naming the map and
    both fingerprints), else itself and None."""
    fingerprint = foreign_clips(precision_map, model)
    if fingerprint is None:
        return precision_map, None
    return precision_map.without_clips(), foreign_clips_note(precision_map, fingerprint)


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
