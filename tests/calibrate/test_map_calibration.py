"""Calibration inside the precision map: a rule names its calibrator and carries the clip it was
calibrated to, so the map alone (no summary, no calibration object) rebuilds the model."""

from __future__ import annotations

import dataclasses
import json
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from calibrate import calibrate
from calibrate.calibration.api import map_with_calibration
from calibrate.search.driver import search
from calibrate.search.latency import estimate_table
from samp_jax import EncoderModel, PrecisionMap, PrecisionMapError, SequenceClassifier, quantize
from samp_jax.ptq.site_calibration import ForeignClipsError, model_fingerprint
from samp_jax.core.precision import SITES, SitePrecision, as_precision
from samp_jax.serving.forward import jit_forward
from tests.helpers import TINY_CONFIG, random_batches

STATIC = as_precision("int8-static")


def _logits(model, batch):
    return np.asarray(jit_forward(model)(batch))


def test_a_rule_carries_its_calibrator_and_clip_and_old_maps_still_load():
    data = {"num_layers": 2, "default": {"precision": "fp32"}, "compute_dtype": "float32", "rules": [
        {"layers": [1], "sites": ["ffn_in"], "precision": "int8", "activation": "static",
         "calibration": "mse", "clip": 3.1875},
        {"layers": [0], "sites": "*", "precision": "fp8_e4m3", "clip": 7.25}]}
    pmap = PrecisionMap.from_dict(data)
    cell = pmap[1, "ffn_in"]
    assert cell.activation == "per_tensor_static" and cell.calibration == "mse" and cell.clip == 3.1875
    assert pmap.stored_clips() == {(1, "ffn_in"): 3.1875, **{(0, s): 7.25 for s in SITES}}
    assert pmap.site_methods() == {(1, "ffn_in"): "mse"} and pmap.compute_dtype == "float32"
    again = PrecisionMap.from_json(pmap.to_json())
    assert again.to_dict() == pmap.to_dict() and again.stored_clips() == pmap.stored_clips()
    # what builds a site is written; what a cell runs decides equality
    plain = PrecisionMap.from_table({(1, "ffn_in"): "int8-static", **{(0, s): "fp8_e4m3" for s in SITES}},
                                    2, default="fp32")
    assert pmap == plain and hash(pmap) == hash(plain) and plain.stored_clips() == {}
    # a map written before calibration lived in the map reads and writes as it did
    old = {"num_layers": 2, "default": {"precision": "fp16"},
           "rules": [{"layers": "*", "sites": ["ffn_in"], "precision": "int8",
                      "activation": "per_tensor_static"}]}
    assert PrecisionMap.from_dict(old).to_dict() == old


@pytest.mark.parametrize("rule, message", [
    ({"precision": "int8", "activation": "per_token_dynamic", "calibration": "mse"},
     "only for int8 sites with per_tensor_static"),
    ({"precision": "fp8_e4m3", "calibration": "mse"}, "FP8 scales come from max"),
    ({"precision": "fp16", "clip": 1.0}, "only for static sites"),
    ({"precision": "int8", "activation": "static", "clip": -1.0}, "clip=-1.0 must be a positive"),
    ({"precision": "int8", "activation": "static", "clip": float("nan")}, "must be a positive finite"),
    ({"precision": "int8", "activation": "static", "clip": "3"}, "clip='3' must be"),
    ({"precision": "int8", "activation": "static", "calibration": ""}, "must name a calibrator"),
])
def test_bad_calibration_entries_name_the_rule(rule, message):
    with pytest.raises(PrecisionMapError, match=f"rule 0: .*{message}"):
        PrecisionMap.from_dict({"num_layers": 1, "rules": [rule]})
    with pytest.raises(PrecisionMapError, match="compute_dtype='float64' is not one of"):
        PrecisionMap.from_dict({"num_layers": 1, "compute_dtype": "float64"})


def test_from_table_keeps_cells_with_different_clips_apart():
    cells = {(0, "qkv"): SitePrecision("int8", "static", "mse", 1.0),
             (0, "attn_out"): SitePrecision("int8", "static", "mse", 2.0),
             (0, "ffn_in"): SitePrecision("int8", "static", "mse", 1.0)}
    pmap = PrecisionMap.from_table(cells, 1, default="fp16")
    assert pmap.stored_clips() == {(0, "qkv"): 1.0, (0, "attn_out"): 2.0, (0, "ffn_in"): 1.0}
    assert len(pmap.rules) == 2  # the two cells alike share a rule


