"""The INT8 GEMM front door: validation, one registry of kernel implementations, M padding.

`int8_matmul` validates the call, then tries implementations from one ordered registry
(`REGISTRY`: `mosaic`, `triton`, each an `Implementation` declared in its own file with its
config, heuristic, tuning candidates, adapter and kernel). Each adapter picks its config
(explicit → the device's tuned table → heuristic), checks that it can run on the target device
and tile the shape, pads M to its tile and launches its kernel; one that cannot handle the call
raises `NotImplementedError` with the reason, and the next one in order is tried.
`implementation=None` tries `default_order(device_kind)`.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp

from pallas_kernels.devices import is_hopper
from pallas_kernels.int8_matmul import mosaic, mosaic_ws, triton
from pallas_kernels.int8_matmul.base import Implementation, NoImplementationError
from pallas_kernels.int8_matmul.mosaic import MosaicConfig
from pallas_kernels.int8_matmul.triton import Config
from pallas_kernels.numerics import check_depth, check_scale

ENV_VAR = "SAMP_JAX_INT8_KERNEL"


def target_device_kind() -> str:
    """The device being compiled for: an abstract mesh's GPU (cross-lowering) or device 0."""
    abstract = jax.sharding.get_abstract_mesh().abstract_device
    return abstract.device_kind if abstract is not None else jax.devices()[0].device_kind


# The one registry, in the order a Hopper GPU tries it; each entry is declared in its own file.
REGISTRY: dict[str, Implementation] = {impl.name: impl for impl in (
    mosaic.IMPLEMENTATION, triton.IMPLEMENTATION, mosaic_ws.IMPLEMENTATION)}
IMPLEMENTATIONS = tuple(name for name, impl in REGISTRY.items() if impl.automatic)
NAMED_ONLY = tuple(name for name, impl in REGISTRY.items() if not impl.automatic)
CONFIG_TYPES = {name: impl.config_type for name, impl in REGISTRY.items()}


def default_order(device_kind: str) -> tuple[str, ...]:
    """The implementations `implementation=None` tries, in order, on `device_kind`.

    Mosaic first on Hopper, then Triton; Triton alone elsewhere. `$SAMP_JAX_INT8_KERNEL`, when
    set to one of `IMPLEMENTATIONS`, is tried first instead (the rest follow as fallbacks).

    Raises:
      ValueError: `$SAMP_JAX_INT8_KERNEL` names no implementation.
    """
    order = IMPLEMENTATIONS if is_hopper(device_kind) else ("triton",)
    preferred = os.environ.get(ENV_VAR, "")
    if not preferred:
        return order
    if preferred not in REGISTRY:
        raise ValueError(f"{ENV_VAR}={preferred!r} is not one of {IMPLEMENTATIONS}")
    return (preferred, *(name for name in order if name != preferred))


def _candidates(implementation: str | Sequence[str] | None, config,
                device_kind: str) -> tuple[str, ...]:
    """The implementation names to try, in order; a config pins the implementation it tunes."""
    owner = None
    if config is not None:
        owners = [name for name, cls in CONFIG_TYPES.items() if isinstance(config, cls)]
        if not owners:
            raise ValueError(f"config must be one of {[cls.__name__ for cls in CONFIG_TYPES.values()]}, "
                             f"got {type(config).__name__}")
        owner = owners[0]
    if implementation is None:
        names = (owner,) if owner else default_order(device_kind)
    elif isinstance(implementation, str):
        names = (implementation,)
    else:
        names = tuple(implementation)
    unknown = [name for name in names if name not in REGISTRY]
    if unknown or not names:
        raise ValueError(f"{implementation=} is not one of {tuple(REGISTRY)} (or a sequence of them)")
    if owner and names != (owner,):
        raise ValueError(f"a {type(config).__name__} needs implementation={owner!r}, "
                         f"got {implementation!r}")
    return names


def _validate(x_q, w_q, x_scale, w_scale, bias, residual, out_dtype, out_scale) -> None:
    """Raises ValueError for operands that do not form one INT8 GEMM with its epilogue."""
    if x_q.ndim != 2 or w_q.ndim != 2:
        raise ValueError(f"x_q must be [M, K] and w_q [K, N], got {x_q.shape} and {w_q.shape}")
    (m, k), (k2, n) = x_q.shape, w_q.shape
    if x_q.dtype != jnp.int8 or w_q.dtype != jnp.int8:
        raise ValueError(f"operands must be int8, got {x_q.dtype} and {w_q.dtype}")
    if k != k2:
        raise ValueError(f"x_q has K={k} but w_q has K={k2}")
    if x_scale.shape != (m, 1) or w_scale.shape != (n,):
        raise ValueError(f"scales must be [M, 1]=[{m}, 1] and [N]=[{n}], got {x_scale.shape} "
                         f"and {w_scale.shape}")
    if bias is not None and bias.shape != (n,):
        raise ValueError(f"bias must be [N]=[{n}], got {bias.shape}")
    if residual is not None and residual.shape != (m, n):
        raise ValueError(f"residual must be [M, N]=[{m}, {n}], got {residual.shape}")
    if (jnp.dtype(out_dtype) == jnp.int8) != (out_scale is not None):
        raise ValueError(f"out_scale is required exactly when out_dtype is int8, got "
                         f"out_dtype={jnp.dtype(out_dtype)} and {out_scale=}")
    check_scale(out_scale, "out_scale")
    check_depth(k, "the Pallas INT8 GEMM")


