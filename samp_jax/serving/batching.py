"""The one length-bucket batcher: tasks, evaluation, calibration and the engine all cut rows here.

Rows are ordered (by length, unless an order is given), cut into chunks of at most
`batch_size`, and each chunk is padded to a sequence bucket (the smallest that holds its
longest row) and to a batch size (exactly `batch_size`, or the smallest of `batch_buckets`).
Few distinct shapes means few compilations. In length order the one short chunk is the last
(the longest rows) or the first (the shortest), whichever pads fewer tokens: padded to
`batch_size` rows, a short chunk of the longest rows would pad whole rows at the longest bucket.
Rows longer than `ATTENTION_ROWS_AT` tokens go fewer to a batch (`rows_for_length`): attention
holds `[batch, heads, seq, seq]` scores, so a batch of `batch_size` rows of 8,192 tokens needs
256 times the memory of one of 512 tokens.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Callable, Iterator, Mapping, Sequence

import jax
import numpy as np

from samp_jax.serving.sharding import as_sharded, round_batch_size

DEFAULT_BUCKETS = (32, 64, 128, 256, 512)
# Steps of at most 1.5x above 16 (the default's doublings pad a row up to 2x its tokens), up
# to ModernBERT's 8,192: for a run over many rows known up front (`samp-jax predict`), where
# compute outweighs the compilation of the few more buckets its rows reach.
FINE_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
                4096, 6144, 8192)


ATTENTION_ROWS_AT = 512  # tokens: up to this length a batch takes all its rows


def rows_for_length(batch_size: int, seq: int) -> int:
    """The rows a batch padded to `seq` tokens takes: `batch_size` up to `ATTENTION_ROWS_AT`
    tokens; past it, as many as hold the attention scores of `batch_size` rows of that length
    (a quarter at twice the length), at least one."""
    return max(1, min(batch_size, batch_size * ATTENTION_ROWS_AT ** 2 // seq ** 2))


BALANCED_MULTIPLE = 8  # rows: a balanced batch size is a multiple of this


def balanced_batch_size(rows: int, most: int, multiple: int = BALANCED_MULTIPLE) -> int:
    """The batch size that cuts `rows` rows into as few batches as `most` rows each allow,
    each batch as small as holds its share, rounded up to a multiple of `multiple` (never
    above `most`): 40 rows at most 64 a batch go in one batch of 40, 100 in two of 56, not in
    padded batches of 64. For data that every candidate of a search runs on many times.

    Raises:
      ValueError: `most` or `multiple` not positive, or `rows` negative.
    """
    if most < 1 or multiple < 1 or rows < 0:
        raise ValueError(f"need most >= 1, multiple >= 1 and rows >= 0, got {most=}, "
                         f"{multiple=}, {rows=}")
    if rows == 0:
        return most
    batches = -(-rows // most)
    share = -(-rows // batches)
    return min(most, -(-share // multiple) * multiple)


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


def capped_buckets(buckets: Sequence[int], limit: int) -> list[int]:
    """`buckets` below `limit`, then `limit` itself when some bucket reached it: the lengths a
    model (or tokenizer) that takes at most `limit` tokens can be padded to."""
    kept = [b for b in sorted(buckets) if b < limit]
    return kept + [limit] if len(kept) < len(buckets) else kept


def buckets_to(limit: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> list[int]:
    """The sequence buckets for rows of at most `limit` tokens: `buckets` below `limit`, then
    doublings of the largest while below it (1024, 2048, ... for a long-context model), and
    `limit` itself as the last: every row up to `limit` tokens fits one."""
    ladder = sorted(buckets)
    while ladder[-1] < limit:
        ladder.append(2 * ladder[-1])
    return capped_buckets(ladder, limit)


def bucket_batches(arrays: Mapping[str, np.ndarray], lengths: np.ndarray, *, batch_size: int,
                   seq_buckets: Sequence[int] = DEFAULT_BUCKETS,
                   batch_buckets: Sequence[int] | None = None, order: np.ndarray | None = None,
                   pad_values: Mapping[str, int] | None = None, per_row: Sequence[str] = (),
                   max_rows: Callable[[int], int] | None = None,
                   ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Cuts rows into padded, bucket-shaped batches.

    Args:
      arrays: name -> `[N, width]` per-token arrays (right-padded) or `[N]` per-row arrays.
      lengths: `[N]` real tokens per row.
      batch_size: most rows per batch.
      seq_buckets: sequence lengths a batch may be padded to; each batch takes the smallest
        that holds its longest row (a row longer than every bucket raises `ValueError`).
      batch_buckets: batch sizes a batch may be padded to (the smallest that fits); None pads
        every batch to exactly `batch_size` rows.
      order: the row order to cut in, chunks of `batch_size` from its start; default: stable
        sort by length (little padding), the one short chunk at whichever end pads less.
      pad_values: fill value per array name for padded rows and positions (default 0).
      per_row: names of arrays that hold one row of any width per example (`[N, ...]`, e.g.
        a multi-hot label row): padded with rows, never cut to the sequence bucket.
      max_rows: in length order (no `order` given), the most rows a batch padded to a given
        sequence bucket may take (e.g. `rows_for_length`); where it is below `batch_size` for
        the longest rows, the rows are cut from the shortest up into chunks that fit it
        (rounded down to a batch bucket), each padded to that many rows, not `batch_size`.

    Yields:
      `(rows, batch)`: `rows` are the input indices of the batch's real rows (its first
      `len(rows)` rows); `batch` maps each name to `[batch, seq]` (or `[batch]`) arrays.
    """
    if batch_size < 1:
        raise ValueError(f"{batch_size=} must be positive")
    lengths = np.asarray(lengths)
    starts = list(range(0, len(lengths) if order is None else len(order), batch_size))
    capped = None
    if order is None:
        order = np.argsort(lengths, kind="stable")
        short = len(order) % batch_size
        if max_rows is not None and len(order):
            capped = _capped_starts(lengths, order, batch_size, seq_buckets, batch_buckets,
                                    max_rows)
        if capped is not None:
            starts = capped
        elif short:  # the short chunk last (the longest rows) or first, whichever pads less
            first = [0, *range(short, len(order), batch_size)]
            padded = lambda cut: sum(  # noqa: E731
                _rows_out(end - start, batch_size, batch_buckets)
                * bucket_for(int(lengths[order[end - 1]]), seq_buckets)
                for start, end in zip(cut, [*cut[1:], len(order)]))
            starts = first if padded(first) < padded(starts) else starts
    pad_values = pad_values or {}
    for start, end in zip(starts, [*starts[1:], len(order)]):
        rows = order[start:end]
        seq = bucket_for(int(lengths[rows].max()), seq_buckets)
        fits = batch_size if capped is None else _fitted(max_rows(seq), batch_size, batch_buckets)
        rows_out = _rows_out(len(rows), fits, batch_buckets)
        batch = {}
        for name, value in arrays.items():
            per_token = value.ndim == 2 and name not in per_row
            shape = (rows_out, seq) if per_token else (rows_out, *value.shape[1:])
            block = np.full(shape, pad_values.get(name, 0), value.dtype)
            if per_token:
                keep = min(seq, value.shape[1])
                block[:len(rows), :keep] = value[rows, :keep]
            else:
                block[:len(rows)] = value[rows]
            batch[name] = block
        yield rows, batch


