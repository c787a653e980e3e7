"""Quantization primitives and the GEMM dispatch (XLA implementation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.int8_matmul.reference import int8_accumulate
from tests import numerics_reference as ref
from samp_jax import QArray, gemm, implementations, register_gemm_implementation
from samp_jax.ops import dispatch as gemm_module
from samp_jax.core.primitives import (
    FP8_E4M3_MAX,
    quantize_fp8,
    quantize_per_tensor_int8,
    quantize_per_token_int8,
    quantize_weight_fp8,
    quantize_weight_int8,
    smoothing_factors,
)

rng = np.random.default_rng(0)


def test_weight_int8_per_channel_error_bound():
    w = rng.normal(size=(96, 40)).astype(np.float32) * rng.uniform(0.01, 3, size=(1, 40))
    q = quantize_weight_int8(w)
    assert q.qvalue.dtype == jnp.int8 and q.scale.shape == (40,)
    assert np.abs(np.asarray(q.qvalue)).max() == 127  # each channel's absmax maps to ±127
    error = np.abs(np.asarray(q.dequantize()) - w)
    assert np.all(error <= np.asarray(q.scale)[None] / 2 + 1e-7)


def test_per_token_bound_and_per_tensor_saturation():
    x = rng.normal(size=(3, 5, 64)).astype(np.float32) * np.array([0.1, 1, 50])[:, None, None]
    q = quantize_per_token_int8(x)
    assert q.scale.shape == (3, 5, 1)
    assert np.all(np.abs(np.asarray(q.dequantize()) - x) <= np.asarray(q.scale) / 2 + 1e-6)
    xq = quantize_per_tensor_int8(jnp.array([0.5, 1000.0, -1000.0]), jnp.float32(0.1))
    np.testing.assert_array_equal(np.asarray(xq), [5, 127, -127])


def test_fp8_is_saturating_and_accurate():
    x = jnp.array([1e6, -1e6, 3.0, 0.0])
    q = quantize_fp8(x, jnp.float32(1.0))
    assert not np.any(np.isnan(np.asarray(q.astype(jnp.float32))))
    np.testing.assert_array_equal(np.asarray(q.astype(jnp.float32))[:2], [FP8_E4M3_MAX, -FP8_E4M3_MAX])
    w = rng.normal(size=(64, 32)).astype(np.float32)
    qw = quantize_weight_fp8(w)
    relative = np.abs(np.asarray(qw.dequantize()) - w) / np.maximum(np.abs(w), 1e-2)
    assert np.median(relative) < 2 ** -4  # 3 mantissa bits


@pytest.mark.parametrize("shape", [(1, 384, 1152), (7, 768, 64), (33, 1536, 384), (4, 3, 3072, 16)])
def test_xla_int8_accumulator_is_exact(shape):
    *lead, k, n = shape
    xq = rng.integers(-127, 128, size=(*lead, k)).astype(np.int8)
    wq = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
    acc = np.asarray(int8_accumulate(jnp.asarray(xq), jnp.asarray(wq)))
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, xq.astype(np.int64) @ wq.astype(np.int64))


def _reference_int8_dynamic(x, w, b):
    """Quantizes as the library does (scales `max|x| * (1/127)`, values times the float32
    reciprocal of the scale), so a value on a .5 tie rounds the same way; plain divisions
    round some ties the other way (about 1 draw in 100 of this test's shapes)."""
    inv = np.float32(1) / np.float32(127)
    xs = np.maximum(np.abs(x).max(-1, keepdims=True) * inv, np.float32(1e-12))
    xq = np.clip(np.round(x * (np.float32(1) / xs)), -127, 127)
    ws = np.maximum(np.abs(w).max(0) * inv, np.float32(1e-12))
    wq = np.clip(np.round(w * (np.float32(1) / ws)), -127, 127)
    return (xq @ wq) * xs * ws + b


def test_int8_dynamic_gemm_matches_numpy_reference_and_float():
    x = rng.normal(size=(2, 9, 128)).astype(np.float32)
    w = rng.normal(size=(128, 48)).astype(np.float32) * 0.1
    b = rng.normal(size=(48,)).astype(np.float32)
    y = gemm(jnp.asarray(x), quantize_weight_int8(w), precision="int8-dynamic", bias=jnp.asarray(b),
             out_dtype=jnp.float32)
    expected = _reference_int8_dynamic(x, w, b)  # exact integer products: only the scales round
    np.testing.assert_allclose(np.asarray(y), expected, rtol=0, atol=5e-7 * np.abs(expected).max())
    exact = x @ w + b
    assert np.abs(np.asarray(y) - exact).max() < 0.05 * np.abs(exact).max()


def test_epilogue_bias_gelu_residual_and_out_dtype():
    x = rng.normal(size=(4, 32)).astype(np.float32)
    w = rng.normal(size=(32, 16)).astype(np.float32)
    b = rng.normal(size=(16,)).astype(np.float32)
    r = rng.normal(size=(4, 16)).astype(np.float32)
    y = gemm(jnp.asarray(x), jnp.asarray(w), precision="fp32", bias=jnp.asarray(b),
             activation="gelu", residual=jnp.asarray(r))
    expected = np.asarray(jax.nn.gelu(x @ w + b, approximate=False)) + r
    np.testing.assert_allclose(np.asarray(y), expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    half = gemm(jnp.asarray(x, jnp.float16), jnp.asarray(w), precision="fp16")
    assert half.dtype == jnp.float16
    # rounding the inputs to FP16 errs as much near zero as far from it (measured 5.5e-3 here;
    # over 300 random draws of these shapes at most 31% of this bound)
    np.testing.assert_allclose(np.asarray(half, np.float32), x @ w, rtol=2e-3, atol=2e-2)


def test_static_int8_and_fp8_paths():
    """Against the float64 reference of the same quantization (tight: measured 8e-8 of max|y|),
    and against the float GEMM (the quantization error itself: measured 1.2% of max|y| for
    INT8, 3.2% for FP8; test_site_numerics.py pins every mode in detail)."""
    local = np.random.default_rng(11)
    x = local.normal(size=(8, 64)).astype(np.float32)
    w = local.normal(size=(64, 24)).astype(np.float32)
    exact = x @ w
    amax = np.abs(x).max()
    int8 = gemm(jnp.asarray(x), quantize_weight_int8(w), precision="int8-static",
                act_scale=jnp.float32(amax / 127))
    fp8 = gemm(jnp.asarray(x), quantize_weight_fp8(w), precision="fp8_e4m3",
               act_scale=jnp.float32(amax / FP8_E4M3_MAX))
    wq, ws = ref.weight_int8(w)
    int8_ref = ref.int8_gemm(x, wq, ws, act_scale=float(np.float32(amax / 127)))[1]
    w8, s8 = ref.weight_fp8(w)
    fp8_ref = ref.fp8_gemm(x, w8, s8, float(np.float32(amax / FP8_E4M3_MAX)))
    for y, y_ref, float_bound in ((int8, int8_ref, 0.03), (fp8, fp8_ref, 0.08)):
        scale = np.abs(exact).max()
        np.testing.assert_allclose(np.asarray(y), y_ref, rtol=0, atol=5e-7 * scale)
        assert np.abs(np.asarray(y) - exact).max() < float_bound * scale


def test_smoothing_tames_an_outlier_channel():
    """Per-tensor INT8 of an input with one huge channel: migrating it into W cuts the error."""
    x = rng.normal(size=(256, 64)).astype(np.float32)
    x[:, 3] *= 60.0
    w = rng.normal(size=(64, 32)).astype(np.float32) * 0.05
    exact = x @ w

    def error(input_scale):
        w_eff = w / input_scale[:, None]
        xs = np.abs(x * input_scale).max() / 127
        y = gemm(jnp.asarray(x), quantize_weight_int8(w_eff), precision="int8-static",
                 act_scale=jnp.float32(xs), input_scale=jnp.asarray(input_scale))
        return np.abs(np.asarray(y) - exact).mean()

    s = np.asarray(smoothing_factors(np.abs(x).max(0), w, alpha=0.5))
    assert error(1.0 / s) < 0.5 * error(np.ones(64, np.float32))
    with pytest.raises(ValueError, match="alpha=1.5"):
        smoothing_factors(np.ones(4), np.ones((4, 2)), 1.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(weight="float", precision="int8-dynamic"),
     r"gemm: precision int8-dynamic needs weight as a int8 QArray \(samp_jax.core.primitives."
     r"quantize_weight_int8\), got a \w+ of dtype float32"),
    (dict(weight="int8", precision="fp16"), "needs a float weight"),
    (dict(weight="int8", precision="int8-static"), "needs a static act_scale"),
    (dict(weight="wide", precision="fp32"),
     r"gemm: weight has shape \(17, 8\), expected \[K=16, N\] \(K: the size of x's last axis\)"),
    (dict(weight="3d", precision="fp32"), r"gemm: weight has shape \(16, 8, 1\), expected \[K=16, N\]"),
    (dict(weight="float", precision="fp32", bias=(7,)), r"gemm: bias has shape \(7,\), expected \(8,\)"),
    (dict(weight="float", precision="fp32", residual=(2, 7)),
     r"gemm: residual has shape \(2, 7\), expected \(2, 8\)"),
    (dict(weight="float", precision="fp32", input_scale=np.ones(3)), r"input_scale has shape \(3,\)"),
    (dict(weight="float", precision="int4"), "precision='int4' is not one of"),
])
def test_gemm_rejects_inconsistent_calls(kwargs, message):
    w = rng.normal(size=(16, 8)).astype(np.float32)
    weights = {"float": jnp.asarray(w), "int8": quantize_weight_int8(w),
               "wide": jnp.asarray(rng.normal(size=(17, 8)), jnp.float32),
               "3d": jnp.asarray(w[..., None])}
    kwargs = dict(kwargs)
    weight = weights[kwargs.pop("weight")]
    if "input_scale" in kwargs:
        kwargs["input_scale"] = jnp.asarray(kwargs["input_scale"], jnp.float32)
    for name in ("bias", "residual"):
        if name in kwargs:
            kwargs[name] = jnp.ones(kwargs[name], jnp.float32)
    with pytest.raises(ValueError, match=message):
        gemm(jnp.ones((2, 16)), weight, **kwargs)


