"""Faults 3 and 9: non-finite inputs, invalid static scales, empty and too-deep INT8 GEMMs.

- Static INT8 turned a NaN (and FP8 an Inf) input row into a finite output row, where FP16 and
  dynamic INT8 propagate it. Now every quantized precision gives an all-NaN output row for an
  input row holding NaN or +-Inf, in the XLA reference and in the Pallas kernels alike (a NaN
  row scale: the per-row "all finite" flag), and the other rows are unchanged.
- A zero, negative or non-finite static scale was accepted (giving zeros or garbage): it is
  refused with a ValueError naming the argument.
- An empty GEMM (M = 0) falls back from the Pallas kernel to XLA; a reduction deeper than the
  int32 accumulator holds exactly (K > 133,144) is refused with a ValueError naming K.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import samp_jax
from pallas_kernels import numerics
from pallas_kernels.int8_matmul import int8_matmul, int8_matmul_reference
from pallas_kernels.int8_matmul.reference import int8_accumulate
from samp_jax.core.primitives import (
    quantize_fp8,
    quantize_per_tensor_int8,
    quantize_weight_fp8,
    quantize_weight_int8,
)

M, K, N = 6, 128, 128
SCALE = 0.05
PRECISIONS = ("fp16", "int8-dynamic", "int8-static", "fp8_e4m3")


def _operands(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(M, K)).astype(np.float32)
    w = rng.normal(size=(K, N)).astype(np.float32) * 0.1
    return x, w, rng.normal(size=(N,)).astype(np.float32)


def _gemm(x, w, precision, implementation="xla", **kwargs):
    if precision.startswith("int8"):
        weight = quantize_weight_int8(w)
    elif precision == "fp8_e4m3":
        weight = quantize_weight_fp8(w)
    else:
        weight = jnp.asarray(w)
    if precision in ("int8-static", "fp8_e4m3"):
        kwargs.setdefault("act_scale", jnp.float32(SCALE))
    return np.asarray(samp_jax.gemm(jnp.asarray(x), weight, precision=precision,
                                    implementation=implementation, out_dtype=jnp.float32, **kwargs))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_non_finite_input_row_gives_a_nan_row(precision, bad):
    x, w, bias = _operands()
    clean = _gemm(x, w, precision, bias=jnp.asarray(bias), activation="gelu")
    x[2, 7] = bad
    out = _gemm(x, w, precision, bias=jnp.asarray(bias), activation="gelu")
    assert not np.isfinite(out[2]).any()  # FP16 may mix Inf and NaN; quantized rows are NaN
    if precision != "fp16":
        assert np.isnan(out[2]).all()
    others = [r for r in range(M) if r != 2]
    np.testing.assert_array_equal(out[others], clean[others])  # per-row: the rest is unchanged


@pytest.mark.parametrize("implementation", ["pallas_triton", "pallas_mosaic"])
@pytest.mark.parametrize("precision", ["int8-dynamic", "int8-static"])
def test_kernels_and_reference_agree_on_non_finite_rows(precision, implementation):
    x, w, bias = _operands(1)
    x[1, 0], x[4, 9] = np.nan, -np.inf
    kwargs = dict(bias=jnp.asarray(bias), activation="gelu")
    reference = _gemm(x, w, precision, **kwargs)
    with samp_jax.ops.interpret():
        kernel = _gemm(x, w, precision, implementation=implementation, **kwargs)
    np.testing.assert_array_equal(np.isnan(kernel), np.isnan(reference))
    assert np.isnan(kernel[[1, 4]]).all() and np.isfinite(kernel[[0, 2, 3, 5]]).all()
    np.testing.assert_allclose(kernel[[0, 2, 3, 5]], reference[[0, 2, 3, 5]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("implementation", ["triton", "mosaic"])
def test_a_nan_row_requantizes_to_zeros_in_kernel_and_reference(implementation):
    """int8 has no NaN: a NaN row's requantized INT8 output is zeros in both (never the
    undefined cast of NaN to an integer)."""
    rng = np.random.default_rng(2)
    x_q = jnp.asarray(rng.integers(-127, 128, (64, K)), jnp.int8)
    w_q = jnp.asarray(rng.integers(-127, 128, (K, N)), jnp.int8)
    x_scale = jnp.full((64, 1), 1e-3, jnp.float32).at[3, 0].set(jnp.nan)
    w_scale = jnp.full((N,), 1e-3, jnp.float32)
    kwargs = dict(activation="gelu", out_dtype=jnp.int8, out_scale=jnp.float32(0.01))
    out = np.asarray(int8_matmul(x_q, w_q, x_scale, w_scale, implementation=implementation,
                                 interpret=True, **kwargs))
    ref = np.asarray(int8_matmul_reference(x_q, w_q, x_scale, w_scale, **kwargs))
    assert (out[3] == 0).all() and (ref[3] == 0).all()
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # only .5 ties may differ


def test_quantize_rows_flags_non_finite_rows_and_keeps_int8_exact():
    x = np.ones((3, 4), np.float32)
    x[1, 2] = np.nan
    for act_scale in (None, 0.5):
        q, scale = numerics.quantize_rows(jnp.asarray(x), act_scale=act_scale)
        assert scale.shape == (3, 1) and np.isnan(np.asarray(scale)[1, 0])
        assert np.isfinite(np.asarray(scale)[[0, 2]]).all()
        assert (np.asarray(q)[1] == 0).all() and q.dtype == jnp.int8


BAD_SCALES = [0.0, -0.05, np.nan, np.inf]


@pytest.mark.parametrize("scale", BAD_SCALES, ids=["zero", "negative", "nan", "inf"])
@pytest.mark.parametrize("precision", ["int8-static", "fp8_e4m3"])
def test_invalid_act_scale_is_refused(precision, scale):
    x, w, _ = _operands()
    with pytest.raises(ValueError, match=r"act_scale must be a finite positive .*found"):
        _gemm(x, w, precision, act_scale=jnp.float32(scale))


@pytest.mark.parametrize("scale", BAD_SCALES, ids=["zero", "negative", "nan", "inf"])
@pytest.mark.parametrize("where", ["gemm", "int8_matmul", "reference", "per_tensor", "fp8"])
def test_invalid_scales_are_refused_where_they_are_passed(where, scale):
    x, w, _ = _operands()
    x_q = jnp.zeros((M, K), jnp.int8)
    w_q = quantize_weight_int8(w)
    if where == "gemm":
        call = lambda: samp_jax.gemm(jnp.asarray(x), w_q, precision="int8-dynamic",  # noqa: E731
                                     out_dtype=jnp.int8, out_scale=jnp.float32(scale))
        name = "out_scale"
    elif where == "int8_matmul":
        call = lambda: int8_matmul(x_q, w_q.qvalue, jnp.ones((M, 1)), w_q.scale,  # noqa: E731
                                   out_dtype=jnp.int8, out_scale=scale, interpret=True)
        name = "out_scale"
    elif where == "reference":
        call = lambda: int8_matmul_reference(x_q, w_q.qvalue, jnp.ones((M, 1)), w_q.scale,  # noqa: E731
                                             out_dtype=jnp.int8, out_scale=scale)
        name = "out_scale"
    elif where == "per_tensor":
        call, name = (lambda: quantize_per_tensor_int8(jnp.asarray(x), scale)), "scale"
    else:
        call, name = (lambda: quantize_fp8(jnp.asarray(x), scale)), "scale"
    with pytest.raises(ValueError, match=rf"^{name} must be a finite positive quantization scale"):
        call()


def test_a_traced_scale_is_not_checked_but_works_under_jit():
    """Under jit a scale is a tracer: nothing can be read on the host (documented), so it is
    not checked there; a valid traced scale gives the eager result."""
    x, w, _ = _operands()
    weight = quantize_weight_int8(w)
    run = jax.jit(lambda s: samp_jax.gemm(jnp.asarray(x), weight, precision="int8-static",
                                          act_scale=s, implementation="xla"))
    np.testing.assert_allclose(np.asarray(run(jnp.float32(SCALE))),
                               _gemm(x, w, "int8-static"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("precision", ["int8-dynamic", "int8-static"])
def test_an_empty_gemm_falls_back_from_pallas_to_xla(precision):
    _, w, _ = _operands()
    x = np.zeros((0, K), np.float32)
    with samp_jax.ops.interpret():
        with pytest.raises(NotImplementedError, match="M=0"):
            int8_matmul(jnp.zeros((0, K), jnp.int8), jnp.zeros((K, N), jnp.int8),
                        jnp.zeros((0, 1)), jnp.ones(N), interpret=True)
        with pytest.raises(NotImplementedError, match="at least one row"):
            _gemm(x, w, precision, implementation="pallas")  # named alone: it says why
        out = _gemm(x, w, precision, implementation=None)  # automatic: falls back to XLA
    assert out.shape == (0, N)


DEEP = numerics.MAX_K + 1


def test_the_accumulator_limit_is_exact():
    assert numerics.MAX_K == 133_144
    assert 127 * 127 * numerics.MAX_K <= 2 ** 31 - 1 < 127 * 127 * DEEP


@pytest.mark.parametrize("where", ["int8_matmul", "reference", "gemm"])
def test_a_reduction_the_int32_accumulator_cannot_hold_is_refused(where):
    x_q, w_q = jnp.zeros((1, DEEP), jnp.int8), jnp.zeros((DEEP, 16), jnp.int8)
    x_scale, w_scale = jnp.ones((1, 1)), jnp.ones((16,))
    with pytest.raises(ValueError, match=rf"K={DEEP} input features, more than the 133144"):
        if where == "int8_matmul":
            int8_matmul(x_q, w_q, x_scale, w_scale, interpret=True)
        elif where == "reference":
            int8_matmul_reference(x_q, w_q, x_scale, w_scale)
        else:
            weight = samp_jax.QArray(w_q, w_scale, "int8")
            samp_jax.gemm(jnp.zeros((1, DEEP)), weight, precision="int8-dynamic")


def test_the_deepest_allowed_reduction_is_exact():
    k = numerics.MAX_K
    acc = int8_accumulate(jnp.full((1, k), 127, jnp.int8), jnp.full((k, 1), 127, jnp.int8))
    assert int(acc[0, 0]) == 127 * 127 * k


# ------------------------------------------------- fused LayerNorm / embedding + quantize
def _ln_operands():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 48)).astype(np.float32)
    x[1, 7], x[3, 0] = np.nan, -np.inf
    return jnp.asarray(x), jnp.asarray(rng.normal(size=48), jnp.float32), jnp.zeros(48, jnp.float32)


@pytest.mark.parametrize("act_scale", [None, 0.05], ids=["dynamic", "static"])
def test_fused_layernorm_quant_flags_non_finite_rows_like_its_reference(act_scale):
    from pallas_kernels.layernorm_quant.reference import layernorm_quant_reference
    from pallas_kernels.layernorm_quant.triton import layernorm_quant
    x, gamma, beta = _ln_operands()
    scale = None if act_scale is None else jnp.float32(act_scale)
    _, q, s = layernorm_quant(x, gamma, beta, eps=1e-12, act_scale=scale, interpret=True)
    _, q_ref, s_ref = layernorm_quant_reference(x, gamma, beta, eps=1e-12, act_scale=scale)
    s, s_ref = np.asarray(s).ravel(), np.asarray(s_ref).ravel()
    assert np.isnan(s[[1, 3]]).all() and np.isfinite(s[[0, 2, 4]]).all()  # static too
    np.testing.assert_array_equal(np.isnan(s), np.isnan(s_ref))
    np.testing.assert_array_equal(s[[0, 2, 4]], s_ref[[0, 2, 4]])
    np.testing.assert_array_equal(np.asarray(q), np.asarray(q_ref))
    assert not np.asarray(q)[[1, 3]].any()  # zeros: the NaN scale carries the row


@pytest.mark.parametrize("act_scale", [None, 0.05], ids=["dynamic", "static"])
def test_fused_embedding_quant_flags_a_nan_embedding_row(act_scale):
    from pallas_kernels.layernorm_quant.reference import embedding_quant_reference
    from pallas_kernels.layernorm_quant.triton import embedding_quant
    rng = np.random.default_rng(4)
    word = rng.normal(size=(20, 32)).astype(np.float32)
    word[7, 3] = np.nan  # a damaged vocabulary row
    position = jnp.asarray(rng.normal(size=(8, 32)), jnp.float32)
    ids = jnp.asarray([[1, 7, 2, 3], [4, 5, 6, 8]], jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(4, dtype=jnp.int32), (2, 4))
    gamma, beta = jnp.ones(32, jnp.float32), jnp.zeros(32, jnp.float32)
    scale = None if act_scale is None else jnp.float32(act_scale)
    args = (ids, positions, None, jnp.asarray(word), position, None, gamma, beta)
    _, q, s = embedding_quant(*args, eps=1e-12, act_scale=scale, interpret=True)
    _, q_ref, s_ref = embedding_quant_reference(*args, eps=1e-12, act_scale=scale)
    nan_rows = np.isnan(np.asarray(s)).reshape(2, 4)
    assert nan_rows.tolist() == [[False, True, False, False], [False] * 4]
    np.testing.assert_array_equal(np.isnan(np.asarray(s_ref)).reshape(2, 4), nan_rows)
    np.testing.assert_array_equal(np.asarray(q), np.asarray(q_ref))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0], ids=["nan", "inf", "negative"])
@pytest.mark.parametrize("precision", ["int8-static", "fp8_e4m3"])
def test_a_bad_calibration_scale_is_refused_where_the_site_is_made(precision, bad):
    from flax import nnx
    from samp_jax.models import GemmSite
    from samp_jax.core.precision import as_precision
    from samp_jax.ptq.quantized import QuantizedGemmSite, SiteCalibration
    source = GemmSite(16, 8, site="ffn_out", rngs=nnx.Rngs(0))
    calibration = SiteCalibration(absmax=bad, amax=bad)
    with pytest.raises(ValueError, match=r"site 'ffn_out' at .*activation scale .*expected a finite value > 0"):
        QuantizedGemmSite.from_float(source, as_precision(precision), dtype=jnp.float32,
                                     calibration=calibration)


# ----------------------------- fused kernels: static scales, downstream rows, bad scales
def _fused_layernorm(x, gamma, *, kernel, act_scale=SCALE):
    """`(y, QArray)` from the fused LayerNorm+quant kernel (interpret) or its reference, fp16 y."""
    from pallas_kernels.layernorm_quant import layernorm_quant, layernorm_quant_reference
    fn = functools.partial(layernorm_quant, interpret=True) if kernel else layernorm_quant_reference
    y, q, s = fn(x, gamma, jnp.zeros_like(gamma), eps=1e-12, out_dtype=jnp.float16,
                 act_scale=jnp.float32(act_scale))
    return y, samp_jax.QArray(q, s, "int8")


def _static_gemm(x, w, bias=None):
    """The XLA static INT8 GEMM of float `x` or a pre-quantized `QArray`, float32 out."""
    x = x if isinstance(x, samp_jax.QArray) else jnp.asarray(x)
    return np.asarray(samp_jax.gemm(x, quantize_weight_int8(w), precision="int8-static",
                                    act_scale=jnp.float32(SCALE), bias=bias,
                                    implementation="xla", out_dtype=jnp.float32))


def _overflowing_layernorm_operands():
    """Finite rows; row 2 has one outlier whose normalized value (~sqrt(H)) times gamma
    overflows float16 to Inf, while every other value stays below 65504."""
    rng = np.random.default_rng(5)
    x = np.clip(rng.normal(size=(5, K)), -2.0, 2.0).astype(np.float32)
    x[2, 11] = 1e4
    return jnp.asarray(x), jnp.full((K,), 1.5e4, jnp.float32)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "reference"])
@pytest.mark.parametrize("case", ["nan_input", "layernorm_overflow"])
def test_fused_static_rows_reach_the_gemm_as_the_plain_static_path_does(case, kernel):
    """The INT8 GEMM fed by the fused LayerNorm+quant (static scale) gives the plain static
    path's output: an all-NaN row where the input or the fp16 LayerNorm output is non-finite,
    the very same numbers elsewhere."""
    if case == "nan_input":
        x, gamma, _ = _ln_operands()  # rows 1 and 3 hold NaN / -Inf
        x = jnp.pad(x, ((0, 0), (0, K - x.shape[1])))
        gamma, bad = jnp.pad(gamma, (0, K - gamma.shape[0]), constant_values=1.0), [1, 3]
    else:
        (x, gamma), bad = _overflowing_layernorm_operands(), [2]
    y, x_q = _fused_layernorm(x, gamma, kernel=kernel)
    assert np.isfinite(np.asarray(y)[[r for r in range(5) if r not in bad]]).all()
    _, w, bias = _operands()
    fused = _static_gemm(x_q, w, jnp.asarray(bias))
    plain = _static_gemm(y, w, jnp.asarray(bias))
    assert np.isnan(fused[bad]).all() and np.isnan(plain[bad]).all()
    good = [r for r in range(5) if r not in bad]
    assert np.isfinite(fused[good]).all()
    np.testing.assert_array_equal(fused[good], plain[good])


def test_fused_embedding_static_rows_reach_the_gemm_as_nan():
    """An Inf in the position table reaches the GEMM after the fused embedding kernel as an
    all-NaN output row (static scale), as in the reference; other rows stay finite."""
    from pallas_kernels.layernorm_quant import embedding_quant, embedding_quant_reference
    rng = np.random.default_rng(6)
    word = jnp.asarray(rng.normal(size=(10, K)), jnp.float32)
    position = rng.normal(size=(4, K)).astype(np.float32)
    position[2, 5] = np.inf
    ids = jnp.asarray([[1, 2, 3, 4]], jnp.int32)
    positions = jnp.arange(4, dtype=jnp.int32)[None]
    args = (ids, positions, None, word, jnp.asarray(position), None, jnp.ones(K), jnp.zeros(K))
    _, w, _ = _operands()
    for fn in (functools.partial(embedding_quant, interpret=True), embedding_quant_reference):
        _, q, s = fn(*args, eps=1e-12, act_scale=jnp.float32(SCALE))
        out = _static_gemm(samp_jax.QArray(q[0], s[0], "int8"), w)
        assert np.isnan(out[2]).all() and np.isfinite(out[[0, 1, 3]]).all()


def test_layernorm_with_quantized_hands_a_nan_row_to_a_static_site():
    """Through the model's call site (`LayerNorm.with_quantized`, fused kernels in interpret
    mode) a non-finite row still comes out of the INT8 static site as NaN, as unfused."""
    from flax import nnx
    from samp_jax.models import GemmSite
    from samp_jax.models.layers import LayerNorm
    from samp_jax.core.precision import as_precision
    from samp_jax.ptq.quantized import QuantizedGemmSite, SiteCalibration
    source = GemmSite(K, N, site="ffn_in", rngs=nnx.Rngs(0))
    site = QuantizedGemmSite.from_float(source, as_precision("int8-static"), dtype=jnp.float32,
                                        calibration=SiteCalibration(absmax=4.0, amax=4.0))
    norm = LayerNorm(K, eps=1e-12)
    x = np.random.default_rng(7).normal(size=(4, K)).astype(np.float32)
    x[1, 0] = np.nan
    with samp_jax.ops.interpret():
        y, x_q = norm.with_quantized(jnp.asarray(x), site)
        assert x_q is not None  # the fused kernel ran
        fused = np.asarray(site(x_q))
    _, unfused_q = norm.with_quantized(jnp.asarray(x), site)
    assert unfused_q is None  # off a GPU without interpret: the site quantizes for itself
    unfused = np.asarray(site(y))
    assert np.isnan(fused[1]).all() and np.isnan(unfused[1]).all()
    np.testing.assert_allclose(fused[[0, 2, 3]], unfused[[0, 2, 3]], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", BAD_SCALES, ids=["zero", "negative", "nan", "inf"])
@pytest.mark.parametrize("fn", ["layernorm_quant", "embedding_quant"])
@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "reference"])
def test_fused_kernels_refuse_a_bad_static_scale_like_their_references(kernel, fn, scale):
    """A zero static scale made the kernel give finite rows of +-127 (and a negative one
    flipped signs) where the reference raises: both refuse it now."""
    from pallas_kernels.layernorm_quant import (
        embedding_quant,
        embedding_quant_reference,
        layernorm_quant,
        layernorm_quant_reference,
    )
    kernels = {"layernorm_quant": (layernorm_quant, layernorm_quant_reference),
               "embedding_quant": (embedding_quant, embedding_quant_reference)}
    fused, reference = kernels[fn]
    call = functools.partial(fused, interpret=True) if kernel else reference
    gamma, beta = jnp.ones(16), jnp.zeros(16)
    if fn == "layernorm_quant":
        args = (jnp.ones((2, 16)), gamma, beta)
    else:
        ids = jnp.zeros((1, 2), jnp.int32)
        args = (ids, ids, None, jnp.ones((3, 16)), jnp.ones((2, 16)), None, gamma, beta)
    with pytest.raises(ValueError, match=r"^act_scale must be a finite positive .*found"):
        call(*args, eps=1e-12, act_scale=jnp.float32(scale))


# ------------------------------------------------- calibration scales -> stored scales
def _site_from(calibration, precision="int8-static"):
    from flax import nnx
    from samp_jax.models import GemmSite
    from samp_jax.core.precision import as_precision
    from samp_jax.ptq.quantized import QuantizedGemmSite
    source = GemmSite(16, 8, site="qkv", rngs=nnx.Rngs(0))
    return QuantizedGemmSite.from_float(source, as_precision(precision), dtype=jnp.float32,
                                        calibration=calibration)


@pytest.mark.parametrize("bad", [0.0, -0.0, -2.5, np.nan, np.inf], ids=["zero", "-zero", "negative", "nan", "inf"])
@pytest.mark.parametrize("precision, field", [("int8-static", "amax"), ("fp8_e4m3", "absmax")])
def test_a_bad_calibration_clip_is_refused_naming_the_site_and_value(precision, field, bad):
    """A zero clip used to be clamped silently to 1e-12 (every input then saturated to
    +-127); now zero, like NaN, Inf and negatives, is refused, naming the site and value."""
    from samp_jax.ptq.quantized import SiteCalibration
    good = 5.0
    calibration = SiteCalibration(absmax=bad if field == "absmax" else good,
                                  amax=bad if field == "amax" else good)
    with pytest.raises(ValueError, match=rf"^site 'qkv' at .*calibration {field}={float(bad)} "
                                         r"gives activation scale .*expected a finite value > 0"):
        _site_from(calibration, precision)


def test_a_valid_calibration_clip_is_stored_as_its_scale():
    from samp_jax.ptq.quantized import SiteCalibration
    site = _site_from(SiteCalibration(absmax=20.0, amax=12.7))
    assert float(site.act_scale[...]) == pytest.approx(0.1)
    site = _site_from(SiteCalibration(absmax=448.0, amax=1.0), "fp8_e4m3")
    assert float(site.act_scale[...]) == pytest.approx(1.0)
    tiny = _site_from(SiteCalibration(absmax=1e-20, amax=1e-20))  # positive: floored, kept
    assert float(tiny.act_scale[...]) == pytest.approx(numerics.SCALE_EPS)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf], ids=["zero", "negative", "nan", "inf"])
@pytest.mark.parametrize("precision", ["int8-dynamic", "int8-static", "fp8_e4m3"])
def test_a_bad_smoothquant_input_scale_is_refused_naming_the_channel(precision, bad):
    """A non-finite or non-positive SmoothQuant `1/s` was folded into the weights and stored
    (a NaN made every output NaN, a zero every output 0); now it is refused."""
    from samp_jax.ptq.quantized import SiteCalibration
    input_scale = np.ones(16, np.float32)
    input_scale[3] = bad
    calibration = SiteCalibration(absmax=4.0, amax=4.0, input_scale=input_scale)
    with pytest.raises(ValueError, match=rf"^site 'qkv' at .*input_scale .* is {float(bad)} at "
                                         r"input channel 3 \(1 of 16 channels bad\), expected finite"):
        _site_from(calibration, precision)
