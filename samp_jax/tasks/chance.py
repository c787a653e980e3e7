"""What a classifier scores without having learned anything: always the most frequent class
(a multi-label classifier: always the same label set, the one that scores best; a reranker:
the same score for every passage, each query's order then any).

A fine-tune that ends at that level has learned nothing, and a tolerance relative to such a
model means nothing; `chance_level` gives the level and the noise of the metric around it on
the rows scored, so that the fine-tune, `eval` and `search` can say so. `eval` and `search`
score a model once; a fine-tune keeps the best of its dev evaluations, and the best of N noisy
scores lands past one score's 95th percentile far more often than 5% of the time, so its
margin is that of the best of N (`evaluations`).

A ranking metric has a fixed level for a model that learned nothing (`NO_SKILL`: Spearman 0,
ROC-AUC 0.5). A score below it ranks the other way round -- most often gold scores that are a
distance rather than a similarity -- and a move toward that level, a worse ranking, then reads
as a gain; `below_no_skill` says so for `eval` and `search`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

from samp_jax.models.head_kinds import Readout
from samp_jax.tasks.metrics import Margin, Metric
from samp_jax.tasks.types import IGNORE, EncodedSplit, TaskType, task_score

Z_ONE_SIDED_95 = 1.645


@dataclass(frozen=True)
class ChanceLevel:
    """The metric of always predicting the split's most frequent class.

    Attributes:
      metric: the task metric ('accuracy', 'entity_f1', 'micro_f1').
      value: its value for the constant prediction.
      label: the most frequent class (or tag) of the split; for label sets, the constant set
        (its names joined by '|', '' for none).
      margin: how far above `value` a score must be to count as better: the one-sided 95%
        binomial noise of an accuracy over `examples` rows, a ranking's 95th percentile of
        random rankings above `value`; 0 for other metrics. For the best of `evaluations`
        scores, the 95th percentile of their maximum (`best_of_quantile`).
      examples: rows scored.
      evaluations: how many scores the one compared is the best of (a fine-tune's dev
        evaluations); 1 for a model scored once.
    """

    metric: str
    value: float
    label: str
    margin: float
    examples: int
    evaluations: int = 1

    def beaten_by(self, score: float | None) -> bool:
        """Whether `score` is clearly better than always predicting `label`."""
        return score is not None and score > self.value + self.margin

    def describe(self, score: float, what: str) -> str:
        """One line: `what`'s score is no better than the constant prediction."""
        noise = f" + {self.margin:.4f} noise" if self.margin else ""
        if self.margin and self.evaluations > 1:
            noise += f" of the best of {self.evaluations} evaluations"
        return (f"{what} {self.metric} {score:.4f} is no better than always predicting "
                f"{self.label!r} ({self.value:.4f}{noise} on {self.examples} rows)")


def best_of_quantile(evaluations: int) -> float:
    """The quantile of one evaluation's noise that the best of `evaluations` independent ones
    stays below 95% of the time: `0.95 ** (1 / evaluations)` (the maximum of N draws of a
    distribution F is below t with probability F(t)^N); 0.95 for one evaluation.

    Successive checkpoints of one fine-tune score the same dev rows and move little between
    evaluations, so their scores are correlated and their best strays less far than that of
    independent ones: a margin at this quantile is conservative (wider than needed).

    Raises:
      ValueError: `evaluations` is not a whole number of 1 or more.
    """
    if isinstance(evaluations, bool) or not isinstance(evaluations, int) or evaluations < 1:
        raise ValueError(f"{evaluations=} is not a number of evaluations (1 or more)")
    return 0.95 ** (1.0 / evaluations)


def one_sided_z(evaluations: int = 1) -> float:
    """The standard normal quantile at `best_of_quantile(evaluations)`: `Z_ONE_SIDED_95` for
    one evaluation, more for the best of several (2.57 for ten)."""
    quantile = best_of_quantile(evaluations)
    return Z_ONE_SIDED_95 if evaluations == 1 else NormalDist().inv_cdf(quantile)


@dataclass(frozen=True)
class NoSkill:
    """What a model that learned nothing scores on a ranking metric, and what a score below it
    most likely means.

    Attributes:
      value: the metric of a ranking unrelated to the gold answers.
      meaning: that level in words.
      cause: the likely reason a model scores below it.
      fix: what to change in the data so that a higher score is a better model.
    """

    value: float
    meaning: str
    cause: str
    fix: str


