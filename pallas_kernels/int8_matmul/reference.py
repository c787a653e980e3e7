"""The numerical reference of the INT8 GEMM with its fused epilogue (plain XLA).

It follows `pallas_kernels.numerics` (the shared conventions), is what the Pallas kernels are
tested against, and is what an XLA GEMM implementation of an INT8 site can call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels import numerics


def int8_accumulate(x_q: jax.Array, w_q: jax.Array) -> jax.Array:
    """Exact `int8 [..., K] @ int8 [K, N] -> int32`.

    Raises:
      ValueError: K > `numerics.MAX_K` (133,144), where the int32 accumulator could wrap.
    """
    numerics.check_depth(x_q.shape[-1], "the INT8 GEMM (XLA reference)")
    return jax.lax.dot_general(x_q, w_q, (((x_q.ndim - 1,), (0,)), ((), ())),
                               preferred_element_type=jnp.int32)


def int8_matmul_reference(x_q, w_q, x_scale, w_scale, *, bias=None, activation=None, residual=None,
                          out_dtype=jnp.float16, out_scale=None, requantize_from=jnp.float32):
    """`x_q [..., K] int8 @ w_q [K, N] int8` → int32 → dequantize → epilogue.

    Args:
      x_scale: `[..., 1]` per-token activation scales, or a scalar per-tensor scale; a NaN
        row scale (a non-finite input row, `numerics.quantize_rows`) makes that row NaN.
      w_scale: `[N]` per-channel weight scales.
      bias: `[N]`; residual: `[..., N]`; activation: see `numerics.apply_activation`.
      out_dtype: float output dtype; `int32` returns the raw accumulator; `int8` requantizes
        with the static `out_scale`, from the values rounded to `requantize_from`.
    """
    acc = int8_accumulate(x_q, w_q)
    if jnp.dtype(out_dtype) == jnp.int32:
        return acc
    y = (acc.astype(jnp.float32) * numerics.to_rank(jnp.asarray(x_scale, jnp.float32), acc.ndim)
         * numerics.to_rank(w_scale.astype(jnp.float32), acc.ndim))
    return numerics.epilogue(y, bias=bias, activation=activation, residual=residual,
                             out_dtype=out_dtype, out_scale=out_scale,
                             requantize_from=requantize_from)
