"""Pallas GPU kernels for samp-jax, one folder per kernel. Depends on `jax` (and numpy) only.

- `int8_matmul`: INT8 GEMM with a fused dequantize/bias/GELU/residual/requantize epilogue,
  as a Mosaic GPU (Hopper wgmma) kernel and a Triton kernel, behind one `int8_matmul`.
- `layernorm_quant`: residual + LayerNorm + INT8 quantize, and embedding gather + LayerNorm +
  INT8 quantize, each in one pass.
- `numerics`: the XLA reference math every kernel is tested against (INT8 rounding and
  scales, LayerNorm, the epilogue).

`samp_jax.ops` registers these kernels with the model's GEMM and fused-op dispatch; this
package knows nothing of `samp_jax`.
"""

from pallas_kernels import numerics
from pallas_kernels.int8_matmul import int8_matmul, int8_matmul_reference
from pallas_kernels.layernorm_quant import (
    embedding_quant,
    embedding_quant_reference,
    layernorm_quant,
    layernorm_quant_reference,
)

__all__ = ["embedding_quant", "embedding_quant_reference", "int8_matmul", "int8_matmul_reference",
           "layernorm_quant", "layernorm_quant_reference", "numerics"]
