"""Deployment targets: which precisions a device runs well, and how its latency is known.

A `Target` decides three things for the search:

- the **options** a GEMM site may take: a float option, INT8 with per-token dynamic or
  per-tensor static activation scales, and FP8 E4M3 only on devices with FP8 tensor cores
  (Hopper, Ada: H100, L4; not A100, not CPU); which device is which is `pallas_kernels.devices`,
  the one device table;
- the **float options** (`Target.float_options`), in the order the search tries them: FP16,
  then BF16 (FP32's range at FP16's speed on these tensor cores), then FP32 on GPUs; FP32 alone
  on CPU, where XLA emulates the 16-bit floats. The first is the float every site of a map
  falls back to (`float_option`) unless the search's options name another
  (`Target.for_options`), or the model overflows it (`calibrate.search.driver`);
- the **dtype between GEMM sites** (`Target.dtype`): the float option's (float16 on GPUs,
  float32 on CPU);
- the **latency model**: measured on the device when the search runs on the target (CPU
  included), otherwise a roofline from the target's spec sheet, labelled as an estimate
  (`calibrate.search.latency.table_for_target`).

    target = resolve_target("auto")       # the device this process runs on
    target = resolve_target("a100")       # plan for an A100 from anywhere (estimated latency)
    options = target.search_options(["int8-static", "int8-dynamic", "fp16"])  # narrowed
    target = target.for_options(["bf16", "int8-dynamic"])  # BF16 the float option, between sites too

`TARGETS` is a registry: `register_target` adds a target. A target covers every device of its
architectures in the device table (the 'h100' target: H100, H800, H200, GH200, H20, ...), so
`resolve_target("auto")` finds one for each of them: the most recently registered one, so that
a target you register for a built-in's architecture overrides it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from pallas_kernels import devices
from samp_jax.core.precision import SitePrecision, as_precision
from samp_jax.core.registry import check_free, check_kind

AUTO = "auto"
# Option names the CLI and `search_options` accept, mapped to precisions.
OPTION_NAMES = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8-dynamic": "int8-dynamic",
                "int8-static": "int8-static", "fp8": "fp8_e4m3", "fp8_e4m3": "fp8_e4m3"}
# The dtype between GEMM sites that goes with each float option.
FLOAT_DTYPES = {"fp32": jnp.float32, "fp16": jnp.float16, "bf16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """Peak dense throughputs (ops/s) per precision, memory bandwidth (bytes/s), and the fixed
    cost of a kernel launch (µs): what a roofline estimate needs."""

    name: str
    peak_ops: dict[str, float]
    bandwidth: float
    launch_us: float

    @classmethod
    def of(cls, name: str) -> "DeviceSpec":
        """The spec-sheet numbers of device `name` in `pallas_kernels.devices`."""
        device = devices.by_name(name)
        return cls(device.label, dict(device.peak_ops), device.bandwidth, device.launch_us)


@dataclasses.dataclass(frozen=True)
class Target:
    """A device the searched map is meant to run on.

    Attributes:
      name: the registry key ('h100', 'a100', 'l4', 'cpu').
      spec: the spec-sheet numbers for a roofline estimate (None: the device is only measured).
      has_fp8: whether FP8 E4M3 GEMMs run natively (FP8 is never offered otherwise).
      float_options: the float precisions ('fp16', 'bf16', 'fp32') a map may fall back to, in
        the order the search tries them; the first is the default (`float_option`).
      architectures: the device-table architectures (`pallas_kernels.devices`) whose devices
        the target describes when running on one.

    Raises:
      ValueError: the name 'auto' (or none); no float option, one named twice, or one that is
        no float precision.
    """

    name: str
    spec: DeviceSpec | None
    has_fp8: bool
    float_options: tuple[str, ...]
    architectures: tuple[str, ...]

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip() or self.name == AUTO:
            raise ValueError(f"target name={self.name!r}; expected a non-empty str other than "
                             f"{AUTO!r} (which names this process's device)")
        floats = self.float_options
        if (isinstance(floats, str) or not floats or len(set(floats)) != len(floats)
                or any(f not in FLOAT_DTYPES for f in floats)):
            raise ValueError(f"target {self.name!r}: float_options={floats!r}; expected a "
                             f"non-empty tuple of distinct names from {list(FLOAT_DTYPES)}")
        object.__setattr__(self, "float_options", tuple(floats))

    @property
    def float_option(self) -> str:
        """The float precision every site of a map falls back to: the first float option."""
        return self.float_options[0]

    @property
    def dtype(self):
        """The compute dtype between GEMM sites: the float option's."""
        return FLOAT_DTYPES[self.float_option]

    def with_float(self, name: str) -> "Target":
        """This target from float option `name` on: `name` is its float option (and gives its
        dtype between sites), and the float options after it stay, in order, as the ones to try
        next (`next_float`).

        Raises:
          ValueError: `name` is not one of this target's float options.
        """
        if name not in self.float_options:
            raise ValueError(f"float option {name!r} is not offered on target {self.name!r}; "
                             f"its float options are {list(self.float_options)}")
        if name == self.float_option:
            return self
        return dataclasses.replace(
            self, float_options=self.float_options[self.float_options.index(name):])

    def next_float(self) -> str | None:
        """The float option the search tries after this one when the model overflows it (the
        next of `float_options`), or None after the last."""
        return self.float_options[1] if len(self.float_options) > 1 else None

    def for_options(self, names: Sequence[str] | None) -> "Target":
        """This target with the float option that `names` (search option names) picks: the one
        float they name, or, when they name none, the default.

        Raises:
          ValueError: more than one float option named, or one this target does not offer;
            an unknown option name.
        """
        if names is None or isinstance(names, str):
            return self
        floats = []
        for name in names:
            key = str(name).strip()
            if key not in OPTION_NAMES:
                raise ValueError(f"option {key!r} is not one of {sorted(OPTION_NAMES)}")
            if OPTION_NAMES[key] in FLOAT_DTYPES and OPTION_NAMES[key] not in floats:
                floats.append(OPTION_NAMES[key])
        if len(floats) > 1:
            raise ValueError(f"options {floats} name {len(floats)} float options; expected one "
                             "(the float every site falls back to, and the dtype between sites)")
        return self.with_float(floats[0]) if floats else self

    def allowed(self) -> tuple[SitePrecision, ...]:
        """Every option this target offers with its float option, that float first."""
        names = [self.float_option, "int8-dynamic", "int8-static"] + (["fp8_e4m3"] if self.has_fp8 else [])
        return tuple(as_precision(n) for n in names)

    def search_options(self, names: Sequence[str] | None = None) -> tuple[SitePrecision, ...]:
        """The options a search on this target uses: all `allowed()` ones, or `names` narrowed
        to them (the float option is always first, added if missing).

        Raises:
          ValueError: an unknown option name, or one this target does not offer (e.g. FP8 on
            an A100), or a float option other than this target's `float_option` (pick it
            first with `for_options`).
        """
        allowed = self.allowed()
        if names is None:
            return allowed
        if isinstance(names, str) or len(names) == 0:
            raise ValueError(f"options={names!r}: expected a non-empty sequence of option names "
                             f"from {sorted(OPTION_NAMES)}, or None for all the target offers")
        chosen = []
        for name in names:
            key = str(name).strip()
            if key not in OPTION_NAMES:
                raise ValueError(f"option {key!r} is not one of {sorted(OPTION_NAMES)}")
            precision = as_precision(OPTION_NAMES[key])
            if precision not in allowed:
                if precision.precision == "fp8_e4m3":
                    why = "it has no FP8 tensor cores"
                elif precision.precision in self.float_options:
                    why = f"its float option here is {self.float_option}; name one float option"
                else:
                    why = f"its float options are {list(self.float_options)}"
                raise ValueError(f"option {key!r} is not offered on target {self.name!r} ({why}); "
                                 f"it offers {[str(p) for p in allowed]}")
            if precision not in chosen:
                chosen.append(precision)
        default = allowed[0]
        return (default, *[p for p in chosen if p != default])

    def is_current(self) -> bool:
        """Whether this process runs on this target (so its latency can be measured)."""
        return self.describes(jax.devices()[0].device_kind)

    def describes(self, device_kind: str) -> bool:
        """Whether a device of `device_kind` (`jax.Device.device_kind`) is this target's."""
        return devices.architecture(device_kind) in self.architectures


