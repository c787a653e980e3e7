"""INT8 attention matmuls: the scores `Q K^T` and the context `P V` as INT8 x INT8 -> INT32.

A precision map puts them in INT8 with the pseudo-sites `attn_scores` and `attn_context`
(`samp_jax.core.precision.ATTENTION_SITES`). Every scale is dynamic or fixed, so nothing is
calibrated, and each dequantization is exact (one scale per row of one operand and per column
of the other, taken out of the INT32 sum):

- scores: Q and K quantized per (batch, head, token) over `head_dim` (the per-token quantizer
  of the INT8 GEMM sites, `pallas_kernels.numerics.quantize_rows`), the INT32 accumulator
  dequantized by the outer product of the two row scales, times the softmax scale. The bias
  (MPNet's, DeBERTa's relative terms), the mask and the softmax follow in float32.
- context: the unnormalised probabilities `exp(l - max)` lie in [0, 1], so they take the fixed
  scale 1/127 (`PROBABILITY_SCALE`: the largest, 1, is 127); V is quantized per (batch, head,
  `head_dim` channel) over the real keys (padding keys, which get no weight, set to zero), a
  per-output-channel scale. The INT32 accumulator is dequantized and divided by the sum of the
  *dequantized* probabilities, so that each row's weights sum to 1.

Rounding is half to even and values are symmetric in [-127, 127], as everywhere
(`pallas_kernels.numerics`); a non-finite Q, K or V row propagates as NaN. The accumulators
are exact for `head_dim` and key counts up to `pallas_kernels.numerics.MAX_K`.

`reference_int8_scores` and `reference_int8_context` are the NumPy references of the two ops
(float32 quantization steps as the conventions spell them, an int64 product, float64
dequantization); the tests hold the jitted ops to them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels.numerics import INV_INT8_MAX, SCALE_EPS, check_depth, quantize_rows

# The fixed scale of the unnormalised probabilities, which lie in [0, 1]: 1 becomes 127.
PROBABILITY_SCALE = INV_INT8_MAX


def quantize_values(v: jax.Array, key_mask: jax.Array | None, *, key_axis: int) -> tuple[jax.Array, jax.Array]:
    """V quantized per channel over the keys: `(q int8, scale float32)`, the scale with the key
    axis of size 1. Keys where `key_mask` (`[batch, keys]` bool, the keys on `key_axis` of `v`
    and batch on axis 0) is False count as zeros: padding does not set the scale."""
    if key_mask is not None:
        shape = [1] * v.ndim
        shape[0], shape[key_axis] = key_mask.shape
        v = jnp.where(key_mask.reshape(shape), v.astype(jnp.float32), 0.0)
    moved = jnp.moveaxis(v, key_axis, -1)  # the keys last: one row per channel
    q, scale = quantize_rows(moved)
    return jnp.moveaxis(q, -1, key_axis), jnp.moveaxis(scale, -1, key_axis)


def quantize_probabilities(unnormalised: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`exp(l - max)` (in [0, 1]) at the fixed scale `PROBABILITY_SCALE`: `(q int8, scale
    [..., 1])`, the scale NaN for a row holding NaN."""
    return quantize_rows(unnormalised, act_scale=PROBABILITY_SCALE)


