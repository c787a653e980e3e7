"""Every GEMM site mode against the float64 numpy reference of `tests/numerics_reference.py`
(written from the conventions, not from the code): INT8 per-token dynamic, INT8 per-tensor
static with a clip that saturates, SmoothQuant, FP8 E4M3, FP16/BF16/FP32, NaN rows, the INT8
hand-off (pre-quantized input, requantizing epilogue), each through the XLA implementation and
the Pallas kernel in interpret mode.

INT8 accumulators are compared with the int64 reference for exact equality. Each epilogue
tolerance is a few times the error measured on the 2-core CPU VM (the figure is in a comment):
a wrong rounding, scale, clip or smoothing factor moves the result by orders of magnitude more.
"""

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import samp_jax.ops
from pallas_kernels.int8_matmul.reference import int8_accumulate
from samp_jax import QArray, gemm
from samp_jax.core.primitives import (
    quantize_fp8,
    quantize_per_tensor_int8,
    quantize_per_token_int8,
    quantize_weight_fp8,
    quantize_weight_int8,
)
from samp_jax.ops.dispatch import quantize_activation
from samp_jax.core.precision import as_precision
from tests import numerics_reference as ref

K, N = 384, 128  # shapes the Triton kernel tiles
IMPLEMENTATIONS = ["xla", "pallas"]  # pallas: the Triton kernel in interpret mode
# INT8 epilogue (float32 output) against float64, relative to max|y|: measured 1.7e-7 (xla
# 1.1e-7, interpreted kernel 1.7e-7); one INT8 step of one product moves it by ~1e-3.
INT8_Y_RTOL = 1e-6
# FP8 output against float64, relative to max|y|: measured 8.0e-8.
FP8_Y_RTOL = 5e-7


def _operands(seed=0, lead=(2, 12)):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(*lead, K)) * rng.uniform(0.2, 3, size=(*lead, 1))).astype(np.float32)
    w = (rng.normal(size=(K, N)) * 0.05).astype(np.float32)
    bias = rng.normal(size=(N,)).astype(np.float32)
    residual = rng.normal(size=(*lead, N)).astype(np.float32)
    inv_s = rng.uniform(0.3, 3, size=(K,)).astype(np.float32)  # SmoothQuant 1/s
    return x, w, bias, residual, inv_s


def _modes(x, inv_s):
    """(name, precision, kwargs): the static scale clips at 60% of max|x|, so ~1% of the
    values saturate and the per-token scales differ from it in every row."""
    static = np.float32(0.6 * np.abs(x).max() / 127)
    return {"dynamic": ("int8-dynamic", {}),
            "static": ("int8-static", {"act_scale": static}),
            "smooth_static": ("int8-static", {"act_scale": static, "input_scale": inv_s}),
            "smooth_dynamic": ("int8-dynamic", {"input_scale": inv_s})}


MODES = ["dynamic", "static", "smooth_static", "smooth_dynamic"]


def _int8_weight(w):
    wq, ws = ref.weight_int8(w)
    return QArray(jnp.asarray(wq, jnp.int8), jnp.asarray(ws, jnp.float32), "int8"), wq, ws


def _run(fn, implementation):
    if implementation == "pallas":
        with samp_jax.ops.interpret():
            return fn()
    return fn()


def _assert_q_matches(q, q_ref, x, scale, input_scale=None):
    """INT8 values equal the reference's except where `x / scale` sits on a .5 tie (float32
    division may round it either way), and those differ by one step at most."""
    q, q_ref = np.asarray(q, np.int64), np.asarray(q_ref, np.int64)
    tie = ref.near_tie(x, scale, input_scale)
    assert np.abs(q - q_ref).max() <= 1
    assert not ((q != q_ref) & ~tie).any(), f"{int(((q != q_ref) & ~tie).sum())} INT8 values differ"


def test_int8_weights_match_the_reference():
    _, w, *_ = _operands()
    w[:, 5] *= 40.0  # one loud output channel: per-channel scales keep the others fine
    q = quantize_weight_int8(w)
    wq, ws = ref.weight_int8(w)
    np.testing.assert_array_equal(np.asarray(q.qvalue, np.int64), wq)
    np.testing.assert_allclose(np.asarray(q.scale), ws, rtol=1e-7)  # measured 5.5e-8


@pytest.mark.parametrize("mode", MODES)
def test_activation_quantization_matches_the_reference(mode):
    x, _, _, _, inv_s = _operands(1)
    precision, kwargs = _modes(x, inv_s)[mode]
    jkw = {k: jnp.asarray(v) for k, v in kwargs.items()}
    q, scale = quantize_activation(jnp.asarray(x), as_precision(precision), jkw.get("act_scale"),
                                   jkw.get("input_scale"))
    q_ref, scale_ref = ref.activation_int8(x, kwargs.get("act_scale"), kwargs.get("input_scale"))
    np.testing.assert_allclose(np.asarray(scale), scale_ref, rtol=1e-7)  # float32 of the same max
    _assert_q_matches(q, q_ref, x, scale_ref, kwargs.get("input_scale"))
    if "act_scale" in kwargs:
        assert (np.abs(q_ref) == 127).mean() > 0.001  # the clip saturates some values


