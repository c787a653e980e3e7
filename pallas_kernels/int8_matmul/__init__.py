"""INT8 GEMM with a fused dequantize/bias/GELU/residual/requantize epilogue."""

from pallas_kernels.int8_matmul.config import Config, choose, heuristic
from pallas_kernels.int8_matmul.reference import int8_matmul_reference
from pallas_kernels.int8_matmul.triton import KERNEL_NAME, int8_matmul

__all__ = ["KERNEL_NAME", "Config", "choose", "heuristic", "int8_matmul", "int8_matmul_reference"]
