"""The float work between GEMM sites, old spelling against current, timed in alternation.

    .venv/bin/python tools/studies/float_ops_ms.py

- attention at MiniLM's serving shape (32x128, 12 heads of 32): `jax.nn.dot_product_attention`
  (implementation="xla", what samp-jax used before) against `samp_jax.models.layers.xla_attention`;
- the FFN epilogue of an INT8 site (`[4096, 1536]` int32 accumulator -> dequantize + bias + GELU):
  `jax.nn.gelu(approximate=False)` against `pallas_kernels.numerics.apply_activation`.
Each pair runs alternately, `--rounds` times 3 calls; the medians, their ratio and the largest
difference of the outputs are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pallas_kernels.numerics import apply_activation  # noqa: E402
from samp_jax.models.layers import xla_attention  # noqa: E402


def alternate(pair: dict, args: tuple, rounds: int) -> dict[str, float]:
    samples = {name: [] for name in pair}
    for fn in pair.values():
        jax.block_until_ready(fn(*args))
    for _ in range(rounds):
        for name, fn in pair.items():
            start = time.perf_counter()
            for _ in range(3):
                out = fn(*args)
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - start) / 3 * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


def report(title: str, pair: dict, args: tuple, rounds: int) -> None:
    old, new = (np.asarray(fn(*args)) for fn in pair.values())
    ms = alternate(pair, args, rounds)
    (old_name, old_ms), (new_name, new_ms) = ms.items()
    print(f"{title}: {old_name} {old_ms:.2f} ms, {new_name} {new_ms:.2f} ms "
          f"({old_ms / new_ms:.2f}x); max |difference| {np.abs(old - new).max():.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((32, 128, 12, 32)), jnp.float32) for _ in range(3))
    mask = jnp.ones((32, 128), bool).at[::3, 100:].set(False)
    report("attention 32x128x12x32", {
        "jax.nn.dot_product_attention": jax.jit(lambda q, k, v, m: jax.nn.dot_product_attention(
            q, k, v, mask=m[:, None, None, :], implementation="xla")),
        "xla_attention": jax.jit(xla_attention)}, (q, k, v, mask), args.rounds)
    acc = jnp.asarray(rng.integers(-20000, 20000, (4096, 1536)), jnp.int32)
    scale = jnp.asarray(rng.random(1536) * 1e-5, jnp.float32)
    bias = jnp.asarray(rng.standard_normal(1536), jnp.float32)

    def epilogue(gelu):
        return jax.jit(lambda acc: gelu(acc.astype(jnp.float32) * scale + bias))
    report("INT8 FFN epilogue 4096x1536", {
        "jax.nn.gelu": epilogue(lambda y: jax.nn.gelu(y, approximate=False)),
        "apply_activation": epilogue(lambda y: apply_activation(y, "gelu"))}, (acc,), args.rounds)


if __name__ == "__main__":
    main()
