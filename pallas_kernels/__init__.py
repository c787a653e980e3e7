"""Pallas GPU kernels for samp-jax, one folder per kernel.

Importing this package registers the INT8 GEMM as `samp_jax.gemm(..., implementation="pallas")`.
"""

from pallas_kernels import gemm_impl  # noqa: F401  (registers "pallas")
from pallas_kernels.gemm_impl import set_interpret

__all__ = ["set_interpret"]
