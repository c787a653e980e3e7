"""ROC-AUC and Spearman, plain and over weighted copies (the bootstrap's resamples), against
brute force and scipy on explicitly repeated examples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from samp_jax.tasks.metrics import roc_auc, roc_auc_weighted, spearman, spearman_weighted


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
    with pytest.raises(ValueError, match="both positive and negative"):
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
