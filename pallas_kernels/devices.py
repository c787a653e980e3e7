"""The one device table: what each accelerator is, which kernels and formats it runs, and its
spec-sheet rates.

Everything that asks "what is this device?" reads it: the INT8 GEMM's implementation order
(the Mosaic wgmma kernel needs Hopper), the search's deployment targets (FP8 only where the
tensor cores have it; a roofline estimate from the peak rates), the benchmarks' % of peak, and
the cross-lowering tests' abstract devices.

    device = lookup("NVIDIA H800")        # -> the H800 entry: Hopper, sm_90, FP8
    device.architecture == "hopper"
    lookup("cpu")                          # -> the CPU entry (no peak rates)
    lookup("Some Future GPU")              # -> None: an unknown device

`jax.Device.device_kind` strings are matched by `Device.pattern` (a regular expression,
case-insensitive, searched), the first entry in `DEVICES` that matches winning, so a narrower
entry (`H100 PCIe`) stands before a wider one (`H100`). `register_device` adds one.
Peak rates are dense (no sparsity) datasheet figures: they feed estimates, never a measurement.
"""

from __future__ import annotations

import dataclasses
import re

HOPPER, AMPERE, ADA, CPU = "hopper", "ampere", "ada", "cpu"
TERA = 1e12
# Shared memory one thread block (CTA) may opt into on sm_90, as Mosaic GPU enforces it when it
# lowers a kernel (jax/experimental/mosaic/gpu/core.py: `shared_memory_per_block_optin`, 227 KiB
# off the device): a kernel whose buffers exceed it raises ValueError at lowering.
HOPPER_SMEM_PER_BLOCK = 227 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class Device:
    """One kind of device.

    Attributes:
      name: the table key ('h100', 'h800', 'a100', 'l4', 'cpu', ...).
      pattern: regular expression (case-insensitive) that `jax.Device.device_kind` contains.
      example_kind: a `device_kind` string of this device, as JAX reports it (for abstract
        devices when lowering for it off the device).
      architecture: 'hopper', 'ampere', 'ada' or 'cpu'.
      sm: CUDA compute capability as an int (90 for sm_90), None off CUDA.
      has_int8: INT8 tensor-core (or CPU dot) support. has_fp8: FP8 E4M3 tensor cores.
      num_cores: streaming multiprocessors (what an abstract device needs), None on CPU.
      peak_ops: dense spec-sheet peak per precision name ('int8', 'fp8_e4m3', 'fp16', 'bf16',
        'fp32'), in operations per second; empty where none is known (CPU).
      bandwidth: memory bandwidth in bytes/s (None: unknown).
      launch_us: the fixed cost of one kernel launch, in µs (for roofline estimates).
      smem_per_block: the shared memory one thread block may opt into, in bytes (CUDA's
        per-compute-capability table; None on CPU).
      label: how an estimate from these numbers names its source.
    """

    name: str
    pattern: str
    example_kind: str
    architecture: str
    sm: int | None
    has_int8: bool = True
    has_fp8: bool = False
    num_cores: int | None = None
    peak_ops: dict[str, float] = dataclasses.field(default_factory=dict)
    bandwidth: float | None = None
    launch_us: float = 3.0
    smem_per_block: int | None = None
    label: str = ""

    def matches(self, device_kind: str) -> bool:
        """Whether `device_kind` (a `jax.Device.device_kind` or platform) is this device."""
        return re.search(self.pattern, device_kind, re.IGNORECASE) is not None


def _peaks(fp16: float, int8: float, fp32: float, fp8: float | None = None) -> dict[str, float]:
    peaks = {"fp16": fp16 * TERA, "bf16": fp16 * TERA, "int8": int8 * TERA, "fp32": fp32 * TERA}
    if fp8 is not None:
        peaks["fp8_e4m3"] = fp8 * TERA
    return peaks


