"""Registers the Pallas INT8 kernel with `samp_jax.gemm` as implementation `pallas`.

It handles INT8 sites only (FP8 and float sites raise `NotImplementedError`, so the dispatcher
moves on to XLA). It runs on GPUs; elsewhere it declines too, unless interpret mode is on
(`set_interpret(True)` or `SAMP_JAX_PALLAS_INTERPRET=1`), which runs the same kernel body on
the CPU for tests.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from pallas_kernels.int8_matmul import int8_matmul
from samp_jax.dispatch import quantize_activation, register_gemm_implementation

_interpret = os.environ.get("SAMP_JAX_PALLAS_INTERPRET", "") == "1"


def set_interpret(value: bool) -> None:
    """Run the Pallas kernels in interpret mode (CPU testing)."""
    global _interpret
    _interpret = value


def pallas_gemm(x, weight, *, precision, bias, activation, residual, act_scale, input_scale, out_dtype):
    if precision.precision != "int8":
        raise NotImplementedError(f"the Pallas GEMM handles int8 only, not {precision}")
    if jax.default_backend() != "gpu" and not _interpret:
        raise NotImplementedError("Pallas Triton kernels need a GPU (interpret mode is off)")
    xq, x_scale = quantize_activation(x, precision, act_scale, input_scale)
    lead, k = x.shape[:-1], x.shape[-1]
    m = 1
    for d in lead:
        m *= d
    x_scale = jnp.broadcast_to(x_scale, (*lead, 1)).reshape(m, 1)
    n = weight.shape[1]
    res = None if residual is None else residual.reshape(m, n)
    y = int8_matmul(xq.reshape(m, k), weight.qvalue, x_scale, weight.scale, bias=bias,
                    activation=activation, residual=res, out_dtype=out_dtype, interpret=_interpret)
    return y.reshape(*lead, n)


register_gemm_implementation("pallas", pallas_gemm, first=True)
