"""Pallas GPU kernels for samp-jax, one folder per kernel.

- `int8_matmul`: INT8 GEMM with a fused dequantize/bias/GELU/residual/requantize epilogue,
  as a Mosaic GPU (Hopper wgmma) kernel and a Triton kernel.
- `layernorm_quant`: residual + LayerNorm + INT8 quantize, and embedding gather + LayerNorm +
  INT8 quantize, each in one pass.

Importing this package registers them with `samp_jax` (`gemm(..., implementation="pallas")`
and the fused ops the encoder uses for its INT8 hand-offs).
"""

# importing gemm_impl registers "pallas" and the fused ops
from pallas_kernels.gemm_impl import int8_kernel, kernels_available, set_interpret

__all__ = ["int8_kernel", "kernels_available", "set_interpret"]