def test_stored_clips_rebuild_the_calibrated_model_bit_for_bit(tiny, calibration):
    cells = {(l, s): STATIC for l in range(3) for s in SITES}
    cells[(2, "qkv")] = SitePrecision("fp8_e4m3")
    pmap = PrecisionMap.from_table(cells, 3, default="fp16")
    batch = random_batches(1, seed=7)[0]
    built = quantize(tiny, pmap, calibration, dtype=jnp.float32)
    stored = map_with_calibration(pmap, calibration, compute_dtype="float32")
    assert stored.site_methods()[(0, "qkv")] == "minmax" and (2, "qkv") not in stored.site_methods()
    assert stored.stored_clips()[(2, "qkv")] == calibration.sites[(2, "qkv")].absmax  # FP8: max |x|
    assert stored.stored_clips()[(1, "ffn_in")] == calibration.sites[(1, "ffn_in")].amax
    rebuilt = quantize(tiny, PrecisionMap.from_json(stored.to_json()))  # the map alone
    np.testing.assert_array_equal(_logits(rebuilt, batch), _logits(built, batch))
    # a stored clip wins over a calibration's, and the map's dtype over the default float16
    other = dataclasses.replace(calibration, sites={k: dataclasses.replace(c, amax=c.amax / 3)
                                                    for k, c in calibration.sites.items()})
    np.testing.assert_array_equal(_logits(quantize(tiny, stored, other), batch), _logits(built, batch))
    assert not np.array_equal(_logits(quantize(tiny, pmap, other, dtype=jnp.float32), batch),
                              _logits(built, batch))
    with pytest.raises(ValueError, match="dtype=float16 is not the compute_dtype=float32"):
        quantize(tiny, stored, dtype=jnp.float16)
    with pytest.raises(ValueError, match="need|static activation scales"):
        quantize(tiny, pmap)  # without clips, static sites still need a calibration


def test_calibrate_follows_the_calibrators_and_clips_a_map_names(tiny, monkeypatch):
    batches = random_batches(2, seed=1)
    named = PrecisionMap.from_table({(1, "ffn_in"): SitePrecision("int8", "static", "minmax"),
                                     (0, "qkv"): STATIC}, 3, default="fp32")
    mixed = calibrate(tiny, batches, "percentile", precision_map=named)
    minmax, percentile = calibrate(tiny, batches, "minmax"), calibrate(tiny, batches, "percentile")
    assert mixed.method == "per-site" and mixed.options["methods"]["1.ffn_in"] == "minmax"
    assert mixed.sites[(1, "ffn_in")] == minmax.sites[(1, "ffn_in")]
    assert mixed.sites[(0, "qkv")] == percentile.sites[(0, "qkv")]
    with pytest.raises(PrecisionMapError, match=r"calibration='magic' is not one of \('minmax'"):
        SitePrecision("int8", "static", "magic")  # refused with the map, before any pass
    # every static site stores its clip: no pass runs (none is needed)
    clipped = map_with_calibration(named, mixed)
    monkeypatch.setattr("calibrate.calibration.api.observe",
                        lambda *a, **k: pytest.fail("a pass ran for a map that stores every clip"))
    assert calibrate(tiny, batches, precision_map=clipped).sites == {}
    with pytest.raises(ValueError, match="stores clips chosen without smoothing"):
        calibrate(tiny, batches, precision_map=clipped, smoothing=0.5)


def test_the_searched_map_carries_the_clips_and_dtype_it_was_searched_with(tiny, calibration):
    batches = random_batches(2, seed=2)
    result = search(tiny, batches, target="h100", options=("int8-dynamic", "int8-static"),
                    calibration=calibration, tolerance=0.45, sensitivity_batches=1,
                    latency_table=estimate_table(TINY_CONFIG, 32, 128), progress=False)
    pmap = result.precision_map
    static = [key for key, p in pmap.items() if p.needs_calibration]
    assert static and pmap.compute_dtype == "float16"
    assert pmap.stored_clips() == {key: calibration.sites[key].amax for key in static}
    assert pmap.model_fingerprint == model_fingerprint(tiny)  # the model the clips are of
    assert set(pmap.site_methods().values()) == {"minmax"}
    batch = batches[0]
    np.testing.assert_array_equal(
        _logits(quantize(tiny, PrecisionMap.from_json(json.dumps(pmap.to_dict()))), batch),
        _logits(quantize(tiny, pmap, result.calibration, dtype=jnp.float16), batch))


@pytest.mark.parametrize("cells, between", [("fp32", "float32"), ("bf16", "bfloat16"),
                                            ("fp16", "float16"), ("mixed", "float16")])
