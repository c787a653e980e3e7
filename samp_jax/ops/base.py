"""The XLA implementations: the default path and the numerical reference of every kernel.

The INT8 GEMM calls `pallas_kernels.int8_matmul.int8_matmul_reference` and every epilogue is
`pallas_kernels.numerics.epilogue`, so the kernels and this path share one definition.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.int8_matmul import int8_matmul_reference
from pallas_kernels.numerics import epilogue
from samp_jax.ops.dispatch import quantize_activation
from samp_jax.core.precision import FLOAT_PRECISIONS, SitePrecision


def xla_gemm(x, weight, *, precision: SitePrecision, bias, activation, residual, act_scale,
             input_scale, out_dtype, out_scale=None, requantize_from=jnp.float32) -> jax.Array:
    """Plain float dots, s8×s8→s32 with a float epilogue, or FP8 dots."""
    kwargs = dict(bias=bias, activation=activation, residual=residual, out_dtype=out_dtype,
                  out_scale=out_scale, requantize_from=requantize_from)
    if precision.precision in FLOAT_PRECISIONS:
        dtype = precision.float_dtype
        # FP32 asks for full precision so GPUs do not drop to TF32; 16-bit dots accumulate in
        # FP32 inside the GEMM and round once to the 16-bit type, as cuBLAS does.
        dot_precision = jax.lax.Precision.HIGHEST if precision.precision == "fp32" else None
        y = jnp.dot(x.astype(dtype), weight.astype(dtype), precision=dot_precision)
        return epilogue(y.astype(jnp.float32), **kwargs)
    xq, x_scale = quantize_activation(x, precision, act_scale, input_scale)
    if precision.precision == "int8":
        return int8_matmul_reference(xq, weight.qvalue, x_scale, weight.scale, **kwargs)
    # fp8_e4m3: an FP8 dot with FP32 accumulation; XLA maps it to cuBLASLt FP8 on Hopper.
    y = jax.lax.dot_general(xq, weight.qvalue, (((xq.ndim - 1,), (0,)), ((), ())),
                            preferred_element_type=jnp.float32)
    return epilogue(y * (x_scale * weight.scale), **kwargs)
