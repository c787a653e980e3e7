"""quantize(): real quantized MiniLM, memory, save/load round trip, and error paths."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from calibrate import calibrate
from pallas_kernels.numerics import SCALE_EPS
from samp_jax import (
    CheckpointError,
    EncoderModel,
    PrecisionMap,
    QuantizedModel,
    Tokenizer,
    cosine_similarity,
    quantize,
)
from samp_jax.models.heads import make_head
from samp_jax.ptq.folder import SEAL_KEY, SidecarNotSealedWarning, seal_text
from samp_jax.core.digests import file_digest as _file_digest
from samp_jax.ptq.quantized import QuantizedGemmSite
from samp_jax.serving.batching import length_batches
from tests.helpers import TINY_CONFIG, golden_inputs


@pytest.fixture(scope="module")
def calibration(minilm, minilm_dir, minilm_texts):
    tokenizer = Tokenizer.from_pretrained(minilm_dir)
    batches = [b for _, b in length_batches(tokenizer, minilm_texts["sentences"], batch_size=16,
                                            buckets=(32,))]
    return calibrate(minilm, batches, "percentile", smoothing=0.5, p=99.99)


MIXED = {"num_layers": 6, "default": {"precision": "fp16"}, "rules": [
    {"layers": [0, 1], "sites": ["qkv", "ffn_in"], "precision": "int8", "activation": "per_tensor_static"},
    {"layers": "*", "sites": ["ffn_out"], "precision": "int8", "activation": "per_token_dynamic"},
    {"layers": [2], "sites": "*", "precision": "fp8_e4m3"},
    {"layers": [3], "sites": ["attn_out"], "precision": "bf16"},
    {"layers": [4], "sites": ["attn_out"], "precision": "fp32"}]}


def test_fully_quant_minilm_stays_close_and_stores_int8(minilm, minilm_golden):
    q = quantize(minilm, PrecisionMap.preset("fully_quant", 6))
    inputs = golden_inputs(minilm_golden, "single")
    distance = 1.0 - np.asarray(cosine_similarity(q(*inputs), minilm(*inputs)))
    # measured on the 2-core CPU VM: 1 - cosine at most 0.0102, mean 0.0033 (per-site
    # numerics are pinned against a float64 reference in test_site_reference.py)
    assert distance.max() < 0.025 and distance.mean() < 0.008
    site = q.model.encoder.layers[3].ffn_in
    assert isinstance(site, QuantizedGemmSite)
    assert site.kernel.dtype == jnp.int8 and site.kernel_scale.shape == (1536,)
    float_kernels = [leaf for path, leaf in nnx.to_flat_state(nnx.state(q.model.encoder))
                     if path[-1] == "kernel" and leaf.get_value().dtype != jnp.int8]
    assert not float_kernels  # the float copies are gone
    report = q.memory_report()
    assert report["saved_bytes"] > 0 and report["ratio"] < 0.45


def test_mixed_map_with_static_scales_and_smoothing(minilm, minilm_golden, calibration):
    q = quantize(minilm, PrecisionMap.from_dict(MIXED), calibration)
    layers = q.model.encoder.layers
    assert layers[0].qkv.input_scale is not None and layers[0].qkv.act_scale is not None
    assert layers[0].attn_out.kernel.dtype == jnp.float16
    assert layers[2].qkv.kernel.dtype == jnp.float8_e4m3fn
    assert layers[3].attn_out.kernel.dtype == jnp.bfloat16
    inputs = golden_inputs(minilm_golden, "pair")
    distance = 1.0 - np.asarray(cosine_similarity(q(*inputs), minilm(*inputs)))
    # measured: 1 - cosine at most 0.0013, mean 0.0009
    assert distance.max() < 0.004 and distance.mean() < 0.0025


@pytest.mark.slow
def test_save_load_round_trip_is_bit_exact(minilm, minilm_golden, calibration, tmp_path):
    q = quantize(minilm, PrecisionMap.from_dict(MIXED), calibration)
    q.save(tmp_path / "q")
    loaded = QuantizedModel.load(tmp_path / "q")
    assert loaded.precision_map == q.precision_map
    assert loaded.info == q.info
    a = nnx.to_flat_state(nnx.state(q.model))
    b = dict(nnx.to_flat_state(nnx.state(loaded.model)))
    assert len(a) == len(b)
    for path, var in a:
        x, y = var.get_value(), b[path].get_value()
        assert x.dtype == y.dtype, path
        np.testing.assert_array_equal(np.asarray(x).reshape(-1).view(np.uint8),
                                      np.asarray(y).reshape(-1).view(np.uint8))
    inputs = golden_inputs(minilm_golden, "single")
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda *i: q(*i))(*inputs)),
                                  np.asarray(jax.jit(lambda *i: loaded(*i))(*inputs)))


def test_load_errors(minilm, tmp_path):
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        QuantizedModel.load(tmp_path)
    q = quantize(minilm, PrecisionMap.preset("quant_ffn_only", 6))
    q.save(tmp_path / "q")
    arrays = load_file(str(tmp_path / "q" / "model.safetensors"))
    arrays.pop("encoder.layers.0.ffn_in.kernel")
    sidecar_file = tmp_path / "q" / "quantization.json"
    sidecar = json.loads(sidecar_file.read_text())
    save_file(arrays, str(tmp_path / "q" / "model.safetensors"),
              metadata={SEAL_KEY: seal_text(sidecar)})  # the sidecar's copy kept
    with pytest.raises(CheckpointError, match=r"model.safetensors does not match the manifest"):
        QuantizedModel.load(tmp_path / "q")
    # the manifest rewritten to match: the layout check names the key
    sidecar["files"]["model.safetensors"] = _file_digest(tmp_path / "q" / "model.safetensors")
    sidecar_file.write_text(json.dumps(sidecar))
    with pytest.raises(CheckpointError, match="missing keys.*encoder.layers.0.ffn_in.kernel"):
        QuantizedModel.load(tmp_path / "q")


def test_static_sites_need_calibration(minilm):
    with pytest.raises(ValueError, match=r"sites \['0.qkv', '0.attn_out'.*use static activation scales"):
        quantize(minilm, PrecisionMap.preset("fully_quant", 6, activation="per_tensor_static"))
    with pytest.raises(ValueError, match="use static activation scales"):
        quantize(minilm, PrecisionMap.preset("fp8", 6))


def test_map_must_fit_the_model(minilm):
    with pytest.raises(ValueError, match="num_layers=12, the model has 6"):
        quantize(minilm, PrecisionMap.preset("fp16", 12))


def test_source_model_is_unchanged(minilm, minilm_golden):
    inputs = golden_inputs(minilm_golden, "single")
    before = np.asarray(minilm(*inputs))
    quantize(minilm, PrecisionMap.preset("fully_quant", 6))
    np.testing.assert_array_equal(np.asarray(minilm(*inputs)), before)
    assert minilm.encoder.layers[0].qkv.kernel.dtype == jnp.float32


def test_sidecars_without_labels_pooling_or_tokenizer_still_load(tmp_path):
    head = make_head("sequence_classification", TINY_CONFIG, labels=("a", "b"), rngs=nnx.Rngs(0))
    q = quantize(EncoderModel(TINY_CONFIG, head, rngs=nnx.Rngs(0)),
                 PrecisionMap.preset("fully_quant", TINY_CONFIG.num_layers))
    q.save(tmp_path)
    assert QuantizedModel.load(tmp_path).labels == ("a", "b")
    sidecar = json.loads((tmp_path / "quantization.json").read_text())
    del sidecar["tokenizer"]  # older files: no tokenizer, and the head without labels or spec
    sidecar["head"] = {"kind": "sequence_classification", "num_labels": 2}
    # and version 2: no copy of the sidecar in the weights' header
    save_file(load_file(str(tmp_path / "model.safetensors")), str(tmp_path / "model.safetensors"))
    sidecar["format_version"] = 2
    sidecar["files"]["model.safetensors"] = _file_digest(tmp_path / "model.safetensors")
    (tmp_path / "quantization.json").write_text(json.dumps(sidecar))
    with pytest.warns(SidecarNotSealedWarning):
        loaded = QuantizedModel.load(tmp_path)
    assert loaded.labels is None and loaded.tokenizer is None
    ids = np.arange(1, 9, dtype=np.int32)[None]
    np.testing.assert_array_equal(np.asarray(loaded(ids)), np.asarray(q(ids)))


def test_a_pruned_neuron_and_a_tiny_clip_save_and_load(tmp_path):
    """An all-zero weight column (a pruned neuron) and a clip far below 127 * SCALE_EPS (an
    input that is all but zero) both quantize to the floor scale, 1e-12 as float32
    (9.99999996e-13): the folder loads again."""
    model = _tiny_classifier()
    model.encoder.layers[0].ffn_in.kernel.value = model.encoder.layers[0].ffn_in.kernel.value.at[:, 3].set(0.0)
    pmap = PrecisionMap.from_dict({"num_layers": TINY_CONFIG.num_layers, "default": {"precision": "fp32"},
                                   "rules": [{"sites": ["ffn_in"], "precision": "int8"},
                                             {"sites": ["ffn_out"], "precision": "int8",
                                              "activation": "static", "clip": 1e-30}]})
    q = quantize(model, pmap)
    assert float(q.model.encoder.layers[0].ffn_out.act_scale[...]) == float(np.float32(SCALE_EPS))
    q.save(tmp_path / "q")
    loaded = QuantizedModel.load(tmp_path / "q")
    ids = np.arange(1, 9, dtype=np.int32)[None]
    np.testing.assert_array_equal(np.asarray(loaded(ids)), np.asarray(q(ids)))


def _static_map(**rule) -> PrecisionMap:
    return PrecisionMap.from_dict({"num_layers": TINY_CONFIG.num_layers, "default": {"precision": "fp32"},
                                   "rules": [{"sites": ["ffn_in"], "precision": "int8",
                                              "activation": "static", **rule}]})


def test_a_calibration_of_another_calibrator_or_model_is_refused():
    model = _tiny_classifier()
    batches = [{"input_ids": np.arange(1, 65, dtype=np.int32).reshape(4, 16) % 60 + 1,
                "attention_mask": np.ones((4, 16), np.int32)}]
    named = _static_map(calibration="minmax")
    with pytest.warns(UserWarning, match="real token"):
        percentile = calibrate(model, batches, "percentile")
        per_map = calibrate(model, batches, "percentile", precision_map=named)
    with pytest.raises(ValueError, match=r"site 0.ffn_in: the precision map names calibrator "
                                         r"'minmax', but the calibration's clip there is "
                                         r"'percentile''s; calibrate with the map"):
        quantize(model, named, percentile)
    q = quantize(model, named, per_map)  # calibrated with the map: each site its named clip
    assert float(q.model.encoder.layers[0].ffn_in.act_scale[...]) == pytest.approx(
        per_map.sites[(0, "ffn_in")].amax / 127, rel=1e-6)
    assert quantize(model, _static_map(), percentile)  # no calibrator named: the calibration's
    config = dataclasses.replace(TINY_CONFIG, num_layers=TINY_CONFIG.num_layers - 1)
    rngs = nnx.Rngs(0)
    shallower = EncoderModel(config, make_head("sequence_classification", config, num_labels=2,
                                               rngs=rngs), rngs=rngs)
    last = TINY_CONFIG.num_layers - 1
    with pytest.raises(ValueError, match=rf"statistics of sites \['{last}.attn_out', .*it was made "
                                         r"for another model"):
        quantize(shallower, PrecisionMap.preset("fp16", config.num_layers), percentile)
    deeper = dataclasses.replace(TINY_CONFIG, num_layers=TINY_CONFIG.num_layers + 1)
    taller = EncoderModel(deeper, make_head("sequence_classification", deeper, num_labels=2,
                                            rngs=rngs), rngs=rngs)
    with pytest.raises(ValueError, match=r"the calibration given has no statistics for them"):
        quantize(taller, PrecisionMap.from_dict(_static_map().to_dict() | {"num_layers": deeper.num_layers}),
                 percentile)


def _tiny_classifier():
    rngs = nnx.Rngs(0)
    return EncoderModel(TINY_CONFIG, make_head("sequence_classification", TINY_CONFIG,
                                               num_labels=2, rngs=rngs), rngs=rngs)


@pytest.mark.parametrize("model, pmap, kwargs, error, message", [
    ("models/minilm", "fp16", {}, TypeError,
     r"quantize: model is a str \(load a model folder first: samp_jax.load\(path\)\); expected an "
     "EncoderModel"),
    ({"hidden_size": 32}, "fp16", {}, TypeError, "quantize: model is a dict; expected an EncoderModel"),
    (None, {"num_layers": 3, "default": "fp16"}, {}, TypeError,
     r"quantize: precision_map is a dict; expected a PrecisionMap \(PrecisionMap.from_dict"),
    (None, "map.json", {}, TypeError, "quantize: precision_map is a str; expected a PrecisionMap"),
    (None, "fp16", {"calibration": {"0.qkv": 1.0}}, TypeError,
     "quantize: calibration is a dict; expected None or a calibrate.Calibration"),
    (None, "fp16", {"implementation": "cutlass"}, ValueError,
     r"quantize: implementation='cutlass' is not a registered GEMM implementation; expected None "
     r"or one of \("),
])
def test_quantize_names_an_argument_of_the_wrong_kind(model, pmap, kwargs, error, message):
    model = _tiny_classifier() if model is None else model
    pmap = PrecisionMap.preset(pmap, TINY_CONFIG.num_layers) if pmap == "fp16" else pmap
    with pytest.raises(error, match=message):
        quantize(model, pmap, **kwargs)
