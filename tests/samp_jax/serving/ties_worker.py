"""Per-token dynamic INT8 of rows on a .5 rounding tie, under `jit` on one device and inside
`shard_map` over 4 (`test_sharding.py` runs this in a subprocess: pytest's JAX has one device):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu \\
        python -m tests.samp_jax.serving.ties_worker OUT_DIR

The rows are `[m, m / 2]` in float16, for every float16 `m` in [1, 4) whose half quotients so
close to 63.5 by the row's scale `s` that `x / s` and `x * (1 / s)` round to different INT8
values. Each program runs an INT8 site as the `xla` GEMM does: the rows are quantized, and the
INT8 product is dequantized by the same scale (the scale's second use, which the multi-device
program's common-subexpression pass shares with the quantization's). Writes OUT_DIR/ties.npz:
`rows`, and `q`, `scale` (the quantized rows) and `y` (the GEMM's output) from each program.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from pallas_kernels.int8_matmul import int8_matmul_reference
from pallas_kernels.numerics import INV_INT8_MAX, quantize_rows
from samp_jax.core.primitives import quantize_weight_int8


def tie_rows() -> np.ndarray:
    """`[m, m / 2]` for every float16 `m` in [1, 4) whose half lands on either side of 63.5
    depending on how it is divided by the row's scale (a multiple of 4 rows, the device count)."""
    low, high = np.array([1, 4], np.float16).view(np.uint16)
    m = np.arange(low, high, dtype=np.uint16).view(np.float16)
    scale = m.astype(np.float32) * np.float32(INV_INT8_MAX)
    half = (m / np.float16(2)).astype(np.float32)
    split = np.round(half / scale) != np.round(half * (np.float32(1) / scale))
    m = m[split][:split.sum() // 4 * 4]
    return np.stack([m, m / np.float16(2)], axis=1).astype(np.float16)


def main(out_dir: Path) -> None:
    rows = tie_rows()
    weight = quantize_weight_int8(jnp.asarray([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]]))  # [K=2, N=3]

    def site(x):
        q, scale = quantize_rows(x)
        y = int8_matmul_reference(q, weight.qvalue, scale, weight.scale, out_dtype=jnp.float32)
        return q, scale, y

    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    sharded = jax.jit(jax.shard_map(site, mesh=mesh, in_specs=P("data"), out_specs=P("data")))
    outputs = {"jit": jax.jit(site)(rows),
               "sharded": sharded(jax.device_put(rows, NamedSharding(mesh, P("data"))))}
    arrays = {"rows": rows}
    for program, (q, scale, y) in outputs.items():
        arrays |= {f"q_{program}": np.asarray(q), f"scale_{program}": np.asarray(scale),
                   f"y_{program}": np.asarray(y)}
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "ties.npz", **arrays)


if __name__ == "__main__":
    from tests import small_programs
    small_programs.install()  # as in the pytest process that starts this one
    main(Path(sys.argv[1]))
