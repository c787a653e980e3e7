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
