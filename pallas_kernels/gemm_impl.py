"""Registers the Pallas kernels with `samp_jax`: the INT8 GEMM as implementation `pallas`, and
the fused `layernorm_quant` / `embedding_quant` ops.

The GEMM handles INT8 sites only (FP8 and float sites raise `NotImplementedError`, so the
dispatcher moves on to XLA). On Hopper it runs the Mosaic GPU wgmma kernel, elsewhere the Triton
one (see `pallas_kernels.int8_matmul.default_implementation`; `SAMP_JAX_INT8_KERNEL` forces
one). Off a GPU every kernel declines, unless interpret mode is on (`set_interpret(True)` or
`SAMP_JAX_PALLAS_INTERPRET=1`), which runs the same kernel bodies on the CPU for tests.
"""

from __future__ import annotations

import contextlib
import os

import jax
import jax.numpy as jnp

from pallas_kernels.int8_matmul import int8_matmul
from pallas_kernels.layernorm_quant import embedding_quant, layernorm_quant
from samp_jax.dispatch import quantize_activation, register_fused_op, register_gemm_implementation

_interpret = os.environ.get("SAMP_JAX_PALLAS_INTERPRET", "") == "1"


def set_interpret(value: bool) -> None:
    """Run the Pallas kernels in interpret mode (CPU testing)."""
    global _interpret
    _interpret = value


def interpret_mode() -> bool:
    return _interpret


_kernel: str | None = None


@contextlib.contextmanager
def int8_kernel(name: str | None):
    """Pins the INT8 GEMM kernel ('mosaic' or 'triton'; None: the device default) for calls
    traced inside the block (benchmarks compare both)."""
    global _kernel
    previous, _kernel = _kernel, name
    try:
        yield
    finally:
        _kernel = previous


def kernels_available() -> bool:
    """True on a GPU, when lowering for an (abstract) GPU, or anywhere in interpret mode."""
    abstract = jax.sharding.get_abstract_mesh().abstract_device
    targets_gpu = abstract is not None and abstract.platform == "gpu"
    return jax.default_backend() == "gpu" or targets_gpu or _interpret


def pallas_gemm(x, weight, *, precision, bias, activation, residual, act_scale, input_scale, out_dtype,
                out_scale=None):
    if precision.precision != "int8":
        raise NotImplementedError(f"the Pallas GEMM handles int8 only, not {precision}")
    if not kernels_available():
        raise NotImplementedError("the Pallas kernels need a GPU (interpret mode is off)")
    xq, x_scale = quantize_activation(x, precision, act_scale, input_scale)
    lead, k = xq.shape[:-1], xq.shape[-1]
    m = 1
    for d in lead:
        m *= d
    x_scale = jnp.broadcast_to(x_scale, (*lead, 1)).reshape(m, 1)
    n = weight.shape[1]
    res = None if residual is None else residual.reshape(m, n)
    y = int8_matmul(xq.reshape(m, k), weight.qvalue, x_scale, weight.scale, bias=bias,
                    activation=activation, residual=res, out_dtype=out_dtype, out_scale=out_scale,
                    implementation=_kernel, interpret=_interpret)
    return y.reshape(*lead, n)


def _layernorm_quant(x, gamma, beta, *, eps, out_dtype, act_scale=None, input_scale=None):
    return layernorm_quant(x, gamma, beta, eps=eps, out_dtype=out_dtype, act_scale=act_scale,
                           input_scale=input_scale, interpret=_interpret)


def _embedding_quant(input_ids, token_type_ids, word, position, token_type, gamma, beta, *, eps,
                     out_dtype, act_scale=None, input_scale=None):
    return embedding_quant(input_ids, token_type_ids, word, position, token_type, gamma, beta,
                           eps=eps, out_dtype=out_dtype, act_scale=act_scale,
                           input_scale=input_scale, interpret=_interpret)


register_gemm_implementation("pallas", pallas_gemm, first=True)
register_fused_op("layernorm_quant", _layernorm_quant, available=kernels_available)
register_fused_op("embedding_quant", _embedding_quant, available=kernels_available)