def int8_matmul(x_q, w_q, x_scale, w_scale, *, bias=None, activation=None, residual=None,
                out_dtype=jnp.float16, out_scale: float | None = None,
                requantize_from=jnp.float32,
                implementation: str | Sequence[str] | None = None,
                config: Config | MosaicConfig | None = None, interpret: bool = False):
    """`x_q [M, K] int8 @ w_q [K, N] int8 → int32`, then the fused epilogue.

    The epilogue: `y = acc · x_scale · w_scale (+ bias)`, then GELU (or another activation),
    then `+ residual`, written as `out_dtype`; with `out_dtype=int8` it is requantized with the
    static `out_scale` (round half to even, saturating at ±127) for the next INT8 GEMM, from
    the values rounded to `requantize_from` (the float dtype that GEMM would read), and
    with `out_dtype=int32` the raw accumulator is returned without an epilogue.
    A NaN `x_scale` marks a row whose input was not finite (`numerics.quantize_rows`): that
    output row is NaN (requantized: zeros), as in `int8_matmul_reference`.

    Args:
      x_q: `[M, K]` int8 activations. w_q: `[K, N]` int8 weight.
      x_scale: `[M, 1]` per-token scales (a per-tensor scale broadcast to `[M, 1]`).
      w_scale: `[N]` per-channel weight scales.
      bias: `[N]` or None. residual: `[M, N]` or None.
      activation: a name of `numerics.ACTIVATIONS` ('gelu', 'gelu_tanh', 'quick_gelu',
        'silu', 'tanh', 'relu') or None.
      out_dtype: a float dtype, int8 (needs `out_scale`) or int32 (the raw accumulator).
      out_scale: the static requantization scale for `out_dtype=int8` (may be traced).
      requantize_from: for `out_dtype=int8`, the float dtype the values are rounded to before
        they are requantized: the dtype the next site would read as float input, so that the
        INT8 hand-off gives that site's own numbers (`numerics.requantize`). float32: none.
      implementation: 'mosaic' (Hopper wgmma), 'triton' (sm_80+), a sequence of them tried
        in order, or None: `default_order` for the target device (`$SAMP_JAX_INT8_KERNEL`
        goes first when set), so a shape the Mosaic kernel cannot tile falls back to Triton.
      config: a `MosaicConfig` (Mosaic only) or `Config` (Triton only); default: the tuned
        table, then the heuristic. A config pins its implementation.
      interpret: run the kernel body on the CPU (tests).

    Returns:
      `[M, N]` of `out_dtype`.

    Raises:
      ValueError: inconsistent shapes, dtypes or arguments, an unknown implementation (or
        `$SAMP_JAX_INT8_KERNEL`), a config for another implementation, a concrete `out_scale`
        that is not finite and positive, or K > `numerics.MAX_K` (133,144), where the int32
        accumulator could wrap.
      NotImplementedError: an empty operand, or no requested implementation can handle the
        device, shape or dtypes (a Mosaic config, explicit or tuned, whose buffers do not fit
        in Hopper's shared memory for this output and residual is declined): a single one
        re-raises its own reason, several raise a
        `NoImplementationError` (an `ExceptionGroup` of every reason, and a
        `NotImplementedError`); `samp_jax.gemm` then falls back to XLA.
    """
    _validate(x_q, w_q, x_scale, w_scale, bias, residual, out_dtype, out_scale)
    if not jnp.issubdtype(requantize_from, jnp.floating):
        raise ValueError(f"requantize_from must be a float dtype, got {requantize_from}")
    device_kind = target_device_kind()
    names = _candidates(implementation, config, device_kind)
    (m, k), n = x_q.shape, w_q.shape[1]
    if not m * n * k:
        raise NotImplementedError(f"the Pallas INT8 GEMM needs non-empty operands, got "
                                  f"M={m}, N={n}, K={k}")
    kwargs = dict(bias=None if bias is None else bias.astype(jnp.float32), residual=residual,
                  activation=activation, out_dtype=out_dtype, out_scale=out_scale,
                  requantize_from=jnp.dtype(requantize_from), config=config,
                  device_kind=device_kind, interpret=interpret)
    x_scale, w_scale = x_scale.reshape(m).astype(jnp.float32), w_scale.astype(jnp.float32)
    failures = []
    for name in names:
        try:
            return REGISTRY[name].run(x_q, w_q, x_scale, w_scale, **kwargs)
        except NotImplementedError as e:
            if len(names) == 1:
                raise
            failures.append((name, e))
    raise NoImplementationError(
        f"no INT8 GEMM implementation of {names} handles M={m}, N={n}, K={k} on {device_kind!r}: "
        + "; ".join(f"{name}: {e}" for name, e in failures), [e for _, e in failures])
