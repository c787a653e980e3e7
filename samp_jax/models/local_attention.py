"""Sliding-window (local) attention: each query sees the keys within `window // 2` positions.

Two forms with the same result at every real position:
- `band_mask`: the `[seq, seq]` window as a boolean built from two iotas (XLA fuses the compare
  into the masked softmax, so no float mask of that size is stored); used for short sequences.
- `blockwise_local_attention`: queries in blocks of `block >= window // 2` tokens, each against
  only the three key blocks around it (`3 * block` keys), so logits are `[seq, 3 * block]`
  instead of `[seq, seq]`: linear in the length. Used once a sequence is longer than those
  three blocks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_MASKED = jnp.finfo(jnp.float32).min


def band_mask(seq_len: int, window: int) -> jax.Array:
    """`[seq, seq]` bool: True where `|query - key| <= window // 2` (HF ModernBERT's rule)."""
    positions = jax.lax.iota(jnp.int32, seq_len)
    return jnp.abs(positions[:, None] - positions[None, :]) <= window // 2


def block_size(window: int) -> int:
    """The query block of `blockwise_local_attention`: half the window (at least 1), so the
    keys a block needs lie in it and its two neighbours."""
    return max(window // 2, 1)


def use_blockwise(seq_len: int, window: int) -> bool:
    """Whether blocks save work: the sequence is longer than the `3 * block` keys a block reads."""
    return seq_len > 3 * block_size(window)


def blockwise_local_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
                              window: int) -> jax.Array:
    """Local attention over `[batch, seq, heads, head_dim]` tensors in query blocks.

    `mask` is `[batch, seq]` bool (True: a real token). Logits, softmax and accumulation are
    float32 as in `layers.xla_attention`; returns `[batch, seq, heads, head_dim]` float32.
    A query sees key `j` when `|i - j| <= window // 2` and `mask[j]`.
    """
    batch, seq, heads, head_dim = q.shape
    half, block = window // 2, block_size(window)
    blocks = math.ceil(seq / block)
    padded = blocks * block
    full = q.dtype == jnp.float32
    precision = jax.lax.Precision.HIGHEST if full else None
    scale = 1.0 / math.sqrt(head_dim)

    def key_slabs(t):  # [batch, seq, ...] -> [batch, blocks, 3 * block, ...]: blocks i-1, i, i+1
        widths = [(0, 0)] * t.ndim
        widths[1] = (block, block + padded - seq)
        t = jnp.pad(t, widths).reshape(batch, blocks + 2, block, *t.shape[2:])
        return jnp.concatenate([t[:, :-2], t[:, 1:-1], t[:, 2:]], axis=2)

    qb = jnp.pad(q, ((0, 0), (0, padded - seq), (0, 0), (0, 0))).reshape(
        batch, blocks, block, heads, head_dim)
    ks, vs, ms = key_slabs(k), key_slabs(v), key_slabs(mask)  # ms: [batch, blocks, 3 * block]
    if full:
        qb = qb * scale
    logits = jnp.einsum("bnqhd,bnkhd->bhnqk", qb, ks, precision=precision,
                        preferred_element_type=jnp.float32)
    if not full:
        logits = logits * scale
    # query i*B + a, key (i-1)*B + c: the offset is c - B - a
    a = jax.lax.iota(jnp.int32, block)[:, None]
    c = jax.lax.iota(jnp.int32, 3 * block)[None, :]
    band = jnp.abs(c - block - a) <= half  # [block, 3 * block], the same for every block
    allowed = band[None, None, None] & ms[:, None, :, None, :]  # [batch, 1, blocks, block, 3B]
    logits = jnp.where(allowed, logits, _MASKED)
    unnormalised = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    total = jnp.sum(unnormalised, axis=-1, keepdims=True)
    context = jnp.einsum("bhnqk,bnkhd->bnqhd", unnormalised.astype(vs.dtype), vs,
                         precision=precision, preferred_element_type=jnp.float32)
    context = context / jnp.moveaxis(total, 1, 3)  # total [b, h, n, q, 1] -> [b, n, q, h, 1]
    return context.reshape(batch, padded, heads, head_dim)[:, :seq]
