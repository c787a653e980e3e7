"""A float64 numpy reference of every quantization samp-jax performs, written from the
documented conventions (`pallas_kernels.numerics`, `samp_jax.core.primitives`), not from the
code under test: nothing here imports samp_jax, pallas_kernels or jax.

- INT8: symmetric, `q = clip(round_half_even(x / scale), -127, 127)`, scales at least 1e-12;
  weights per output channel (`[in, out]`, scale over axis 0), activations per token (scale
  over the last axis, computed at run time) or per tensor (a static scalar scale).
- SmoothQuant: the input is multiplied by `input_scale` (`1 / s`) before it is quantized.
- FP8 E4M3 (fn): 3 mantissa bits, exponents from -6 (subnormal step 2**-9), max 448,
  round half to even, saturating: `x / scale` clipped to +-448 first.
- A non-finite input row gives an all-NaN output row.
- Epilogue: `act(acc * x_scale * w_scale + bias) + residual`; GELU is the exact erf GELU.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MAX = 127.0
SCALE_EPS = 1e-12
FP8_MAX = 448.0
_erf = np.vectorize(math.erf, otypes=[np.float64])


def f64(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def int8(x, scale) -> np.ndarray:
    """Round half to even, saturate at +-127 (float64 values that are integers)."""
    return np.clip(np.round(f64(x) / f64(scale)), -INT8_MAX, INT8_MAX)


def weight_int8(w) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel INT8 of an `[in, out]` kernel: `(q [in, out], scale [out])`."""
    w = f64(w)
    scale = np.maximum(np.abs(w).max(axis=0) / INT8_MAX, SCALE_EPS)
    return int8(w, scale), scale


def activation_int8(x, act_scale=None, input_scale=None) -> tuple[np.ndarray, np.ndarray]:
    """`(q [..., K], scale [..., 1])`: per-token dynamic (`act_scale` None) or static."""
    x = f64(x)
    if input_scale is not None:
        x = x * f64(input_scale)
    if act_scale is None:
        scale = np.maximum(np.abs(x).max(axis=-1, keepdims=True) / INT8_MAX, SCALE_EPS)
    else:
        scale = np.full((*x.shape[:-1], 1), float(act_scale))
    return int8(x, scale), scale


def near_tie(x, scale, input_scale=None, rel: float = 1e-5) -> np.ndarray:
    """Where `x / scale` lies within `rel` (relative) of a .5 rounding tie: float32 division
    (or XLA's `x * (1 / s)`) may round such a value either way."""
    x = f64(x) if input_scale is None else f64(x) * f64(input_scale)
    quotient = x / f64(scale)
    return np.abs(np.abs(quotient - np.floor(quotient)) - 0.5) <= rel * np.maximum(np.abs(quotient), 1.0)


def fp8_e4m3(v) -> np.ndarray:
    """Round float64 values to the nearest E4M3 (fn) value, half to even, saturating at 448."""
    v = np.clip(f64(v), -FP8_MAX, FP8_MAX)
    a = np.abs(v)
    exponent = np.maximum(np.floor(np.log2(np.maximum(a, 2.0 ** -10))), -6.0)
    step = 2.0 ** (exponent - 3)
    return np.sign(v) * np.minimum(np.round(a / step) * step, FP8_MAX)


def weight_fp8(w) -> tuple[np.ndarray, float]:
    """Per-tensor FP8 of a kernel: its absmax maps to 448."""
    w = f64(w)
    scale = max(np.abs(w).max() / FP8_MAX, SCALE_EPS)
    return fp8_e4m3(w / scale), scale


def activation(y, name):
    if name is None:
        return y
    if name == "gelu":
        return 0.5 * y * (1.0 + _erf(y / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * y * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (y + 0.044715 * y ** 3)))
    if name == "tanh":
        return np.tanh(y)
    if name == "relu":
        return np.maximum(y, 0.0)
    raise ValueError(name)


def epilogue(y, bias=None, act=None, residual=None) -> np.ndarray:
    y = f64(y)
    if bias is not None:
        y = y + f64(bias)
    y = activation(y, act)
    if residual is not None:
        y = y + f64(residual)
    return y


def poison_rows(y, x) -> np.ndarray:
    """`y` with every row whose input `x` held NaN or Inf set to NaN."""
    bad = ~np.isfinite(f64(x)).all(axis=-1)
    y = np.array(y, np.float64)
    y[bad] = np.nan
    return y


def int8_gemm(x, wq, ws, *, act_scale=None, input_scale=None, bias=None, act=None,
              residual=None) -> tuple[np.ndarray, np.ndarray]:
    """`(int64 accumulator, float64 output)` of an INT8 site on float input `x`."""
    xq, xs = activation_int8(np.nan_to_num(f64(x), nan=0.0, posinf=0.0, neginf=0.0),
                             act_scale, input_scale)
    acc = xq.astype(np.int64) @ f64(wq).astype(np.int64)
    y = epilogue(acc * xs * f64(ws), bias, act, residual)
    return acc, poison_rows(y, x)


def fp8_gemm(x, wq, ws, act_scale, *, input_scale=None, bias=None, act=None, residual=None):
    """Float64 output of an FP8 site: both operands rounded to E4M3, product rescaled."""
    xf = f64(x) if input_scale is None else f64(x) * f64(input_scale)
    xq = fp8_e4m3(np.nan_to_num(xf, nan=0.0, posinf=0.0, neginf=0.0) / act_scale)
    y = epilogue((xq @ f64(wq)) * act_scale * ws, bias, act, residual)
    return poison_rows(y, x)


def layer_norm(x, gamma, beta, eps) -> np.ndarray:
    x = f64(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * f64(gamma) + f64(beta)
