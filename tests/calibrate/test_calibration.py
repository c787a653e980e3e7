"""The observer passes and `calibrate`: statistics over real tokens only, and error paths."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from calibrate import (AUTO_METHODS, Calibration, CalibrationError, calibrate, calibrate_candidates,
                       per_site_calibration)
from samp_jax import EncoderConfig, EncoderModel, PrecisionMap
from samp_jax.core.precision import SITES

CONFIG = EncoderConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                       intermediate_size=64, max_position_embeddings=32)


@pytest.fixture(scope="module")
def tiny():
    return EncoderModel(CONFIG, rngs=nnx.Rngs(3))


def _batch(lengths, width=12, seed=0):
    rng = np.random.default_rng(seed)
    mask = (np.arange(width)[None] < np.array(lengths)[:, None]).astype(np.int32)
    ids = np.where(mask == 1, rng.integers(1, CONFIG.vocab_size, (len(lengths), width)), 0)
    return {"input_ids": ids.astype(np.int32), "attention_mask": mask,
            "token_type_ids": np.zeros_like(mask)}


def test_statistics_cover_every_site_and_only_real_tokens(tiny):
    batches = [_batch([12, 5, 1]), _batch([7, 3, 9], seed=1)]
    cal = calibrate(tiny, batches, "minmax")
    assert isinstance(cal, Calibration)
    assert set(cal.sites) == {(l, s) for l in range(2) for s in SITES}
    assert cal.tokens == 12 + 5 + 1 + 7 + 3 + 9
    # layer 0 qkv sees the embedding LayerNorm output: recompute its absmax over real tokens
    expected = 0.0
    for b in batches:
        x = np.asarray(tiny.embeddings(jnp.asarray(b["input_ids"]), jnp.asarray(b["token_type_ids"])))
        expected = max(expected, np.abs(x[b["attention_mask"] == 1]).max())
        everything = np.abs(x).max()
    assert cal.sites[(0, "qkv")].absmax == pytest.approx(expected, rel=1e-6)
    assert cal.sites[(0, "qkv")].amax == pytest.approx(expected, rel=1e-6)  # minmax
    assert everything != pytest.approx(expected)  # padding really was excluded


def test_calibrators_clip_differently(tiny):
    batches = [_batch([12, 12, 12, 12], seed=s) for s in range(3)]
    minmax = calibrate(tiny, batches, "minmax")
    pct = calibrate(tiny, batches, "percentile", p=99.0)
    for key in minmax.sites:
        assert 0 < pct.sites[key].amax <= minmax.sites[key].amax
    assert any(pct.sites[k].amax < 0.9 * minmax.sites[k].amax for k in minmax.sites)


def test_smoothing_records_input_scales_for_layernorm_sites(tiny):
    cal = calibrate(tiny, [_batch([12, 8])], "minmax", smoothing=0.5)
    for (layer, site), c in cal.sites.items():
        if site in ("qkv", "ffn_in"):
            assert c.input_scale.shape == (CONFIG.hidden_size,) and np.all(c.input_scale > 0)
        else:
            assert c.input_scale is None


def test_dynamic_only_map_needs_no_data(tiny):
    cal = calibrate(tiny, [], precision_map=PrecisionMap.preset("fully_quant", 2))
    assert cal.sites == {} and cal.tokens == 0


def test_empty_and_all_padding_sets_are_refused(tiny):
    with pytest.raises(CalibrationError, match="empty calibration set"):
        calibrate(tiny, [])
    with pytest.raises(CalibrationError, match="no real tokens"):
        calibrate(tiny, [_batch([0, 0])])


def test_non_finite_activations_name_the_site(tiny):
    poisoned = nnx.clone(tiny)
    kernel = poisoned.encoder.layers[1].ffn_in.kernel
    kernel.set_value(kernel[...].at[0, 0].set(jnp.inf))
    with pytest.raises(CalibrationError, match="non-finite activations at layer 1 site 'ffn_out'"):
        calibrate(poisoned, [_batch([12])])


def test_bad_method_and_smoothing(tiny):
    with pytest.raises(ValueError, match="calibration method 'kl' is not one of"):
        calibrate(tiny, [_batch([3])], "kl")
    with pytest.raises(ValueError, match="smoothing=2.0 must lie in"):
        calibrate(tiny, [_batch([3])], smoothing=2.0)


def test_calibration_leaves_the_model_untouched(tiny):
    before = tiny(_batch([12])["input_ids"])
    calibrate(tiny, [_batch([12])], "entropy")
    np.testing.assert_array_equal(np.asarray(tiny(_batch([12])["input_ids"])), np.asarray(before))
    assert all(site.observer is None for layer in tiny.encoder.layers for site in layer.sites().values())


# ---- several calibrators from one observation, and a calibration picked per site

def test_candidates_are_each_method_of_one_observation(tiny):
    batches = [_batch([12, 12, 9, 4], seed=s) for s in range(2)]
    candidates = calibrate_candidates(tiny, batches, ("minmax", "percentile"))
    assert list(candidates) == ["minmax", "percentile"]
    for method, cal in candidates.items():
        alone = calibrate(tiny, batches, method)
        assert cal.method == method and cal.tokens == alone.tokens == 2 * (12 + 12 + 9 + 4)
        assert {k: (c.absmax, c.amax) for k, c in cal.sites.items()} == \
            {k: (c.absmax, c.amax) for k, c in alone.sites.items()}
    assert AUTO_METHODS == tuple(calibrate_candidates(tiny, batches))


@pytest.mark.parametrize("methods, match", [((), "at least one"), (("mse", "mse"), "each once"),
                                            (("mse", "nope"), "nope")])
def test_candidates_refuse_bad_methods_before_any_pass(tiny, methods, match):
    with pytest.raises(ValueError, match=match):  # the empty set would raise CalibrationError
        calibrate_candidates(tiny, [], methods)


def test_per_site_calibration_takes_each_sites_clip_and_says_which(tiny):
    candidates = calibrate_candidates(tiny, [_batch([12, 12, 12], seed=4)], ("minmax", "percentile"))
    merged = per_site_calibration(candidates, {(1, "ffn_in"): "percentile"})
    assert merged.method == "per-site" and merged.tokens == candidates["minmax"].tokens
    for key, site in merged.sites.items():
        source = "percentile" if key == (1, "ffn_in") else "minmax"  # unnamed sites: the first
        assert site == candidates[source].sites[key]
        assert merged.options["methods"][f"{key[0]}.{key[1]}"] == source
    assert merged.describe()["options"]["methods"]["1.ffn_in"] == "percentile"


def test_per_site_calibration_refuses_mismatched_or_unknown_parts(tiny):
    one = calibrate_candidates(tiny, [_batch([12, 12], seed=1)], ("minmax", "mse"))
    other = calibrate(tiny, [_batch([12, 5], seed=2)], "percentile")  # another observation
    with pytest.raises(ValueError, match="at least one"):
        per_site_calibration({}, {})
    with pytest.raises(ValueError, match="same observation"):
        per_site_calibration({**one, "percentile": other}, {})
    with pytest.raises(ValueError, match="site"):
        per_site_calibration(one, {(7, "qkv"): "mse"})
    with pytest.raises(ValueError, match="'entropy'"):
        per_site_calibration(one, {(0, "qkv"): "entropy"})


def test_a_calibration_that_ran_no_pass_names_no_method():
    from calibrate.calibration.api import Calibration
    described = Calibration("percentile", {}, None, {}, 0).describe()
    assert described["method"] is None and described["sites"] == {} and "no pass ran" in described["note"]
