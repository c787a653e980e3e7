"""Residual + LayerNorm + INT8 quantize, and embedding gather + LayerNorm + INT8, fused."""

from pallas_kernels.layernorm_quant.reference import embedding_quant_reference, layernorm_quant_reference
from pallas_kernels.layernorm_quant.triton import (
    EMBEDDING_KERNEL_NAME,
    LAYERNORM_KERNEL_NAME,
    embedding_quant,
    layernorm_quant,
)

__all__ = ["EMBEDDING_KERNEL_NAME", "LAYERNORM_KERNEL_NAME", "embedding_quant",
           "embedding_quant_reference", "layernorm_quant", "layernorm_quant_reference"]