def test_dispatch_falls_back_and_named_implementation_fails_loudly(monkeypatch):
    monkeypatch.setattr(gemm_module, "_REGISTRY", dict(gemm_module._REGISTRY))
    monkeypatch.setattr(gemm_module, "_ORDER", list(gemm_module._ORDER))
    calls = []

    def picky(x, weight, **kwargs):
        calls.append(kwargs["precision"])
        if kwargs["precision"].precision != "int8":
            raise NotImplementedError("picky handles int8 only")
        return jnp.full((x.shape[0], weight.shape[1]), 7.0, kwargs["out_dtype"])

    register_gemm_implementation("picky", picky, first=True)
    assert implementations()[0] == "picky"
    w = rng.normal(size=(16, 8)).astype(np.float32)
    x = jnp.ones((2, 16))
    fallback = gemm(x, jnp.asarray(w), precision="fp32")  # picky declines, xla runs
    np.testing.assert_allclose(np.asarray(fallback), np.ones((2, 16)) @ w, rtol=0, atol=4e-6)
    assert np.all(np.asarray(gemm(x, quantize_weight_int8(w), precision="int8")) == 7.0)
    with pytest.raises(NotImplementedError, match="picky handles int8 only"):
        gemm(x, jnp.asarray(w), precision="fp32", implementation="picky")
    with pytest.raises(ValueError, match=r"implementation \['triton'\] is not one of"):
        gemm(x, jnp.asarray(w), precision="fp32", implementation="triton")
    assert len(calls) == 3


