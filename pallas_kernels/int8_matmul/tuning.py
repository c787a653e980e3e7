"""Autotuning of the INT8 GEMM configs on a device; writes `tuned.json` (see `config.tuned`).

`benchmarks/gemm.py --tune` calls `tune` for every benchmark shape on the GPU it runs on.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Callable

from pallas_kernels.int8_matmul import config as config_module
from pallas_kernels.int8_matmul.config import Config, MosaicConfig, load_table, shape_key


def candidates(implementation: str, m: int, n: int, k: int) -> list[Config | MosaicConfig]:
    """The configs worth timing for a shape (those that tile N and K)."""
    if implementation == "mosaic":
        grid = itertools.product((64, 128), (64, 128, 256), (64, 128), (2, 3, 4, 6))
        out = []
        for tm, tn, tk, steps in grid:
            if n % tn or k % tk or tm * tn > 128 * 128:
                continue
            out.append(MosaicConfig(tile_m=tm, tile_n=tn, tile_k=tk, max_concurrent_steps=steps))
        return out
    grid = itertools.product((16, 32, 64, 128), (64, 128, 256), (32, 64, 128), (4, 8), (2, 3, 4))
    return [Config(block_m=bm, block_n=bn, block_k=bk, num_warps=w, num_stages=s)
            for bm, bn, bk, w, s in grid
            if not (n % bn or k % bk) and (bm <= max(16, 1 << max(m - 1, 0).bit_length()))]


def tune(implementation: str, m: int, n: int, k: int,
         time_config: Callable[[Config | MosaicConfig], float]) -> tuple[Config | MosaicConfig, float]:
    """The fastest candidate by `time_config(config) -> ms`; configs that fail to compile or
    exceed shared memory (any exception) are skipped."""
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


def record(implementation: str, device_kind: str, m: int, n: int, k: int,
           config: Config | MosaicConfig, table: Path | None = None) -> None:
    """Stores `config` for this implementation, device and shape (M bucketed to a power of 2)
    in `table` (default: the shipped `TUNED_TABLE`); a table that does not exist yet is created."""
    table = Path(table or config_module.TUNED_TABLE)
    data = load_table(table) if table.exists() else {}
    fields = {f: getattr(config, f) for f in config.__dataclass_fields__}
    data.setdefault(implementation, {}).setdefault(device_kind, {})[shape_key(m, n, k)] = fields
    table.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
