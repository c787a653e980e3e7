"""The INT8 GEMM with its fused epilogue as a warp-specialized, persistent Hopper kernel
(Pallas Mosaic GPU), modelled on jax's `pallas/ops/gpu/hopper_matmul_mgpu.py`.

Everything of this implementation is here: its config (`WsConfig`), heuristic, tuning
candidates, adapter (`run`) and kernel (`_kernel`, bound with its statics).

One CTA per SM walks the output tiles (`plgpu.nd_loop`, a persistent grid) in a planar snake
order (`plgpu.planar_snake`, L2-friendly). In each CTA a producer warpgroup issues the TMA
loads of `[tile_m, tile_k]` activation and `[2·tile_n, tile_k]` weight tiles
(`emit_pipeline_warp_specialized`, `max_concurrent_steps` buffers) while two consumer
warpgroups each accumulate a `[tile_m, tile_n]` half of the `[tile_m, 2·tile_n]` CTA tile with
wgmma `s8 × s8 → s32`; each stores its tile through SMEM in `epi_tile_n`-wide slices with
asynchronous TMA stores (two slots), so the stores of one tile overlap the loads of the next.

The epilogue is `int8_matmul_reference`'s: dequantize, add the bias, apply the activation, add
the residual, then cast to FP16/BF16/FP32 or requantize to INT8 with a static (possibly
traced) scale, passed as an `[N]` float32 operand (`epilogue.requantize`: NaN to 0, ±127).
Each consumer fetches its tile's per-token and per-channel scales, bias and output scales by
TMA while its K loop runs, one barrier per operand. The residual travels slice by slice into
two residual slots beside the store slots: the first two slices during the K loop, each later
one while the slice before it is stored; one barrier per slot. The persistent loop reuses
every buffer and barrier tile after tile: each load is waited for exactly once, and a slot is
reloaded only after its warpgroup has read it (`commit_smem` synchronizes the warpgroup).
Shared memory therefore depends on the output and residual dtypes (`WsConfig.smem_bytes`): the
heuristic narrows the store slices, then drops a TMA buffer, until the call fits, and a config
that does not fit is declined. It runs only when named (`implementation="mosaic_ws"`), never
by default, until it is measured on a GPU.
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
from pallas_kernels.devices import HOPPER_SMEM_PER_BLOCK, is_hopper, lookup
from pallas_kernels.int8_matmul.base import Implementation, interpret_params, pad_rows, tuned
from pallas_kernels.lazy import mosaic_gpu
from pallas_kernels.numerics import check_depth

plgpu = mosaic_gpu()  # jax.experimental.pallas.mosaic_gpu, imported when a kernel is first built

KERNEL_NAME = "samp_int8_matmul_ws"
# Each consumer warpgroup's barriers: one per epilogue operand, one per residual slot.
_XS, _WS, _BIAS, _OUT_SCALE, _RES = range(5)
_BARRIERS_PER_WG = _RES + 2
_VECTORS = ("ws", "bias", "out_scale")  # the [N] operands, fetched per consumer as [tile_n]


@dataclasses.dataclass(frozen=True, kw_only=True)
class WsConfig:
    """Tiles, pipelining and tile order of the warp-specialized INT8 GEMM.

    Attributes:
      tile_m: rows of a CTA tile (and of each consumer warpgroup's): 64 or 128.
      tile_n: columns of each consumer warpgroup's tile (the CTA's is twice it): 64 or 128.
      tile_k: reduction step, 64 or 128 int8 (a 128-byte swizzle row at 128).
      max_concurrent_steps: TMA buffers in flight, >= 2.
      epi_tile_n: width of the slices stored (and residual slices loaded) through SMEM;
        divides tile_n.
      grid_tile_width: width of the planar snake's bands (L2 reuse).

    A config must fit the raw int32 output in shared memory (`smem_bytes()`); whether it suits
    a call with another output or a residual is the call's question (`refuses`).
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
        if reason := self.refuses():
            raise ValueError(reason)

    def smem_bytes(self, out_dtype=jnp.int32, residual_dtype=None) -> int:
        """Shared memory of a call, as the Pallas lowering allocates it (each buffer aligned to
        1 KiB, 8 bytes per barrier): the TMA buffers and their two barriers each, and per
        consumer warpgroup two store slots of `[tile_m, epi_tile_n]` `out_dtype`, two residual
        slices of `residual_dtype` (when not None), the `[tile_m]` scales, the `[tile_n]`
        scales, bias and output scales (float32) and its barriers."""
        aligned = lambda nbytes: -(-nbytes // 1024) * 1024  # noqa: E731
        steps = self.max_concurrent_steps
        loads = (aligned(steps * self.tile_m * self.tile_k)
                 + aligned(steps * 2 * self.tile_n * self.tile_k))
        slot = 2 * 2 * self.tile_m * self.epi_tile_n
        slots = aligned(slot * jnp.dtype(out_dtype).itemsize) + (
            0 if residual_dtype is None else aligned(slot * jnp.dtype(residual_dtype).itemsize))
        vectors = aligned(2 * self.tile_m * 4) + len(_VECTORS) * aligned(2 * self.tile_n * 4)
        return loads + slots + vectors + 8 * (2 * steps + 2 * _BARRIERS_PER_WG)

    def refuses(self, out_dtype=jnp.int32, residual_dtype=None) -> str | None:
        """Why a call with this output and residual dtype cannot use this config, or None: its
        buffers exceed Hopper's shared memory, or a slot's row is narrower than the 32-byte
        swizzle its TMA copies need (an INT8 output needs `epi_tile_n` >= 32)."""
        needed = self.smem_bytes(out_dtype, residual_dtype)
        if needed > HOPPER_SMEM_PER_BLOCK:
            return (f"{self} needs {needed} bytes of shared memory for a {jnp.dtype(out_dtype)} "
                    f"output and a {residual_dtype} residual, more than Hopper's "
                    f"{HOPPER_SMEM_PER_BLOCK}")
        for dtype in (out_dtype,) if residual_dtype is None else (out_dtype, residual_dtype):
            if self.epi_tile_n * jnp.dtype(dtype).itemsize < 32:
                return (f"epi_tile_n={self.epi_tile_n} {jnp.dtype(dtype)} columns are narrower than "
                        "a 32-byte swizzle row")
        return None


def heuristic(m: int, n: int, k: int, *, out_dtype=jnp.int32, residual_dtype=None) -> WsConfig:
    """128 x 256 CTA tiles (64-row tiles for small M), three TMA buffers and 32-column store
    slices; where the epilogue's slots do not fit beside them, 16-column slices, then two
    buffers."""
    tiles = dict(tile_m=64 if m <= 64 else 128, tile_n=128 if n % 256 == 0 else 64,
                 tile_k=128 if k % 128 == 0 else 64)
    options = [WsConfig(**tiles, max_concurrent_steps=steps, epi_tile_n=epi)
               for steps, epi in ((3, 32), (3, 16), (2, 32), (2, 16))]
    return next((c for c in options if not c.refuses(out_dtype, residual_dtype)), options[-1])


def candidates(m: int, n: int, k: int, *, out_dtype=jnp.int32, residual_dtype=None) -> list[WsConfig]:
    """The configs worth timing for a shape (those that tile N and K and fit in SMEM with this
    output and residual dtype)."""
    out = []
    for tm, tn, tk, steps, width in itertools.product((64, 128), (64, 128), (64, 128), (2, 3, 4, 5),
                                                      (4, 8, 16)):
        if n % (2 * tn) or k % tk:
            continue
        try:
            config = WsConfig(tile_m=tm, tile_n=tn, tile_k=tk, max_concurrent_steps=steps,
                              grid_tile_width=width)
        except ValueError:  # does not fit in shared memory
            continue
        if not config.refuses(out_dtype, residual_dtype):
            out.append(config)
    return out


def _swizzled(minor: int, dtype) -> tuple:
    """Tiling + swizzle transforms of an SMEM tile whose minor dimension has `minor` elements."""
    itemsize = jnp.dtype(dtype).itemsize
    swizzle = plgpu.find_swizzle(minor * itemsize * 8)
    return (plgpu.TilingTransform((8, swizzle // itemsize)), plgpu.SwizzleTransform(swizzle))


def _epilogue_smem(config: WsConfig, out_dtype, residual_dtype) -> dict:
    """The epilogue's SMEM, indexed first by consumer warpgroup: what `WsConfig.smem_bytes`
    counts beside the TMA buffers (two store slots, two residual slices, the vectors)."""
    tm, tn, epi = config.tile_m, config.tile_n, config.epi_tile_n
    slots = lambda dtype: plgpu.SMEM((2, 2, tm, epi), dtype, transforms=_swizzled(epi, dtype))  # noqa: E731
    smem = dict(out=slots(out_dtype), xs=plgpu.SMEM((2, tm), jnp.float32),
                **{name: plgpu.SMEM((2, tn), jnp.float32) for name in _VECTORS},
                barriers=plgpu.Barrier(num_barriers=2 * _BARRIERS_PER_WG))
    if residual_dtype is not None:
        smem["residual"] = slots(residual_dtype)
    return smem


def _barrier(smem: dict, wg, i: int):
    """Consumer `wg`'s barrier `i` (`_XS`, `_WS`, `_BIAS`, `_OUT_SCALE`, `_RES` + residual slot)."""
    return smem["barriers"].at[_BARRIERS_PER_WG * wg + i]


def _fetch_residual(i: int, gmem: dict, smem: dict, wg, m_slice, col, epi: int):
    """TMA-loads the residual's slice `i` (`[tile_m, epi]` at column `col + i * epi`) into
    residual slot `i % 2` of consumer `wg`."""
    plgpu.copy_gmem_to_smem(gmem["residual"].at[m_slice, pl.ds(col + i * epi, epi)],
                            smem["residual"].at[wg, i % 2],
                            _barrier(smem, wg, _RES + i % 2))


def _fetch(gmem: dict, smem: dict, wg, m_slice, col, config: WsConfig):
    """Issues consumer `wg`'s TMA loads of its tile's epilogue operands, so they arrive while
    the K loop runs: the scales, bias and output scales, and the residual's first two slices."""
    tn, epi = config.tile_n, config.epi_tile_n
    plgpu.copy_gmem_to_smem(gmem["xs"].at[m_slice], smem["xs"].at[wg], _barrier(smem, wg, _XS))
    for name, index in zip(_VECTORS, (_WS, _BIAS, _OUT_SCALE)):
        if gmem[name] is not None:
            plgpu.copy_gmem_to_smem(gmem[name].at[pl.ds(col, tn)], smem[name].at[wg],
                                    _barrier(smem, wg, index))
    if gmem["residual"] is not None:
        for i in range(min(2, tn // epi)):
            _fetch_residual(i, gmem, smem, wg, m_slice, col, epi)


def _dequantize(acc, smem: dict, wg, *, has_bias: bool, activation: str | None):
    """`activation(acc * x_scale * w_scale + bias)` of consumer `wg`'s tile, float32."""
    tm, tn = acc.shape
    plgpu.barrier_wait(_barrier(smem, wg, _XS))
    plgpu.barrier_wait(_barrier(smem, wg, _WS))
    y = acc.astype(jnp.float32) * lax.broadcast_in_dim(smem["xs"][wg], (tm, tn), (0,))
    y = y * lax.broadcast_in_dim(smem["ws"][wg], (tm, tn), (1,))
    if has_bias:
        plgpu.barrier_wait(_barrier(smem, wg, _BIAS))
        y = y + lax.broadcast_in_dim(smem["bias"][wg], (tm, tn), (1,))
    return ep.activation(y, activation)


def _store(y, gmem: dict, smem: dict, wg, m_slice, col, *, epi: int, requant: bool,
           requantize_from=jnp.float32):
    """Stores consumer `wg`'s tile `y` (the raw accumulator, or the dequantized float32)
    through SMEM in `epi`-wide slices with asynchronous TMA stores (two slots), adding the
    residual and requantizing (INT8 output) slice by slice; while a slice is stored, the
    residual slice two further on is loaded into the slot just read."""
    tm, tn = y.shape
    has_residual = gmem["residual"] is not None
    out_smem, out_dtype = smem["out"], gmem["out"].dtype
    if requant:
        plgpu.barrier_wait(_barrier(smem, wg, _OUT_SCALE))
        out_scale = lax.broadcast_in_dim(smem["out_scale"][wg], (tm, tn), (1,))
    plgpu.wait_smem_to_gmem(0, wait_read_only=True)
    for i in range(tn // epi):
        slot, cols = i % 2, slice(i * epi, (i + 1) * epi)
        part = y[:, cols]
        if has_residual:  # after the activation, as the reference adds it
            plgpu.barrier_wait(_barrier(smem, wg, _RES + slot))
            part = part + smem["residual"][wg, slot].astype(jnp.float32)
        part = (ep.requantize(part, out_scale[:, cols], rounded_to=requantize_from) if requant
                else part.astype(out_dtype))
        plgpu.wait_smem_to_gmem(1, wait_read_only=True)  # the slot is free again
        out_smem[wg, slot] = part
        plgpu.commit_smem()  # also: every thread of the warpgroup has read the residual slot
        plgpu.copy_smem_to_gmem(out_smem.at[wg, slot],
                                gmem["out"].at[m_slice, pl.ds(col + i * epi, epi)])
        if has_residual and i + 2 < tn // epi:
            _fetch_residual(i + 2, gmem, smem, wg, m_slice, col, epi)


def _kernel(a_gmem, b_gmem, *refs, config: WsConfig, has_bias: bool, has_residual: bool,
            requant: bool, activation: str | None, requantize_from=jnp.float32):
    """The persistent loop over output tiles; `b_gmem` is the weight K-major, `[N, K]`.
    `refs`: for an epilogue (a float or INT8 output), the `[M]` and `[N]` scales, then the
    `[N]` bias, `[M, N]` residual and `[N]` output scales that the statics say are present (in
    that order); then the output."""
    *operands, out_gmem = refs
    raw = not operands
    xs_gmem, ws_gmem, *optional = operands or (None, None)
    present = iter(optional)
    bias_gmem, res_gmem, os_gmem = (next(present) if used else None
                                    for used in (has_bias, has_residual, requant))
    gmem = dict(xs=xs_gmem, ws=ws_gmem, bias=bias_gmem, residual=res_gmem, out_scale=os_gmem,
                out=out_gmem)
    m, k = a_gmem.shape
    n = b_gmem.shape[0]
    tm, tn, tk = config.tile_m, config.tile_n, config.tile_k
    cta_n = 2 * tn  # the two consumer warpgroups side by side along N
    transforms = _swizzled(tk, jnp.int8)
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
    epilogue_smem = _epilogue_smem(config, out_gmem.dtype, res_gmem.dtype if has_residual else None)

    @functools.partial(pl.run_scoped, allocations=pipeline(ignore, ignore).get_allocations(a_gmem, b_gmem),
                       smem=epilogue_smem, collective_axes="wg")
    def _scope(allocations, smem):
        wg = lax.axis_index("wg")

        @plgpu.nd_loop((m_iters * n_iters,), collective_axes="sm")
        def _tiles(info):
            (linear,) = info.index
            m_idx, n_idx = plgpu.planar_snake(linear, (m_iters, n_iters), 1, config.grid_tile_width)
            m_slice, n_slice = pl.ds(m_idx * tm, tm), pl.ds(n_idx * cta_n, cta_n)
            col = n_idx * cta_n + wg * tn  # this consumer's first output column
            wg_n = pl.ds(wg * tn, tn)

            def store(eval_pipeline):
                if not raw:  # the epilogue operands travel while the K loop runs
                    _fetch(gmem, smem, wg, m_slice, col, config)

                @functools.partial(pl.run_scoped, acc_ref=plgpu.ACC((tm, tn), jnp.int32))
                def _acc(acc_ref):
                    eval_pipeline(acc_ref)
                    y = acc_ref[...]
                    if not raw:
                        y = _dequantize(y, smem, wg, has_bias=has_bias, activation=activation)
                    _store(y, gmem, smem, wg, m_slice, col, epi=config.epi_tile_n, requant=requant,
                           requantize_from=requantize_from)

            def mma(_, a_smem, b_smem, acc_ref):
                plgpu.wgmma(acc_ref, a_smem, b_smem.at[wg_n].T)  # 8-bit wgmma reads B K-major
                plgpu.wgmma_wait(0)
                return acc_ref

            pipeline(mma, store)(a_gmem.at[m_slice, :], b_gmem.at[n_slice, :], allocations=allocations)
    plgpu.wait_smem_to_gmem(0, wait_read_only=True)


def ws_int8_matmul(x_q, w_t, x_scale=None, w_scale=None, bias=None, residual=None, *,
                   config: WsConfig, num_sms: int, out_dtype=jnp.int32, activation=None,
                   out_scale=None, requantize_from=jnp.float32, interpret=False):
    """`x_q [M, K] @ w_t [N, K].T`; M, N, K multiples of the CTA tile.

    Args:
      x_scale, w_scale: `[M]` and `[N]` float32 scales; bias: `[N]` float32 or None;
        residual: `[M, N]` (fp16/bf16/fp32) or None (all unused for an int32 output).
      out_dtype: int32 (the raw accumulator), int8 (requantized with `out_scale`, a scalar
        that may be traced, from the values rounded to `requantize_from`) or a float type.
      num_sms: CTAs of the persistent grid.
      interpret: False, or `plgpu.InterpretGPUParams()` to run on the CPU.
    """
    m, k = x_q.shape
    n = w_t.shape[0]
    check_depth(k, "the warp-specialized INT8 GEMM")
    out_dtype = jnp.dtype(out_dtype)
    raw, requant = out_dtype == jnp.int32, out_dtype == jnp.int8
    has_bias, has_residual = bias is not None and not raw, residual is not None and not raw
    operands = [x_q, w_t] + ([] if raw else [x_scale, w_scale]) + ([bias] if has_bias else []) + (
        [residual] if has_residual else [])
    if requant:  # an operand, not a constant: a calibrated scale is traced model state
        operands.append(jnp.broadcast_to(jnp.asarray(out_scale, jnp.float32), (n,)))
    params = plgpu.CompilerParams(lowering_semantics=plgpu.LoweringSemantics.Warpgroup)
    kernel = functools.partial(_kernel, config=config, has_bias=has_bias, has_residual=has_residual,
                               requant=requant, activation=activation,
                               requantize_from=jnp.dtype(requantize_from))
    return plgpu.kernel(
        kernel, out_type=jax.ShapeDtypeStruct((m, n), out_dtype), grid=(num_sms,),
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
        interpret: bool, out_dtype, activation=None, out_scale=None, requantize_from=jnp.float32):
    """The adapter: Hopper (or interpret mode), N and K tiled, and the call's epilogue buffers
    in shared memory; pads M and launches."""
    if not (interpret or is_hopper(device_kind)):
        raise NotImplementedError(f"the warp-specialized INT8 GEMM needs a Hopper GPU (sm_90 "
                                  f"wgmma), not {device_kind!r}")
    (m, k), n = x_q.shape, w_q.shape[1]
    if jnp.dtype(out_dtype) == jnp.int32:  # the raw accumulator: no epilogue
        residual = None
    residual_dtype = None if residual is None else residual.dtype
    # As `base.choose` (explicit, tuned table, heuristic), the heuristic told the epilogue's dtypes.
    cfg = (config or tuned(IMPLEMENTATION, device_kind, m, n, k)
           or heuristic(m, n, k, out_dtype=out_dtype, residual_dtype=residual_dtype))
    if n % (2 * cfg.tile_n) or k % cfg.tile_k:
        raise NotImplementedError(f"the warp-specialized INT8 GEMM cannot tile this shape: N={n} "
                                  f"and K={k} must be multiples of 2*tile_n={2 * cfg.tile_n} and "
                                  f"tile_k={cfg.tile_k}")
    if reason := cfg.refuses(out_dtype, residual_dtype):
        raise NotImplementedError(f"the warp-specialized INT8 GEMM declines this config: {reason}")
    x_q, x_scale, residual = pad_rows(cfg.tile_m, x_q, x_scale, residual)
    out = ws_int8_matmul(x_q, w_q.T, x_scale, w_scale, bias, residual, config=cfg,
                         out_dtype=out_dtype, activation=activation, out_scale=out_scale,
                         requantize_from=requantize_from, num_sms=_num_sms(device_kind, interpret),
                         interpret=interpret_params() if interpret else False)
    return out[:m]


IMPLEMENTATION = Implementation("mosaic_ws", WsConfig, run, heuristic, candidates, KERNEL_NAME,
                                automatic=False)