def _fitted(rows: int, batch_size: int, batch_buckets: Sequence[int] | None) -> int:
    """`rows` at most `batch_size`, rounded down to a batch bucket (at least the smallest)."""
    rows = min(rows, batch_size)
    if batch_buckets is None:
        return rows
    below = [b for b in batch_buckets if b <= rows]
    return max(below) if below else min(batch_buckets)


def _capped_starts(lengths, order, batch_size, seq_buckets, batch_buckets,
                   max_rows) -> list[int] | None:
    """Chunk starts in length order under `max_rows`, or None where the longest rows take a
    whole batch (nothing to cap: the usual cut, its short chunk placed where it pads less)."""
    fit = lambda start, take: _fitted(max_rows(bucket_for(  # noqa: E731
        int(lengths[order[start + take - 1]]), seq_buckets)), batch_size, batch_buckets)
    if fit(len(order) - 1, 1) >= batch_size:
        return None
    starts, start = [], 0
    while start < len(order):
        take = min(batch_size, len(order) - start)
        while fit(start, take) < take:  # the most rows whose longest fits as many
            take -= 1
        starts.append(start)
        start += take
    return starts


def _rows_out(rows: int, batch_size: int, batch_buckets: Sequence[int] | None) -> int:
    """The batch size a chunk of `rows` rows is padded to."""
    return batch_size if batch_buckets is None else bucket_for(rows, batch_buckets)


