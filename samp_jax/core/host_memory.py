"""Host memory for the CPU backend: keep freed buffers for reuse instead of unmapping them.

XLA:CPU allocates each execution's temporaries as one block (107 MB for MiniLM at 32x128) with
`posix_memalign` from one of its worker threads. glibc serves a block that large from a fresh
`mmap` and unmaps it on free, so every forward page-faults its temporaries in again: measured
on the 2-core CPU, 26,600 minor faults and 43 ms of system time per static-INT8 forward of
about 200 ms, which kept buffers make 0 faults and about 10% faster (`tools/forward_ms.py
--malloc system|keep`). ONNX Runtime avoids the same cost with its own memory arena. `keep_cpu_buffers` gets the equivalent from glibc: one arena, no
`mmap` for large blocks and no trimming, so a freed block is reused by the next execution.

It is a process-wide setting and has to come before JAX starts its CPU backend (the worker
threads pick their arenas when they first allocate), so the `samp-jax` command applies it
first thing and a program serving with the library calls it before its first JAX operation.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys

OPT_OUT_VARIABLE = "SAMP_JAX_MALLOC"  # unset or "keep": apply; any other value ("system"): don't
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc <malloc.h>
_TRIM_NEVER = 2**31 - 1  # largest value mallopt takes (an int): freed memory stays mapped
_ACCELERATOR_PLUGINS = ("jax_plugins", "libtpu")  # where JAX finds GPU and TPU backends

LONG_ROWS = 512  # tokens: past this, an execution's largest blocks go back to mmap
_MMAP_MAX_GLIBC = 65536  # glibc's own M_MMAP_MAX

_applied = False
_large_blocks_mapped = False


def keep_cpu_buffers() -> bool:
    """Makes glibc keep and reuse freed host memory (see the module docstring); idempotent.

    Returns True when the setting is in force. Returns False, changing nothing, where it
    does not apply: not Linux with glibc; `SAMP_JAX_MALLOC` set to anything but `keep`; a
    process that will not run JAX on the CPU (`JAX_PLATFORMS` names another platform first,
    or, without it, a GPU or TPU plugin is installed); or JAX's backends already started (too
    late: the worker threads have their own arenas). Should glibc refuse one of the three
    options (it has not been seen to), the others stay set and it returns False.

    The cost: one arena for every thread (contention is possible where many threads allocate
    at once; not measured beyond 2 cores), and memory freed by the process stays mapped, so
    its resident size stays at its peak. For rows of more than `LONG_ROWS` tokens the large
    blocks go back to `mmap` (`fit_to_row_length`, which `samp_jax.compile` calls).
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(OPT_OUT_VARIABLE, "keep").lower() != "keep" or not sys.platform.startswith("linux"):
        return False
    if not _runs_on_cpu() or _backends_started():
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    results = [mallopt(option, value) == 1 for option, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_NEVER))]
    _applied = all(results)
    return _applied


def fit_to_row_length(tokens: int) -> bool:
    """Where rows may be longer than `LONG_ROWS` tokens, gives an execution's large blocks
    back to `mmap` (freed to the system when freed), keeping the one arena and the small
    blocks. An execution's temporaries grow with the square of the row length (attention's
    `[batch, heads, seq, seq]` scores) and their size changes from one length bucket to the
    next; kept in the one arena, blocks of gigabytes fragment it, and a run's peak grows to two
    or three times what it needs. Returns True when it changed the setting (once per
    process); the engine and the command line call it with their longest row.
    """
    global _large_blocks_mapped
    if not _applied or _large_blocks_mapped or tokens <= LONG_ROWS:
        return False
    mallopt = _glibc_mallopt()
    _large_blocks_mapped = mallopt is not None and mallopt(_M_MMAP_MAX, _MMAP_MAX_GLIBC) == 1
    return _large_blocks_mapped


def cpu_buffers_kept() -> bool:
    """Whether `keep_cpu_buffers` is in force in this process (measured timings depend on it)."""
    return _applied


def _runs_on_cpu() -> bool:
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    return not any(importlib.util.find_spec(name) for name in _ACCELERATOR_PLUGINS)


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:  # the only place JAX says whether a backend exists (private: guarded)
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # noqa: BLE001  unknown: assume started, and change nothing
        return True


def _glibc_mallopt():
    try:
        libc = ctypes.CDLL(None)  # the C library this process already has loaded
        _ = libc.gnu_get_libc_version  # glibc's own: absent from musl and others
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