def test_a_map_without_compute_dtype_runs_between_sites_in_its_one_float_precision(tiny, cells, between):
    """A hand-written all-`fp32` map runs in float32 between sites, as the `fp32` preset does
    (it ran in float16); all-`bf16` in bfloat16; a map with INT8 or several precisions in the
    default float16."""
    if cells == "mixed":
        pmap = PrecisionMap.from_dict({"num_layers": 3, "default": {"precision": "fp32"}, "rules": [
            {"layers": [0], "sites": ["qkv"], "precision": "int8"}]})
    else:
        pmap = PrecisionMap.from_dict({"num_layers": 3, "default": {"precision": cells}})
    assert pmap.uniform_float_dtype() == (None if cells == "mixed" else between)
    assert jnp.dtype(quantize(tiny, pmap).model.dtype).name == between
    if cells == "fp32":
        batch = random_batches(1, seed=2)[0]
        np.testing.assert_array_equal(_logits(quantize(tiny, pmap), batch),
                                      _logits(quantize(tiny, PrecisionMap.preset("fp32", 3),
                                                       dtype=jnp.float32), batch))


@pytest.fixture(scope="module")
def other():
    """A model of the tiny one's architecture with other weights."""
    rngs = nnx.Rngs(6)
    return EncoderModel(TINY_CONFIG, SequenceClassifier(TINY_CONFIG, 3, rngs=rngs), rngs=rngs)


def _searched_like(tiny, calibration):
    """A map as a search writes it: every site static, with the tiny model's clips."""
    return map_with_calibration(PrecisionMap.preset("fully_quant", 3, activation="static"),
                                calibration, compute_dtype="float32")


def test_a_map_names_the_model_its_clips_were_measured_on(tiny, other, calibration):
    stored = _searched_like(tiny, calibration)
    assert stored.model_fingerprint == model_fingerprint(tiny) == calibration.model_fingerprint
    assert model_fingerprint(other) != stored.model_fingerprint
    again = PrecisionMap.from_json(stored.to_json())
    assert again.model_fingerprint == stored.model_fingerprint and again.to_dict() == stored.to_dict()
    # it describes where the clips come from, not what a cell runs: equality and hash keep
    unnamed = dataclasses.replace(stored, model_fingerprint=None)
    assert stored == unnamed == PrecisionMap.preset("fully_quant", 3, activation="static")
    assert hash(stored) == hash(unnamed) and "model_fingerprint" not in unnamed.to_dict()
    # a map without clips names no model
    assert map_with_calibration(PrecisionMap.preset("fp16", 3), calibration).model_fingerprint is None


def test_clips_of_another_model_are_not_applied_to_this_one(tiny, other, calibration, tmp_path):
    stored = _searched_like(tiny, calibration)
    path = tmp_path / "precision_map.json"
    stored.save(path)
    from_file = PrecisionMap.from_json(path)
    with pytest.raises(ForeignClipsError, match=(
            f"precision map {path}: its 12 stored clip.*measured on another model "
            rf"\(model_fingerprint {stored.model_fingerprint[:12]}\.\.\.\), not on this one "
            rf"\({model_fingerprint(other)[:12]}\.\.\.\).*calibrate\.calibrate\(model, batches, "
            "precision_map=pmap")):
        quantize(other, from_file)
    batches = random_batches(seed=1)
    own = calibrate(other, batches, precision_map=from_file)  # the sites are calibrated
    assert set(own.sites) == set(stored.stored_clips()) and own.options["methods"]["0.qkv"] == "minmax"
    with pytest.warns(UserWarning, match=f"precision map {path}: its 12 stored clip.*this model's calibration instead"):
        applied = quantize(other, from_file, own)
    assert applied.precision_map.stored_clips() == {}  # it does not claim the clips it ignored
    batch = random_batches(1, seed=7)[0]
    alone = quantize(other, PrecisionMap.preset("fully_quant", 3, activation="static"),
                     calibrate(other, batches, "minmax"), dtype=jnp.float32)
    np.testing.assert_array_equal(_logits(applied, batch), _logits(alone, batch))
    # the clips of the tiny model would have given the other model other outputs
    vouched = dataclasses.replace(stored, model_fingerprint=None)
    assert not np.array_equal(_logits(quantize(other, vouched), batch), _logits(alone, batch))


