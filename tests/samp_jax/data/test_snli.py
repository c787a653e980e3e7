import collections
import dataclasses

import numpy as np
import pytest

from samp_jax.data import (
    LABELS,
    PairExample,
    SNLISplits,
    embedding_eval_pairs,
    load_snli_file,
    snli_splits,
    unique_sentences,
)


def text_pairs(examples):
    return {(ex.premise, ex.hypothesis) for ex in examples}


@pytest.fixture(scope="module")
def splits() -> SNLISplits:
    return snli_splits()


def test_test_file_counts():
    test = load_snli_file("test")
    assert len(test) == 9824  # 10,000 minus 176 without a gold label
    counts = collections.Counter(LABELS[ex.label] for ex in test)
    assert counts == {"entailment": 3368, "contradiction": 3237, "neutral": 3219}
    assert all(isinstance(ex, PairExample) and ex.premise and ex.hypothesis for ex in test)


def test_train_subset_counts():
    train = load_snli_file("train_subset")
    assert len(train) == 99890  # 100,000 minus 110 without a gold label
    assert {ex.label for ex in train} == {0, 1, 2}


def test_load_is_cached_but_not_mutable():
    first = load_snli_file("test")
    first.clear()
    second = load_snli_file("test")
    assert len(second) == 9824
    assert second[0] is load_snli_file("test")[0]  # parsed once
    with pytest.raises(dataclasses.FrozenInstanceError):
        second[0].label = 1


def test_unknown_file():
    with pytest.raises(ValueError, match="which='dev' is not one of"):
        load_snli_file("dev")


def test_split_sizes(splits):
    assert len(splits.calibration) == 1024
    assert len(splits.search) == 2000
    assert len(splits.test) == 9824
    total = len(splits.train) + len(splits.calibration) + len(splits.search)
    assert total + splits.dropped_overlap + splits.dropped_duplicates == 99890
    small = snli_splits(seed=0, calibration_size=10, search_size=20)
    assert (len(small.calibration), len(small.search)) == (10, 20)


def test_splits_are_disjoint(splits):
    parts = (splits.train, splits.calibration, splits.search, splits.test)
    ids = [{ex.pair_id for ex in part} for part in parts]
    texts = [text_pairs(part) for part in parts]
    for i in range(len(parts)):
        assert len(ids[i]) == len(parts[i])
        assert len(texts[i]) == len(parts[i])
        for j in range(i):
            assert not ids[i] & ids[j], (i, j)
            assert not texts[i] & texts[j], (i, j)


def test_test_is_held_out(splits):
    test_texts = text_pairs(splits.test)
    for part in (splits.calibration, splits.search, splits.train):
        assert not text_pairs(part) & test_texts
    assert splits.test == tuple(load_snli_file("test"))


def test_splits_are_deterministic_and_seeded(splits):
    assert snli_splits(0) is splits  # cached
    again = snli_splits(seed=0, calibration_size=1024, search_size=2000)
    assert again.calibration == splits.calibration and again.search == splits.search
    other = snli_splits(seed=1)
    assert other.calibration != splits.calibration
    assert text_pairs(other.train + other.calibration + other.search) == text_pairs(
        splits.train + splits.calibration + splits.search)


@pytest.mark.parametrize("sizes", [(0, 10), (10, 0), (-1, 10), (10, -5)])
def test_non_positive_sizes(sizes):
    with pytest.raises(ValueError, match="must be positive"):
        snli_splits(0, *sizes)


def test_sizes_too_large():
    with pytest.raises(ValueError, match=r"calibration_size=90000 \+ search_size=9800 must be below"):
        snli_splits(0, 90000, 9800)


def test_embedding_eval_pairs_all(splits):
    premises, hypotheses, labels = embedding_eval_pairs(splits.test)
    assert labels.dtype == np.int32
    assert set(np.unique(labels)) == {0, 1}
    assert len(premises) == len(hypotheses) == len(labels) == 3368 + 3237
    assert int(labels.sum()) == 3368
    first = next(ex for ex in splits.test if ex.label != LABELS.index("neutral"))
    assert (premises[0], hypotheses[0]) == (first.premise, first.hypothesis)
    assert labels[0] == int(first.label == LABELS.index("entailment"))


def test_embedding_eval_pairs_balanced_and_deterministic(splits):
    premises, hypotheses, labels = embedding_eval_pairs(splits.test, max_pairs=500, seed=3)
    assert len(premises) == len(hypotheses) == 500
    assert int(labels.sum()) == 250
    again = embedding_eval_pairs(splits.test, max_pairs=500, seed=3)
    assert again[0] == premises and again[1] == hypotheses
    np.testing.assert_array_equal(again[2], labels)
    other = embedding_eval_pairs(splits.test, max_pairs=500, seed=4)
    assert other[1] != hypotheses
    lookup = {(ex.premise, ex.hypothesis): ex.label for ex in splits.test}
    for p, h, y in zip(premises, hypotheses, labels):
        assert lookup[(p, h)] == (0 if y == 1 else 2)
    assert int(embedding_eval_pairs(splits.test, max_pairs=7)[2].sum()) == 3


@pytest.mark.parametrize("max_pairs", [0, -2, 2 * 3237 + 2])
def test_embedding_eval_pairs_bad_size(splits, max_pairs):
    with pytest.raises(ValueError, match="max_pairs="):
        embedding_eval_pairs(splits.test, max_pairs=max_pairs)


def test_unique_sentences():
    a = PairExample("A dog runs.", "An animal moves.", 0, "1")
    b = PairExample("A dog runs.", "A cat sleeps.", 2, "2")
    c = PairExample("A cat sleeps.", "An animal moves.", 1, "3")
    assert unique_sentences([a, b, c]) == ["A dog runs.", "An animal moves.", "A cat sleeps."]
    assert unique_sentences([]) == []
