"""Kernel configuration: an explicit config beats the tuned table, which beats the heuristic."""

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


def heuristic(m: int, n: int, k: int) -> Config:
    """A reasonable config from the shape alone: small M gets short tiles (decode-like)."""
    block_m = 16 if m <= 16 else 32 if m <= 32 else 64 if m <= 2048 else 128
    block_n = 128 if n % 128 == 0 else 64
    block_k = 128 if k % 128 == 0 else 64 if k % 64 == 0 else 32
    return Config(block_m=block_m, block_n=block_n, block_k=block_k,
                  num_warps=8 if block_m * block_n >= 128 * 128 else 4, num_stages=3)


def tuned(device_kind: str, m: int, n: int, k: int) -> Config | None:
    """The checked-in tuned config for this device and shape, if any.

    The table maps device kind -> "MxNxK" (M rounded up to a power of two) -> Config fields.
    """
    if not TUNED_TABLE.is_file():
        return None
    table = json.loads(TUNED_TABLE.read_text()).get(device_kind, {})
    bucket = 1 << max(m - 1, 0).bit_length()
    entry = table.get(f"{bucket}x{n}x{k}")
    return Config(**entry) if entry else None


def choose(device_kind: str, m: int, n: int, k: int, config: Config | None = None) -> Config:
    return config or tuned(device_kind, m, n, k) or heuristic(m, n, k)
