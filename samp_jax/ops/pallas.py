"""Adapters from `samp_jax`'s op interfaces to the Pallas kernels in `pallas_kernels`.

- `pallas_gemm`: INT8 sites only (FP8 and float sites raise `NotImplementedError`, so the
  dispatcher moves on to XLA). Which kernel runs (Mosaic GPU wgmma on Hopper, Triton
  elsewhere) is `pallas_kernels.int8_matmul`'s choice; `kernel=` pins one.
- `layernorm_quant`, `embedding_quant`: the fused LayerNorm/embedding + INT8 quantize kernels.

Off a GPU every kernel declines, unless interpret mode is on (`with interpret():`, or
`SAMP_JAX_PALLAS_INTERPRET=1` in the environment), which runs the same kernel bodies on the CPU
for tests and CPU smoke runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading

import jax
import jax.numpy as jnp

from pallas_kernels.int8_matmul import default_order, int8_matmul, target_device_kind
from pallas_kernels.layernorm_quant import embedding_quant, layernorm_quant
from samp_jax.ops.dispatch import quantize_activation, report_kernel

INTERPRET_ENV = "SAMP_JAX_PALLAS_INTERPRET"
PRECISIONS = ("int8",)  # what `pallas_gemm` runs; a model pinned to it keeps the rest on XLA
class _Interpret(threading.local):
    """Interpret mode per thread (JAX traces in the calling thread): `$SAMP_JAX_PALLAS_INTERPRET`
    in every thread, `interpret()` in the thread that opens it."""

    def __init__(self):
        self.enabled = os.environ.get(INTERPRET_ENV, "") == "1"


_INTERPRET = _Interpret()


@contextlib.contextmanager
def interpret(enabled: bool = True):
    """Runs the Pallas kernels in interpret mode (on the CPU) for calls this thread traces in
    the block."""
    previous, _INTERPRET.enabled = _INTERPRET.enabled, enabled
    try:
        yield
    finally:
        _INTERPRET.enabled = previous


def interpreting() -> bool:
    """Whether the kernels this thread traces run in interpret mode now."""
    return _INTERPRET.enabled


def kernels_available() -> bool:
    """True on a GPU, when lowering for an (abstract) GPU, or anywhere in interpret mode."""
    abstract = jax.sharding.get_abstract_mesh().abstract_device
    targets_gpu = abstract is not None and abstract.platform == "gpu"
    return jax.default_backend() == "gpu" or targets_gpu or interpreting()


def pallas_gemm(x, weight, *, precision, bias, activation, residual, act_scale, input_scale,
                out_dtype, out_scale=None, requantize_from=jnp.float32, kernel: str | None = None):
    """The INT8 GEMM site through `pallas_kernels.int8_matmul` (`kernel`: 'mosaic', 'triton' or
    None for the device's default order); reports the kernel that ran (`report_kernel`)."""
    if precision.precision not in PRECISIONS:
        raise NotImplementedError(f"the Pallas GEMM handles int8 only, not {precision}")
    if not kernels_available():
        raise NotImplementedError("the Pallas kernels need a GPU (interpret mode is off)")
    xq, x_scale = quantize_activation(x, precision, act_scale, input_scale)
    lead, k = xq.shape[:-1], xq.shape[-1]
    m = math.prod(lead)
    if m == 0:
        raise NotImplementedError("the Pallas GEMM needs at least one row")
    x_scale = jnp.broadcast_to(x_scale, (*lead, 1)).reshape(m, 1)
    n = weight.shape[1]
    res = None if residual is None else residual.reshape(m, n)
    kernels = (kernel,) if kernel else default_order(target_device_kind())
    reasons = []
    for name in kernels:  # int8_matmul's own order, tried here to know which kernel ran
        try:
            y = int8_matmul(xq.reshape(m, k), weight.qvalue, x_scale, weight.scale, bias=bias,
                            activation=activation, residual=res, out_dtype=out_dtype,
                            out_scale=out_scale, requantize_from=requantize_from,
                            implementation=name, interpret=interpreting())
        except NotImplementedError as e:
            if len(kernels) == 1:
                raise
            reasons.append(f"{name}: {e}")
            continue
        report_kernel(f"pallas_{name}")
        return y.reshape(*lead, n)
    raise NotImplementedError(f"no Pallas INT8 kernel of {kernels} handles M={m}, N={n}, K={k}: "
                              + "; ".join(reasons))


def pallas_layernorm_quant(x, gamma, beta, *, eps, out_dtype, act_scale=None, input_scale=None):
    """Residual-free LayerNorm + INT8 quantize in one kernel: `(y, q, scale)`."""
    return layernorm_quant(x, gamma, beta, eps=eps, out_dtype=out_dtype, act_scale=act_scale,
                           input_scale=input_scale, interpret=interpreting())


def pallas_embedding_quant(input_ids, position_ids, token_type_ids, word, position, token_type,
                           gamma, beta, *, eps, out_dtype, act_scale=None, input_scale=None):
    """Embedding gather + LayerNorm + INT8 quantize in one kernel: `(y, q, scale)`.
    `token_type_ids` and `token_type` are both None for encoders without token types."""
    return embedding_quant(input_ids, position_ids, token_type_ids, word, position, token_type,
                           gamma, beta, eps=eps, out_dtype=out_dtype, act_scale=act_scale,
                           input_scale=input_scale, interpret=interpreting())