H100 = DeviceSpec.of("h100")
A100 = DeviceSpec.of("a100")
L4 = DeviceSpec.of("l4")


def _has_fp8(name: str) -> bool:
    return devices.by_name(name).has_fp8

TARGETS: dict[str, Target] = {}


def register_target(target: Target, *, replace: bool = False) -> Target:
    """Adds a target to `TARGETS`; returns it.

    `resolve_target('auto')` takes the most recently registered target that describes this
    process's device: a target registered for the architecture of a built-in (your own numbers
    for an H100) overrides it there. A replacement counts as registered now.

    Raises:
      TypeError: `target` is not a `Target`.
      ValueError: its name is taken (a built-in's included) and `replace` is False.
    """
    check_kind(target, Target, "register_target")
    check_free(TARGETS, target.name, f"target {target.name!r}", replace=replace)
    TARGETS.pop(target.name, None)  # to the end: the most recent is the one 'auto' finds first
    TARGETS[target.name] = target
    return target


# A GPU's tensor cores run BF16 as fast as FP16; FP32 is the last resort.
GPU_FLOATS = ("fp16", "bf16", "fp32")
register_target(Target("h100", H100, _has_fp8("h100"), GPU_FLOATS, (devices.HOPPER,)))
register_target(Target("a100", A100, _has_fp8("a100"), GPU_FLOATS, (devices.AMPERE,)))
register_target(Target("l4", L4, _has_fp8("l4"), GPU_FLOATS, (devices.ADA,)))
register_target(Target("cpu", None, _has_fp8("cpu"), ("fp32",), (devices.CPU,)))


def resolve_target(name: str | Target = AUTO) -> Target:
    """The `Target` of a name, or of this process's device for 'auto' (the most recently
    registered target that describes it).

    Raises:
      ValueError: an unknown name, or 'auto' on a device no registered target describes.
    """
    if isinstance(name, Target):
        return name
    if name != AUTO:
        if name not in TARGETS:
            raise ValueError(f"target {name!r} is not one of {[AUTO, *TARGETS]}")
        return TARGETS[name]
    device = jax.devices()[0]
    for target in reversed(TARGETS.values()):  # a user's target overrides a built-in
        if target.describes(device.device_kind):
            return target
    raise ValueError(f"target 'auto': no registered target describes this device "
                     f"({device.platform}, {device.device_kind!r}); pass one of {list(TARGETS)} "
                     "(its latency is then estimated) or register_target() one")
