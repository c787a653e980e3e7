"""The INT8 GEMM front door: validation, implementation choice, M padding, config choice."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

from pallas_kernels.int8_matmul.config import Config, MosaicConfig, choose, choose_mosaic

IMPLEMENTATIONS = ("mosaic", "triton")
_HOPPER_KINDS = ("H100", "H200", "H800", "H20", "GH200")


def target_device_kind() -> str:
    """The device being compiled for: an abstract mesh's GPU (cross-lowering) or device 0."""
    abstract = jax.sharding.get_abstract_mesh().abstract_device
    return abstract.device_kind if abstract is not None else jax.devices()[0].device_kind


def is_hopper(device_kind: str) -> bool:
    """sm_90 devices, where the Mosaic GPU wgmma kernel is the default."""
    return any(name in device_kind for name in _HOPPER_KINDS)


def default_implementation(device_kind: str) -> str:
    """`$SAMP_JAX_INT8_KERNEL` if set, else `mosaic` on Hopper and `triton` elsewhere."""
    forced = os.environ.get("SAMP_JAX_INT8_KERNEL")
    if forced:
        if forced not in IMPLEMENTATIONS:
            raise ValueError(f"SAMP_JAX_INT8_KERNEL={forced!r} is not one of {IMPLEMENTATIONS}")
        return forced
    return "mosaic" if is_hopper(device_kind) else "triton"


def int8_matmul(x_q, w_q, x_scale, w_scale, *, bias=None, activation=None, residual=None,
                out_dtype=jnp.float16, out_scale: float | None = None,
                implementation: str | None = None, config: Config | MosaicConfig | None = None,
                interpret: bool = False):
    """`x_q [M, K] int8 @ w_q [K, N] int8 → int32`, then the fused epilogue.

    The epilogue: `y = acc · x_scale · w_scale (+ bias)`, then GELU (or another activation),
    then `+ residual`, written as `out_dtype`; with `out_dtype=int8` it is requantized with the
    static `out_scale` (round half to even, saturating at ±127) for the next INT8 GEMM, and
    with `out_dtype=int32` the raw accumulator is returned without an epilogue.

    Args:
      x_scale: `[M, 1]` per-token scales (a per-tensor scale broadcast to `[M, 1]`).
      w_scale: `[N]` per-channel weight scales. bias: `[N]`. residual: `[M, N]`.
      implementation: 'mosaic' (Hopper wgmma), 'triton' (sm_80+), or None: the default for
        the device (`default_implementation`), falling back to Triton for shapes the Mosaic
        kernel does not tile.
      config: a `MosaicConfig` or `Config`; default: the tuned table, then the heuristic.
      interpret: run the kernel body on the CPU (tests).

    Raises:
      ValueError: inconsistent shapes, dtypes or arguments.
      NotImplementedError: a shape the chosen (or every) implementation cannot tile; the
        `samp_jax.gemm` dispatcher then falls back to XLA.
    """
    m, k = x_q.shape
    k2, n = w_q.shape
    if x_q.dtype != jnp.int8 or w_q.dtype != jnp.int8:
        raise ValueError(f"operands must be int8, got {x_q.dtype} and {w_q.dtype}")
    if k != k2:
        raise ValueError(f"x_q has K={k} but w_q has K={k2}")
    if x_scale.shape != (m, 1) or w_scale.shape != (n,):
        raise ValueError(f"scales must be [M, 1] and [N], got {x_scale.shape} and {w_scale.shape}")
    if bias is not None and bias.shape != (n,):
        raise ValueError(f"bias must be [N]=[{n}], got {bias.shape}")
    if residual is not None and residual.shape != (m, n):
        raise ValueError(f"residual must be [M, N]=[{m}, {n}], got {residual.shape}")
    out_int8 = jnp.dtype(out_dtype) == jnp.int8
    if out_int8 != (out_scale is not None):
        raise ValueError("out_scale is required exactly when out_dtype is int8")
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={implementation!r} is not one of {IMPLEMENTATIONS}")
    device = target_device_kind()
    explicit = implementation is not None
    implementation = implementation or default_implementation(device)
    if isinstance(config, MosaicConfig) and implementation != "mosaic":
        raise ValueError("a MosaicConfig needs implementation='mosaic'")
    if isinstance(config, Config) and implementation != "triton":
        raise ValueError("a (Triton) Config needs implementation='triton'")

    if implementation == "mosaic":
        cfg = choose_mosaic(device, m, n, k, config)
        reason = _mosaic_unsupported(n, k, cfg)
        if reason and (explicit or config is not None):
            raise NotImplementedError(f"the Mosaic INT8 GEMM cannot tile this shape: {reason}")
        if reason:  # an automatic choice falls back to the portable kernel
            implementation, config = "triton", None
    if implementation == "triton":
        cfg = choose(device, m, n, k, config)
        if n % cfg.block_n or k % cfg.block_k:
            raise NotImplementedError(f"{n=} and {k=} must be divisible by block_n={cfg.block_n} "
                                      f"and block_k={cfg.block_k}")
    tile_m = cfg.tile_m if implementation == "mosaic" else cfg.block_m
    padded_m = -(-m // tile_m) * tile_m
    pad = padded_m - m
    x_scale = x_scale.reshape(m).astype(jnp.float32)
    if pad:
        x_q = jnp.pad(x_q, ((0, pad), (0, 0)))
        x_scale = jnp.pad(x_scale, (0, pad))
        if residual is not None:
            residual = jnp.pad(residual, ((0, pad), (0, 0)))
    w_scale = w_scale.astype(jnp.float32)
    bias = None if bias is None else bias.astype(jnp.float32)
    kwargs = dict(out_dtype=out_dtype, activation=activation, out_scale=out_scale, config=cfg)
    if implementation == "mosaic":
        from jax.experimental.pallas import mosaic_gpu as plgpu

        from pallas_kernels.int8_matmul.mosaic import mosaic_int8_matmul
        # wgmma takes 8-bit operands K-major only: the kernel reads the weight as [N, K].
        out = mosaic_int8_matmul(x_q, w_q.T, x_scale, w_scale, bias, residual, **kwargs,
                                 interpret=plgpu.InterpretGPUParams() if interpret else False)
    else:
        from pallas_kernels.int8_matmul.triton import triton_int8_matmul
        out = triton_int8_matmul(x_q, w_q, x_scale, w_scale, bias, residual, **kwargs,
                                 interpret=interpret)
    return out[:m] if pad else out


def _mosaic_unsupported(n: int, k: int, cfg: MosaicConfig) -> str | None:
    if n % cfg.tile_n:
        return f"N={n} is not a multiple of tile_n={cfg.tile_n}"
    if k % cfg.tile_k:
        return f"K={k} is not a multiple of tile_k={cfg.tile_k}"
    return None


int8_matmul_jit = functools.partial(
    jax.jit, static_argnames=("activation", "out_dtype", "out_scale", "implementation", "config",
                              "interpret"))(int8_matmul)
