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
import ctypes.util
import os
import sys

OPT_OUT_VARIABLE = "SAMP_JAX_MALLOC"  # "system": leave glibc's allocator as it is
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc <malloc.h>
_TRIM_NEVER = 2**31 - 1  # largest value mallopt takes (an int): freed memory stays mapped

_applied = False


def keep_cpu_buffers() -> bool:
    """Makes glibc keep and reuse freed host memory (see the module docstring); idempotent.

    Returns True when the setting is in force. Returns False, changing nothing, where it cannot
    apply: not Linux with glibc, `SAMP_JAX_MALLOC=system` in the environment, or JAX's backends
    already started (too late: the worker threads have their own arenas, and the setting would
    only cost the rest of the process its per-thread arenas).
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(OPT_OUT_VARIABLE, "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    if _backends_started():
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    _applied = all(mallopt(option, value) == 1 for option, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_NEVER)))
    return _applied


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge  # the only place JAX says whether a backend exists

    return xla_bridge.backends_are_initialized()


def _glibc_mallopt():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        gnu_get_libc_version = libc.gnu_get_libc_version  # absent from musl and others
    except (OSError, AttributeError):
        return None
    del gnu_get_libc_version
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
