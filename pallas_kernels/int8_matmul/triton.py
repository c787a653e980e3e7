"""INT8 GEMM with a fused epilogue as a Pallas kernel (Triton lowering; portable to sm_80+).

Each program computes one `[block_m, block_n]` output tile: it loops over K in `block_k` steps
accumulating `int8 × int8` products in int32, then dequantizes with the per-token activation
scale and the per-channel weight scale, adds the bias, applies GELU, adds the residual, and
writes FP16/BF16/FP32, or INT8 requantized with a static scale for the next INT8 GEMM.
M is padded to the tile; N and K must be multiples of their tiles.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from pallas_kernels.int8_matmul.config import Config, choose
from samp_jax.dispatch import apply_activation
from samp_jax.quant import INT8_MAX

KERNEL_NAME = "samp_int8_matmul"


def _kernel(x_ref, w_ref, xs_ref, ws_ref, b_ref, r_ref, o_ref, *, block_k: int, k_steps: int,
            activation, out_scale):
    def body(step, acc):
        x = x_ref[:, pl.ds(step * block_k, block_k)]
        w = w_ref[pl.ds(step * block_k, block_k), :]
        return acc + jnp.dot(x, w, preferred_element_type=jnp.int32)

    acc = jax.lax.fori_loop(0, k_steps, body, jnp.zeros(o_ref.shape, jnp.int32))
    if o_ref.dtype == jnp.int32:  # the raw accumulator, for exactness checks
        o_ref[...] = acc
        return
    y = acc.astype(jnp.float32) * xs_ref[...] * ws_ref[...]
    if b_ref is not None:
        y = y + b_ref[...]
    y = apply_activation(y, activation)
    if r_ref is not None:
        y = y + r_ref[...].astype(jnp.float32)
    if out_scale is not None:
        y = jnp.clip(jnp.round(y / out_scale), -INT8_MAX, INT8_MAX)
    o_ref[...] = y.astype(o_ref.dtype)


def int8_matmul(x_q, w_q, x_scale, w_scale, *, bias=None, activation=None, residual=None,
                out_dtype=jnp.float16, out_scale: float | None = None, config: Config | None = None,
                interpret: bool = False):
    """Fused INT8 GEMM; same contract as `int8_matmul_reference`.

    `out_dtype=int32` returns the raw int32 accumulator (no epilogue), for exactness checks.

    Raises:
      ValueError: inconsistent shapes or dtypes.
      NotImplementedError: N or K not divisible by the chosen tiles (callers fall back to XLA).
    """
    m, k = x_q.shape
    k2, n = w_q.shape
    if x_q.dtype != jnp.int8 or w_q.dtype != jnp.int8:
        raise ValueError(f"operands must be int8, got {x_q.dtype} and {w_q.dtype}")
    if k != k2:
        raise ValueError(f"x_q has K={k} but w_q has K={k2}")
    if x_scale.shape != (m, 1) or w_scale.shape != (n,):
        raise ValueError(f"scales must be [M, 1] and [N], got {x_scale.shape} and {w_scale.shape}")
    out_int8 = jnp.dtype(out_dtype) == jnp.int8
    if out_int8 != (out_scale is not None):
        raise ValueError("out_scale is required exactly when out_dtype is int8")
    device = jax.devices()[0].device_kind
    cfg = choose(device, m, n, k, config)
    if n % cfg.block_n or k % cfg.block_k:
        raise NotImplementedError(f"{n=} and {k=} must be divisible by block_n={cfg.block_n} and "
                                  f"block_k={cfg.block_k}")
    padded_m = -(-m // cfg.block_m) * cfg.block_m
    pad = padded_m - m
    if pad:
        x_q = jnp.pad(x_q, ((0, pad), (0, 0)))
        x_scale = jnp.pad(x_scale, ((0, pad), (0, 0)))
        if residual is not None:
            residual = jnp.pad(residual, ((0, pad), (0, 0)))
    row_tile = lambda i, j: (i, 0)  # noqa: E731
    col_vec = lambda i, j: (0, j)  # noqa: E731
    in_specs = [pl.BlockSpec((cfg.block_m, k), row_tile), pl.BlockSpec((k, cfg.block_n), lambda i, j: (0, j)),
                pl.BlockSpec((cfg.block_m, 1), row_tile), pl.BlockSpec((1, cfg.block_n), col_vec)]
    operands = [x_q, w_q, x_scale.astype(jnp.float32), w_scale.astype(jnp.float32)[None, :]]
    if bias is not None:
        in_specs.append(pl.BlockSpec((1, cfg.block_n), col_vec))
        operands.append(bias.astype(jnp.float32)[None, :])
    if residual is not None:
        in_specs.append(pl.BlockSpec((cfg.block_m, cfg.block_n), lambda i, j: (i, j)))
        operands.append(residual)

    def kernel(*refs):
        x_ref, w_ref, xs_ref, ws_ref, *rest = refs
        o_ref = rest.pop()
        b_ref = rest.pop(0) if bias is not None else None
        r_ref = rest.pop(0) if residual is not None else None
        _kernel(x_ref, w_ref, xs_ref, ws_ref, b_ref, r_ref, o_ref, block_k=cfg.block_k,
                k_steps=k // cfg.block_k, activation=activation, out_scale=out_scale)

    compiler_params = None
    if not interpret:
        from jax.experimental.pallas import triton as pltriton
        compiler_params = pltriton.CompilerParams(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    out = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((padded_m, n), out_dtype),
        grid=(padded_m // cfg.block_m, n // cfg.block_n),
        in_specs=in_specs,
        out_specs=pl.BlockSpec((cfg.block_m, cfg.block_n), lambda i, j: (i, j)),
        compiler_params=compiler_params,
        interpret=interpret,
        name=KERNEL_NAME,
    )(*operands)
    return out[:m] if pad else out


int8_matmul_jit = functools.partial(
    jax.jit, static_argnames=("activation", "out_dtype", "out_scale", "config", "interpret"))(int8_matmul)
