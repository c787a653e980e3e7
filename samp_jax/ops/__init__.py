"""Op registries: the GEMM every site calls (`gemm`) and the fused ops around INT8 GEMMs.

The built-in implementations are registered here, in the order `implementation=None` tries
them: the Pallas INT8 GEMM (`pallas`, which picks its kernel for the device), then `xla`, the
reference. `pallas_mosaic` / `pallas_triton` / `pallas_mosaic_ws` (the warp-specialized
persistent Hopper kernel) pin one kernel and are tried only when named.
"""

import functools

from samp_jax.ops import base, dispatch, pallas
from samp_jax.ops.dispatch import (
    Activation,
    GemmExecution,
    gemm,
    implementation_digest,
    implementation_key,
    implementations,
    quantize_activation,
    record_executions,
    register_gemm_implementation,
    site_implementation,
    takes_fused_input,
)
from samp_jax.ops.fused import FUSED_OPS, fused_op, register_fused_op
from samp_jax.ops.pallas import interpret, interpreting, kernels_available

register_gemm_implementation("pallas", pallas.pallas_gemm, precisions=pallas.PRECISIONS)
register_gemm_implementation("xla", base.xla_gemm, takes_fused_input=False)
for _kernel in ("mosaic", "triton", "mosaic_ws"):
    register_gemm_implementation(f"pallas_{_kernel}", functools.partial(pallas.pallas_gemm, kernel=_kernel),
                                 automatic=False, precisions=pallas.PRECISIONS)
register_fused_op("layernorm_quant", pallas.pallas_layernorm_quant, available=kernels_available)
register_fused_op("embedding_quant", pallas.pallas_embedding_quant, available=kernels_available)
dispatch._BUILT_IN_KEY.append(implementation_key())  # what `implementation_digest` leaves out

__all__ = ["FUSED_OPS", "Activation", "GemmExecution", "fused_op", "gemm", "implementation_digest",
           "implementation_key", "implementations", "interpret",
           "interpreting", "kernels_available", "quantize_activation", "record_executions", "register_fused_op",
           "register_gemm_implementation", "site_implementation", "takes_fused_input"]
