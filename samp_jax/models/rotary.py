"""Rotary position embeddings (RoPE), as HF's default rope type computes them.

A query or key vector at position `p` is rotated pairwise: dimension `d` and `d + head_dim/2`
form a pair turned by the angle `p * theta**(-2d / head_dim)`. Attention scores then depend on
the offset between query and key only. ModernBERT uses one base `theta` in its global-attention
layers and another in its local ones.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=64)
def rotary_tables(seq_len: int, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """`(cos, sin)`, each `[seq, head_dim]` float32, for positions `0 .. seq-1`.

    Computed on the host in float64 and rounded once: static for a given length, so jit
    embeds them as constants. HF computes the angles in float32 (`inv_freq @ positions`);
    the difference is a float32 rounding of the angle (below 1e-7 relative up to 8k tokens).
    """
    if head_dim % 2:
        raise ValueError(f"rotary positions need an even {head_dim=}")
    # HF: inv_freq = 1 / theta ** (arange(0, dim, 2) / dim), computed in float32
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim))
    angles = np.arange(seq_len, dtype=np.float32)[:, None] * inv_freq[None, :].astype(np.float32)
    angles = np.concatenate([angles, angles], axis=-1)  # [seq, head_dim]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rotate_half(x: jax.Array) -> jax.Array:
    """`[-x2, x1]` for `x = [x1, x2]` split along the last axis."""
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rotary(x: jax.Array, cos: np.ndarray | jax.Array, sin: np.ndarray | jax.Array) -> jax.Array:
    """Rotates `x` `[batch, seq, heads, head_dim]` by the `[seq, head_dim]` tables, in float32;
    returns `x`'s dtype."""
    xf = x.astype(jnp.float32)
    cos = jnp.asarray(cos, jnp.float32)[None, :, None, :]
    sin = jnp.asarray(sin, jnp.float32)[None, :, None, :]
    return (xf * cos + rotate_half(xf) * sin).astype(x.dtype)
