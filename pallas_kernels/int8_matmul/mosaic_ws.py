"""The raw INT8 GEMM (`int8 @ int8 -> int32`, no epilogue) as a warp-specialized, persistent
Hopper kernel (Pallas Mosaic GPU), modelled on jax's `pallas/ops/gpu/hopper_matmul_mgpu.py`.

Everything of this implementation is here: its config (`WsConfig`), heuristic, tuning
candidates, adapter (`run`) and kernel (`_kernel`, bound with its statics).

One CTA per SM walks the output tiles (`plgpu.nd_loop`, a persistent grid) in a planar snake
order (`plgpu.planar_snake`, L2-friendly). In each CTA a producer warpgroup issues the TMA
loads of `[tile_m, tile_k]` activation and `[2·tile_n, tile_k]` weight tiles
(`emit_pipeline_warp_specialized`, `max_concurrent_steps` buffers) while two consumer
warpgroups each accumulate a `[tile_m, tile_n]` half of the `[tile_m, 2·tile_n]` CTA tile with
wgmma `s8 × s8 → s32`; each stores its accumulator through SMEM in `epi_tile_n`-wide slices
with asynchronous TMA stores (two slots), so the stores of one tile overlap the loads of the
next. The epilogue is fused for a float output: each consumer fetches its tile's per-token and
per-channel scales and bias by TMA while its K loop runs, then dequantizes, adds the bias and
applies the activation before the store. A residual or an INT8 (requantized) output it does not
fuse yet, and declines (NotImplementedError); it runs only when named
(`implementation="mosaic_ws"`), never by default, until it is measured on a GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from pallas_kernels import epilogue as ep
from pallas_kernels.devices import is_hopper, lookup
from pallas_kernels.int8_matmul.base import Implementation, choose, pad_rows
from pallas_kernels.numerics import check_depth

KERNEL_NAME = "samp_int8_matmul_ws"
SMEM_BYTES = 227 * 1024  # Hopper's shared memory per CTA


@dataclasses.dataclass(frozen=True, kw_only=True)
class WsConfig:
    """Tiles, pipelining and tile order of the warp-specialized INT8 GEMM.

    Attributes:
      tile_m: rows of a CTA tile (and of each consumer warpgroup's): 64 or 128.
      tile_n: columns of each consumer warpgroup's tile (the CTA's is twice it): 64 or 128.
      tile_k: reduction step, 64 or 128 int8 (a 128-byte swizzle row at 128).
      max_concurrent_steps: TMA buffers in flight, >= 2.
      epi_tile_n: width of the accumulator slices stored through SMEM; divides tile_n.
      grid_tile_width: width of the planar snake's bands (L2 reuse).
    """

    tile_m: int = 128
    tile_n: int = 128
    tile_k: int = 128
    max_concurrent_steps: int = 3
    epi_tile_n: int = 32
    grid_tile_width: int = 8

    def __post_init__(self):
        if self.tile_m not in (64, 128) or self.tile_n not in (64, 128) or self.tile_k not in (64, 128):
            raise ValueError(f"tile_m={self.tile_m}, tile_n={self.tile_n}, tile_k={self.tile_k} "
                             "must each be 64 or 128")
        if self.max_concurrent_steps < 2:
            raise ValueError(f"max_concurrent_steps={self.max_concurrent_steps} must be >= 2")
        if self.tile_n % self.epi_tile_n or self.epi_tile_n < 16:
            raise ValueError(f"epi_tile_n={self.epi_tile_n} must divide tile_n={self.tile_n}, >= 16")
        if self.smem_bytes() > SMEM_BYTES:
            raise ValueError(f"{self} needs {self.smem_bytes()} bytes of shared memory, more than "
                             f"{SMEM_BYTES}")

    def smem_bytes(self) -> int:
        """Shared memory of the TMA buffers, the store slots (int32, the widest output) and
        the epilogue's scales and bias."""
        loads = self.max_concurrent_steps * (self.tile_m + 2 * self.tile_n) * self.tile_k
        return loads + 2 * 2 * self.tile_m * self.epi_tile_n * 4 + 2 * (self.tile_m + 2 * self.tile_n) * 4


def heuristic(m: int, n: int, k: int) -> WsConfig:
    """128 x 256 CTA tiles, three TMA buffers; 64-row tiles for small M."""
    return WsConfig(tile_m=64 if m <= 64 else 128, tile_n=128 if n % 256 == 0 else 64,
                    tile_k=128 if k % 128 == 0 else 64)


def candidates(m: int, n: int, k: int) -> list[WsConfig]:
    """The configs worth timing for a shape (those that tile N and K and fit in SMEM)."""
    out = []
    for tm, tn, tk, steps, width in itertools.product((64, 128), (64, 128), (64, 128), (2, 3, 4, 5),
                                                      (4, 8, 16)):
        if n % (2 * tn) or k % tk:
            continue
        try:
            out.append(WsConfig(tile_m=tm, tile_n=tn, tile_k=tk, max_concurrent_steps=steps,
                                grid_tile_width=width))
        except ValueError:  # does not fit in shared memory
            continue
    return out


