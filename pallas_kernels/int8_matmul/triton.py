"""INT8 GEMM with a fused epilogue as a Pallas kernel (Triton lowering; portable to sm_80+).

Each program computes one `[block_m, block_n]` output tile: it loops over K in `block_k` steps
accumulating `int8 × int8` products in int32, then dequantizes with the per-token activation
scale and the per-channel weight scale, adds the bias, applies GELU, adds the residual, and
writes FP16/BF16/FP32, or INT8 requantized with a static scale for the next INT8 GEMM.
The caller (`int8_matmul`) pads M to the tile; N and K must be multiples of their tiles, and
K at most `numerics.MAX_K` (the int32 accumulator must not wrap). A NaN per-token scale (a
non-finite input row, `numerics.quantize_rows`) makes its output row NaN, as in the reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels import epilogue as ep
from pallas_kernels.int8_matmul.config import Config
from pallas_kernels.numerics import check_depth

KERNEL_NAME = "samp_int8_matmul"


def triton_int8_matmul(x_q, w_q, x_scale, w_scale, bias, residual, *, out_dtype, activation,
                       out_scale, config: Config, interpret: bool = False):
    """`x_q [M, K] @ w_q [K, N]` with the fused epilogue; M, N, K multiples of the blocks.

    Args:
      x_scale: `[M]` float32; w_scale, bias: `[N]` float32 (bias may be None).
      residual: `[M, N]` or None. out_dtype: int32 (raw accumulator), int8 (with `out_scale`)
      or a float type.
    """
    m, k = x_q.shape
    n = w_q.shape[1]
    check_depth(k, "the Triton INT8 GEMM")
    bm, bn, bk = config.block_m, config.block_n, config.block_k
    raw = jnp.dtype(out_dtype) == jnp.int32
    has_bias, has_residual = bias is not None and not raw, residual is not None and not raw
    requant = out_scale is not None and not raw
    row_tile = lambda i, j: (i, 0)  # noqa: E731
    col_vec = lambda i, j: (0, j)  # noqa: E731
    in_specs = [pl.BlockSpec((bm, k), row_tile), pl.BlockSpec((k, bn), lambda i, j: (0, j)),
                pl.BlockSpec((bm, 1), row_tile), pl.BlockSpec((1, bn), col_vec)]
    operands = [x_q, w_q, x_scale[:, None], w_scale[None, :]]
    if has_bias:
        in_specs.append(pl.BlockSpec((1, bn), col_vec))
        operands.append(bias[None, :])
    if has_residual:
        in_specs.append(pl.BlockSpec((bm, bn), lambda i, j: (i, j)))
        operands.append(residual)
    if requant:  # an operand, not a constant: a calibrated scale is traced model state
        in_specs.append(pl.BlockSpec((1, bn), col_vec))
        operands.append(jnp.broadcast_to(jnp.asarray(out_scale, jnp.float32), (1, n)))

    def kernel(x_ref, w_ref, xs_ref, ws_ref, *rest):
        o_ref = rest[-1]
        optional = list(rest[:-1])
        b_ref = optional.pop(0) if has_bias else None
        r_ref = optional.pop(0) if has_residual else None
        os_ref = optional.pop(0) if requant else None

        def body(step, acc):
            x = x_ref[:, pl.ds(step * bk, bk)]
            w = w_ref[pl.ds(step * bk, bk), :]
            return acc + jnp.dot(x, w, preferred_element_type=jnp.int32)

        acc = jax.lax.fori_loop(0, k // bk, body, jnp.zeros((bm, bn), jnp.int32))
        if raw:  # the raw accumulator, for exactness checks
            o_ref[...] = acc
            return
        y = acc.astype(jnp.float32) * xs_ref[...] * ws_ref[...]
        if b_ref is not None:
            y = y + b_ref[...]
        y = ep.activation(y, activation)
        if r_ref is not None:
            y = y + r_ref[...].astype(jnp.float32)
        if os_ref is not None:
            o_ref[...] = ep.requantize(y, os_ref[...], has_round=False)
        else:
            o_ref[...] = y.astype(o_ref.dtype)

    compiler_params = None
    if not interpret:
        compiler_params = pltriton.CompilerParams(num_warps=config.num_warps,
                                                  num_stages=config.num_stages)
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((m, n), out_dtype),
        grid=(m // bm, n // bn),
        in_specs=in_specs,
        out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
        compiler_params=compiler_params,
        interpret=interpret,
        name=KERNEL_NAME,
    )(*operands)
