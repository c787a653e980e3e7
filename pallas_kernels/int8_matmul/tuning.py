"""Autotuning of the INT8 GEMM configs on a device; writes the device's tuned table.

`benchmarks/gemm.py --tune` calls `tune` for every benchmark shape on the GPU it runs on and
`record`s the winners into the checkout's `pallas_kernels/int8_matmul/tuned/<device>.json`.
Each implementation's candidates are declared in its own file (`Implementation.candidates`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pallas_kernels.int8_matmul import base
from pallas_kernels.int8_matmul.api import REGISTRY


def _implementation(name: str) -> base.Implementation:
    if name not in REGISTRY:
        raise ValueError(f"implementation={name!r} is not one of {tuple(REGISTRY)}")
    return REGISTRY[name]


def candidates(implementation: str, m: int, n: int, k: int) -> list:
    """The configs of `implementation` worth timing for a shape (those that tile N and K)."""
    return _implementation(implementation).candidates(m, n, k)


def tune(implementation: str, m: int, n: int, k: int, time_config: Callable[[object], float]):
    """`(config, ms)`: the fastest candidate by `time_config(config) -> ms`; configs that fail
    to compile or exceed shared memory (any exception) are skipped.

    Raises:
      RuntimeError: no candidate ran.
    """
    best, best_ms = None, float("inf")
    for config in candidates(implementation, m, n, k):
        try:
            ms = time_config(config)
        except Exception:  # noqa: BLE001  (a config the device rejects is just not a candidate)
            continue
        if ms < best_ms:
            best, best_ms = config, ms
    if best is None:
        raise RuntimeError(f"no {implementation} config ran for {m}x{n}x{k}")
    return best, best_ms


def tuned(implementation: str, device_kind: str, m: int, n: int, k: int,
          directory: Path | None = None):
    """The tuned config of `implementation` for this device and shape, or None (`base.tuned`)."""
    return base.tuned(_implementation(implementation), device_kind, m, n, k, directory)


def choose(implementation: str, device_kind: str, m: int, n: int, k: int, config=None,
           directory: Path | None = None):
    """Explicit config → the device's tuned table → the heuristic (`base.choose`)."""
    return base.choose(_implementation(implementation), device_kind, m, n, k, config, directory)


def record(implementation: str, device_kind: str, m: int, n: int, k: int, config,
           directory: Path | None = None) -> Path:
    """Stores `config` in the device's table in `directory` (default: this checkout's
    `tuned/`); returns the file. See `base.record`."""
    return base.record(_implementation(implementation), device_kind, m, n, k, config, directory)
