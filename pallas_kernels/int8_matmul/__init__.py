"""INT8 GEMM with a fused dequantize/bias/GELU/residual/requantize epilogue.

Implementations of one contract (`int8_matmul_reference` is the numerical reference), each in
its own file with its config, heuristic, tuning candidates, adapter and kernel: `mosaic`
(Pallas Mosaic GPU, Hopper wgmma) and `triton` (Pallas Triton, sm_80+), tried in that order;
`mosaic_ws`, a warp-specialized persistent Hopper kernel with the same fused epilogue, runs
only when named. `api.py` holds the registry, in the order Hopper tries them
(`IMPLEMENTATIONS`), and the front door `int8_matmul`; `base.py` what they share (the tuned
tables, one JSON file per device kind, in `tuned/`).
"""

from pallas_kernels.int8_matmul.api import (
    CONFIG_TYPES,
    ENV_VAR,
    IMPLEMENTATIONS,
    NAMED_ONLY,
    REGISTRY,
    default_order,
    int8_matmul,
    target_device_kind,
)
from pallas_kernels.int8_matmul.base import (
    TUNED_DIR,
    Implementation,
    NoImplementationError,
    TunedTableError,
    table_path,
)
from pallas_kernels.int8_matmul.mosaic import KERNEL_NAME as MOSAIC_KERNEL_NAME
from pallas_kernels.int8_matmul.mosaic import MosaicConfig
from pallas_kernels.int8_matmul.mosaic import heuristic as mosaic_heuristic
from pallas_kernels.int8_matmul.mosaic_ws import KERNEL_NAME as WS_KERNEL_NAME
from pallas_kernels.int8_matmul.mosaic_ws import WsConfig
from pallas_kernels.int8_matmul.reference import int8_matmul_reference
from pallas_kernels.int8_matmul.triton import KERNEL_NAME, Config, heuristic
from pallas_kernels.devices import is_hopper

__all__ = ["CONFIG_TYPES", "ENV_VAR", "IMPLEMENTATIONS", "KERNEL_NAME", "MOSAIC_KERNEL_NAME",
           "NAMED_ONLY", "REGISTRY", "WS_KERNEL_NAME", "WsConfig", "TUNED_DIR", "Config", "Implementation", "MosaicConfig",
           "NoImplementationError", "TunedTableError", "default_order", "heuristic", "int8_matmul",
           "int8_matmul_reference", "is_hopper", "mosaic_heuristic", "table_path",
           "target_device_kind"]