def test_int8_primitives_match_the_reference():
    x, *_ = _operands(2)
    q = quantize_per_token_int8(x)
    q_ref, s_ref = ref.activation_int8(x)
    np.testing.assert_allclose(np.asarray(q.scale), s_ref, rtol=1e-7)
    _assert_q_matches(q.qvalue, q_ref, x, s_ref)
    scale = np.float32(0.01)
    _assert_q_matches(quantize_per_tensor_int8(x, scale), ref.int8(x, scale), x, scale)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", MODES)
def test_int8_accumulator_is_exact_from_float_input(mode, implementation):
    """Quantize + s8xs8->s32 through `gemm`, equal to the int64 reference bit for bit."""
    x, w, _, _, inv_s = _operands(3)
    precision, kwargs = _modes(x, inv_s)[mode]
    weight, wq, ws = _int8_weight(w)
    jkw = {k: jnp.asarray(v) for k, v in kwargs.items()}
    acc = _run(lambda: gemm(jnp.asarray(x), weight, precision=precision, out_dtype=jnp.int32,
                            implementation=implementation, **jkw), implementation)
    acc_ref, _ = ref.int8_gemm(x, wq, ws, **kwargs)
    assert acc.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(acc, np.int64), acc_ref)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", MODES)
def test_int8_epilogue_matches_the_reference(mode, implementation):
    x, w, bias, residual, inv_s = _operands(4)
    precision, kwargs = _modes(x, inv_s)[mode]
    weight, wq, ws = _int8_weight(w)
    jkw = {k: jnp.asarray(v) for k, v in kwargs.items()}
    y = _run(lambda: gemm(jnp.asarray(x), weight, precision=precision, bias=jnp.asarray(bias),
                          activation="gelu", residual=jnp.asarray(residual), out_dtype=jnp.float32,
                          implementation=implementation, **jkw), implementation)
    _, y_ref = ref.int8_gemm(x, wq, ws, bias=bias, act="gelu", residual=residual, **kwargs)
    np.testing.assert_allclose(np.asarray(y), y_ref, rtol=0, atol=INT8_Y_RTOL * np.abs(y_ref).max())


def test_int8_accumulator_is_exact_beyond_float32_integers():
    """|acc| far above 2**24 with odd sums: a float32 accumulator would round them."""
    rng = np.random.default_rng(5)
    xq = np.full((4, 3072), 127, np.int8)
    xq[:, ::7] = 125
    wq = rng.integers(101, 128, size=(3072, 64)).astype(np.int8)
    acc = np.asarray(int8_accumulate(jnp.asarray(xq), jnp.asarray(wq)), np.int64)
    exact = xq.astype(np.int64) @ wq.astype(np.int64)
    assert exact.min() > 2 ** 25 and (exact % 2).any()
    np.testing.assert_array_equal(acc, exact)


def test_fp8_matches_the_reference():
    x, w, bias, residual, _ = _operands(6)
    act_scale = np.float32(0.8 * np.abs(x).max() / 448)  # saturates the largest values
    xq = np.asarray(quantize_fp8(jnp.asarray(x), jnp.float32(act_scale)).astype(jnp.float32))
    np.testing.assert_array_equal(xq, ref.fp8_e4m3(ref.f64(x) / act_scale))
    weight = quantize_weight_fp8(w)
    wq, ws = ref.weight_fp8(w)
    np.testing.assert_array_equal(np.asarray(weight.qvalue.astype(jnp.float32)), wq)
    np.testing.assert_allclose(float(weight.scale), ws, rtol=1e-7)  # measured 1.6e-8
    y = gemm(jnp.asarray(x), weight, precision="fp8_e4m3", act_scale=jnp.float32(act_scale),
             bias=jnp.asarray(bias), activation="gelu", residual=jnp.asarray(residual),
             out_dtype=jnp.float32)
    y_ref = ref.fp8_gemm(x, wq, ws, float(act_scale), bias=bias, act="gelu", residual=residual)
    np.testing.assert_allclose(np.asarray(y), y_ref, rtol=0, atol=FP8_Y_RTOL * np.abs(y_ref).max())


@pytest.mark.parametrize("precision, dtype, ulp", [("fp16", np.float16, 2.0 ** -10),
                                                   ("bf16", ml_dtypes.bfloat16, 2.0 ** -7)])
