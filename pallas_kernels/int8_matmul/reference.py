"""The numerical reference of the INT8 GEMM with its fused epilogue (plain XLA)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from samp_jax.dispatch import apply_activation
from samp_jax.quant import INT8_MAX


def int8_matmul_reference(x_q, w_q, x_scale, w_scale, *, bias=None, activation=None, residual=None,
                          out_dtype=jnp.float16, out_scale=None):
    """`x_q [M, K] int8 @ w_q [K, N] int8` → int32 → dequantize → epilogue.

    Args:
      x_scale: `[M, 1]` per-token (or broadcast per-tensor) activation scales.
      w_scale: `[N]` per-channel weight scales.
      out_scale: with `out_dtype=int8`, the static scale of the requantized output.
    """
    acc = jax.lax.dot_general(x_q, w_q, (((1,), (0,)), ((), ())), preferred_element_type=jnp.int32)
    if jnp.dtype(out_dtype) == jnp.int32:
        return acc
    y = acc.astype(jnp.float32) * x_scale * w_scale[None, :]
    if bias is not None:
        y = y + bias[None, :].astype(jnp.float32)
    y = apply_activation(y, activation)
    if residual is not None:
        y = y + residual.astype(jnp.float32)
    if jnp.dtype(out_dtype) == jnp.int8:
        return jnp.clip(jnp.round(y / out_scale), -INT8_MAX, INT8_MAX).astype(jnp.int8)
    return y.astype(out_dtype)
