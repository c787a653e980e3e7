"""`QuantizedGemmSite.from_float` end to end against the float64 numpy reference of
`tests/numerics_reference.py`: the weights quantized per output channel after the SmoothQuant
factor is folded in, the static scale taken from the calibrated clip (`amax / 127` for INT8,
`absmax / 448` for FP8), the input multiplied by `1 / s`, and the epilogue.

Tolerances relative to max|y|: measured 6.8e-8 (INT8) and 4.1e-8 (FP8) on the 2-core CPU VM;
FP8 keeps room for the float32 accumulation order.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from samp_jax.core.precision import as_precision
from samp_jax.models.layers import GemmSite
from samp_jax.ptq.quantized import QuantizedGemmSite, SiteCalibration
from tests import numerics_reference as ref

K, N = 128, 64
RTOL = {"int8": 3e-7, "fp8_e4m3": 5e-7}


def _site_and_inputs(seed=0):
    rng = np.random.default_rng(seed)
    source = GemmSite(K, N, site="ffn_in", rngs=nnx.Rngs(seed))
    w = (rng.normal(size=(K, N)) * 0.05).astype(np.float32)
    w[:, 3] *= 30.0  # one loud output channel
    bias = rng.normal(size=(N,)).astype(np.float32)
    source.kernel.set_value(jnp.asarray(w))
    source.bias.set_value(jnp.asarray(bias))
    x = rng.normal(size=(3, 10, K)).astype(np.float32)
    x[..., 5] *= 20.0  # an outlier input channel, what SmoothQuant migrates
    inv_s = rng.uniform(0.2, 2.0, size=(K,)).astype(np.float32)
    return source, w, bias, x, inv_s


@pytest.mark.parametrize("precision", ["int8-static", "int8-dynamic", "fp8_e4m3"])
@pytest.mark.parametrize("smoothed", [False, True])
def test_a_quantized_site_matches_the_reference(precision, smoothed):
    source, w, bias, x, inv_s = _site_and_inputs()
    absmax = float(np.abs(x * (inv_s if smoothed else 1.0)).max())
    amax = 0.5 * absmax  # a percentile-style clip below the max: it must be the one used
    calibration = SiteCalibration(absmax=absmax, amax=amax, input_scale=inv_s if smoothed else None)
    p = as_precision(precision)
    site = QuantizedGemmSite.from_float(source, p, dtype=jnp.float32, calibration=calibration)
    y = np.asarray(site(jnp.asarray(x), activation="gelu", out_dtype=jnp.float32))
    # the library folds s into the weights in float32: the reference starts from the same values
    w_eff = w / inv_s[:, None] if smoothed else w
    input_scale = inv_s if smoothed else None
    if p.precision == "int8":
        wq, ws = ref.weight_int8(w_eff)
        np.testing.assert_array_equal(np.asarray(site.kernel[...], np.int64), wq)
        act_scale = amax / 127 if p.needs_calibration else None
        if act_scale is not None:
            np.testing.assert_allclose(float(site.act_scale[...]), act_scale, rtol=1e-7)
        _, y_ref = ref.int8_gemm(x, wq, ws, act_scale=act_scale, input_scale=input_scale,
                                 bias=bias, act="gelu")
    else:
        wq, ws = ref.weight_fp8(w_eff)
        act_scale = absmax / 448
        np.testing.assert_allclose(float(site.act_scale[...]), act_scale, rtol=1e-7)
        y_ref = ref.fp8_gemm(x, wq, ws, float(np.float32(act_scale)), input_scale=input_scale,
                             bias=bias, act="gelu")
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=RTOL[p.precision] * np.abs(y_ref).max())


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_a_float_site_keeps_its_weights_in_its_type(precision):
    source, w, bias, x, _ = _site_and_inputs(1)
    p = as_precision(precision)
    site = QuantizedGemmSite.from_float(source, p, dtype=jnp.float32)
    assert site.kernel[...].dtype == p.float_dtype
    np.testing.assert_array_equal(np.asarray(site.kernel[...], np.float32),
                                  np.asarray(jnp.asarray(w).astype(p.float_dtype), np.float32))
    y = np.asarray(site(jnp.asarray(x), out_dtype=jnp.float32))
    xr = ref.f64(np.asarray(jnp.asarray(x).astype(p.float_dtype), np.float32))
    wr = ref.f64(np.asarray(site.kernel[...], np.float32))
    y_ref = xr @ wr + bias
    ulp = {"fp16": 2.0 ** -10, "bf16": 2.0 ** -7, "fp32": 2.0 ** -23}[precision]
    # one rounding of the product to the site's type (fp32: float32 accumulation, K=128)
    bound = (ulp if precision != "fp32" else 8 * ulp) * np.abs(xr @ wr).max()
    assert np.abs(y - y_ref).max() <= bound
