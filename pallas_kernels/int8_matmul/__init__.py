"""INT8 GEMM with a fused dequantize/bias/GELU/residual/requantize epilogue.

Two implementations of one contract (`int8_matmul_reference` is the numerical reference),
registered in `api.py` in the order Hopper tries them (`IMPLEMENTATIONS`): `mosaic` (Pallas
Mosaic GPU, Hopper wgmma) and `triton` (Pallas Triton, sm_80+).
"""

from pallas_kernels.int8_matmul.api import (
    ENV_VAR,
    IMPLEMENTATIONS,
    default_order,
    int8_matmul,
    is_hopper,
    target_device_kind,
)
from pallas_kernels.int8_matmul.config import (
    CONFIG_TYPES,
    TUNED_TABLE,
    Config,
    MosaicConfig,
    TunedTableError,
    choose,
    choose_mosaic,
    heuristic,
    mosaic_heuristic,
    tuned,
)
from pallas_kernels.int8_matmul.mosaic import KERNEL_NAME as MOSAIC_KERNEL_NAME
from pallas_kernels.int8_matmul.reference import int8_matmul_reference
from pallas_kernels.int8_matmul.triton import KERNEL_NAME

__all__ = ["CONFIG_TYPES", "ENV_VAR", "IMPLEMENTATIONS", "KERNEL_NAME", "MOSAIC_KERNEL_NAME",
           "TUNED_TABLE", "Config", "MosaicConfig", "TunedTableError", "choose", "choose_mosaic",
           "default_order", "heuristic", "int8_matmul", "int8_matmul_reference", "is_hopper",
           "mosaic_heuristic", "target_device_kind", "tuned"]
