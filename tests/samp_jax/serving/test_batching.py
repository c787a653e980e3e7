"""`bucket_batches` under `rows_for_length`: rows past 512 tokens go fewer to a batch, so a
batch's attention scores (`[batch, heads, seq, seq]`) stay those of a batch of 512-token rows."""

import numpy as np
import pytest

from samp_jax.serving.batching import balanced_batch_size, bucket_batches, rows_for_length

BUCKETS = (128, 512, 1024, 2048, 8192)


def test_a_batch_takes_fewer_rows_as_the_square_of_its_length_grows():
    assert [rows_for_length(64, s) for s in (32, 512, 1024, 2048, 4096, 8192)] == [64, 64, 16, 4, 1, 1]
    assert rows_for_length(32, 1024) == 8 and rows_for_length(1, 8192) == 1


def _cut(lengths, **options):
    lengths = np.asarray(lengths)
    ids = np.ones((len(lengths), int(lengths.max())), np.int32)
    return [(rows, batch["input_ids"].shape) for rows, batch in bucket_batches(
        {"input_ids": ids}, lengths, seq_buckets=BUCKETS,
        max_rows=lambda seq: rows_for_length(options["batch_size"], seq), **options)]


@pytest.mark.parametrize("batch_buckets", [None, (1, 8, 64)])
def test_long_rows_are_cut_into_batches_that_fit_and_every_row_is_served_once(batch_buckets):
    lengths = [100] * 70 + [900] * 20 + [2000] * 5 + [8000] * 3
    cut = _cut(lengths, batch_size=64, batch_buckets=batch_buckets)
    served = np.concatenate([rows for rows, _ in cut])
    assert sorted(served.tolist()) == list(range(len(lengths)))
    for rows, (batch, seq) in cut:
        cap = rows_for_length(64, seq)
        fitted = cap if batch_buckets is None else max([1] + [b for b in batch_buckets if b <= cap])
        assert len(rows) <= batch <= max(fitted, 1), (len(rows), batch, seq)
    shapes = {shape for _, shape in cut}
    if batch_buckets is None:  # padded to the rows that fit, not to 64
        assert shapes == {(64, 128), (16, 1024), (4, 2048), (1, 8192)}
    else:  # rounded down to a batch bucket
        assert shapes == {(64, 128), (8, 1024), (1, 2048), (1, 8192)}


def test_rows_of_512_tokens_or_fewer_are_cut_as_before():
    lengths = [100] * 70 + [500] * 20
    plain = [(r.tolist(), s) for r, s in _cut_plain(lengths)]
    capped = [(r.tolist(), s) for r, s in _cut(lengths, batch_size=64)]
    assert capped == plain


def _cut_plain(lengths):
    lengths = np.asarray(lengths)
    ids = np.ones((len(lengths), int(lengths.max())), np.int32)
    return [(rows, batch["input_ids"].shape) for rows, batch in bucket_batches(
        {"input_ids": ids}, lengths, batch_size=64, seq_buckets=BUCKETS)]


@pytest.mark.parametrize("rows, most, expected", [
    (40, 64, 40), (100, 64, 56), (64, 64, 64), (65, 64, 40), (1, 64, 8), (400, 64, 64),
    (129, 64, 48), (0, 64, 64), (3, 4, 4), (7, 2, 2)])
def test_a_balanced_batch_size_keeps_the_fewest_batches_and_pads_least(rows, most, expected):
    size = balanced_batch_size(rows, most)
    assert size == expected
    if rows:
        assert -(-rows // size) == -(-rows // most)  # as few batches as `most` allows
        assert size <= most and (size % 8 == 0 or size == most)


def test_a_balanced_batch_size_refuses_what_is_not_a_size():
    for rows, most in ((10, 0), (-1, 64)):
        with pytest.raises(ValueError, match="need most >= 1"):
            balanced_batch_size(rows, most)
