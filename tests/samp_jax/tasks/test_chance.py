"""`chance_level`: what always predicting the most frequent class scores, and the noise of an
accuracy around it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from samp_jax.tasks import IGNORE, EncodedSplit, get_task_type
from samp_jax.tasks.chance import at_chance, chance_level


def _encoded(labels) -> EncodedSplit:
    labels = np.asarray(labels)
    width = labels.shape[1] if labels.ndim == 2 else 4
    ones = np.ones((len(labels), width), np.int32)
    return EncodedSplit(input_ids=ones, attention_mask=ones, token_type_ids=0 * ones,
                        labels=labels)


def test_accuracy_of_the_most_frequent_class_and_its_noise():
    chance = chance_level(get_task_type("text_classification"), ("a", "b", "c"),
                          _encoded([2] * 50 + [0] * 30 + [1] * 20))
    assert (chance.metric, chance.label, chance.examples) == ("accuracy", "c", 100)
    assert chance.value == pytest.approx(0.5)
    assert chance.margin == pytest.approx(1.645 * math.sqrt(0.25 / 100))
    assert not chance.beaten_by(0.5) and not chance.beaten_by(0.58)  # within the noise
    assert chance.beaten_by(0.59) and not chance.beaten_by(None)
    assert "always predicting 'c' (0.5000 + 0.0823 noise on 100 rows)" in chance.describe(0.55, "dev")


def test_the_issue_example_is_at_chance():
    """Dev 0.5625 on 48 balanced rows of two classes: within the noise of always one class."""
    chance = chance_level(get_task_type("text_classification"), ("neg", "pos"),
                          _encoded([0, 1] * 24))
    assert chance.value == 0.5 and not chance.beaten_by(0.5625) and chance.beaten_by(0.75)


def test_tagging_scores_the_majority_tag_as_no_entity():
    labels = np.full((3, 6), IGNORE)
    labels[:, 1:5] = [[0, 1, 2, 0], [0, 0, 0, 0], [1, 0, 0, 0]]  # O, B-x, I-x
    chance = chance_level(get_task_type("token_classification"), ("O", "B-x", "I-x"),
                          _encoded(labels))
    assert (chance.metric, chance.label, chance.value, chance.margin) == ("entity_f1", "O", 0.0, 0.0)
    assert chance.beaten_by(0.01) and not chance.beaten_by(0.0)


def test_no_chance_level_without_classes_or_labels():
    assert chance_level(get_task_type("embedding_pairs"), None, _encoded([0, 1])) is None
    assert chance_level(get_task_type("text_classification"), ("a", "b"),
                        _encoded([IGNORE, IGNORE])) is None


def test_at_chance_names_a_score_within_the_noise_and_nothing_else():
    """The one verdict `eval` and `search` warn with: a line for a score within the noise of
    the constant prediction; None for a clear win, no score, NaN, or an evaluation without
    encoded labelled rows."""
    from types import SimpleNamespace

    evaluation = SimpleNamespace(task_type=get_task_type("text_classification"),
                                 labels=("neg", "pos"), encoded=_encoded([0, 1] * 24))
    line = at_chance(evaluation, 0.5625, "the FP32 model's test")
    assert line.startswith("the FP32 model's test accuracy 0.5625 is no better than always "
                           "predicting 'neg'")
    assert at_chance(evaluation, 0.75, "x") is None
    assert at_chance(evaluation, None, "x") is None and at_chance(evaluation, math.nan, "x") is None
    assert at_chance(SimpleNamespace(), 0.5, "x") is None


def test_a_chosen_metric_is_what_the_constant_prediction_is_scored_by():
    """By macro-F1, always 'c' (half the rows) scores the F1 of 'c' alone, 2/3, averaged over
    the three classes gold or predicted: 2/9; no binomial noise (a bootstrapped metric)."""
    from samp_jax.tasks.metrics import CLASS_MACRO_F1
    chance = chance_level(get_task_type("text_classification"), ("a", "b", "c"),
                          _encoded([2] * 50 + [0] * 30 + [1] * 20), CLASS_MACRO_F1)
    assert (chance.metric, chance.label, chance.margin) == ("class_macro_f1", "c", 0.0)
    assert chance.value == pytest.approx(2 / 9)


def test_a_label_set_constant_is_the_best_by_the_metric_chosen():
    """Label 'a' on 9 of 10 rows, 'b' .. 'e' on one each: by micro-F1 always {a} is best
    (2*9/(10+13) = 0.78); by macro-F1 always every label (each gold at least once) is, with
    the mean of 2*9/(10+9) and four times 2*1/(10+1)."""
    from samp_jax.tasks.metrics import MACRO_F1
    names = ("a", "b", "c", "d", "e")
    gold = np.zeros((10, 5), np.int32)
    gold[:9, 0] = 1
    for row, label in enumerate(range(1, 5)):
        gold[row, label] = 1
    sets = get_task_type("text_multi_label")
    micro = chance_level(sets, names, _encoded(gold))
    assert (micro.metric, micro.label) == ("micro_f1", "a")
    assert micro.value == pytest.approx(18 / 23)
    macro = chance_level(sets, names, _encoded(gold), MACRO_F1)
    assert (macro.metric, macro.label) == ("macro_f1", "a|b|c|d|e")
    assert macro.value == pytest.approx((18 / 19 + 4 * 2 / 11) / 5)


def _ranking_split(queries: int = 12, per_query: int = 5, seed: int = 0) -> EncodedSplit:
    """Queries of `per_query` rows, one or two of them relevant (graded 1 or 2)."""
    rng = np.random.default_rng(seed)
    relevance = np.zeros((queries, per_query), np.float32)
    relevance[:, 0] = rng.integers(1, 3, queries)
    relevance[:, 1] = rng.integers(0, 2, queries)
    ones = np.ones((queries * per_query, 4), np.int32)
    return EncodedSplit(input_ids=ones, attention_mask=ones, token_type_ids=0 * ones,
                        labels=relevance.ravel(),
                        groups=np.repeat(np.arange(queries), per_query))


def _random_rankings(split: EncodedSplit, rng, count: int) -> np.ndarray:
    """`[count]` MRR@10 of `count` random rankings of `split`, scored in one call (each
    ranking's queries numbered apart)."""
    from samp_jax.tasks.metrics import MRR_AT_10
    gold = split.gold
    span = gold[:, 0].max() + 1
    tiled = np.concatenate([gold + [k * span, 0] for k in range(count)])
    per_query = MRR_AT_10.evidence(rng.random(len(tiled)), tiled).reshape(count, -1)
    return per_query.mean(axis=1)


def test_the_margin_of_one_evaluation_is_the_95th_percentile_of_one():
    """One evaluation (`eval`, `search`) keeps the margins: 1.645 binomial standard errors, and
    a ranking's 95th percentile of `RANDOM_ORDERS` random rankings drawn from seed 0."""
    from samp_jax.tasks.chance import RANDOM_ORDERS
    from samp_jax.tasks.types import task_score
    accuracy = chance_level(get_task_type("text_classification"), ("a", "b"),
                            _encoded([0] * 60 + [1] * 40), evaluations=1)
    assert accuracy.margin == 1.645 * math.sqrt(0.6 * 0.4 / 100) and accuracy.evaluations == 1
    ranking = get_task_type("text_pair_ranking")
    split = _ranking_split()
    chance = chance_level(ranking, None, split)
    rng = np.random.default_rng(0)
    random = [task_score(ranking, ranking.metric, None, rng.random((len(split), 1)), split)["value"]
              for _ in range(RANDOM_ORDERS)]
    assert chance.margin == float(np.quantile(random, 0.95)) - chance.value
    assert chance.evaluations == 1 and "best of" not in chance.describe(0.5, "dev")


def test_the_best_of_n_evaluations_has_the_margin_of_their_maximum():
    """The best of N noisy scores beats one score's 95th percentile far more often than 5% of
    the time: the margin of N evaluations is the 95th percentile of the maximum of N, wider
    than one's, and matches a brute-force simulation of N independent evaluations within a
    few times the error of both."""
    from samp_jax.tasks.chance import best_of_quantile, one_sided_z
    assert best_of_quantile(1) == 0.95 and best_of_quantile(10) == pytest.approx(0.99488, abs=1e-5)
    assert one_sided_z(10) == pytest.approx(2.568, abs=1e-3)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="not a number of evaluations"):
            best_of_quantile(bad)
    rng = np.random.default_rng(1)
    # accuracy: the best of 10 binomial accuracies over 400 rows, at p = 0.5
    classes = get_task_type("text_classification")
    gold = _encoded([0] * 200 + [1] * 200)
    once, best10 = (chance_level(classes, ("a", "b"), gold, evaluations=n) for n in (1, 10))
    assert best10.margin > 1.5 * once.margin and best10.evaluations == 10
    maxima = (rng.binomial(400, 0.5, size=(8, 4000, 10)) / 400).max(axis=2)
    batches = np.quantile(maxima, 0.95, axis=1)  # 8 estimates of the same percentile
    error = batches.std(ddof=1) / math.sqrt(len(batches)) + 0.5 / 400  # and half a step of 1/400
    assert best10.value + best10.margin == pytest.approx(batches.mean(), abs=4 * error)
    assert np.mean(maxima > once.value + once.margin) > 0.25  # one evaluation's: too narrow
    # a ranking: the best of 5 random rankings of 12 queries
    ranking = get_task_type("text_pair_ranking")
    split = _ranking_split()
    one, five = (chance_level(ranking, None, split, evaluations=n) for n in (1, 5))
    assert five.margin > one.margin and five.evaluations == 5 and five.value == one.value
    maxima = _random_rankings(split, rng, 8 * 400 * 5).reshape(8, 400, 5).max(axis=2)
    batches = np.quantile(maxima, 0.95, axis=1)  # 8 estimates of the same percentile
    # the margin's own error: its estimate (the quantile 0.95 ** (1 / 5) of 200 * 5 random
    # rankings) drawn from other seeds
    estimates = [np.quantile(_random_rankings(split, np.random.default_rng(seed), 1000),
                             best_of_quantile(5)) for seed in range(100, 110)]
    error = math.hypot(np.std(estimates, ddof=1), batches.std(ddof=1) / math.sqrt(len(batches)))
    assert five.value + five.margin == pytest.approx(batches.mean(), abs=3 * error)
    assert np.mean(maxima > one.value + one.margin) > 0.1  # one evaluation's: too narrow
    assert np.mean(maxima > five.value + five.margin) == pytest.approx(0.05, abs=0.03)
    assert (f"+ {five.margin:.4f} noise of the best of 5 evaluations on 60 rows)"
            in five.describe(0.5, "dev"))
