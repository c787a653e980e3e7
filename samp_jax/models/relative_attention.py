"""DeBERTa's disentangled attention, as pieces the shared encoder layer uses.

A relative-position embedding table (`2 k` rows for an attention span `k`), shared by every
layer and optionally layer-normed, is projected per layer into position keys and position
queries. The attention scores then gain two terms beside content-to-content `q·k`:

- content-to-position (`c2p`): `q_i · pos_key[k + δ(i, j)]`,
- position-to-content (`p2c`): `k_j · pos_query[k + δ(i, j)]`,

with `δ(i, j)` the (log-bucketed) relative distance `i - j` clipped to the span, and every term
divided by `sqrt(head_dim * (1 + number of terms))` (HF `DisentangledSelfAttention`).

GEMM sites: with `share_att_key` (DeBERTa-v3 and the released v2 checkpoints) the position
projections use the layer's own query/key weights, i.e. the `qkv` site's weights at that site's
weight precision (dequantized when INT8/FP8). Their input, the relative table, does not depend
on the batch, so it is never activation-quantized: it stays float32 and is not observed by
calibration. Without `share_att_key`, each layer has float `pos_key` / `pos_query` projections
of its own, outside the precision map.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pallas_kernels.numerics import to_rank
from samp_jax.models.config import INIT_STD, EncoderConfig


def log_bucket_position(relative: np.ndarray, bucket_size: int, max_position: int) -> np.ndarray:
    """HF `make_log_bucket_position`: distances below `bucket_size // 2` are exact, larger ones
    fall into logarithmic buckets up to `max_position`; the sign is kept."""
    sign = np.sign(relative)
    mid = bucket_size // 2
    abs_pos = np.where((relative < mid) & (relative > -mid), mid - 1, np.abs(relative)).astype(np.float32)
    # float32 throughout, as torch computes it (a float64 log could round a bucket edge apart)
    log_pos = np.ceil(np.log(abs_pos / np.float32(mid)) / np.log(np.float32((max_position - 1) / mid))
                      * np.float32(mid - 1)) + mid
    return np.where(abs_pos <= mid, relative, log_pos * sign).astype(np.int64)


def relative_positions(seq_len: int, *, buckets: int, max_distance: int) -> np.ndarray:
    """The relative position `query - key` (HF `build_relative_position`), log-bucketed when
    `buckets > 0`, of the pairs at each offset `key - query`: `[2 seq - 1]`, entry `m` for the
    offset `m - (seq - 1)`, the layout `by_pair` reads. A pair's position depends on its offset
    only, so this stands for the `[seq, seq]` matrix. Static: a function of the length only."""
    relative = np.arange(seq_len - 1, -seq_len, -1, dtype=np.int64)
    if buckets > 0 and max_distance > 0:
        relative = log_bucket_position(relative, buckets, max_distance)
    return relative


def by_pair(by_offset: jax.Array) -> jax.Array:
    """`[..., seq, seq]` with `out[..., r, c] = by_offset[..., r, c - r + seq - 1]`, from values
    `[..., seq, 2 seq - 1]` laid out by the offset `c - r` (entry `m` for `m - (seq - 1)`).

    A relative shift: the rows padded by one entry, then read back from entry `seq - 1` at a
    stride one shorter, so that row `r` starts at its column `seq - 1 - r`. Only a pad,
    reshapes and slices: no `[seq, seq]` index, as a gather would need (a constant one, once
    per layer and term, makes long lengths slow to compile, and such a gather runs slower on
    CPU than the shift)."""
    *lead, seq, width = by_offset.shape
    padded = jnp.pad(by_offset, [(0, 0)] * (len(lead) + 1) + [(0, 1)])  # [..., seq, 2 seq]
    flat = padded.reshape(*lead, seq * (width + 1))[..., seq - 1:seq - 1 + seq * width]
    return flat.reshape(*lead, seq, width)[..., :seq]


@dataclasses.dataclass(frozen=True)
class RelativeTerms:
    """One layer's projected positions and what it needs to turn them into score terms.

    Attributes:
      pos_key: `[2 span, heads, head_dim]` float32, for `c2p`; None without it.
      pos_query: `[2 span, heads, head_dim]` float32, for `p2c`; None without it.
      span: the attention span `k`.
      buckets, max_distance: the bucketing of relative distances.
      scale_factor: `1 + number of relative terms`: every term, `q·k` included, is divided by
        `sqrt(head_dim * scale_factor)`.
    """

    pos_key: jax.Array | None
    pos_query: jax.Array | None
    span: int
    buckets: int
    max_distance: int
    scale_factor: int

    def scale(self, head_dim: int) -> float:
        """The attention scale `1 / sqrt(head_dim * scale_factor)`."""
        return 1.0 / math.sqrt(head_dim * self.scale_factor)

    def bias(self, q: jax.Array, k: jax.Array) -> jax.Array:
        """The relative score terms `[batch, heads, seq, seq]` float32, already scaled, for
        `q`, `k` `[batch, seq, heads, head_dim]`."""
        relative = relative_positions(q.shape[1], buckets=self.buckets, max_distance=self.max_distance)
        last = 2 * self.span - 1
        total = jnp.zeros((q.shape[0], q.shape[2], q.shape[1], q.shape[1]), jnp.float32)
        if self.pos_key is not None:  # c2p[b, h, i, j] = q_i . pos_key[span + rel(i - j)]
            index = np.clip(self.span + relative, 0, last)
            total = total + _gathered_scores(q, self.pos_key, index)
        if self.pos_query is not None:  # p2c[b, h, i, j] = k_j . pos_query[span - rel(j - i)]
            index = np.clip(self.span - relative, 0, last)  # keys as rows, queries as columns
            total = total + jnp.swapaxes(_gathered_scores(k, self.pos_query, index), -1, -2)
        return total * self.scale(q.shape[-1])


def _gathered_scores(x: jax.Array, positions: jax.Array, index: np.ndarray) -> jax.Array:
    """`out[b, h, r, c] = x[b, r, h] . positions[index[c - r + seq - 1], h]`, float32, for a
    static `index` by offset (`relative_positions`' layout).

    Only the rows of `positions` that `index` reaches are multiplied: a sequence shorter than
    the span reaches `2 seq - 1` of its `2 span` rows."""
    low, high = int(index.min()), int(index.max())
    scores = jnp.einsum("bqhd,phd->bhqp", x.astype(jnp.float32), positions[low:high + 1],
                        precision=jax.lax.Precision.HIGHEST)  # [batch, heads, seq, used rows]
    by_offset = jnp.take(scores, jnp.asarray(index - low, jnp.int32), axis=-1)  # [.., seq, 2 seq - 1]
    return by_pair(by_offset)


class DisentangledPositions(nnx.Module):
    """The relative embedding table shared by every layer (`embeddings`, `[2 span, hidden]`),
    its LayerNorm (`norm`, with `norm_rel_ebd`), and, without `share_att_key`, per-layer
    position projections (`key_proj` for `c2p`, `query_proj` for `p2c`: float GemmSites
    `pos_key` / `pos_query`, outside the precision map)."""

    def __init__(self, config: EncoderConfig, *, layer_norm, gemm_site, rngs: nnx.Rngs):
        hidden, span = config.hidden_size, config.relative_span
        self.embeddings = nnx.Param(INIT_STD * jax.random.truncated_normal(
            rngs.params(), -2.0, 2.0, (2 * span, hidden), jnp.float32))  # [2 span, hidden]
        self.norm = layer_norm(hidden) if config.norm_rel_ebd == "layer_norm" else None
        types = config.pos_att_type
        separate = not config.share_att_key
        per_layer = lambda name: nnx.List([  # noqa: E731
            gemm_site(name, hidden, hidden) for _ in range(config.num_layers)])
        self.key_proj = per_layer("pos_key") if separate and "c2p" in types else None
        self.query_proj = per_layer("pos_query") if separate and "p2c" in types else None
        self.pos_att_type = tuple(types)
        self.share_att_key = config.share_att_key
        self.span = span
        self.buckets = config.position_buckets
        self.max_distance = (config.max_relative_positions if config.max_relative_positions > 0
                             else config.max_position_embeddings)
        self.num_heads = config.num_heads

    def table(self) -> jax.Array:
        """The relative embeddings `[2 span, hidden]` float32, layer-normed when configured."""
        table = self.embeddings[...].astype(jnp.float32)
        if self.norm is None:
            return table
        return self.norm(table).astype(jnp.float32)

    def terms(self, index: int, qkv_site, table: jax.Array) -> RelativeTerms:
        """Layer `index`'s position keys/queries: through its `qkv` site's query/key weights
        (`share_att_key`), else through its own projections."""
        hidden = table.shape[-1]
        heads = lambda x: x.reshape(x.shape[0], self.num_heads, -1)  # noqa: E731
        pos_key = pos_query = None
        if self.share_att_key:
            kernel, bias = qkv_site.dense_weight()  # [hidden, 3 hidden]: [Q | K | V]
            projected = jnp.dot(table, kernel[:, :2 * hidden],
                                precision=jax.lax.Precision.HIGHEST) + to_rank(bias[:2 * hidden], 2)
            if "p2c" in self.pos_att_type:
                pos_query = heads(projected[:, :hidden])
            if "c2p" in self.pos_att_type:
                pos_key = heads(projected[:, hidden:])
        else:
            if self.key_proj is not None:
                pos_key = heads(_project(self.key_proj[index], table))
            if self.query_proj is not None:
                pos_query = heads(_project(self.query_proj[index], table))
        return RelativeTerms(pos_key, pos_query, self.span, self.buckets, self.max_distance,
                             1 + len(self.pos_att_type))


def _project(site, table: jax.Array) -> jax.Array:
    kernel, bias = site.dense_weight()
    return jnp.dot(table, kernel, precision=jax.lax.Precision.HIGHEST) + bias
