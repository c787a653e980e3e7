"""INT8 GEMM with a fused epilogue on Hopper: Pallas Mosaic GPU, wgmma with an int32 accumulator.

Everything of this implementation is here: its config (`MosaicConfig`), heuristic, tuning
candidates, adapter (`run`) and kernel (`_kernel`, bound with its statics).

Each CTA (one warpgroup) owns a `[tile_m, tile_n]` output tile. A TMA pipeline
(`plgpu.emit_pipeline`, `max_concurrent_steps` buffers, one wgmma kept in flight with
`delay_release=1`) streams `[tile_m, tile_k]` activation tiles and `[tile_n, tile_k]` weight
tiles into swizzled shared memory; `wgmma` accumulates `s8 × s8 → s32` in registers. The
epilogue operands (per-token scales, per-channel scales, bias, residual tile) are fetched by TMA
before the K loop so they arrive while it runs. The epilogue dequantizes, adds the bias, applies
GELU, adds the residual, and writes FP16/BF16/FP32 or INT8 (requantized with a static scale)
through shared memory with one TMA store. K is at most `numerics.MAX_K` (the int32 accumulator
must not wrap); a NaN per-token scale (a non-finite input row) makes its output row NaN.

Its shared memory depends on the output and residual dtypes (`MosaicConfig.smem_bytes`):
the heuristic drops TMA buffers until the call fits in Hopper's
(`devices.HOPPER_SMEM_PER_BLOCK`), a tuned config that does not fit gives way to the
heuristic's (`base.choose`), and an explicit one that does not fit is
declined with `NotImplementedError`, so the automatic order moves on to Triton.

wgmma reads 8-bit operands K-major only, so the weight is passed transposed, `w_t [N, K]`
(`QuantizedGemmSite` can keep it that way; `int8_matmul` transposes a `[K, N]` weight itself).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from pallas_kernels import epilogue as ep
from pallas_kernels.devices import HOPPER_SMEM_PER_BLOCK, is_hopper
from pallas_kernels.int8_matmul.base import Implementation, choose, interpret_params, pad_rows
from pallas_kernels.lazy import mosaic_gpu
from pallas_kernels.numerics import check_depth

plgpu = mosaic_gpu()  # jax.experimental.pallas.mosaic_gpu, imported when a kernel is first built

KERNEL_NAME = "samp_int8_matmul_mosaic"
_NUM_BARRIERS = 5  # the epilogue operands': x scales, w scales, bias, residual, output scales


@dataclasses.dataclass(frozen=True, kw_only=True)
class MosaicConfig:
    """Tiles and pipelining of the Mosaic GPU (Hopper wgmma) INT8 GEMM.

    Attributes:
      tile_m: output rows per CTA: 64 or 128 (wgmma issues M in 64-row groups).
      tile_n: output columns per CTA: a multiple of 64, at most 256 (one wgmma N group).
      tile_k: reduction step; 128 int8 = one 128-byte swizzle row.
      max_concurrent_steps: TMA buffers in flight (pipeline depth), >= 2.

    Whether a config fits in shared memory depends on the call's output and residual dtypes
    (`smem_bytes`, `refuses`).
    """

    tile_m: int = 128
    tile_n: int = 128
    tile_k: int = 128
    max_concurrent_steps: int = 4

    def __post_init__(self):
        if self.tile_m not in (64, 128):
            raise ValueError(f"tile_m={self.tile_m} must be 64 or 128")
        if self.tile_n % 64 or not 64 <= self.tile_n <= 256:
            raise ValueError(f"tile_n={self.tile_n} must be a multiple of 64 in [64, 256]")
        if self.tile_k not in (64, 128):
            raise ValueError(f"tile_k={self.tile_k} must be 64 or 128")
        if self.tile_m * self.tile_n > 128 * 128:
            raise ValueError(f"tile {self.tile_m}x{self.tile_n} exceeds one warpgroup's int32 "
                             "accumulator budget (128x128)")
        if self.max_concurrent_steps < 2:
            raise ValueError(f"max_concurrent_steps={self.max_concurrent_steps} must be >= 2")

    def smem_bytes(self, out_dtype=jnp.int32, residual_dtype=None) -> int:
        """Shared memory of a call, as `mosaic_int8_matmul` allocates it and the Pallas lowering
        counts it (each buffer aligned to 1 KiB, 8 bytes per barrier): `max_concurrent_steps`
        `[tile_m, tile_k]` and `[tile_n, tile_k]` int8 TMA buffers and one barrier per step, the
        `[tile_m, tile_n]` output tile of `out_dtype` and residual tile of `residual_dtype`
        (when not None), the `[tile_m]` and three `[tile_n]` float32 vectors (scales, bias,
        output scales) and the epilogue's five barriers."""
        aligned = lambda nbytes: -(-nbytes // 1024) * 1024  # noqa: E731
        steps, tm, tn, tk = self.max_concurrent_steps, self.tile_m, self.tile_n, self.tile_k
        loads = aligned(steps * tm * tk) + aligned(steps * tn * tk)
        tiles = aligned(tm * tn * jnp.dtype(out_dtype).itemsize) + (
            0 if residual_dtype is None else aligned(tm * tn * jnp.dtype(residual_dtype).itemsize))
        vectors = aligned(tm * 4) + 3 * aligned(tn * 4)
        return loads + tiles + vectors + 8 * (steps + _NUM_BARRIERS)

    def refuses(self, out_dtype=jnp.int32, residual_dtype=None) -> str | None:
        """Why a call with this output and residual dtype cannot use this config (its buffers
        exceed Hopper's shared memory per block), or None."""
        needed = self.smem_bytes(out_dtype, residual_dtype)
        if needed > HOPPER_SMEM_PER_BLOCK:
            residual = "no" if residual_dtype is None else f"a {jnp.dtype(residual_dtype)}"
            return (f"{self} needs {needed} bytes of shared memory for a {jnp.dtype(out_dtype)} "
                    f"output and {residual} residual, more than Hopper's {HOPPER_SMEM_PER_BLOCK}")
        return None


def heuristic(m: int, n: int, k: int, *, out_dtype=jnp.int32, residual_dtype=None) -> MosaicConfig:
    """Small M (weight-bound) gets narrow 64×64 tiles for more CTAs; larger M gets 128×128.
    Four TMA buffers for K >= 512, else two; fewer (down to two) where the call's output and
    residual tiles would not fit beside them."""
    small = m <= 64
    tiles = dict(tile_m=64 if small else 128, tile_n=64 if small or n % 128 else 128,
                 tile_k=128 if k % 128 == 0 else 64)
    options = [MosaicConfig(**tiles, max_concurrent_steps=steps)
               for steps in range(4 if k >= 512 else 2, 1, -1)]
    return next((c for c in options if not c.refuses(out_dtype, residual_dtype)), options[-1])


def candidates(m: int, n: int, k: int, *, out_dtype=jnp.int32, residual_dtype=None) -> list[MosaicConfig]:
    """The configs worth timing for a shape (those that tile N and K and fit in shared memory
    with this output and residual dtype)."""
    grid = itertools.product((64, 128), (64, 128, 256), (64, 128), (2, 3, 4, 6))
    configs = [MosaicConfig(tile_m=tm, tile_n=tn, tile_k=tk, max_concurrent_steps=steps)
               for tm, tn, tk, steps in grid if not (n % tn or k % tk or tm * tn > 128 * 128)]
    return [c for c in configs if not c.refuses(out_dtype, residual_dtype)]


def _swizzled(shape_minor: int, dtype) -> tuple:
    """Tiling + swizzle transforms for an SMEM tile whose minor dimension has `shape_minor` elements."""
    itemsize = jnp.dtype(dtype).itemsize
    swizzle = plgpu.find_swizzle(shape_minor * itemsize * 8)
    return (plgpu.TilingTransform((8, swizzle // itemsize)), plgpu.SwizzleTransform(swizzle))


def _epilogue(acc, xs_smem, ws_smem, bias_smem, res_smem, out_scale_smem, out_smem, barriers, *,
              has_bias: bool, has_residual: bool, requant: bool, activation: str | None,
              requantize_from):
    """Dequantize, bias, activation, residual, then the float or requantized INT8 store to SMEM."""
    tm, tn = out_smem.shape
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
        out_smem[...] = ep.requantize(y, lax.broadcast_in_dim(os, (tm, tn), (1,)),
                                      rounded_to=requantize_from)
    else:
        out_smem[...] = y.astype(out_smem.dtype)


def _kernel(x_gmem, w_gmem, xs_gmem, ws_gmem, *refs, out_smem, xs_smem, ws_smem, bias_smem,
            out_scale_smem, barriers, res_smem=None, config: MosaicConfig, num_k_steps: int,
            raw: bool, has_bias: bool, has_residual: bool, requant: bool, activation: str | None,
            requantize_from):
    """One `[tile_m, tile_n]` tile per CTA. `refs`: the bias, residual and out-scale GMEM refs
    that the statics say are present (in that order), then the output."""
    *optional, o_gmem = refs
    b_gmem, r_gmem, os_gmem = (optional.pop(0) if present else None
                               for present in (has_bias, has_residual, requant))
    tm, tn, tk = config.tile_m, config.tile_n, config.tile_k
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
            grid=(num_k_steps,),
            max_concurrent_steps=config.max_concurrent_steps,
        )(x_gmem, w_gmem)
        if raw:
            out_smem[...] = acc[...]
        else:
            _epilogue(acc, xs_smem, ws_smem, bias_smem, res_smem, out_scale_smem, out_smem,
                      barriers, has_bias=has_bias, has_residual=has_residual, requant=requant,
                      activation=activation, requantize_from=requantize_from)
    plgpu.commit_smem()
    plgpu.copy_smem_to_gmem(out_smem, o_gmem.at[m_slice, n_slice])
    plgpu.wait_smem_to_gmem(0)


def mosaic_int8_matmul(x_q, w_t, x_scale, w_scale, bias, residual, *, out_dtype, activation,
                       out_scale, config: MosaicConfig, requantize_from=jnp.float32, interpret=False):
    """`x_q [M, K] @ w_t[N, K].T` with the fused epilogue; M, N, K multiples of the tiles.

    Args:
      x_scale: `[M]` float32 per-token scales; w_scale, bias: `[N]` float32 (bias may be None).
      residual: `[M, N]` (fp16/bf16/fp32) or None.
      out_dtype: int32 (raw accumulator, no epilogue), int8 (with `out_scale`, from the values
        rounded to `requantize_from`) or a float type.
      interpret: False, or `plgpu.InterpretGPUParams()` to run on the CPU.
    """
    m, k = x_q.shape
    n = w_t.shape[0]
    check_depth(k, "the Mosaic INT8 GEMM")
    tm, tn = config.tile_m, config.tile_n
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
    kernel = functools.partial(_kernel, config=config, num_k_steps=k // config.tile_k, raw=raw,
                               has_bias=has_bias, has_residual=has_residual, requant=requant,
                               activation=activation, requantize_from=jnp.dtype(requantize_from))
    return plgpu.kernel(
        kernel,
        out_type=jax.ShapeDtypeStruct((m, n), out_dtype),
        scratch_types=scratch,
        grid=(m // tm, n // tn),
        grid_names=("m", "n"),
        kernel_name=KERNEL_NAME,
        interpret=interpret,
    )(*operands)


def run(x_q, w_q, x_scale, w_scale, *, bias, residual, config: MosaicConfig | None,
        device_kind: str, interpret: bool, **epilogue):
    """The adapter: needs Hopper (or interpret mode) and N, K tiled; pads M and launches."""
    if not (interpret or is_hopper(device_kind)):
        raise NotImplementedError(f"the Mosaic INT8 GEMM needs a Hopper GPU (sm_90 wgmma), "
                                  f"not {device_kind!r}")
    (m, k), n = x_q.shape, w_q.shape[1]
    out_dtype = epilogue["out_dtype"]
    # The raw accumulator has no epilogue, so no residual tile.
    residual_dtype = None if residual is None or jnp.dtype(out_dtype) == jnp.int32 else residual.dtype
    # a tuned entry that does not fit this call's output and residual tiles gives way to the
    # heuristic's; an explicit config that does not fit is declined below
    cfg = choose(IMPLEMENTATION, device_kind, m, n, k, config, out_dtype=out_dtype,
                 residual_dtype=residual_dtype)
    if n % cfg.tile_n or k % cfg.tile_k:
        raise NotImplementedError(f"the Mosaic INT8 GEMM cannot tile this shape: N={n} and K={k} "
                                  f"must be multiples of tile_n={cfg.tile_n} and tile_k={cfg.tile_k}")
    if reason := cfg.refuses(out_dtype, residual_dtype):
        raise NotImplementedError(f"the Mosaic INT8 GEMM declines this config: {reason}")
    x_q, x_scale, residual = pad_rows(cfg.tile_m, x_q, x_scale, residual)
    # wgmma takes 8-bit operands K-major only: the kernel reads the weight as [N, K].
    out = mosaic_int8_matmul(x_q, w_q.T, x_scale, w_scale, bias, residual, config=cfg,
                             interpret=interpret_params() if interpret else False,
                             **epilogue)
    return out[:m]


IMPLEMENTATION = Implementation("mosaic", MosaicConfig, run, heuristic, candidates, KERNEL_NAME)