def _kernel(a_gmem, b_gmem, *refs, config: WsConfig, has_bias: bool, activation: str | None):
    """The persistent loop over output tiles; `b_gmem` is the weight K-major, `[N, K]`.
    `refs`: for a float output, the `[M]` and `[N]` scales and (`has_bias`) the `[N]` bias,
    then the output."""
    *epilogue_refs, out_gmem = refs
    raw = not epilogue_refs
    out_dtype = out_gmem.dtype
    xs_gmem, ws_gmem, b_gmem_bias = (*epilogue_refs, None, None, None)[:3] if not raw else (None,) * 3
    m, k = a_gmem.shape
    n = b_gmem.shape[0]
    tm, tn, tk, epi = config.tile_m, config.tile_n, config.tile_k, config.epi_tile_n
    cta_n = 2 * tn  # the two consumer warpgroups side by side along N
    swizzle = plgpu.find_swizzle(tk * 8)
    transforms = (plgpu.TilingTransform((8, swizzle)), plgpu.SwizzleTransform(swizzle))
    itemsize = jnp.dtype(out_dtype).itemsize
    out_swizzle = plgpu.find_swizzle(epi * itemsize * 8)
    out_transforms = (plgpu.TilingTransform((8, out_swizzle // itemsize)),
                      plgpu.SwizzleTransform(out_swizzle))
    m_iters, n_iters = m // tm, n // cta_n

    def pipeline(body, context):
        return plgpu.emit_pipeline_warp_specialized(
            body, grid=(k // tk,), memory_registers=40, wg_axis="wg", num_compute_wgs=2,
            max_concurrent_steps=config.max_concurrent_steps, compute_context=context,
            in_specs=[plgpu.BlockSpec((tm, tk), lambda kk: (0, kk), transforms=transforms,
                                      memory_space=plgpu.SMEM),
                      plgpu.BlockSpec((cta_n, tk), lambda kk: (0, kk), transforms=transforms,
                                      memory_space=plgpu.SMEM)])

    ignore = lambda *_, **__: None  # noqa: E731  (the allocations do not depend on the bodies)

    @functools.partial(pl.run_scoped, allocations=pipeline(ignore, ignore).get_allocations(a_gmem, b_gmem),
                       out_smem=plgpu.SMEM((2, 2, tm, epi), out_dtype, transforms=out_transforms),
                       xs_smem=plgpu.SMEM((2, tm), jnp.float32), ws_smem=plgpu.SMEM((2, tn), jnp.float32),
                       bias_smem=plgpu.SMEM((2, tn), jnp.float32), barriers=plgpu.Barrier(num_barriers=6),
                       collective_axes="wg")
    def _scope(allocations, out_smem, xs_smem, ws_smem, bias_smem, barriers):
        wg = lax.axis_index("wg")

        @plgpu.nd_loop((m_iters * n_iters,), collective_axes="sm")
        def _tiles(info):
            (linear,) = info.index
            m_idx, n_idx = plgpu.planar_snake(linear, (m_iters, n_iters), 1, config.grid_tile_width)
            m_slice, n_slice = pl.ds(m_idx * tm, tm), pl.ds(n_idx * cta_n, cta_n)
            wg_n = pl.ds(wg * tn, tn)

            def store(eval_pipeline):
                if not raw:  # the epilogue operands travel while the K loop runs
                    wg_cols = pl.ds(n_idx * cta_n + wg * tn, tn)
                    plgpu.copy_gmem_to_smem(xs_gmem.at[m_slice], xs_smem.at[wg], barriers.at[3 * wg])
                    plgpu.copy_gmem_to_smem(ws_gmem.at[wg_cols], ws_smem.at[wg], barriers.at[3 * wg + 1])
                    if has_bias:
                        plgpu.copy_gmem_to_smem(b_gmem_bias.at[wg_cols], bias_smem.at[wg],
                                                barriers.at[3 * wg + 2])

                @functools.partial(pl.run_scoped, acc_ref=plgpu.ACC((tm, tn), jnp.int32))
                def _acc(acc_ref):
                    eval_pipeline(acc_ref)
                    acc = acc_ref[...]
                    if not raw:
                        for i in range(2 + has_bias):
                            plgpu.barrier_wait(barriers.at[3 * wg + i])
                        y = acc.astype(jnp.float32) * lax.broadcast_in_dim(xs_smem[wg], (tm, tn), (0,))
                        y = y * lax.broadcast_in_dim(ws_smem[wg], (tm, tn), (1,))
                        if has_bias:
                            y = y + lax.broadcast_in_dim(bias_smem[wg], (tm, tn), (1,))
                        acc = ep.activation(y, activation).astype(out_dtype)
                    plgpu.wait_smem_to_gmem(0, wait_read_only=True)
                    for i in range(tn // epi):
                        slot = i % 2
                        plgpu.wait_smem_to_gmem(1, wait_read_only=True)  # the slot is free again
                        out_smem[wg, slot] = acc[:, i * epi:(i + 1) * epi]
                        plgpu.commit_smem()
                        plgpu.copy_smem_to_gmem(out_smem.at[wg, slot], out_gmem.at[m_slice, n_slice]
                                                .at[:, wg_n].at[:, pl.ds(i * epi, epi)])

            def mma(_, a_smem, b_smem, acc_ref):
                plgpu.wgmma(acc_ref, a_smem, b_smem.at[wg_n].T)  # 8-bit wgmma reads B K-major
                plgpu.wgmma_wait(0)
                return acc_ref

            pipeline(mma, store)(a_gmem.at[m_slice, :], b_gmem.at[n_slice, :], allocations=allocations)
    plgpu.wait_smem_to_gmem(0, wait_read_only=True)


def ws_int8_matmul(x_q, w_t, x_scale=None, w_scale=None, bias=None, *, config: WsConfig,
                   num_sms: int, out_dtype=jnp.int32, activation=None, interpret=False):
    """`x_q [M, K] @ w_t [N, K].T`; M, N, K multiples of the CTA tile. `out_dtype` int32: the
    raw accumulator; a float type: dequantized with `x_scale [M]` and `w_scale [N]` (float32),
    plus `bias [N]` (or None), then `activation`."""
    m, k = x_q.shape
    check_depth(k, "the warp-specialized INT8 GEMM")
    raw = jnp.dtype(out_dtype) == jnp.int32
    operands = [x_q, w_t] + ([] if raw else [x_scale, w_scale] + ([] if bias is None else [bias]))
    params = plgpu.CompilerParams(lowering_semantics=plgpu.LoweringSemantics.Warpgroup)
    kernel = functools.partial(_kernel, config=config, has_bias=bias is not None and not raw,
                               activation=activation)
    return plgpu.kernel(
        kernel, out_type=jax.ShapeDtypeStruct((m, w_t.shape[0]), out_dtype), grid=(num_sms,),
        grid_names=("sm",), num_threads=3, thread_name="wg", compiler_params=params,
        kernel_name=KERNEL_NAME, interpret=interpret)(*operands)


def _num_sms(device_kind: str, interpret: bool) -> int:
    if interpret:
        return 3  # fewer "SMs" than tiles: the persistent loop takes several turns
    abstract = jax.sharding.get_abstract_mesh().abstract_device
    if abstract is not None:
        return abstract.num_cores
    known = lookup(device_kind)
    return getattr(jax.devices()[0], "core_count", None) or (known.num_cores if known else 132)


def run(x_q, w_q, x_scale, w_scale, *, bias, residual, config: WsConfig | None, device_kind: str,
        interpret: bool, out_dtype, activation=None, out_scale=None):
    """The adapter: Hopper (or interpret mode), the raw accumulator or a float output with
    bias and activation; pads M."""
    if not (interpret or is_hopper(device_kind)):
        raise NotImplementedError(f"the warp-specialized INT8 GEMM needs a Hopper GPU (sm_90 "
                                  f"wgmma), not {device_kind!r}")
    raw = jnp.dtype(out_dtype) == jnp.int32
    if not raw and (residual is not None or jnp.dtype(out_dtype) == jnp.int8):
        raise NotImplementedError("the warp-specialized INT8 GEMM does not fuse a residual or an "
                                  "INT8 requantized output yet")
    (m, k), n = x_q.shape, w_q.shape[1]
    cfg = choose(IMPLEMENTATION, device_kind, m, n, k, config)
    if n % (2 * cfg.tile_n) or k % cfg.tile_k:
        raise NotImplementedError(f"the warp-specialized INT8 GEMM cannot tile this shape: N={n} "
                                  f"and K={k} must be multiples of 2*tile_n={2 * cfg.tile_n} and "
                                  f"tile_k={cfg.tile_k}")
    x_q, x_scale, _ = pad_rows(cfg.tile_m, x_q, x_scale, None)
    out = ws_int8_matmul(x_q, w_q.T, x_scale, w_scale, bias, config=cfg, out_dtype=out_dtype,
                         activation=activation, num_sms=_num_sms(device_kind, interpret),
                         interpret=plgpu.InterpretGPUParams() if interpret else False)
    return out[:m]


IMPLEMENTATION = Implementation("mosaic_ws", WsConfig, run, heuristic, candidates, KERNEL_NAME,
                                automatic=False)
