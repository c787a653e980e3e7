"""Kernel configuration: an explicit config beats the tuned table, which beats the heuristic.

The tuned table (`tuned.json`, shipped as package data) maps implementation -> device kind ->
"MxNxK" (M rounded up to a power of two) -> config fields. `{}` is an empty table; a missing or
malformed one raises `TunedTableError` rather than silently falling back to the heuristic.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

TUNED_TABLE = Path(__file__).with_name("tuned.json")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Tile sizes and launch parameters of the Triton INT8 GEMM.

    Attributes:
      block_m, block_n, block_k: tile of the output (m, n) and of the reduction (k); powers of 2.
      num_warps: warps per program.
      num_stages: software-pipelining depth of the K loop.
    """

    block_m: int = 64
    block_n: int = 128
    block_k: int = 64
    num_warps: int = 4
    num_stages: int = 3

    def __post_init__(self):
        for name in ("block_m", "block_n", "block_k"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"{name}={value} must be a power of two >= 16")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MosaicConfig:
    """Tiles and pipelining of the Mosaic GPU (Hopper wgmma) INT8 GEMM.

    Attributes:
      tile_m: output rows per CTA: 64 or 128 (wgmma issues M in 64-row groups).
      tile_n: output columns per CTA: a multiple of 64, at most 256 (one wgmma N group).
      tile_k: reduction step; 128 int8 = one 128-byte swizzle row.
      max_concurrent_steps: TMA buffers in flight (pipeline depth), >= 2.
    """

    tile_m: int = 128
    tile_n: int = 128
    tile_k: int = 128
    max_concurrent_steps: int = 4

    def __post_init__(self):
        if self.tile_m not in (64, 128):
            raise ValueError(f"tile_m={self.tile_m} must be 64 or 128")
        if self.tile_n % 64 or not 64 <= self.tile_n <= 256:
            raise ValueError(f"tile_n={self.tile_n} must be a multiple of 64 in [64, 256]")
        if self.tile_k not in (64, 128):
            raise ValueError(f"tile_k={self.tile_k} must be 64 or 128")
        if self.tile_m * self.tile_n > 128 * 128:
            raise ValueError(f"tile {self.tile_m}x{self.tile_n} exceeds one warpgroup's int32 "
                             "accumulator budget (128x128)")
        if self.max_concurrent_steps < 2:
            raise ValueError(f"max_concurrent_steps={self.max_concurrent_steps} must be >= 2")


CONFIG_TYPES = {"mosaic": MosaicConfig, "triton": Config}  # implementation -> its config


def heuristic(m: int, n: int, k: int) -> Config:
    """A reasonable config from the shape alone: small M gets short tiles (decode-like)."""
    block_m = 16 if m <= 16 else 32 if m <= 32 else 64 if m <= 2048 else 128
    block_n = 128 if n % 128 == 0 else 64
    block_k = 128 if k % 128 == 0 else 64 if k % 64 == 0 else 32
    return Config(block_m=block_m, block_n=block_n, block_k=block_k,
                  num_warps=8 if block_m * block_n >= 128 * 128 else 4, num_stages=3)


def mosaic_heuristic(m: int, n: int, k: int) -> MosaicConfig:
    """Small M (weight-bound) gets narrow 64×64 tiles for more CTAs; larger M gets 128×128."""
    small = m <= 64
    tile_n = 64 if small or n % 128 else 128
    return MosaicConfig(tile_m=64 if small else 128, tile_n=tile_n,
                        tile_k=128 if k % 128 == 0 else 64, max_concurrent_steps=4 if k >= 512 else 2)


class TunedTableError(RuntimeError):
    """The tuned table is missing, unreadable or malformed (it ships as package data)."""


def load_table(table: Path | None = None) -> dict:
    """The tuned table as a dict: implementation -> device kind -> "MxNxK" -> config fields.

    An empty table (`{}`) is valid and has no entries. `table` defaults to `TUNED_TABLE`.

    Raises:
      TunedTableError: the file is missing, unreadable, not JSON, or not a JSON object.
    """
    table = Path(table or TUNED_TABLE)
    try:
        text = table.read_text()
    except FileNotFoundError:
        raise TunedTableError(f"the tuned INT8 GEMM table {table} is missing; it ships with "
                              "pallas_kernels as package data (an empty table is '{}')") from None
    except OSError as e:
        raise TunedTableError(f"cannot read the tuned INT8 GEMM table {table}: {e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TunedTableError(f"the tuned INT8 GEMM table {table} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise TunedTableError(f"the tuned INT8 GEMM table {table} must be a JSON object "
                              f"(implementation -> device kind -> shape), got {type(data).__name__}")
    return data


def shape_key(m: int, n: int, k: int) -> str:
    """The table key of a shape: "MxNxK" with M rounded up to a power of two."""
    return f"{1 << max(m - 1, 0).bit_length()}x{n}x{k}"


def tuned(device_kind: str, m: int, n: int, k: int, implementation: str = "triton",
          table: Path | None = None) -> Config | MosaicConfig | None:
    """The checked-in tuned config for this implementation, device and shape, if any.

    `benchmarks/gemm.py --tune` writes the table (`TUNED_TABLE` by default) on the device.

    Raises:
      TunedTableError: the table is missing or malformed, or its entry is not a valid config.
    """
    if implementation not in CONFIG_TYPES:
        raise ValueError(f"{implementation=} is not one of {tuple(CONFIG_TYPES)}")
    key = shape_key(m, n, k)
    entry = load_table(table)
    for level in (implementation, device_kind, key):
        if not isinstance(entry, dict):
            raise TunedTableError(f"the tuned INT8 GEMM table {table or TUNED_TABLE} must nest "
                                  f"objects down to {implementation}/{device_kind!r}/{key}, "
                                  f"found {type(entry).__name__} before {level!r}")
        entry = entry.get(level)
        if not entry:
            return None
    try:
        return CONFIG_TYPES[implementation](**entry)
    except (TypeError, ValueError) as e:
        raise TunedTableError(f"the tuned INT8 GEMM table {table or TUNED_TABLE} has an invalid "
                              f"{implementation} entry for {device_kind!r} {key}: {e}") from e


def choose(device_kind: str, m: int, n: int, k: int, config: Config | None = None) -> Config:
    """Triton: an explicit config, else the tuned table, else the heuristic."""
    return config or tuned(device_kind, m, n, k, "triton") or heuristic(m, n, k)


def choose_mosaic(device_kind: str, m: int, n: int, k: int,
                  config: MosaicConfig | None = None) -> MosaicConfig:
    """Mosaic: an explicit config, else the tuned table, else the heuristic."""
    return config or tuned(device_kind, m, n, k, "mosaic") or mosaic_heuristic(m, n, k)
