"""Carved splits hold each class (or tenth of the scores) in the pool's share
(`samp_jax.tasks.carving`): a rare class is in every split, and the test split still depends
only on the data, the seed and its own size."""

from collections import Counter

import numpy as np
import pytest

from samp_jax.tasks import load_task
from samp_jax.tasks.carving import gold_strata, stratified_order

SPLIT_NAMES = ("test", "search", "calibration", "dev", "train")


def _skewed(n=200, positives=10):
    """`positives` rows of class 'pos' spread through `n` rows of distinct texts."""
    step = n // positives
    return [{"text": f"review number {i}", "label": "pos" if i % step == 0 else "neg"}
            for i in range(n)]


@pytest.mark.parametrize("seed", range(20))
def test_a_rare_class_is_in_every_split_in_its_share(seed):
    """10 positives in 200 rows: each carved split holds its share to within one row (a
    plain shuffle puts none in the 40-row test split one time in ten)."""
    task = load_task(_skewed(), seed=seed)
    for split in SPLIT_NAMES:
        rows = task.split(split)
        positives = sum(task.labels[e["label"]] == "pos" for e in rows)
        assert abs(positives - len(rows) * 10 / 200) < 1, (split, positives, len(rows))
    assert "split seed %d, stratified by gold" % seed in task.source


def test_the_test_split_depends_only_on_the_seed_and_its_size():
    rows = _skewed(300, 30)
    base = load_task(rows, seed=4)
    other = load_task(rows, seed=4, sizes={"search": 20, "dev": 50})
    assert base.split("test") == other.split("test")
    assert base.split("search") != other.split("search")
    assert load_task(rows, seed=4).split("search") == base.split("search")  # seeded
    assert load_task(rows, seed=5).split("test") != base.split("test")


def test_splits_carved_from_a_train_file_are_stratified(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("text,label\n" + "".join(
        f"train text {i},{'pos' if i % 25 == 0 else 'neg'}\n" for i in range(500)))
    test.write_text("text,label\nheld out a,pos\nheld out b,neg\n")
    for seed in range(5):
        task = load_task(split_files={"train": train, "test": test}, seed=seed)
        for split in ("search", "calibration", "dev", "train"):
            rows = task.split(split)
            positives = sum(task.labels[e["label"]] == "pos" for e in rows)
            assert abs(positives - len(rows) * 20 / 500) < 1, (split, positives, len(rows))
        assert f"carved from train with split seed {seed}, stratified by gold" in task.source


def test_scores_are_stratified_by_their_tenths():
    """Embedding pairs with float scores: each split holds each tenth of the scores by rank
    in its share (two classes of 0/1 labels are classes, not tenths)."""
    rng = np.random.default_rng(0)
    scores = rng.gamma(1.0, 1.0, 400)  # skewed: a plain shuffle's splits differ in spread
    rows = [{"text": f"left {i}", "text_pair": f"right {i}", "score": float(s)}
            for i, s in enumerate(scores)]
    cut = np.quantile(scores, np.linspace(0, 1, 11)[1:-1])
    for seed in range(5):
        task = load_task(rows, seed=seed)
        assert task.task_type.name == "embedding_pairs" and "stratified by gold" in task.source
        for split in SPLIT_NAMES:
            got = task.split(split)
            tenths = Counter(np.searchsorted(cut, [e["score"] for e in got], side="right"))
            assert all(abs(tenths[t] - len(got) / 10) < 1.8 for t in range(10)), (split, tenths)


def test_gold_strata_names_classes_tenths_or_nothing():
    labels = [{"label": v} for v in (1, 0, 0, 1)]
    assert gold_strata(labels, "label") == [1, 0, 0, 1]
    few_scores = [{"score": v} for v in (0.0, 1.0, 0.5) * 4]
    assert gold_strata(few_scores, "score") == [0.0, 1.0, 0.5] * 4  # 3 values: each a stratum
    scores = [{"score": float(v)} for v in range(20, 0, -1)]  # 20 values, descending
    assert gold_strata(scores, "score") == [9, 9, 8, 8, 7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1,
                                            0, 0]
    tied = [{"score": v} for v in [0.0] * 15 + [float(v) for v in range(1, 16)]]
    assert gold_strata(tied, "score")[:15] == [2] * 15  # equal scores share their mean rank's
    assert gold_strata([{"labels": [0, 1]}, {"labels": []}], "labels") is None  # label sets
    assert gold_strata([{"tags": ["O"]}], "tags") is None
    assert gold_strata([{"text": "a"}], None) is None  # no gold (embedding texts)


def test_a_task_of_label_sets_or_tags_is_shuffled_plainly():
    rows = [{"text": f"text {i}", "label": ["a", "b"] if i % 3 else ["a"]} for i in range(40)]
    task = load_task(rows, seed=0)
    assert task.task_type.name == "text_multi_label" and "stratified" not in task.source
    tagged = [{"tokens": [f"w{i}", "x"], "tags": ["B-PER", "O"]} for i in range(40)]
    assert "stratified" not in load_task(tagged, seed=0).source


@pytest.mark.parametrize("trial", range(30))
def test_every_prefix_of_the_order_holds_each_stratum_in_its_share(trial):
    """The bound `stratified_order` states: within 1 + (k - 2)·n/N rows of m·n/N."""
    rng = np.random.default_rng(trial)
    k = int(rng.integers(2, 8))
    strata = rng.choice(k, int(rng.integers(20, 400)), p=rng.dirichlet(np.ones(k))).tolist()
    order = stratified_order(strata, np.random.default_rng(100 + trial))
    assert sorted(order.tolist()) == list(range(len(strata)))  # a permutation
    ordered = np.asarray(strata)[order]
    n, total = np.bincount(ordered, minlength=k), len(strata)
    for m in range(1, total):
        held = np.bincount(ordered[:m], minlength=k)
        assert np.all(np.abs(held - m * n / total) < 1 + (k - 2) * n / total + 1e-9), m


def test_classes_of_one_row_are_spread_over_the_splits_by_the_seed():
    """Each stratum's offset is drawn: a class of one row lands anywhere in the order, so the
    40-row test split of 200 holds about a fifth of 50 such classes, not all of them first."""
    rows = [{"text": f"common {i}", "label": "common"} for i in range(150)]
    rows += [{"text": f"rare {i}", "label": f"rare{i}"} for i in range(50)]
    in_test = [sum(task.labels[e["label"]] != "common" for e in task.split("test"))
               for task in (load_task(rows, seed=seed) for seed in range(10))]
    assert 60 <= sum(in_test) <= 140, in_test  # 100 expected over 10 seeds
    assert len(set(in_test)) > 1  # the seed moves them