def int8_scores_accumulator(q: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`(acc int32 [b, n, t, s], q_scale [b, n, t, 1], k_scale [b, n, s, 1])` of head-major
    `q` `[b, n, t, h]` and `k` `[b, n, s, h]`, each quantized per token over `h`."""
    check_depth(q.shape[-1], "the INT8 attention scores")
    qq, q_scale = quantize_rows(q)
    kq, k_scale = quantize_rows(k)
    acc = jax.lax.dot_general(qq, kq, (((3,), (3,)), ((0, 1), (0, 1))),
                              preferred_element_type=jnp.int32)
    return acc, q_scale, k_scale


def int8_scores(q: jax.Array, k: jax.Array, *, scale: float) -> jax.Array:
    """The scaled scores `scale * q k^T`, `[b, n, t, s]` float32, from INT8 Q and K
    (head-major `[b, n, seq, head_dim]`)."""
    acc, q_scale, k_scale = int8_scores_accumulator(q, k)
    return acc.astype(jnp.float32) * (q_scale * jnp.float32(scale)) * jnp.swapaxes(k_scale, -1, -2)


def int8_context_accumulator(unnormalised: jax.Array, v: jax.Array, key_mask: jax.Array | None
                             ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """`(acc int32 [b, n, t, h], p_sum int32 [b, n, t, 1], p_scale [b, n, t, 1], v_scale
    [b, n, 1, h])` of the unnormalised probabilities `[b, n, t, s]` and head-major `v`
    `[b, n, s, h]`; `key_mask` `[b, s]` bool (None: every key real)."""
    check_depth(v.shape[-2], "the INT8 attention context")
    pq, p_scale = quantize_probabilities(unnormalised)
    vq, v_scale = quantize_values(v, key_mask, key_axis=2)
    acc = jax.lax.dot_general(pq, vq, (((3,), (2,)), ((0, 1), (0, 1))),
                              preferred_element_type=jnp.int32)
    return acc, jnp.sum(pq, axis=-1, keepdims=True, dtype=jnp.int32), p_scale, v_scale


def int8_context(unnormalised: jax.Array, v: jax.Array, key_mask: jax.Array | None) -> jax.Array:
    """The normalised context `[b, n, t, h]` float32 from INT8 probabilities and V: the
    dequantized product over the sum of the dequantized probabilities."""
    acc, p_sum, p_scale, v_scale = int8_context_accumulator(unnormalised, v, key_mask)
    return normalised_context(acc, p_sum, p_scale, v_scale)


def normalised_context(acc, p_sum, p_scale, v_scale) -> jax.Array:
    """`acc * p_scale * v_scale / (p_sum * p_scale)`, float32: the dequantized context over
    the sum of the dequantized probabilities (at least 127 * p_scale: the row's largest is 1)."""
    total = p_sum.astype(jnp.float32) * p_scale
    return acc.astype(jnp.float32) * p_scale * v_scale / total


# ------------------------------------------------------------------------------ references

def _reference_rows(x, scale=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-row INT8 over the last axis as the conventions spell it, in float32: the scale
    `max|x| * float32(1/127)` (at least 1e-12) or the fixed `scale`, the values
    `round_half_even(x * float32(1 / scale))` clipped to +-127."""
    x = np.asarray(x, np.float32)
    if scale is None:
        amax = np.abs(x).max(axis=-1, keepdims=True)
        scale = np.maximum(amax * np.float32(INV_INT8_MAX), np.float32(SCALE_EPS))
    scale = np.broadcast_to(np.asarray(scale, np.float32), (*x.shape[:-1], 1))
    inverse = (np.float32(1.0) / scale).astype(np.float32)
    return np.clip(np.round(x * inverse), -127, 127).astype(np.int64), scale


def reference_int8_scores(q, k, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference of `int8_scores`: `(acc int64, scores float64)` of head-major `q`, `k`."""
    qq, qs = _reference_rows(q)
    kq, ks = _reference_rows(k)
    acc = np.einsum("bnth,bnsh->bnts", qq, kq)
    return acc, acc * qs.astype(np.float64) * np.swapaxes(ks, -1, -2).astype(np.float64) * scale


def reference_int8_context(unnormalised, v, key_mask=None) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference of `int8_context`: `(acc int64, context float64)`."""
    pq, ps = _reference_rows(unnormalised, PROBABILITY_SCALE)
    v = np.asarray(v, np.float32)
    if key_mask is not None:
        v = np.where(np.asarray(key_mask, bool)[:, None, :, None], v, np.float32(0))
    vq, vs = _reference_rows(np.swapaxes(v, -1, -2))  # [b, n, h, s]: a row per channel
    acc = np.einsum("bnts,bnhs->bnth", pq, vq)
    weights = pq * ps.astype(np.float64)  # the dequantized probabilities
    context = np.einsum("bnts,bnhs->bnth", weights, vq * vs.astype(np.float64))
    return acc, context / weights.sum(axis=-1, keepdims=True)
