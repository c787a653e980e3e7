"""`gemm`: the one dispatch point for every GEMM site, with a registry of implementations.

In the tokamax style, an implementation is a function with `gemm`'s keyword interface that
raises `NotImplementedError` for a combination it cannot handle; with `implementation=None`
the next registered one is tried. `xla` is always registered and is both the default and the
numerical reference. The Pallas kernels register themselves as `pallas` and are tried first.

Epilogue order, shared by every implementation:
`y = act(dequant(x @ w) + bias) + residual`, computed in float32 and cast to `out_dtype`, or
requantized to INT8 with a static `out_scale` when the next GEMM takes INT8 (chaining). An INT8
site may also take its input already quantized (`x` a `QArray`), from a fused LayerNorm+quant.

Fused memory-bound ops around the INT8 GEMMs (`layernorm_quant`, `embedding_quant`) have a
registry of their own (`register_fused_op` / `fused_op`): the model uses one only where it is
registered and available, and the plain XLA ops otherwise.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import jax
import jax.numpy as jnp

from samp_jax.precision import FLOAT_PRECISIONS, SitePrecision, _as_precision
from samp_jax.quant import QArray, quantize_fp8, quantize_per_tensor_int8, quantize_per_token_int8

Activation = Literal["gelu", "gelu_tanh", "tanh"] | None
GemmImpl = Callable[..., jax.Array]
_REGISTRY: dict[str, GemmImpl] = {}
_ORDER: list[str] = []


def register_gemm_implementation(name: str, fn: GemmImpl, *, first: bool = False) -> None:
    """Registers `fn` under `name`; `first=True` puts it ahead of the existing ones."""
    if name in _REGISTRY:
        _ORDER.remove(name)
    _REGISTRY[name] = fn
    _ORDER.insert(0, name) if first else _ORDER.append(name)


def implementations() -> tuple[str, ...]:
    """Registered implementation names in the order `implementation=None` tries them."""
    return tuple(_ORDER)


_FUSED_OPS: dict[str, tuple[Callable, Callable[[], bool]]] = {}


def register_fused_op(name: str, fn: Callable, *, available: Callable[[], bool]) -> None:
    """Registers a fused op (`layernorm_quant`, `embedding_quant`); `available()` says whether
    it can run now (e.g. on a GPU, or in interpret mode)."""
    _FUSED_OPS[name] = (fn, available)


def fused_kernels_available() -> bool:
    """Whether the fused INT8 kernels can run now (some registered fused op is available):
    the condition for handing INT8 from one kernel to the next."""
    return any(available() for _, available in _FUSED_OPS.values())


def fused_op(name: str) -> Callable | None:
    """The registered fused op `name` if it is available now, else None (use plain XLA)."""
    entry = _FUSED_OPS.get(name)
    return entry[0] if entry is not None and entry[1]() else None


def gemm(x: jax.Array | QArray, weight: jax.Array | QArray, *, precision: SitePrecision | str,
         bias: jax.Array | None = None, activation: Activation = None,
         residual: jax.Array | None = None, act_scale: jax.Array | None = None,
         input_scale: jax.Array | None = None, out_dtype=None, out_scale=None,
         implementation: str | Sequence[str] | None = None) -> jax.Array:
    """`act(x @ weight + bias) + residual` at the given precision.

    Args:
      x: `[..., K]` float activations, or for INT8 precisions an int8 `QArray` already
        quantized as the site would (per-token `[..., 1]` or per-tensor scale).
      weight: `[K, N]` float kernel for float precisions, or a `QArray` (INT8 per-channel or
        FP8 per-tensor) for quantized ones.
      precision: a `SitePrecision` or its name ('fp32', 'fp16', 'bf16', 'int8-dynamic',
        'int8-static', 'fp8_e4m3').
      bias: `[N]`, added in float32.
      activation: None, 'gelu', 'gelu_tanh' or 'tanh'.
      residual: `[..., N]`, added after the activation.
      act_scale: static activation scale (scalar) for 'int8-static' and 'fp8_e4m3'.
      input_scale: optional `[K]` per-input-channel multiplier applied to `x` before it is
        quantized (SmoothQuant migration, `1 / s`).
      out_dtype: output dtype; defaults to `x.dtype`. `int8` requantizes the output with the
        static `out_scale` (for a following static-INT8 GEMM).
      implementation: None (try each registered one in order), a name, or a sequence of names.
        A single named implementation that cannot handle the call raises.

    Raises:
      ValueError: inconsistent shapes, or a weight/scale that does not fit the precision.
      NotImplementedError: no requested implementation supports the call.
    """
    precision = _as_precision(precision)
    _validate(x, weight, precision, act_scale, input_scale)
    if isinstance(x, QArray) and out_dtype is None:
        raise ValueError("a pre-quantized (QArray) input needs an explicit out_dtype")
    out_dtype = jnp.dtype(out_dtype or x.dtype)
    if (out_dtype == jnp.int8) != (out_scale is not None):
        raise ValueError("out_scale is required exactly when out_dtype is int8")
    kwargs = dict(precision=precision, bias=bias, activation=activation, residual=residual,
                  act_scale=act_scale, input_scale=input_scale, out_dtype=out_dtype,
                  out_scale=out_scale)
    if implementation is None:
        names = implementations()
    elif isinstance(implementation, str):
        names = (implementation,)
    else:
        names = tuple(implementation)
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"implementation {unknown} is not one of {implementations()}")
    errors = []
    for name in names:
        try:
            return _REGISTRY[name](x, weight, **kwargs)
        except NotImplementedError as e:
            if isinstance(implementation, str):
                raise
            errors.append(f"{name}: {e}")
    raise NotImplementedError(f"no GEMM implementation handles {precision}: {errors}")


def _validate(x, weight, precision: SitePrecision, act_scale, input_scale) -> None:
    k = x.shape[-1]
    if isinstance(x, QArray):
        if precision.precision != "int8" or x.qtype != "int8":
            raise ValueError(f"a pre-quantized input must be an int8 QArray for an int8 site, "
                             f"got a {x.qtype} QArray at {precision}")
        if x.scale.ndim and x.scale.shape != (*x.shape[:-1], 1):
            raise ValueError(f"a pre-quantized input's scale must be per-token [..., 1] or "
                             f"per-tensor [], got {x.scale.shape} for values {x.shape}")
        return _validate_weight(k, weight, precision)
    if not precision.is_quantized and isinstance(weight, QArray):
        raise ValueError(f"precision {precision} needs a float weight, got a {weight.qtype} QArray")
    _validate_weight(k, weight, precision)
    if precision.needs_calibration and act_scale is None:
        raise ValueError(f"precision {precision} needs a static act_scale (run calibration)")
    if input_scale is not None and tuple(input_scale.shape) != (k,):
        raise ValueError(f"input_scale has shape {tuple(input_scale.shape)}, expected ({k},)")


def _validate_weight(k: int, weight, precision: SitePrecision) -> None:
    if precision.is_quantized and (not isinstance(weight, QArray) or weight.qtype != precision.precision):
        raise ValueError(f"precision {precision} needs a {precision.precision} QArray weight, "
                         f"got {type(weight).__name__}")
    if weight.shape[0] != k or len(weight.shape) != 2:
        raise ValueError(f"x has {k} features but weight has shape {tuple(weight.shape)}; "
                         "expected [K, N]")


def apply_activation(x: jax.Array, activation: Activation) -> jax.Array:
    """Applies an epilogue activation: exact (erf) GELU, tanh-GELU, tanh, or nothing."""
    if activation is None:
        return x
    if activation == "gelu":
        return jax.nn.gelu(x, approximate=False)
    if activation == "gelu_tanh":
        return jax.nn.gelu(x, approximate=True)
    if activation == "tanh":
        return jnp.tanh(x)
    raise ValueError(f"{activation=} is not one of ('gelu', 'gelu_tanh', 'tanh', None)")


# ----------------------------------------------------------------------- XLA reference
def int8_accumulate(xq: jax.Array, wq: jax.Array) -> jax.Array:
    """Exact `int8 [..., K] @ int8 [K, N] -> int32` on XLA."""
    return jax.lax.dot_general(xq, wq, (((xq.ndim - 1,), (0,)), ((), ())),
                               preferred_element_type=jnp.int32)


def quantize_activation(x: jax.Array | QArray, precision: SitePrecision, act_scale=None,
                        input_scale=None) -> tuple[jax.Array, jax.Array]:
    """Quantizes GEMM input `x` as `precision` says; returns `(qvalue, scale)`.

    A `QArray` input is already quantized (by a fused LayerNorm+quant or a requantizing
    epilogue) and passes through."""
    if isinstance(x, QArray):
        return x.qvalue, x.scale
    x = x.astype(jnp.float32)
    if input_scale is not None:
        x = x * input_scale.astype(jnp.float32)
    if precision.precision == "fp8_e4m3":
        return quantize_fp8(x, act_scale), jnp.asarray(act_scale, jnp.float32)
    if precision.activation == "per_tensor_static":
        return quantize_per_tensor_int8(x, act_scale), jnp.asarray(act_scale, jnp.float32)
    q = quantize_per_token_int8(x)
    return q.qvalue, q.scale


def epilogue(y: jax.Array, *, bias, activation, residual, out_dtype, out_scale=None) -> jax.Array:
    """`act(y + bias) + residual` in float32, cast to `out_dtype` (or requantized to int8)."""
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    y = apply_activation(y, activation)
    if residual is not None:
        y = y + residual.astype(jnp.float32)
    if jnp.dtype(out_dtype) == jnp.int8:
        return quantize_per_tensor_int8(y, out_scale)
    return y.astype(out_dtype)


def xla_gemm(x, weight, *, precision: SitePrecision, bias, activation, residual, act_scale,
             input_scale, out_dtype, out_scale=None) -> jax.Array:
    """The XLA implementation: plain float dots, s8×s8→s32 with a float epilogue, FP8 dots."""
    if precision.precision in FLOAT_PRECISIONS:
        dtype = precision.float_dtype
        # FP32 asks for full precision so GPUs do not drop to TF32; 16-bit dots accumulate in
        # FP32 inside the GEMM and round once to the 16-bit type, as cuBLAS does.
        dot_precision = jax.lax.Precision.HIGHEST if precision.precision == "fp32" else None
        y = jnp.dot(x.astype(dtype), weight.astype(dtype), precision=dot_precision)
        y = y.astype(jnp.float32)
    elif precision.precision == "int8":
        xq, x_scale = quantize_activation(x, precision, act_scale, input_scale)
        y = int8_accumulate(xq, weight.qvalue).astype(jnp.float32) * x_scale * weight.scale
    else:  # fp8_e4m3: an FP8 dot with FP32 accumulation; XLA maps it to cuBLASLt FP8 on Hopper.
        xq, x_scale = quantize_activation(x, precision, act_scale, input_scale)
        y = jax.lax.dot_general(xq, weight.qvalue, (((xq.ndim - 1,), (0,)), ((), ())),
                                preferred_element_type=jnp.float32)
        y = y * (x_scale * weight.scale)
    return epilogue(y, bias=bias, activation=activation, residual=residual, out_dtype=out_dtype,
                    out_scale=out_scale)


register_gemm_implementation("xla", xla_gemm)
