"""Autotuning of the INT8 GEMM configs on a device; writes the device's tuned table.

`benchmarks/gemm.py --tune` calls `tune` for every benchmark shape on the GPU it runs on and
`record`s the winners into the checkout's `pallas_kernels/int8_matmul/tuned/<device>.json`.
Each implementation's candidates are declared in its own file (`Implementation.candidates`).
A candidate may win only when it runs and its int32 accumulator equals XLA's
(`accumulator_check`); one that raises anything or computes a wrong accumulator is recorded as
failed, with the reason, and the sweep goes on. A deadline stops it early with what it has.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import jax.numpy as jnp
import numpy as np

from pallas_kernels.int8_matmul import base
from pallas_kernels.int8_matmul.api import REGISTRY, int8_matmul
from pallas_kernels.int8_matmul.reference import int8_accumulate


def _implementation(name: str) -> base.Implementation:
    if name not in REGISTRY:
        raise ValueError(f"implementation={name!r} is not one of {tuple(REGISTRY)}")
    return REGISTRY[name]


def candidates(implementation: str, m: int, n: int, k: int) -> list:
    """The configs of `implementation` worth timing for a shape (those that tile N and K)."""
    return _implementation(implementation).candidates(m, n, k)


@dataclasses.dataclass
class Tuned:
    """What `tune` found: the fastest checked config and its time (None and inf when none ran),
    the candidates that failed (`(config, reason)`), and whether every candidate was tried
    (False: the deadline stopped the sweep first)."""

    config: object | None
    ms: float
    failed: list[tuple[object, str]]
    complete: bool


def accumulator_check(implementation: str, x_q, w_q, *, interpret: bool = False) -> Callable:
    """`check(config)` for `tune`: runs the raw kernel (`int8 @ int8 -> int32`, no epilogue)
    of `implementation` with `config` on `x_q [M, K]` and `w_q [K, N]`, and raises
    AssertionError unless its accumulator equals `int8_accumulate`'s (XLA's) bit for bit."""
    expected = np.asarray(int8_accumulate(x_q, w_q))
    (m, _), n = x_q.shape, w_q.shape[1]
    ones_m, ones_n = jnp.ones((m, 1), jnp.float32), jnp.ones((n,), jnp.float32)

    def check(config) -> None:
        acc = np.asarray(int8_matmul(x_q, w_q, ones_m, ones_n, out_dtype=jnp.int32,
                                     implementation=implementation, config=config,
                                     interpret=interpret))
        if acc.shape != expected.shape or not np.array_equal(acc, expected):
            wrong = int((acc != expected).sum()) if acc.shape == expected.shape else acc.size
            raise AssertionError(f"wrong int32 accumulator: {wrong} of {expected.size} values "
                                 "differ from int8_accumulate's")
    return check


def tune(implementation: str, m: int, n: int, k: int, time_config: Callable[[object], float], *,
         check: Callable[[object], None] | None, deadline: float | None = None) -> Tuned:
    """The fastest candidate by `time_config(config) -> ms`, among those that pass
    `check(config)` (`accumulator_check`; None: unchecked) first. A candidate that raises
    anything (fails to compile, exceeds shared memory, computes a wrong accumulator) is
    recorded as failed with the reason. No candidate starts after `deadline` (a
    `time.monotonic()` value).

    Raises:
      RuntimeError: no candidate ran (the message counts the failures).
    """
    best, best_ms, failed = None, float("inf"), []
    options = candidates(implementation, m, n, k)
    tried = 0
    for config in options:
        if deadline is not None and time.monotonic() > deadline:
            break
        tried += 1
        try:
            if check is not None:
                check(config)
            ms = time_config(config)
        except Exception as e:  # noqa: BLE001  (a config the device rejects is just not a candidate)
            failed.append((config, f"{type(e).__name__}: {e}"))
            continue
        if ms < best_ms:
            best, best_ms = config, ms
    if best is None:
        raise RuntimeError(f"no {implementation} config ran for {m}x{n}x{k} ({len(failed)} of "
                           f"{tried} tried failed, {len(options) - tried} not tried before the "
                           "deadline)" + "".join(f"; {c}: {r}" for c, r in failed[:3]))
    return Tuned(best, best_ms, failed, complete=tried == len(options))


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
