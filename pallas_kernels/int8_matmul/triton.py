"""INT8 GEMM with a fused epilogue as a Pallas kernel (Triton lowering; portable to sm_80+).

Everything of this implementation is here: its config (`Config`), heuristic, tuning
candidates, adapter (`run`) and kernel (`_kernel`, bound with its statics).

Each program computes one `[block_m, block_n]` output tile: it loops over K in `block_k` steps
accumulating `int8 × int8` products in int32, then dequantizes with the per-token activation
scale and the per-channel weight scale, adds the bias, applies GELU, adds the residual, and
writes FP16/BF16/FP32, or INT8 requantized with a static scale for the next INT8 GEMM.
The adapter pads M to the tile; N and K must be multiples of their tiles, and K at most
`numerics.MAX_K` (the int32 accumulator must not wrap). A NaN per-token scale (a non-finite
input row, `numerics.quantize_rows`) makes its output row NaN, as in the reference.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels import epilogue as ep
from pallas_kernels.int8_matmul.base import Implementation, choose, pad_rows
from pallas_kernels.numerics import check_depth

KERNEL_NAME = "samp_int8_matmul"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Tile sizes and launch parameters of the Triton INT8 GEMM.

    Attributes:
      block_m, block_n, block_k: tile of the output (m, n) and of the reduction (k); powers of 2.
      num_warps: warps per program.
      num_stages: software-pipelining depth of the K loop.
    """

    block_m: int = 64
    block_n: int = 128
    block_k: int = 64
    num_warps: int = 4
    num_stages: int = 3

    def __post_init__(self):
        for name in ("block_m", "block_n", "block_k"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"{name}={value} must be a power of two >= 16")


def heuristic(m: int, n: int, k: int) -> Config:
    """A reasonable config from the shape alone: small M gets short tiles (decode-like)."""
    block_m = 16 if m <= 16 else 32 if m <= 32 else 64 if m <= 2048 else 128
    block_n = 128 if n % 128 == 0 else 64
    block_k = 128 if k % 128 == 0 else 64 if k % 64 == 0 else 32
    return Config(block_m=block_m, block_n=block_n, block_k=block_k,
                  num_warps=8 if block_m * block_n >= 128 * 128 else 4, num_stages=3)


def candidates(m: int, n: int, k: int) -> list[Config]:
    """The configs worth timing for a shape (those that tile N and K; M tiles not above M)."""
    grid = itertools.product((16, 32, 64, 128), (64, 128, 256), (32, 64, 128), (4, 8), (2, 3, 4))
    return [Config(block_m=bm, block_n=bn, block_k=bk, num_warps=w, num_stages=s)
            for bm, bn, bk, w, s in grid
            if not (n % bn or k % bk) and (bm <= max(16, 1 << max(m - 1, 0).bit_length()))]


def _kernel(x_ref, w_ref, xs_ref, ws_ref, *refs, block_k: int, num_k_steps: int, raw: bool,
            has_bias: bool, has_residual: bool, requant: bool, activation: str | None,
            requantize_from):
    """One `[block_m, block_n]` tile. `refs`: the bias, residual and out-scale refs that the
    statics say are present (in that order), then the output ref."""
    *optional, o_ref = refs
    b_ref, r_ref, os_ref = (optional.pop(0) if present else None
                            for present in (has_bias, has_residual, requant))

    def body(step, acc):
        x = x_ref[:, pl.ds(step * block_k, block_k)]
        w = w_ref[pl.ds(step * block_k, block_k), :]
        return acc + jnp.dot(x, w, preferred_element_type=jnp.int32)

    acc = jax.lax.fori_loop(0, num_k_steps, body, jnp.zeros(o_ref.shape, jnp.int32))
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
        o_ref[...] = ep.requantize(y, os_ref[...], has_round=False, rounded_to=requantize_from)
    else:
        o_ref[...] = y.astype(o_ref.dtype)


def triton_int8_matmul(x_q, w_q, x_scale, w_scale, bias, residual, *, out_dtype, activation,
                       out_scale, config: Config, requantize_from=jnp.float32,
                       interpret: bool = False):
    """`x_q [M, K] @ w_q [K, N]` with the fused epilogue; M, N, K multiples of the blocks.

    Args:
      x_scale: `[M]` float32; w_scale, bias: `[N]` float32 (bias may be None).
      residual: `[M, N]` or None. out_dtype: int32 (raw accumulator), int8 (with `out_scale`)
      or a float type; requantized from the values rounded to `requantize_from`.
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
    kernel = functools.partial(_kernel, block_k=bk, num_k_steps=k // bk, raw=raw, has_bias=has_bias,
                               has_residual=has_residual, requant=requant, activation=activation,
                               requantize_from=jnp.dtype(requantize_from))
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


def run(x_q, w_q, x_scale, w_scale, *, bias, residual, config: Config | None, device_kind: str,
        interpret: bool, **epilogue):
    """The adapter: picks the config, checks the tiling, pads M, launches (sm_80+)."""
    (m, k), n = x_q.shape, w_q.shape[1]
    cfg = choose(IMPLEMENTATION, device_kind, m, n, k, config)
    if n % cfg.block_n or k % cfg.block_k:
        raise NotImplementedError(f"the Triton INT8 GEMM cannot tile this shape: {n=} and {k=} "
                                  f"must be divisible by block_n={cfg.block_n} and "
                                  f"block_k={cfg.block_k}")
    x_q, x_scale, residual = pad_rows(cfg.block_m, x_q, x_scale, residual)
    out = triton_int8_matmul(x_q, w_q, x_scale, w_scale, bias, residual, config=cfg,
                             interpret=interpret, **epilogue)
    return out[:m]


IMPLEMENTATION = Implementation("triton", Config, run, heuristic, candidates, KERNEL_NAME)