NO_SKILL: dict[str, NoSkill] = {
    "spearman": NoSkill(0.0, "no correlation",
                        "the gold scores rank the other way (a distance rather than a similarity?)",
                        "negate the gold scores"),
    "roc_auc": NoSkill(0.5, "a random ranking",
                       "the model ranks the gold classes the other way (labels 0 and 1 swapped?)",
                       "swap the labels"),
}


def below_no_skill(metric: str | None, score: float | None, what: str) -> str | None:
    """One line when `score` of `metric` is below what a model that learned nothing scores
    (`NO_SKILL`), else None (another metric, no score, or at or above that level).

    Args:
      metric: the metric name ('spearman', 'roc_auc', ...; None: no metric).
      score: its value.
      what: whose score it is, e.g. "the FP32 model's test".
    """
    no_skill = NO_SKILL.get(metric)
    if no_skill is None or score is None or not score < no_skill.value:
        return None
    return (f"{what} {metric} {score:.4f} is below {no_skill.value:g} ({no_skill.meaning}): "
            f"{no_skill.cause}; a move toward {no_skill.value:g}, a worse ranking, then reads as "
            f"a gain ({no_skill.fix} to measure it as a loss)")


def undefined_metric(metric: str | None, score: float | None, what: str,
                     evidence: np.ndarray | None = None) -> str | None:
    """Why `what` (e.g. "the FP32 model's search-split") `metric` is undefined (NaN), or None
    when it is a number (or there is no metric). With the per-row `evidence`, a score-based
    metric (ROC-AUC, Spearman) whose scores are all equal says so: a head that gives every row
    the same output (untrained, or its weights zero) ranks nothing."""
    if metric is None or score is None or not math.isnan(score):
        return None
    why = ""
    if evidence is not None:
        evidence = np.asarray(evidence)
        if evidence.ndim == 2 and evidence.shape[1] == 2 and len(evidence):
            scores = evidence[:, 0]
            if np.isfinite(scores).all() and np.ptp(scores) == 0:
                why = (f": the model gives all {len(scores)} rows the same score "
                       f"({float(scores[0]):.6g}), and {metric} ranks them (is its head trained?)")
    return f"{what} {metric} is undefined (NaN){why or ': nothing can be compared with it'}"


def chance_level(task_type: TaskType, labels: Sequence[str] | None,
                 encoded: EncodedSplit, metric: Metric | None = None, *,
                 evaluations: int = 1) -> ChanceLevel | None:
    """The `ChanceLevel` of a labelled classification, multi-label or ranking split by `metric`
    (None: the task type's default), or None (no classes, no labels, no head to rank with).

    `evaluations`: how many scores of that split the one compared is the best of (a
    fine-tune's dev evaluations); the margin is then the 95th percentile of the best of that
    many (`best_of_quantile`, which takes them as independent: conservative for the correlated
    checkpoints of one run). 1: a model scored once (`eval`, `search`).
    """
    best_of_quantile(evaluations)  # a bad count raises before any work
    if task_type.grouped:
        return _tied_ranking(task_type, encoded, metric, evaluations)
    constant = _CONSTANTS.get(task_type.readout)
    if constant is None or labels is None or encoded.labels is None:
        return None
    valid = encoded.labels[encoded.labels != IGNORE]
    if valid.size == 0:
        return None
    metric = task_type.metric if metric is None else metric
    value, name = max(((task_score(task_type, metric, labels, logits, encoded)["value"], name)
                       for logits, name in constant(encoded.labels, labels)),
                      key=lambda scored: scored[0])  # the first of equals
    margin = 0.0
    if metric.margin is Margin.PER_EXAMPLE:  # a mean of 0/1 values: binomial noise
        margin = one_sided_z(evaluations) * math.sqrt(value * (1.0 - value) / len(encoded))
    return ChanceLevel(metric.name, float(value), name, margin, len(encoded), evaluations)


TIED = "the same score for every passage"
"""The constant prediction of a ranking (`ChanceLevel.label`)."""
RANDOM_ORDERS = 200
"""Random rankings of a split per evaluation: the 95th percentile of this many bounds one
ranking's noise above `TIED` (the best of N: `best_of_quantile(N)` of N times as many)."""


