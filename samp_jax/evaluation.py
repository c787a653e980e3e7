"""Batched, jit-compiled inference over many texts with padding to length buckets."""

from __future__ import annotations

import bisect
from typing import Callable, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from samp_jax.sharding import as_sharded, round_batch_size

DEFAULT_BUCKETS = (32, 64, 128, 256, 512)


def jit_forward(model) -> Callable[[dict], jax.Array]:
    """Splits `model` once and returns a jitted `batch -> output` function.

    One compilation per distinct input shape; the model's static structure (its precision
    map included) is part of the compiled function.
    """
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, input_ids, attention_mask, token_type_ids):
        return nnx.merge(graphdef, state)(input_ids, attention_mask, token_type_ids)

    return lambda batch: forward(state, batch["input_ids"], batch["attention_mask"],
                                 batch["token_type_ids"])


def bucket_for(size: int, buckets: Sequence[int]) -> int:
    """The smallest of `buckets` that is at least `size` (rows, or tokens).

    Raises:
      ValueError: `size` exceeds the largest bucket.
    """
    buckets = sorted(buckets)
    index = bisect.bisect_left(buckets, size)
    if index == len(buckets):
        raise ValueError(f"{size=} exceeds the largest bucket {buckets[-1]} of {tuple(buckets)}")
    return buckets[index]


def length_batches(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
                   batch_size: int = 64, buckets: Sequence[int] = DEFAULT_BUCKETS,
                   truncation: bool = False) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Tokenizes, sorts by length and cuts fixed-shape batches padded to length buckets.

    Every batch has exactly `batch_size` rows (the last is filled with all-padding rows), so
    the number of compiled shapes is at most `len(buckets)`. Returns `(row_indices, batch)`
    pairs, where `row_indices` maps the batch's real rows back to the input order.
    """
    if batch_size < 1:
        raise ValueError(f"{batch_size=} must be positive")
    encoded = tokenizer(texts, pairs, padding=max(buckets), truncation=truncation)
    lengths = encoded["attention_mask"].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    out = []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = bucket_for(int(lengths[rows].max()), buckets)
        batch = {}
        for key, value in encoded.items():
            block = np.zeros((batch_size, width), value.dtype)
            block[:len(rows)] = value[rows, :width]
            batch[key] = block
        out.append((rows, batch))
    return out


def run_batched(forward: Callable[[dict], jax.Array], tokenizer, texts: Sequence[str],
                pairs: Sequence[str] | None = None, *, batch_size: int = 64,
                buckets: Sequence[int] = DEFAULT_BUCKETS, mesh: Mesh | None = None) -> np.ndarray:
    """Runs `forward` (e.g. from `jit_forward`) over all texts; returns rows in input order.

    Only sequence-level outputs (`[batch, ...]` not indexed by token) are gathered here.
    With `mesh` (data parallel, see `samp_jax.sharding`), `forward` is the model or a
    `sharded_forward(model, mesh)`, and `batch_size` is rounded up to a multiple of the
    device count.
    """
    if mesh is not None:
        forward = as_sharded(forward, mesh)
        batch_size = round_batch_size(batch_size, forward.num_shards)
    results: np.ndarray | None = None
    for rows, batch in length_batches(tokenizer, texts, pairs, batch_size=batch_size, buckets=buckets):
        output = np.asarray(forward(batch))[:len(rows)]
        if results is None:
            results = np.zeros((len(texts), *output.shape[1:]), output.dtype)
        results[rows] = output
    return results


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic; ties count one half)."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        raise ValueError("ROC-AUC needs both positive and negative examples")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))
