"""INT8 GEMM with a fused epilogue on Hopper: Pallas Mosaic GPU, wgmma with an int32 accumulator.

Each CTA (one warpgroup) owns a `[tile_m, tile_n]` output tile. A TMA pipeline
(`plgpu.emit_pipeline`, `max_concurrent_steps` buffers, one wgmma kept in flight with
`delay_release=1`) streams `[tile_m, tile_k]` activation tiles and `[tile_n, tile_k]` weight
tiles into swizzled shared memory; `wgmma` accumulates `s8 × s8 → s32` in registers. The
epilogue operands (per-token scales, per-channel scales, bias, residual tile) are fetched by TMA
before the K loop so they arrive while it runs. The epilogue dequantizes, adds the bias, applies
GELU, adds the residual, and writes FP16/BF16/FP32 or INT8 (requantized with a static scale)
through shared memory with one TMA store. K is at most `numerics.MAX_K` (the int32 accumulator
must not wrap); a NaN per-token scale (a non-finite input row) makes its output row NaN.

wgmma reads 8-bit operands K-major only, so the weight is passed transposed, `w_t [N, K]`
(`QuantizedGemmSite` can keep it that way; `int8_matmul` transposes a `[K, N]` weight itself).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from pallas_kernels import epilogue as ep
from pallas_kernels.int8_matmul.config import MosaicConfig
from pallas_kernels.numerics import check_depth

KERNEL_NAME = "samp_int8_matmul_mosaic"


def _swizzled(shape_minor: int, dtype) -> tuple:
    """Tiling + swizzle transforms for an SMEM tile whose minor dimension has `shape_minor` elements."""
    itemsize = jnp.dtype(dtype).itemsize
    swizzle = plgpu.find_swizzle(shape_minor * itemsize * 8)
    return (plgpu.TilingTransform((8, swizzle // itemsize)), plgpu.SwizzleTransform(swizzle))


def mosaic_int8_matmul(x_q, w_t, x_scale, w_scale, bias, residual, *, out_dtype, activation,
                       out_scale, config: MosaicConfig, interpret=False):
    """`x_q [M, K] @ w_t[N, K].T` with the fused epilogue; M, N, K multiples of the tiles.

    Args:
      x_scale: `[M]` float32 per-token scales; w_scale, bias: `[N]` float32 (bias may be None).
      residual: `[M, N]` (fp16/bf16/fp32) or None.
      out_dtype: int32 (raw accumulator, no epilogue), int8 (with `out_scale`) or a float type.
      interpret: False, or `plgpu.InterpretGPUParams()` to run on the CPU.
    """
    m, k = x_q.shape
    n = w_t.shape[0]
    check_depth(k, "the Mosaic INT8 GEMM")
    tm, tn, tk = config.tile_m, config.tile_n, config.tile_k
    out_dtype = jnp.dtype(out_dtype)
    raw = out_dtype == jnp.int32
    has_bias, has_residual = bias is not None and not raw, residual is not None and not raw
    requant = out_dtype == jnp.int8
    operands = [x_q, w_t, x_scale, w_scale] + ([bias] if has_bias else []) + (
        [residual] if has_residual else [])
    if requant:  # an operand, not a constant: a calibrated scale is traced model state
        operands.append(jnp.broadcast_to(jnp.asarray(out_scale, jnp.float32), (n,)))

    scratch = dict(
        out_smem=plgpu.SMEM((tm, tn), out_dtype, transforms=_swizzled(tn, out_dtype)),
        xs_smem=plgpu.SMEM((tm,), jnp.float32),
        ws_smem=plgpu.SMEM((tn,), jnp.float32),
        bias_smem=plgpu.SMEM((tn,), jnp.float32),
        out_scale_smem=plgpu.SMEM((tn,), jnp.float32),
        barriers=plgpu.Barrier(num_barriers=5),
    )
    if has_residual:
        scratch["res_smem"] = plgpu.SMEM((tm, tn), residual.dtype,
                                         transforms=_swizzled(tn, residual.dtype))

    def kernel(*refs, out_smem, xs_smem, ws_smem, bias_smem, out_scale_smem, barriers, res_smem=None):
        x_gmem, w_gmem, xs_gmem, ws_gmem, *rest = refs
        o_gmem = rest.pop()
        b_gmem = rest.pop(0) if has_bias else None
        r_gmem = rest.pop(0) if has_residual else None
        os_gmem = rest.pop(0) if requant else None
        m_idx, n_idx = lax.axis_index("m"), lax.axis_index("n")
        m_slice, n_slice = pl.ds(m_idx * tm, tm), pl.ds(n_idx * tn, tn)

        if not raw:  # epilogue operands travel while the K loop runs
            plgpu.copy_gmem_to_smem(xs_gmem.at[m_slice], xs_smem, barriers.at[0])
            plgpu.copy_gmem_to_smem(ws_gmem.at[n_slice], ws_smem, barriers.at[1])
            if has_bias:
                plgpu.copy_gmem_to_smem(b_gmem.at[n_slice], bias_smem, barriers.at[2])
            if has_residual:
                plgpu.copy_gmem_to_smem(r_gmem.at[m_slice, n_slice], res_smem, barriers.at[3])
            if requant:
                plgpu.copy_gmem_to_smem(os_gmem.at[n_slice], out_scale_smem, barriers.at[4])

        @functools.partial(pl.run_scoped, acc=plgpu.ACC((tm, tn), jnp.int32))
        def _(acc):  # registers, allocated apart from the SMEM scratch
            def step(_, x_smem, w_smem):
                plgpu.wgmma(acc, x_smem, w_smem.T)
                plgpu.wgmma_wait(1)

            in_transforms = _swizzled(tk, jnp.int8)
            plgpu.emit_pipeline(
                step,
                in_specs=[plgpu.BlockSpec((tm, tk), lambda kk: (m_idx, kk), transforms=in_transforms,
                                          delay_release=1),
                          plgpu.BlockSpec((tn, tk), lambda kk: (n_idx, kk), transforms=in_transforms,
                                          delay_release=1)],
                grid=(k // tk,),
                max_concurrent_steps=config.max_concurrent_steps,
            )(x_gmem, w_gmem)

            if raw:
                out_smem[...] = acc[...]
            else:
                y = acc[...].astype(jnp.float32)
                plgpu.barrier_wait(barriers.at[0])
                plgpu.barrier_wait(barriers.at[1])
                xs = plgpu.load(xs_smem, layout=plgpu.Layout.WGMMA.reduce(1))
                ws = plgpu.load(ws_smem, layout=plgpu.Layout.WGMMA.reduce(0))
                y = y * lax.broadcast_in_dim(xs, (tm, tn), (0,)) * lax.broadcast_in_dim(ws, (tm, tn), (1,))
                if has_bias:
                    plgpu.barrier_wait(barriers.at[2])
                    b = plgpu.load(bias_smem, layout=plgpu.Layout.WGMMA.reduce(0))
                    y = y + lax.broadcast_in_dim(b, (tm, tn), (1,))
                y = ep.activation(y, activation)
                if has_residual:
                    plgpu.barrier_wait(barriers.at[3])
                    y = y + res_smem[...].astype(jnp.float32)
                if requant:
                    plgpu.barrier_wait(barriers.at[4])
                    os = plgpu.load(out_scale_smem, layout=plgpu.Layout.WGMMA.reduce(0))
                    out_smem[...] = ep.requantize(y, lax.broadcast_in_dim(os, (tm, tn), (1,)))
                else:
                    out_smem[...] = y.astype(out_dtype)
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(out_smem, o_gmem.at[m_slice, n_slice])
        plgpu.wait_smem_to_gmem(0)

    return plgpu.kernel(
        kernel,
        out_type=jax.ShapeDtypeStruct((m, n), out_dtype),
        scratch_types=scratch,
        grid=(m // tm, n // tn),
        grid_names=("m", "n"),
        kernel_name=KERNEL_NAME,
        interpret=interpret,
    )(*operands)