def length_batches(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
                   batch_size: int = 64, buckets: Sequence[int] = DEFAULT_BUCKETS,
                   truncation: bool = False, max_length: int | None = None,
                   ) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Tokenizes `texts` (and `pairs`) and cuts them with `bucket_batches`.

    Rows take at most `max_length` tokens (default: the tokenizer's `max_length`; longer rows
    are cut with `truncation`, else refused), and the buckets run up to it (`buckets_to`).
    Every batch has exactly `batch_size` rows (the short one is filled with all-padding rows).
    Returns `(row_indices, batch)` pairs.
    """
    rows = TokenizedRows.of(tokenizer, texts, pairs, truncation=truncation,
                            max_length=max_length, buckets=buckets)
    return list(rows.batches(batch_size))


@dataclasses.dataclass(frozen=True)
class TokenizedRows:
    """Rows tokenized once, at most `buckets[-1]` tokens each, padded to the longest row.

    Attributes:
      arrays: the model inputs, `[N, longest row]`.
      truncated: `[N]` bool: the row was longer than the limit and was cut.
      buckets: the sequence buckets up to the limit (`buckets_to`).
      pad_id: the tokenizer's padding id, which padded positions hold.
    """

    arrays: dict[str, np.ndarray]
    truncated: np.ndarray
    buckets: list[int]
    pad_id: int

    @classmethod
    def of(cls, tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
           truncation: bool = False, max_length: int | None = None,
           buckets: Sequence[int] = DEFAULT_BUCKETS) -> "TokenizedRows":
        """`texts` (and `pairs`) tokenized at most `max_length` tokens a row (default and
        ceiling: the tokenizer's `max_length`); a longer row is cut with `truncation`, else
        refused (`ValueError`)."""
        if not len(texts):
            raise ValueError("no texts to tokenize")
        limit = tokenizer.max_length if max_length is None else min(max_length, tokenizer.max_length)
        arrays = tokenizer(texts, pairs, truncation=truncation, max_length=limit,
                           return_truncated=True)
        truncated = arrays.pop("truncated")
        return cls(arrays, truncated, buckets_to(limit, buckets), tokenizer.pad_id)

    @property
    def lengths(self) -> np.ndarray:
        """`[N]` tokens per row, after the cut."""
        return self.arrays["attention_mask"].sum(axis=1)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """`bucket_batches` of the rows, by length: `batch_size` rows each (fewer past 512
        tokens: `rows_for_length`)."""
        if batch_size < 1:
            raise ValueError(f"{batch_size=} must be positive")
        return bucket_batches(self.arrays, self.lengths, batch_size=batch_size,
                              seq_buckets=self.buckets, pad_values={"input_ids": self.pad_id},
                              max_rows=lambda seq: rows_for_length(batch_size, seq))


def run_batched(forward: Callable[[dict], jax.Array], tokenizer, texts: Sequence[str],
                pairs: Sequence[str] | None = None, *, batch_size: int = 64,
                buckets: Sequence[int] = DEFAULT_BUCKETS, mesh=None) -> np.ndarray:
    """Runs `forward` (e.g. from `jit_forward`) over all texts; returns rows in input order.

    Only sequence-level outputs (`[batch, ...]` not indexed by token) are gathered here.
    With `mesh` (data parallel, see `samp_jax.serving.sharding`), `forward` is the model or a
    `sharded_forward(model, mesh)`, and `batch_size` is rounded up to a multiple of the
    device count.
    """
    if mesh is not None:
        forward = as_sharded(forward, mesh)
        batch_size = round_batch_size(batch_size, forward.num_shards)
    results: np.ndarray | None = None
    for rows, batch in length_batches(tokenizer, texts, pairs, batch_size=batch_size,
                                      buckets=buckets):
        output = np.asarray(forward(batch))[:len(rows)]
        if results is None:
            results = np.zeros((len(texts), *output.shape[1:]), output.dtype)
        results[rows] = output
    return results