def _tied_ranking(task_type: TaskType, encoded: EncodedSplit,
                  metric: Metric | None, evaluations: int = 1) -> ChanceLevel | None:
    """A reranker that learned nothing scores every passage of a query alike: its order is
    then any, and the metric is its expected value over the tie orders, as the ranking metrics
    read ties (`samp_jax.tasks.ranking`). A ranker of random scores lands above that level
    half the time, so the margin is how far: the 95th percentile of `RANDOM_ORDERS` random
    rankings of the split, less the level. For the best of N evaluations it is the quantile
    `0.95 ** (1 / N)` (`best_of_quantile`) of `RANDOM_ORDERS * N` random rankings, which
    has about as many rankings past it whatever N: the 95th percentile of the best of N, with
    the first `RANDOM_ORDERS` rankings those of one evaluation (its margin is the same). None
    for a ranking of embeddings (no head)."""
    if task_type.readout is None or encoded.labels is None or len(encoded) == 0:
        return None
    metric = task_type.metric if metric is None else metric
    tied = np.zeros((len(encoded), 1), np.float32)
    value = task_score(task_type, metric, None, tied, encoded)["value"]
    rng = np.random.default_rng(0)  # the same margin for the same split, run after run
    shuffled = _random_rankings(task_type, metric, encoded, rng, RANDOM_ORDERS * evaluations)
    margin = max(0.0, float(np.quantile(shuffled, best_of_quantile(evaluations))) - value)
    return ChanceLevel(metric.name, float(value), TIED, margin, len(encoded), evaluations)


RANKED_ROWS = 1 << 18
"""Rows of random rankings `_random_rankings` scores in one call of the metric."""


def _random_rankings(task_type: TaskType, metric: Metric, encoded: EncodedSplit, rng,
                     count: int) -> np.ndarray:
    """`[count]`: the metric of `count` rankings of `encoded` by random scores (`rng.random`,
    one ranking's rows after another's), as `task_score` scores each. Several rankings are
    scored in one call, each one's queries numbered apart from the others' (a ranking
    metric's evidence is one value per query, in query order), so a split of few rows costs
    little per ranking."""
    rows = len(encoded)
    gold = np.asarray(encoded.gold, np.float64)
    span = gold[:, 0].max() + 1  # query numbers of one ranking: 0 .. span - 1
    queries = len(np.unique(gold[:, 0]))
    values = []
    per_call = max(1, RANKED_ROWS // rows)
    for start in range(0, count, per_call):
        rankings = min(per_call, count - start)
        scores = rng.random((rankings * rows, 1))  # the stream of one ranking at a time
        tiled = np.concatenate([gold + [k * span, 0.0] for k in range(rankings)])
        evidence = metric.evidence(task_type.predicted(scores), tiled, None)
        values += [metric.value(row) for row in evidence.reshape(rankings, queries)]
    return np.asarray(values)


def at_chance(evaluation, score: float | None, what: str) -> str | None:
    """One line when `score` is no better than the constant prediction of `evaluation`'s
    labelled classification or multi-label split (`chance_level`), else None (another task,
    no labels, no finite score, or clearly better).

    Args:
      evaluation: a prepared evaluation; only one with `encoded` rows (classes, label sets,
        tags) has a chance level.
      score: the metric's value.
      what: whose score it is, e.g. "the FP32 model's test".
    """
    encoded = getattr(evaluation, "encoded", None)
    if encoded is None or score is None or not math.isfinite(score):
        return None
    chance = chance_level(evaluation.task_type, evaluation.labels, encoded,
                          getattr(evaluation, "task_metric", None))
    if chance is None or chance.beaten_by(score):
        return None
    return chance.describe(score, what)


def _majority_class(gold: np.ndarray, labels: Sequence[str]) -> list[tuple[np.ndarray, str]]:
    """Logits that always predict the most frequent class (or tag): the best constant for
    accuracy and for macro-F1 alike."""
    valid = gold[gold != IGNORE]
    majority = int(np.bincount(valid.astype(np.int64), minlength=len(labels)).argmax())
    logits = np.zeros((*gold.shape, len(labels)), np.float32)
    logits[..., majority] = 1.0
    return [(logits, labels[majority])]


def _constant_label_sets(gold: np.ndarray, labels: Sequence[str]) -> list[tuple[np.ndarray, str]]:
    """Logits that always predict the same label set, one candidate per `k`: the `k` most
    frequent labels. The metric picks among them (`chance_level`): micro-F1's best is the `k`
    with the highest `2 * hits / (rows * k + gold labels)`, macro-F1's every label gold at
    least once (a label predicted but never gold only adds an F1 of 0)."""
    counts = (gold == 1).sum(axis=0)
    order = np.argsort(-counts, kind="stable")
    candidates = []
    for k in range(1, len(labels) + 1):
        chosen = np.sort(order[:k])
        logits = np.full(gold.shape, -1.0, np.float32)
        logits[:, chosen] = 1.0
        candidates.append((logits, "|".join(labels[i] for i in chosen)))
    return candidates


_CONSTANTS = {Readout.CLASSES: _majority_class, Readout.LABELS: _constant_label_sets}
