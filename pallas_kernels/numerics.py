"""The numerical conventions every kernel shares with its XLA reference (plain `jax.numpy`).

These functions *are* the reference: `samp_jax`'s XLA implementations of the GEMM epilogue,
LayerNorm and INT8 activation quantization call them, and the Pallas kernels are tested
against them. Conventions:

- INT8 is symmetric in [-127, 127] (never -128, so negation is exact); `x ≈ q * scale`.
- A scale is never below `SCALE_EPS`, so an all-zero row or tensor quantizes to zeros with a
  positive scale instead of dividing by zero.
- Rounding is half to even (`jnp.round`); values beyond ±127 saturate.
- LayerNorm statistics, the epilogue and every scale are float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

INT8_MAX = 127.0
SCALE_EPS = 1e-12  # the smallest quantization scale: keeps all-zero inputs finite
ACTIVATIONS = ("gelu", "gelu_tanh", "tanh", "relu", None)


def round_clip_int8(x: jax.Array) -> jax.Array:
    """Round half to even and saturate to [-127, 127], as int8."""
    return jnp.clip(jnp.round(x), -INT8_MAX, INT8_MAX).astype(jnp.int8)


def per_token_scale(x: jax.Array) -> jax.Array:
    """Dynamic INT8 scale per row over the last axis: `max|x| / 127`, `[..., 1]`, float32."""
    return jnp.maximum(jnp.max(jnp.abs(x.astype(jnp.float32)), axis=-1, keepdims=True) / INT8_MAX,
                       SCALE_EPS)


def quantize_rows(x: jax.Array, *, act_scale=None, input_scale=None) -> tuple[jax.Array, jax.Array]:
    """INT8 of `x` as an INT8 GEMM site quantizes its input: per-token dynamic when `act_scale`
    is None, else per-tensor static with that scale. `input_scale` (`[K]`, SmoothQuant's `1/s`)
    multiplies first. Returns `(q int8 [..., K], scale float32)`; the scale is `[..., 1]`
    (dynamic) or the scalar `act_scale` (static)."""
    x = x.astype(jnp.float32)
    if input_scale is not None:
        x = x * input_scale.astype(jnp.float32)
    if act_scale is None:
        scale = per_token_scale(x)
    else:
        scale = jnp.asarray(act_scale, jnp.float32)
    return round_clip_int8(x / scale), scale


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """LayerNorm over the last axis, computed in float32; returns float32."""
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    normed = (x - mean) * jax.lax.rsqrt(var + eps)
    return normed * scale.astype(jnp.float32) + bias.astype(jnp.float32)


def apply_activation(x: jax.Array, activation: str | None) -> jax.Array:
    """The epilogue activation: exact (erf) GELU, tanh-GELU, tanh, ReLU, or nothing."""
    if activation is None:
        return x
    if activation == "gelu":
        return jax.nn.gelu(x, approximate=False)
    if activation == "gelu_tanh":
        return jax.nn.gelu(x, approximate=True)
    if activation == "tanh":
        return jnp.tanh(x)
    if activation == "relu":
        return jnp.maximum(x, 0.0)
    raise ValueError(f"{activation=} is not one of {ACTIVATIONS}")


def epilogue(y: jax.Array, *, bias=None, activation: str | None = None, residual=None,
             out_dtype=jnp.float32, out_scale=None) -> jax.Array:
    """`act(y + bias) + residual` in float32, cast to `out_dtype`, or requantized to INT8 with
    the static `out_scale` when `out_dtype` is int8 (for a following static-INT8 GEMM)."""
    y = y.astype(jnp.float32)
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    y = apply_activation(y, activation)
    if residual is not None:
        y = y + residual.astype(jnp.float32)
    if jnp.dtype(out_dtype) == jnp.int8:
        return round_clip_int8(y / out_scale)
    return y.astype(out_dtype)
