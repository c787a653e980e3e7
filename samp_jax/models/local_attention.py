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

from pallas_kernels.numerics import check_depth, quantize_rows
from samp_jax.models.int8_attention import normalised_context, quantize_probabilities, quantize_values

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
                              window: int, int8_scores: bool = False,
                              int8_context: bool = False) -> jax.Array:
    """Local attention over `[batch, seq, heads, head_dim]` tensors in query blocks.

    `mask` is `[batch, seq]` bool (True: a real token). Logits, softmax and accumulation are
    float32 as in `layers.xla_attention`; returns `[batch, seq, heads, head_dim]` float32.
    A query sees key `j` when `|i - j| <= window // 2` and `mask[j]`.

    The scores run in the dtype of `q` and `k`, the context in that of `v`, or in INT8
    (`int8_scores`, `int8_context`) as `samp_jax.models.int8_attention` defines them: Q and K
    per token, V per channel over the real keys of the whole sequence, the probabilities at
    1/127; the same numbers as the unblocked INT8 attention.
    """
    batch, seq, heads, head_dim = q.shape
    half, block = window // 2, block_size(window)
    blocks = math.ceil(seq / block)
    padded = blocks * block
    scale = 1.0 / math.sqrt(head_dim)

    def key_slabs(t):  # [batch, seq, ...] -> [batch, blocks, 3 * block, ...]: blocks i-1, i, i+1
        widths = [(0, 0)] * t.ndim
        widths[1] = (block, block + padded - seq)
        t = jnp.pad(t, widths).reshape(batch, blocks + 2, block, *t.shape[2:])
        return jnp.concatenate([t[:, :-2], t[:, 1:-1], t[:, 2:]], axis=2)

    def query_blocks(t):  # [batch, seq, heads, x] -> [batch, blocks, block, heads, x]
        return jnp.pad(t, ((0, 0), (0, padded - seq), (0, 0), (0, 0))).reshape(
            batch, blocks, block, heads, t.shape[-1])

    ms = key_slabs(mask)  # [batch, blocks, 3 * block]
    if int8_scores:  # per token over head_dim; scales [batch, blocks, block|3B, heads, 1]
        check_depth(head_dim, "the INT8 attention scores")
        (qq, q_scale), (kq, k_scale) = quantize_rows(q), quantize_rows(k)
        acc = jnp.einsum("bnqhd,bnkhd->bhnqk", query_blocks(qq), key_slabs(kq),
                         preferred_element_type=jnp.int32)
        q_scale = jnp.moveaxis(query_blocks(q_scale) * jnp.float32(scale), 3, 1)  # [b, h, n, q, 1]
        k_scale = jnp.moveaxis(key_slabs(k_scale), 3, 1)[..., 0][:, :, :, None, :]  # [b, h, n, 1, 3B]
        logits = acc.astype(jnp.float32) * q_scale * k_scale
    else:
        full = q.dtype == jnp.float32
        precision = jax.lax.Precision.HIGHEST if full else None
        qb = query_blocks(q)
        if full:
            qb = qb * scale
        logits = jnp.einsum("bnqhd,bnkhd->bhnqk", qb, key_slabs(k), precision=precision,
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
    if int8_context:
        check_depth(seq, "the INT8 attention context")
        pq, p_scale = quantize_probabilities(unnormalised)  # p_scale [b, h, n, q, 1]
        vq, v_scale = quantize_values(v, mask, key_axis=1)  # v_scale [b, 1, h, d]
        acc = jnp.einsum("bhnqk,bnkhd->bnqhd", pq, key_slabs(vq), preferred_element_type=jnp.int32)
        p_sum = jnp.moveaxis(jnp.sum(pq, axis=-1, keepdims=True, dtype=jnp.int32), 1, 3)
        context = normalised_context(acc, p_sum, jnp.moveaxis(p_scale, 1, 3), v_scale[:, :, None])
    else:
        precision = jax.lax.Precision.HIGHEST if v.dtype == jnp.float32 else None
        total = jnp.sum(unnormalised, axis=-1, keepdims=True)
        context = jnp.einsum("bhnqk,bnkhd->bnqhd", unnormalised.astype(v.dtype), key_slabs(v),
                             precision=precision, preferred_element_type=jnp.float32)
        context = context / jnp.moveaxis(total, 1, 3)  # total [b, h, n, q, 1] -> [b, n, q, h, 1]
    return context.reshape(batch, padded, heads, head_dim)[:, :seq]
