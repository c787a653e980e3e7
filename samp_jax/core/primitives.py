"""Quantization primitives: symmetric INT8 and FP8 E4M3, and SmoothQuant-style migration.

Conventions (all symmetric, zero-point free; the INT8 ones are `pallas_kernels.numerics`, the
reference the kernels share):
- INT8 values lie in [-127, 127] (never -128, so negation is exact); `x ≈ q * scale`.
- Weights are `[in, out]` and quantized per output channel: `scale` has shape `[out]`.
- Activations are quantized per tensor (a calibrated scalar scale) or per token (a scale per
  row over the last axis, computed at run time).
- FP8 E4M3 (`float8_e4m3fn`, max 448) uses one per-tensor scale and a saturating cast: values
  are clipped to ±448 before the cast, which would otherwise turn them into NaN.
- A static scale must be finite and at least `SCALE_EPS` (a concrete one is checked,
  `check_scale`).
- Non-finite activations propagate: a per-token (or GEMM-site) quantized row holding NaN/Inf
  gets zeros and a NaN scale, so what it feeds is NaN (`pallas_kernels.numerics`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from pallas_kernels.numerics import (INV_INT8_MAX, SCALE_EPS, check_scale, divide_by_scale, quantize_rows,
                                     round_clip_int8, to_rank)

FP8_E4M3_MAX = float(jnp.finfo(jnp.float8_e4m3fn).max)  # 448
SMOOTHING_FLOOR = 1e-5  # smallest max|x| or max|W| per channel a SmoothQuant factor divides by
SMOOTHING_RANGE = (1e-2, 1e2)  # SmoothQuant factors are clipped to this range


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QArray:
    """A quantized tensor: `dequantize() == qvalue * scale` (broadcast).

    Invariants: `qvalue` is int8 in [-127, 127] or float8_e4m3fn; `scale` is float32, positive
    (NaN only for an activation row that held NaN/Inf, whose values are zeros), and broadcasts
    against `qvalue` (per channel `[out]` for weights, `[..., 1]` per token, or `[]` per tensor). `qtype` is static ('int8' or 'fp8_e4m3').
    """

    qvalue: jax.Array
    scale: jax.Array
    qtype: str = dataclasses.field(metadata=dict(static=True))

    def dequantize(self, dtype=jnp.float32) -> jax.Array:
        return (self.qvalue.astype(jnp.float32) * to_rank(self.scale, self.qvalue.ndim)).astype(dtype)

    @property
    def shape(self):
        return self.qvalue.shape


def quantize_weight_int8(w: jax.Array) -> QArray:
    """Symmetric per-output-channel INT8 for a `[in, out]` kernel."""
    w = jnp.asarray(w, jnp.float32)
    # max|w| * (1/127), written as XLA:CPU compiles `/ 127` (so every backend computes it alike)
    scale = jnp.maximum(jnp.max(jnp.abs(w), axis=0) * INV_INT8_MAX, SCALE_EPS)  # [out]
    return QArray(round_clip_int8(divide_by_scale(w, scale)), scale, "int8")


def quantize_per_tensor_int8(x: jax.Array, scale: jax.Array) -> jax.Array:
    """INT8 with a static scalar scale (values beyond `127 * scale` saturate; NaN becomes 0).

    Raises:
      ValueError: a concrete `scale` that is not finite and positive.
    """
    check_scale(scale, "scale")
    x = jnp.asarray(x, jnp.float32)
    return round_clip_int8(divide_by_scale(x, scale))


def quantize_per_token_int8(x: jax.Array) -> QArray:
    """Dynamic INT8 with one scale per row (token) over the last axis."""
    q, scale = quantize_rows(x)
    return QArray(q, scale, "int8")


def quantize_fp8(x: jax.Array, scale: jax.Array) -> jax.Array:
    """FP8 E4M3 with a per-tensor scale and a saturating cast.

    Raises:
      ValueError: a concrete `scale` that is not finite and positive.
    """
    check_scale(scale, "scale")
    return _saturating_fp8(x, scale)


def _saturating_fp8(x: jax.Array, scale: jax.Array) -> jax.Array:
    scaled = divide_by_scale(x.astype(jnp.float32), scale)  # one computation in every program
    return jnp.clip(scaled, -FP8_E4M3_MAX, FP8_E4M3_MAX).astype(jnp.float8_e4m3fn)


def quantize_weight_fp8(w: jax.Array) -> QArray:
    """FP8 E4M3 weights with one per-tensor scale (amax maps to 448)."""
    w = jnp.asarray(w, jnp.float32)
    scale = jnp.maximum(jnp.max(jnp.abs(w)) / FP8_E4M3_MAX, SCALE_EPS)
    return QArray(_saturating_fp8(w, scale), scale, "fp8_e4m3")


def smoothing_factors(act_channel_absmax: jax.Array, w: jax.Array, alpha: float) -> jax.Array:
    """SmoothQuant migration strengths `s[j] = max|X_j|^alpha / max|W_j|^(1-alpha)`.

    The GEMM is rewritten as `(X / s) @ (s[:, None] * W)`, exact in real arithmetic, which moves
    outlier magnitude from the activation channels into the weights.

    Args:
      act_channel_absmax: `[in]` max |x| per input channel over the calibration set.
      w: `[in, out]` kernel.
      alpha: migration strength in [0, 1]; 0 leaves activations alone, 1 moves everything.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smoothing {alpha=} must lie in [0, 1]")
    a = jnp.maximum(jnp.asarray(act_channel_absmax, jnp.float32), SMOOTHING_FLOOR)
    wmax = jnp.maximum(jnp.max(jnp.abs(jnp.asarray(w, jnp.float32)), axis=1), SMOOTHING_FLOOR)
    return jnp.clip(a ** alpha / wmax ** (1.0 - alpha), *SMOOTHING_RANGE)