def test_a_map_of_this_model_or_of_none_keeps_its_clips_without_a_pass(tiny, other, calibration,
                                                                        monkeypatch):
    stored = _searched_like(tiny, calibration)
    batch = random_batches(1, seed=7)[0]
    built = quantize(tiny, PrecisionMap.preset("fully_quant", 3, activation="static"), calibration,
                     dtype=jnp.float32)
    monkeypatch.setattr("calibrate.calibration.api.observe",
                        lambda *a, **k: pytest.fail("a pass ran for a map that stores every clip"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert calibrate(tiny, random_batches(seed=1), precision_map=stored).sites == {}
        np.testing.assert_array_equal(_logits(quantize(tiny, stored), batch), _logits(built, batch))
        # a map that names no model (written by hand, or before maps named one) is applied as
        # it is, to any model of its depth: its writer vouches for the clips
        vouched = dataclasses.replace(stored, model_fingerprint=None)
        assert calibrate(other, random_batches(seed=1), precision_map=vouched).sites == {}
        vouched_logits = _logits(quantize(other, vouched), batch)
    # the same clips from the tiny model's calibration: said, since it names its model
    with pytest.warns(UserWarning, match="the calibration was measured on another model"):
        from_calibration = quantize(other, PrecisionMap.preset("fully_quant", 3, activation="static"),
                                    calibration, dtype=jnp.float32)
    np.testing.assert_array_equal(vouched_logits, _logits(from_calibration, batch))


def test_a_calibration_of_another_model_is_said_where_its_statistics_are_used(
        tiny, other, calibration):
    static = PrecisionMap.preset("fully_quant", 3, activation="static")
    with pytest.warns(UserWarning, match=(
            rf"the calibration was measured on another model \(model_fingerprint "
            rf"{calibration.model_fingerprint[:12]}\.\.\.\), not on this one "
            rf"\({model_fingerprint(other)[:12]}\.\.\.\): its statistics at 12 site\(s\) "
            r"\(0\.attn_out, 0\.ffn_in, 0\.ffn_out, 0\.qkv, 1\.attn_out, 1\.ffn_in, \.\.\.\).*"
            r"calibrate\.calibrate\(model, batches, precision_map=pmap\)")):
        quantize(other, static, calibration, dtype=jnp.float32)
    one_site = PrecisionMap.from_dict({"num_layers": 3, "rules": [
        {"layers": [2], "sites": ["ffn_out"], "precision": "int8", "activation": "per_tensor_static"}]})
    with pytest.warns(UserWarning, match=r"its statistics at 1 site\(s\) \(2\.ffn_out\) are"):
        quantize(other, one_site, calibration, dtype=jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize(tiny, static, calibration, dtype=jnp.float32)  # its own model's
        # no site takes the calibration's statistics: dynamic INT8, or every clip stored
        quantize(other, PrecisionMap.preset("fully_quant", 3), calibration, dtype=jnp.float32)
        quantize(other, dataclasses.replace(_searched_like(tiny, calibration), model_fingerprint=None),
                 calibration, dtype=jnp.float32)
        # a calibration that names no model (made before calibrations named one) is vouched for
        quantize(other, static, dataclasses.replace(calibration, model_fingerprint=None),
                 dtype=jnp.float32)


@pytest.mark.parametrize("value", ["0" * 63, "A" * 64, "g" * 64, 12, ["0" * 64], ""])
def test_a_tampered_model_fingerprint_is_refused(value):
    with pytest.raises(PrecisionMapError, match=r"model_fingerprint=.* is not a sha256 \(64 "
                                                r"lowercase hex digits"):
        PrecisionMap.from_dict({"num_layers": 1, "model_fingerprint": value})
    assert PrecisionMap.from_dict({"num_layers": 1, "model_fingerprint": "0" * 64}) == \
        PrecisionMap.preset("fp32", 1)


def test_the_fingerprint_follows_the_weights(tiny):
    copy = nnx.clone(tiny)
    assert model_fingerprint(copy) == model_fingerprint(tiny)
    kernel = copy.encoder.layers[2].ffn_out.kernel
    original = kernel[...]
    kernel[...] = original.at[0, 0].add(1e-3)
    assert model_fingerprint(copy) != model_fingerprint(tiny)
    kernel[...] = original + 0  # the same values in a new array
    assert model_fingerprint(copy) == model_fingerprint(tiny)


def test_the_fingerprint_is_hashed_once_while_the_weights_stay_the_same_arrays(tiny, monkeypatch):
    import hashlib
    from types import SimpleNamespace

    from samp_jax.ptq import site_calibration
    copy = nnx.clone(tiny)
    hashed = []
    monkeypatch.setattr(site_calibration, "hashlib", SimpleNamespace(  # this module's hashes only
        sha256=lambda: hashed.append(1) or hashlib.sha256()))
    first = model_fingerprint(copy)
    assert model_fingerprint(copy) == first and len(hashed) == 1
    bias = copy.encoder.layers[0].qkv.bias
    bias[...] = bias[...].at[1].add(0.5)  # one parameter replaced: hashed again
    assert model_fingerprint(copy) != first and len(hashed) == 2
    assert model_fingerprint(copy) != first and len(hashed) == 2