def test_16_bit_sites_round_once_to_their_type(precision, dtype, ulp):
    """A 16-bit dot accumulates in float32 and rounds once to its type: within one unit in the
    last place of the product (measured 0.95 for FP16, 1e-4 for BF16); the other 16-bit type
    would be 8 (or 1/8) of them off."""
    x, w, bias, *_ = _operands(7)
    y = np.asarray(gemm(jnp.asarray(x), jnp.asarray(w), precision=precision,
                        bias=jnp.asarray(bias), out_dtype=jnp.float32))
    product = ref.f64(x.astype(dtype)) @ ref.f64(w.astype(dtype))
    rounded = ref.f64(product.astype(np.float32).astype(dtype))
    step = np.maximum(np.abs(rounded), 1e-3) * ulp
    assert (np.abs(y - (rounded + bias)) / step).max() <= 1.5
    fp32 = np.asarray(gemm(jnp.asarray(x), jnp.asarray(w), precision="fp32", bias=jnp.asarray(bias)))
    np.testing.assert_allclose(fp32, ref.f64(x) @ ref.f64(w) + bias, rtol=0,
                               atol=2e-6 * np.abs(fp32).max())  # measured 3.4e-7


@pytest.mark.parametrize("precision, implementation", [
    ("int8-dynamic", "xla"), ("int8-dynamic", "pallas"), ("int8-static", "xla"),
    ("int8-static", "pallas"), ("fp8_e4m3", "xla")])  # the Pallas GEMM handles INT8 only
def test_a_non_finite_row_gives_a_nan_row_and_leaves_the_others_exact(precision, implementation):
    x, w, bias, *_ = _operands(8, lead=(6,))
    x[1, 7], x[4, 0] = np.nan, np.inf
    act_scale = np.float32(0.05)
    if precision == "fp8_e4m3":
        weight, (wq, ws) = quantize_weight_fp8(w), ref.weight_fp8(w)
        y_ref = ref.fp8_gemm(x, wq, ws, float(act_scale), bias=bias)
        tol = FP8_Y_RTOL
    else:
        weight, wq, ws = _int8_weight(w)
        static = precision == "int8-static"
        y_ref = ref.int8_gemm(x, wq, ws, act_scale=act_scale if static else None, bias=bias)[1]
        tol = INT8_Y_RTOL
    kwargs = {"act_scale": jnp.float32(act_scale)} if precision != "int8-dynamic" else {}
    y = np.asarray(_run(lambda: gemm(jnp.asarray(x), weight, precision=precision,
                                     bias=jnp.asarray(bias), out_dtype=jnp.float32,
                                     implementation=implementation, **kwargs), implementation))
    assert np.isnan(y[[1, 4]]).all() and np.isfinite(y[[0, 2, 3, 5]]).all()
    finite = [0, 2, 3, 5]
    np.testing.assert_allclose(y[finite], y_ref[finite], rtol=0,
                               atol=tol * np.abs(y_ref[finite]).max())


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("mode", MODES)
def test_a_handed_off_input_is_used_as_given(mode, implementation):
    """The hand-off: an INT8 input quantized upstream (as the site's `int8_input` says, the
    SmoothQuant factor included) is multiplied as given, never quantized again, even though
    the site still passes its `act_scale` and `input_scale`."""
    x, w, _, _, inv_s = _operands(9)
    precision, kwargs = _modes(x, inv_s)[mode]
    q_ref, s_ref = ref.activation_int8(x, kwargs.get("act_scale"), kwargs.get("input_scale"))
    scale = s_ref if "act_scale" not in kwargs else np.asarray(kwargs["act_scale"])
    handed = QArray(jnp.asarray(q_ref, jnp.int8), jnp.asarray(scale, jnp.float32), "int8")
    weight, wq, ws = _int8_weight(w)
    jkw = {k: jnp.asarray(v) for k, v in kwargs.items()}
    acc = _run(lambda: gemm(handed, weight, precision=precision, out_dtype=jnp.int32,
                            implementation=implementation, **jkw), implementation)
    np.testing.assert_array_equal(np.asarray(acc, np.int64),
                                  q_ref.astype(np.int64) @ wq.astype(np.int64))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_requantizing_epilogue_matches_the_reference(implementation):
    """`out_dtype=int8`: the epilogue's float32 result requantized at the next site's static
    scale, round half to even, saturating (the scale clips ~2% of the values)."""
    x, w, bias, *_ = _operands(10)
    weight, wq, ws = _int8_weight(w)
    _, y_ref = ref.int8_gemm(x, wq, ws, bias=bias, act="gelu")
    out_scale = np.float32(0.5 * np.abs(y_ref).max() / 127)
    q = _run(lambda: gemm(jnp.asarray(x), weight, precision="int8-dynamic", bias=jnp.asarray(bias),
                          activation="gelu", out_dtype=jnp.int8, out_scale=out_scale,
                          implementation=implementation), implementation)
    q_ref = ref.int8(y_ref, out_scale)
    assert (np.abs(q_ref) == 127).mean() > 0.005
    diff = np.abs(np.asarray(q, np.int64) - q_ref)
    # float32 against float64: only values within ~1e-6 of a .5 tie may round the other way
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999
    assert not ((diff > 0) & ~ref.near_tie(y_ref, out_scale, rel=1e-5)).any()
