"""INT8 GEMM with a fused dequantize/bias/GELU/residual/requantize epilogue.

Two implementations of one contract (`int8_matmul_reference` is the numerical reference):
`mosaic` (Pallas Mosaic GPU, Hopper wgmma) and `triton` (Pallas Triton, sm_80+).
"""

from pallas_kernels.int8_matmul.api import (IMPLEMENTATIONS, default_implementation, int8_matmul,
                                            int8_matmul_jit, is_hopper)
from pallas_kernels.int8_matmul.config import (Config, MosaicConfig, choose, choose_mosaic, heuristic,
                                               mosaic_heuristic)
from pallas_kernels.int8_matmul.mosaic import KERNEL_NAME as MOSAIC_KERNEL_NAME
from pallas_kernels.int8_matmul.reference import int8_matmul_reference
from pallas_kernels.int8_matmul.triton import KERNEL_NAME

__all__ = ["IMPLEMENTATIONS", "KERNEL_NAME", "MOSAIC_KERNEL_NAME", "Config", "MosaicConfig", "choose",
           "choose_mosaic", "default_implementation", "heuristic", "int8_matmul", "int8_matmul_jit",
           "int8_matmul_reference", "is_hopper", "mosaic_heuristic"]