def _hopper(name, pattern, kind, *, fp16, int8, fp32, bandwidth, num_cores=132, label=""):
    return Device(name=name, pattern=pattern, example_kind=kind, architecture=HOPPER, sm=90,
                  has_fp8=True, num_cores=num_cores, peak_ops=_peaks(fp16, int8, fp32, fp8=int8),
                  bandwidth=bandwidth * TERA, smem_per_block=HOPPER_SMEM_PER_BLOCK,
                  label=label or f"{kind.removeprefix('NVIDIA ')} (spec sheet)")


DEVICES: list[Device] = [
    _hopper("h100-pcie", r"\bH100 PCIe\b", "NVIDIA H100 PCIe", fp16=756, int8=1513, fp32=51, bandwidth=2.0,
            num_cores=114),
    _hopper("h100", r"\bH100\b", "NVIDIA H100 80GB HBM3", fp16=989, int8=1979, fp32=67, bandwidth=3.35,
            label="H100 SXM (spec sheet)"),
    _hopper("h800", r"\bH800\b", "NVIDIA H800", fp16=989, int8=1979, fp32=67, bandwidth=3.35),
    _hopper("gh200", r"\bGH200\b", "NVIDIA GH200 480GB", fp16=989, int8=1979, fp32=67, bandwidth=4.0),
    _hopper("h200", r"\bH200\b", "NVIDIA H200", fp16=989, int8=1979, fp32=67, bandwidth=4.8),
    _hopper("h20", r"\bH20\b", "NVIDIA H20", fp16=148, int8=296, fp32=44, bandwidth=4.0, num_cores=78),
    Device(name="a100", pattern=r"\bA100\b", example_kind="NVIDIA A100-SXM4-80GB",
           architecture=AMPERE, sm=80, num_cores=108, peak_ops=_peaks(312, 624, 19.5),
           bandwidth=2.04 * TERA, smem_per_block=163 * 1024, label="A100 SXM 80GB (spec sheet)"),
    Device(name="a800", pattern=r"\bA800\b", example_kind="NVIDIA A800-SXM4-80GB",
           architecture=AMPERE, sm=80, num_cores=108, peak_ops=_peaks(312, 624, 19.5),
           bandwidth=2.04 * TERA, smem_per_block=163 * 1024, label="A800 SXM 80GB (spec sheet)"),
    Device(name="l4", pattern=r"\bL4\b", example_kind="NVIDIA L4", architecture=ADA, sm=89,
           has_fp8=True, num_cores=58, peak_ops=_peaks(121, 242, 30, fp8=242),
           bandwidth=0.3 * TERA, smem_per_block=99 * 1024, label="L4 (spec sheet)"),
    Device(name="cpu", pattern=r"^cpu\b", example_kind="cpu", architecture=CPU, sm=None),
]


def register_device(device: Device, *, first: bool = True) -> Device:
    """Adds (or replaces, by name) a device; `first` puts it ahead of the wider patterns."""
    DEVICES[:] = [d for d in DEVICES if d.name != device.name]
    DEVICES.insert(0, device) if first else DEVICES.append(device)
    return device


def lookup(device_kind: str) -> Device | None:
    """The first `DEVICES` entry whose pattern `device_kind` contains, or None (unknown)."""
    return next((device for device in DEVICES if device.matches(device_kind)), None)


def by_name(name: str) -> Device:
    """The `DEVICES` entry called `name`.

    Raises:
      KeyError: no such entry (the message lists the names).
    """
    device = next((d for d in DEVICES if d.name == name), None)
    if device is None:
        raise KeyError(f"device {name=} is not one of {[d.name for d in DEVICES]}")
    return device


def architecture(device_kind: str) -> str | None:
    """The architecture of `device_kind` ('hopper', 'ampere', 'ada', 'cpu'), None if unknown."""
    device = lookup(device_kind)
    return None if device is None else device.architecture


def is_hopper(device_kind: str) -> bool:
    """sm_90 devices, where the Mosaic GPU wgmma kernel runs."""
    return architecture(device_kind) == HOPPER
