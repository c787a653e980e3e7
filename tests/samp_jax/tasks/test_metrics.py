"""ROC-AUC and Spearman, plain and over weighted copies (the bootstrap's resamples), against
brute force and scipy on explicitly repeated examples; the `Metric` registry that task types,
evaluations, the search and its report share."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from samp_jax.data.wnut16 import entity_f1
from samp_jax.tasks import TASK_TYPES, get_metric
from samp_jax.tasks.metrics import (
    ACCURACY,
    ENTITY_F1,
    IGNORE,
    KL,
    METRICS,
    ROC_AUC,
    SPEARMAN,
    Margin,
    roc_auc,
    roc_auc_weighted,
    spearman,
    spearman_weighted,
)


def _pairwise_auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    return wins / (len(pos) * len(neg))


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    n = 60
    # rounded: many ties, within and across the classes
    return (np.round(rng.standard_normal(n), 1), rng.integers(0, 2, n),
            np.round(rng.standard_normal(n), 1), rng.integers(0, 4, (7, n)))


def test_roc_auc_is_the_pairwise_win_rate_with_half_ties(data):
    scores, labels, _, _ = data
    assert roc_auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels), abs=1e-12)
    assert roc_auc([0.1, 0.9, 0.5], [0, 1, 1]) == 1.0
    with pytest.raises(ValueError, match="needs both 0 and 1 labels"):
        roc_auc([0.1, 0.2], [1, 1])


def test_weighted_roc_auc_is_the_auc_of_the_repeated_examples(data):
    scores, labels, _, weights = data
    expected = [_pairwise_auc(np.repeat(scores, w), np.repeat(labels, w)) for w in weights]
    assert np.allclose(roc_auc_weighted(scores, labels, weights), expected, atol=1e-12)
    one_class = np.where(labels == 1, 1, 0)[None]  # only positives drawn
    assert np.isnan(roc_auc_weighted(scores, labels, one_class)).all()


def test_spearman_weighted_is_scipys_on_the_repeated_examples(data):
    x, _, y, weights = data
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    expected = [stats.spearmanr(np.repeat(x, w), np.repeat(y, w)).statistic for w in weights]
    assert np.allclose(spearman_weighted(x, y, weights), expected, atol=1e-12)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))  # a constant side: undefined


def test_a_nan_score_makes_the_metric_nan_not_a_rank(data):
    scores, labels, gold, weights = data
    scores = scores.copy()
    scores[7] = np.nan  # a map whose outputs hold NaN must fail any tolerance
    assert np.isnan(roc_auc(scores, labels)) and np.isnan(spearman(scores, gold))
    assert np.isnan(roc_auc_weighted(scores, labels, weights)).all()
    assert np.isnan(spearman_weighted(gold, scores, weights)).all()


def test_equal_infinities_tie_and_chunks_change_nothing(data, monkeypatch):
    from samp_jax.tasks import metrics

    assert metrics.weighted_ranks(np.array([np.inf, np.inf, 0.0]), np.ones((1, 3))).tolist() == [[2.5, 2.5, 1.0]]
    scores, labels, gold, weights = data
    whole = roc_auc_weighted(scores, labels, weights), spearman_weighted(scores, gold, weights)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 2 * len(scores))  # two rows per chunk
    assert np.array_equal(roc_auc_weighted(scores, labels, weights), whole[0])
    assert np.array_equal(spearman_weighted(scores, gold, weights), whole[1])


# ------------------------------------------------------------------------ the registry
def test_each_metric_scores_its_evidence_as_the_plain_function_does(data):
    scores, labels, other, _ = data
    predicted, gold = np.array([0, 2, 1, 1]), np.array([0, 2, 2, 1])
    assert ACCURACY.value(ACCURACY.evidence(predicted, gold, None)) == np.mean(predicted == gold)
    assert ROC_AUC.value(ROC_AUC.evidence(scores, labels, None)) == roc_auc(scores, labels)
    assert SPEARMAN.value(SPEARMAN.evidence(scores, other, None)) == spearman(scores, other)
    tags = ("O", "B-person", "I-person", "B-location")
    gold_ids = np.array([[0, 1, 2, IGNORE], [3, 0, IGNORE, IGNORE]])
    predicted_ids = np.array([[0, 1, 0, 3], [3, 0, 1, 1]])  # IGNORE positions are not read
    counts = ENTITY_F1.evidence(predicted_ids, gold_ids, tags)
    expected = entity_f1([["O", "B-person", "I-person"], ["B-location", "O"]],
                         [["O", "B-person", "O"], ["B-location", "O"]])
    assert counts.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert ENTITY_F1.value(counts) == expected["f1"]
    assert ENTITY_F1.details(counts) == {"precision": expected["precision"], "recall": expected["recall"]}


def test_the_registry_names_margins_proxies_and_gold_fields():
    assert {m.name: (m.margin, m.proxy.name, m.gold_field, m.display_name) for m in METRICS.values()} == {
        "accuracy": (Margin.PER_EXAMPLE, "kl", "label", "accuracy"),
        "entity_f1": (Margin.RESAMPLED, "kl", "tags", "entity F1"),
        "word_accuracy": (Margin.RESAMPLED, "kl", "tags", "word accuracy"),
        "roc_auc": (Margin.RESAMPLED, "cosine", "label", "ROC-AUC"),
        "spearman": (Margin.RESAMPLED, "cosine", "score", "Spearman"),
        "micro_f1": (Margin.RESAMPLED, "label_kl", "labels", "micro-F1"),
        "macro_f1": (Margin.RESAMPLED, "label_kl", "labels", "macro-F1"),
        "class_macro_f1": (Margin.RESAMPLED, "kl", "label", "macro-F1"),
        # a mean over queries of per-query values (samp_jax.tasks.ranking)
        "mrr@10": (Margin.PER_EXAMPLE, "score", "relevance", "MRR@10"),
        "ndcg@10": (Margin.PER_EXAMPLE, "score", "relevance", "NDCG@10"),
        "map": (Margin.PER_EXAMPLE, "score", "relevance", "MAP"),
        **{f"recall@{k}": (Margin.PER_EXAMPLE, "score", "relevance", f"recall@{k}")
           for k in (1, 5, 10, 100)}}
    assert get_metric("roc_auc") is ROC_AUC
    with pytest.raises(ValueError, match="metric name='f1' is not one of"):
        get_metric("f1")
    pairs = TASK_TYPES["embedding_pairs"]  # the examples' gold field picks the metric
    assert pairs.metric_for([{"text": "a", "text_pair": "b", "score": 0.3}]) is SPEARMAN
    assert pairs.metric_for([{"text": "a", "text_pair": "b", "label": 1}]) is ROC_AUC
    assert pairs.label_fields == ("label", "score")
    assert TASK_TYPES["embedding_texts"].metric is None and TASK_TYPES["text_classification"].metric.proxy is KL


def test_roc_auc_refuses_gold_of_one_class():
    with pytest.raises(ValueError, match="needs both 0 and 1 labels among the 3 rows scored; these have only \\[1\\]"):
        ROC_AUC.check_gold(np.array([1, 1, 1]))


def test_roc_auc_refuses_labels_other_than_0_and_1():
    """-1/1 labels would all read as positive (a NaN), so they are refused by value."""
    from samp_jax.tasks.metrics import roc_auc
    with pytest.raises(ValueError, match=r"ROC-AUC needs 0/1 labels; these rows hold \[-1, 1\]"):
        roc_auc(np.array([0.2, 0.9, 0.4]), np.array([-1, 1, -1]))
    with pytest.raises(ValueError, match=r"needs 0/1 labels"):
        ROC_AUC.check_gold(np.array([0, 1, 2]))
    assert roc_auc(np.array([0.2, 0.9, 0.4]), np.array([False, True, False])) == 1.0


def test_a_lower_is_better_metric_drops_when_it_rises():
    error_rate = dataclasses.replace(ACCURACY, name="error_rate", higher_is_better=False)
    base, worse = np.array([0.0, 0.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0, 0.0])
    assert error_rate.guarded_drop(base, worse, z=0.0) == pytest.approx(0.25)
    assert error_rate.guarded_drop(worse, base, z=0.0) == pytest.approx(-0.25)
    resampled = dataclasses.replace(error_rate, margin=Margin.RESAMPLED)
    assert resampled.guarded_drop(base, worse, z=0.0) == pytest.approx(0.25)
    assert resampled.guarded_drop(base, worse) > 0.25  # the margin adds, whichever the direction


def test_a_label_set_margin_counts_one_row_lost_and_one_gained_on_its_most_frequent_label():
    """Rows of (gold, predicted, correct) per label; label 1 is gold most often. An unchanged
    candidate keeps a margin, from the two pseudo-rows alone: the same bootstrap by hand."""
    from samp_jax.tasks.metrics import MICRO_F1, bootstrap_weights
    evidence = np.zeros((5, 3, 3))
    evidence[:, 1] = (1, 1, 1)
    evidence[0, 0] = (1, 0, 0)
    found, missed = np.zeros((3, 3)), np.zeros((3, 3))
    found[1], missed[1] = (1, 1, 1), (1, 0, 0)
    base_rows, candidate_rows = MICRO_F1.pseudo_rows(evidence)
    np.testing.assert_array_equal(base_rows, [found, missed])
    np.testing.assert_array_equal(candidate_rows, [missed, found])
    weights = bootstrap_weights(7)
    drops = (MICRO_F1.resampled(np.r_[evidence, base_rows], weights)
             - MICRO_F1.resampled(np.r_[evidence, candidate_rows], weights))
    assert MICRO_F1.guarded_drop(evidence, evidence) == pytest.approx(1.645 * drops.std(ddof=1), rel=1e-12)
    assert MICRO_F1.guarded_drop(evidence, evidence) > 0.05


def test_bootstrap_weights_are_seeded_counts_in_one_byte_each():
    from samp_jax.tasks.metrics import bootstrap_weights
    weights = bootstrap_weights(1000)
    assert weights.dtype == np.uint8 and weights.shape == (1000, 1000)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(weights[:3], [np.bincount(rng.integers(0, 1000, 1000), minlength=1000)
                                                for _ in range(3)])
    assert (weights.sum(1) == 1000).all() and not weights.flags.writeable


def test_class_macro_f1_is_the_mean_f1_over_the_classes_gold_or_predicted():
    """Three classes named, class 2 neither gold nor predicted: the mean of the F1 of classes
    0 and 1, by hand (scikit-learn's f1_score(average="macro", labels=[0, 1]))."""
    from samp_jax.tasks.metrics import CLASS_MACRO_F1
    gold = np.array([0, 0, 0, 1, 1, 0])
    predicted = np.array([0, 1, 0, 1, 0, 0])
    # class 0: 3 of 4 gold found, 3 of 4 predicted right: F1 0.75; class 1: 1 of 2, 1 of 2: 0.5
    evidence = CLASS_MACRO_F1.evidence(predicted, gold, ["a", "b", "c"])
    assert evidence.shape == (6, 3, 3)
    assert CLASS_MACRO_F1.value(evidence) == pytest.approx((0.75 + 0.5) / 2, abs=1e-12)
    assert CLASS_MACRO_F1.value(CLASS_MACRO_F1.evidence(gold, gold, ["a", "b", "c"])) == 1.0
    with pytest.raises(ValueError, match="one per row"):
        CLASS_MACRO_F1.evidence(predicted[:, None], gold[:, None], ["a", "b", "c"])


def test_a_task_type_offers_its_default_metric_first_then_the_others():
    classes = TASK_TYPES["text_classification"]
    rows = [{"text": "a", "label": 0}]
    assert [m.name for m in classes.metrics_for(rows)] == ["accuracy", "class_macro_f1"]
    assert classes.label_fields == ("label",)  # another metric adds no gold field
    sets = TASK_TYPES["text_multi_label"]
    assert [m.name for m in sets.metrics_for([{"text": "a", "labels": [0]}])] == ["micro_f1", "macro_f1"]
    assert TASK_TYPES["embedding_texts"].metrics_for([{"text": "a"}]) == ()


def test_a_macro_f1_margin_counts_its_pseudo_rows_on_the_least_supported_present_class():
    """Macro-F1 averages classes alike, so the pseudo-rows go where one row moves it most: the
    class gold or predicted least often (here class 2: once), not an absent one (class 3)."""
    from samp_jax.tasks.metrics import CLASS_MACRO_F1
    gold = np.array([0, 0, 0, 0, 1, 1, 2])
    evidence = CLASS_MACRO_F1.evidence(gold, gold, ["a", "b", "c", "d"])
    base_rows, candidate_rows = CLASS_MACRO_F1.pseudo_rows(evidence)
    assert base_rows[:, 2].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert candidate_rows[:, 2].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert not base_rows[:, [0, 1, 3]].any() and not candidate_rows[:, [0, 1, 3]].any()


def _scored(positives: int, rows: int, seed: int = 0) -> np.ndarray:
    """ROC-AUC evidence (score, 0/1 gold): `positives` of `rows` are 1, scored higher on average."""
    rng = np.random.default_rng(seed)
    gold = (np.arange(rows) < positives).astype(np.float64)
    return np.column_stack([rng.normal(size=rows) + 1.5 * gold, gold])


def test_a_roc_auc_margin_counts_its_smaller_class():
    """ROC-AUC is the mean over the rows of one class of the share of the other ranked below
    each: a map that keeps the order of one positive among 120 rows must not pass a 1%
    tolerance (the whole AUC rides on that row). The pseudo-rows: two rows of the smaller
    class, one moved from above every row of the other class to where three quarters of them
    rank above it (`AUC_PSEUDO_MOVE`) and one the other way; the floor is then about 1.5 times
    accuracy's on as many rows of each class, so that large splits, balanced or not, can
    still certify a 1% drop."""
    from samp_jax.tasks.metrics import AUC_PSEUDO_MOVE, unchanged_margin
    assert AUC_PSEUDO_MOVE == 0.75
    one = _scored(1, 120)
    assert unchanged_margin(ROC_AUC, 120, one) > 0.3
    negatives_fewer = one.copy()
    negatives_fewer[:, 1] = 1 - negatives_fewer[:, 1]  # one negative: the same bound
    assert unchanged_margin(ROC_AUC, 120, negatives_fewer) > 0.3
    base_rows, candidate_rows = ROC_AUC.pseudo_rows(negatives_fewer)
    assert base_rows[:, 1].tolist() == candidate_rows[:, 1].tolist() == [0.0, 0.0]
    positives = negatives_fewer[negatives_fewer[:, 1] == 1, 0]
    assert base_rows[0, 0] < one[:, 0].min()  # below every positive: ranked right
    # a negative with three quarters of the positives below it, a quarter above: wrong by 0.75
    assert base_rows[1, 0] == np.quantile(positives, 0.75)
    np.testing.assert_array_equal(candidate_rows, base_rows[::-1])
    for rows, positives in ((256, 128), (500, 250), (10_000, 226)):
        floor = unchanged_margin(ROC_AUC, rows, _scored(positives, rows))
        like_accuracy = unchanged_margin(ACCURACY, 2 * positives)
        assert 1.2 * like_accuracy < floor < 1.9 * like_accuracy, (rows, positives)
    assert unchanged_margin(ROC_AUC, 500, _scored(250, 500)) < 0.009  # 1% of an AUC of 0.9
    # the reported value is the rows' own: pseudo-rows enter the bootstrap only
    assert ROC_AUC.baseline(one).value == ROC_AUC.value(one)


def test_a_spearman_margin_does_not_vanish_on_a_few_rows_whose_order_a_map_keeps():
    """With two rows Spearman is +1 or -1, and a map that keeps their order had a margin of
    0; its pseudo-rows (a top-scored row moved half the way down the order, a bottom-scored
    one from half the way up to the bottom: `SPEARMAN_PSEUDO_MOVE`) bound it, at about twice
    accuracy's floor on as many rows for a split of hundreds."""
    from samp_jax.tasks.metrics import SPEARMAN_PSEUDO_MOVE, unchanged_margin
    assert SPEARMAN_PSEUDO_MOVE == 0.5
    rng = np.random.default_rng(1)

    def rows(n):
        gold = rng.normal(size=n)
        return np.column_stack([gold + 0.5 * rng.normal(size=n), gold])

    assert unchanged_margin(SPEARMAN, 2, rows(2)) > 0.5
    assert unchanged_margin(SPEARMAN, 6, rows(6)) > 0.2
    for n in (300, 1000):
        floor = unchanged_margin(SPEARMAN, n, rows(n))
        assert 1.3 * unchanged_margin(ACCURACY, n) < floor < 2.2 * unchanged_margin(ACCURACY, n)
    evidence = rows(61)
    base_rows, candidate_rows = SPEARMAN.pseudo_rows(evidence)
    top, bottom = evidence[:, 1].max(), evidence[:, 1].min()
    assert base_rows[:, 1].tolist() == candidate_rows[:, 1].tolist() == [top, bottom]
    ranked = np.sort(evidence[:, 0])
    assert base_rows[0, 0] > ranked[-1] and candidate_rows[1, 0] < ranked[0]
    assert ranked[29] < candidate_rows[0, 0] < ranked[30]  # just below the middle row (31st)
    assert ranked[30] < base_rows[1, 0] < ranked[31]  # just above it
