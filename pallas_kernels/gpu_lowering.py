"""Lower a function for an NVIDIA GPU on any machine (no GPU needed) and inspect the result.

`jax.jit(f).trace(...).lower(lowering_platforms=("cuda",))` under an abstract GPU device runs
the whole Pallas → Triton IR or Pallas → Mosaic GPU lowering, so a kernel that cannot lower
(an unsupported primitive, a bad layout, a shape wgmma rejects) fails here, on the CPU, before
it reaches a GPU. What it cannot check is what happens later on a device: PTX compilation,
register allocation and shared-memory limits.
"""

from __future__ import annotations

import re

import jax
from jax.sharding import AbstractDevice, AbstractMesh, AxisType

from pallas_kernels import devices

H100 = devices.by_name("h100").example_kind
A100 = devices.by_name("a100").example_kind


def lower_for_gpu(fn, *args, device_kind: str = H100, num_cores: int | None = None) -> str:
    """The StableHLO text of `jax.jit(fn)` lowered for CUDA on an abstract `device_kind` GPU
    (`num_cores`: its SM count, by default the device table's, else 132)."""
    if num_cores is None:
        known = devices.lookup(device_kind)
        num_cores = known.num_cores if known is not None and known.num_cores else 132
    device = AbstractDevice(device_kind=device_kind, num_cores=num_cores, platform="gpu")
    mesh = AbstractMesh((1,), ("_",), (AxisType.Explicit,), abstract_device=device)
    with jax.sharding.use_abstract_mesh(mesh):
        lowered = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
    return lowered.as_text()


def gpu_kernel_calls(hlo_text: str) -> list[str]:
    """The custom-call targets in lowered HLO (`__gpu$xla.gpu.triton`, `mosaic_gpu_v2`, ...)."""
    return re.findall(r"stablehlo\.custom_call @([\w$.]+)", hlo_text)