@pytest.fixture
def own_registry(monkeypatch):
    """The GEMM registry, restored after the test."""
    monkeypatch.setattr(gemm_module, "_REGISTRY", dict(gemm_module._REGISTRY))
    monkeypatch.setattr(gemm_module, "_ORDER", list(gemm_module._ORDER))


def test_registering_a_taken_name_needs_replace_and_keeps_its_place(own_registry):
    from samp_jax.ops import base
    before = implementations()
    assert before == ("pallas", "xla")
    with pytest.raises(ValueError, match="'pallas' is already registered .*replace=True"):
        register_gemm_implementation("pallas", base.xla_gemm)
    assert implementations() == before  # nothing changed (re-registering used to move it behind xla)
    register_gemm_implementation("pallas", base.xla_gemm, replace=True,
                                 precisions=gemm_module._REGISTRY["pallas"].precisions)
    assert implementations() == before and gemm_module._REGISTRY["pallas"].fn is base.xla_gemm
    register_gemm_implementation("xla", base.xla_gemm, replace=True, first=True)
    assert implementations() == ("xla", "pallas")  # first=True moves a replacement ahead
    register_gemm_implementation("mine", base.xla_gemm)
    assert implementations() == ("xla", "pallas", "mine")  # a new name goes last


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("mine", "not a function"), {}, TypeError, "is not callable"),
    (("", "fn"), {}, ValueError, "non-empty str"),
    ((3, "fn"), {}, TypeError, "name=3 must be a str"),
    (("mine", "fn"), {"precisions": ["int8-dynamic"]}, ValueError,
     r"precisions \['int8-dynamic'\] are not precision names; expected names from .*'int8-dynamic' "
     r"is an option of precision 'int8'"),
    (("mine", "fn"), {"precisions": ["int4"]}, ValueError, r"precisions \['int4'\] are not precision names"),
    (("mine", "fn"), {"precisions": []}, ValueError, r"precisions=\[\] runs nothing"),
])
def test_a_gemm_registration_is_checked(own_registry, args, kwargs, error, message):
    from samp_jax.ops import base
    args = tuple(base.xla_gemm if a == "fn" else a for a in args)
    with pytest.raises(error, match=message):
        register_gemm_implementation(*args, **kwargs)
    assert "mine" not in gemm_module._REGISTRY
    register_gemm_implementation("mine", base.xla_gemm, precisions="int8")  # one name is a tuple of it
    assert gemm_module._REGISTRY["mine"].precisions == frozenset({"int8"})


def test_qarray_is_a_pytree():
    q = quantize_weight_int8(rng.normal(size=(8, 4)).astype(np.float32))
    leaves, tree = jax.tree.flatten(q)
    assert len(leaves) == 2
    again = jax.tree.unflatten(tree, leaves)
    assert isinstance(again, QArray) and again.qtype == "int8"
