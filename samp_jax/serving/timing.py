"""Timing on this device: warm-up, then the median of many back-to-back runs, variants taken in
turns so a shared machine's drift hits them alike; what a figure ran on; host memory set up as
the `samp-jax` command serves.

Used by the search's measured latency tables (`calibrate.search.latency`), the benchmarks and
`samp-jax bench`, and the tools that time forwards.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

import jax

from samp_jax.core.host_memory import keep_cpu_buffers

_CPU_FEATURES = ("amx_int8", "avx512_vnni", "avx512f", "avx2")  # the ones INT8 GEMMs use, best first


@functools.lru_cache(maxsize=1)  # one device per process; /proc/cpuinfo is read once
def device_description() -> str:
    """What a measured figure ran on: the accelerator's kind, or for the CPU backend the
    processor's model name, the best of its INT8-relevant instruction sets and the cores this
    process may use (`jax.Device.device_kind` is just "cpu", and two CPUs sold under one
    name time very differently: AMX INT8 on one, VNNI only on another)."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        return device.device_kind
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    features = next((f for f in _CPU_FEATURES if f in flags), None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}{f' ({features})' if features else ''}, {cores} cores"


def device_file_stem() -> str:
    """`device_description()` as a file name's stem: each run of characters other than ASCII
    letters, digits and dots made one underscore ("NVIDIA H200" -> "NVIDIA_H200"; no
    parentheses, commas or spaces for a shell to trip on)."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", device_description()).strip("_")


def time_ms(fn: Callable[[], jax.Array], *, warmup: int = 3, repeats: int = 20, inner: int = 5) -> float:
    """Median over `repeats` of the mean time of `inner` back-to-back calls with one sync."""
    return time_interleaved({"fn": fn}, warmup=warmup, repeats=repeats, inner=inner)["fn"]


def time_interleaved(fns: Mapping[str, Callable[[], jax.Array]], *, warmup: int = 3,
                     repeats: int = 20, inner: int = 5) -> dict[str, float]:
    """`time_ms` of several functions, taken in turns: each round times every function once
    (`inner` back-to-back calls, one sync), starting one further along each round, and each
    gets the median of its `repeats` samples.

    Timed one after the other, two variants are compared across the drift of a shared
    machine's speed, which on a shared CPU can exceed the difference between them (and reverse
    their order); taken in turns, each drift hits every variant alike.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            jax.block_until_ready(fns[name]())
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(inner):
                out = fns[name]()
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - start) / inner * 1e3)
    return {name: statistics.median(samples[name]) for name in names}


def keep_cpu_buffers_for_timing(tool: str, *, required: bool = False) -> bool:
    """`keep_cpu_buffers()` (`samp_jax.core.host_memory`) for a tool that times CPU forwards,
    saying so when it refuses. Call it before JAX starts its backends.

    Args:
      tool: the tool's name, for the message.
      required: exit (`SystemExit` with the reason) when the buffers cannot be kept; otherwise
        a note on stderr says the timings include page faults.

    Returns:
      Whether the buffers are kept.
    """
    if keep_cpu_buffers():
        return True
    if required:
        raise SystemExit(f"{tool}: could not keep host buffers (samp_jax.core.host_memory: not glibc, "
                         "SAMP_JAX_MALLOC set to something other than 'keep', JAX not on the CPU, "
                         "or JAX already started)")
    print(f"{tool}: note: host buffers are not kept (samp_jax.core.host_memory); CPU timings include "
          "page faults", file=sys.stderr)
    return False


def error_line(e: BaseException) -> str:
    """One line naming an exception (`Type: first line of its message`, at most 500
    characters): a benchmark row's `error` when a contender fails, for the table goes on."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:500]
