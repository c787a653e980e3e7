"""What every INT8 GEMM implementation shares: its registry entry (`Implementation`), M padding,
the errors, and the tuned tables (one JSON file per device kind).

A config is chosen as tokamax does: an explicit config beats the tuned table, which beats the
implementation's heuristic (`choose`). The tuned tables live in `TUNED_DIR` (the `tuned/`
folder beside this file, shipped as package data): `<device>.json`, where `<device>` is the
device's name in `pallas_kernels.devices` ('h100', 'h200', ...) or, for a device the table does
not know, its `device_kind` made a file name. Each maps implementation -> "MxNxK" (M rounded up
to a power of two) -> config fields. No file means no entries; a malformed one raises
`TunedTableError` rather than silently falling back to the heuristic. `record` writes a table
into a source tree (a checkout), never into an installed package, atomically (a temporary file
in the same folder, renamed over the table), so a sweep cut short never leaves half a table.

The Mosaic GPU kernels run in GPU interpret mode with `interpret_params()`; within
`detect_races()` its race detector is on (the tests turn it on).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import jax.numpy as jnp

from pallas_kernels import devices
from pallas_kernels.lazy import mosaic_gpu

plgpu = mosaic_gpu()  # jax.experimental.pallas.mosaic_gpu, imported when a kernel is first built

TUNED_DIR = Path(__file__).with_name("tuned")


@dataclasses.dataclass(frozen=True)
class Implementation:
    """One INT8 GEMM implementation, as its own file declares it.

    Attributes:
      name: the registry key ('mosaic', 'triton').
      config_type: its frozen config dataclass.
      run: the adapter `run(x_q, w_q, x_scale, w_scale, *, bias, residual, config, device_kind,
        interpret, activation, out_dtype, out_scale, requantize_from)`; raises `NotImplementedError` with the
        reason when it cannot handle the device or shape.
      heuristic: `(m, n, k) -> config` from the shape alone.
      candidates: `(m, n, k) -> [config, ...]`, the configs worth timing for a shape.
      kernel_name: the `name=` of its pallas call (tests and benches look for it).
      automatic: whether `implementation=None` tries it (else only when named).
    """

    name: str
    config_type: type
    run: Callable
    heuristic: Callable
    candidates: Callable
    kernel_name: str
    automatic: bool = True


_detect_races = [False]


@contextlib.contextmanager
def detect_races(enabled: bool = True):
    """Mosaic GPU kernels traced in the block run, in interpret mode, with the interpreter's
    race detector on. A race it finds does not raise: it prints "RACE DETECTED" and sets
    `races_found` of the kernel's race-detection state
    (`jax._src.pallas.mosaic_gpu.interpret.interpret_pallas_call.get_races()`, reset by the
    next kernel), which the caller checks."""
    previous, _detect_races[0] = _detect_races[0], enabled
    try:
        yield
    finally:
        _detect_races[0] = previous


def interpret_params() -> plgpu.InterpretGPUParams:
    """The GPU interpret-mode parameters the Mosaic GPU kernels run with (`detect_races`)."""
    return plgpu.InterpretGPUParams(detect_races=_detect_races[0])


class NoImplementationError(ExceptionGroup, NotImplementedError):
    """No requested implementation could handle a call: each one's `NotImplementedError`,
    together (`exceptions`), and their reasons in the message. Being a `NotImplementedError`,
    it lets a caller such as `samp_jax.gemm` fall back to XLA."""


class TunedTableError(RuntimeError):
    """A tuned table is unreadable or malformed, or cannot be written where asked."""


def pad_rows(tile_m: int, x_q, x_scale, residual):
    """Pads M up to a multiple of `tile_m` (zero rows, sliced off the output afterwards)."""
    pad = -x_q.shape[0] % tile_m
    if not pad:
        return x_q, x_scale, residual
    x_q = jnp.pad(x_q, ((0, pad), (0, 0)))
    x_scale = jnp.pad(x_scale, (0, pad))
    if residual is not None:
        residual = jnp.pad(residual, ((0, pad), (0, 0)))
    return x_q, x_scale, residual


def table_path(device_kind: str, directory: Path | None = None) -> Path:
    """The tuned table of `device_kind` in `directory` (default `TUNED_DIR`)."""
    known = devices.lookup(device_kind)
    stem = known.name if known is not None else re.sub(r"[^a-z0-9]+", "_", device_kind.lower()).strip("_")
    return Path(directory or TUNED_DIR) / f"{stem or 'unknown'}.json"


def load_table(path: Path) -> dict:
    """A tuned table as a dict: implementation -> "MxNxK" -> config fields; {} if absent.

    Raises:
      TunedTableError: the file is unreadable, not JSON, or not nested JSON objects.
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise TunedTableError(f"cannot read the tuned INT8 GEMM table {path}: {e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TunedTableError(f"the tuned INT8 GEMM table {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise TunedTableError(f"the tuned INT8 GEMM table {path} must be a JSON object of objects "
                              "(implementation -> shape -> config fields)")
    return data


def shape_key(m: int, n: int, k: int) -> str:
    """The table key of a shape: "MxNxK" with M rounded up to a power of two."""
    return f"{1 << max(m - 1, 0).bit_length()}x{n}x{k}"


def tuned(implementation: Implementation, device_kind: str, m: int, n: int, k: int,
          directory: Path | None = None):
    """The tuned config of this implementation, device and shape, or None.

    Raises:
      TunedTableError: the device's table is malformed, or its entry is not a valid config.
    """
    path = table_path(device_kind, directory)
    key = shape_key(m, n, k)
    entry = load_table(path).get(implementation.name, {}).get(key)
    if entry is None:
        return None
    try:
        return implementation.config_type(**entry)
    except (TypeError, ValueError) as e:
        raise TunedTableError(f"the tuned INT8 GEMM table {path} has an invalid "
                              f"{implementation.name} entry {key}: {e}") from e


def choose(implementation: Implementation, device_kind: str, m: int, n: int, k: int,
           config=None, directory: Path | None = None, **dtypes):
    """An explicit config, else the device's tuned entry, else the heuristic.

    `dtypes` (`out_dtype`, `residual_dtype`), for a config type whose fit depends on them
    (`refuses`, e.g. shared memory): a tuned entry, keyed by shape alone, that does not fit
    them gives way to the heuristic, which is told them. An explicit config is returned as
    given (the caller declines it when it does not fit)."""
    if config is not None:
        return config
    entry = tuned(implementation, device_kind, m, n, k, directory)
    if entry is not None and not (dtypes and entry.refuses(**dtypes)):
        return entry
    return implementation.heuristic(m, n, k, **dtypes)


def _installed(directory: Path) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in directory.resolve().parts)


def record(implementation: Implementation, device_kind: str, m: int, n: int, k: int, config,
           directory: Path | None = None) -> Path:
    """Stores `config` for this implementation, device and shape in the device's table in
    `directory` (default `TUNED_DIR`, when that is a source tree), atomically; returns the file.

    Raises:
      TunedTableError: the directory is inside an installed package (site-packages): tuned
        data belongs in a checkout, passed as `directory`.
    """
    directory = Path(directory or TUNED_DIR)
    if _installed(directory):
        raise TunedTableError(f"{directory} is inside an installed package; tuned tables are "
                              "written into a source tree: pass its pallas_kernels/int8_matmul/tuned")
    path = table_path(device_kind, directory)
    data = load_table(path)
    fields = {f: getattr(config, f) for f in config.__dataclass_fields__}
    data.setdefault(implementation.name, {})[shape_key(m, n, k)] = fields
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    """Writes `text` to a temporary file beside `path`, then renames it over `path`: a reader
    (or a sweep cut short) sees the old table or the new one, never a part."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:  # mkstemp's file is 0600: keep the table's mode, or a checked-in file's usual one
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
