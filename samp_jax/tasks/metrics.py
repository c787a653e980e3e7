"""Task metrics as data: the `Metric` registry (`METRICS`), the proxies, and the weighted
scores and confidence margins they are built from.

A `Metric` scores **evidence**: one row per example (`[n]` or `[n, k]`), what the metric is a
function of: per-example correctness for accuracy, `[gold, predicted, correct]` entity counts
per sentence for entity F1, `[words scored, words right]` per sentence for word accuracy, `[label, (gold, predicted, correct)]` counts per row for the
multi-label F1s, `(pair score, gold)` for ROC-AUC and Spearman -- or one row per unit the
metric averages over: per query, its MRR@10, NDCG@10, average precision or recall@k for the
ranking metrics (`samp_jax.tasks.ranking`), from the rows' scores and `[query, relevance]`
gold. Every metric is
computed from weighted copies of its evidence rows (`weights` `[R, n]`: per row, how many times
each example counts), so one call scores every resample of a paired bootstrap; a single
evaluation is the one row of ones. The evidence being per example, the same object gives the
task metric, the search's guarded drop (the drop against the FP32 model's evidence plus a
one-sided confidence margin: an adjusted paired standard error where the metric is a mean of
per-example (or per-query) values, a paired bootstrap otherwise; both count one more example lost and one
more gained, so a map that changed few examples keeps a margin), and the report's names.

ROC-AUC and Spearman rank each resample's weighted copies without sorting each resample again;
ties get average ranks.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Callable, Sequence

import numpy as np

from samp_jax.core.errors import SampJaxError
from samp_jax.models.bio_tags import entity_counts, near_entity_names, reads_entities
from samp_jax.tasks import ranking
from samp_jax.tasks.proxies import COSINE, KL, LABEL_KL, PROXIES, SCORE, Proxy  # noqa: F401

IGNORE = -100  # label of positions and rows that no metric or loss counts
Z_ONE_SIDED_95 = 1.645
BOOTSTRAP_RESAMPLES = 1000

_CHUNK_ELEMENTS = 1 << 22  # weights scored per chunk: a few [chunk, n] float64 temporaries


def _by_chunks(score_rows, weights: np.ndarray) -> np.ndarray:
    """`score_rows(weights_chunk) -> [chunk]` over row chunks of `[R, n]` weights, each chunk
    as float64 (the weights themselves may be small integer counts)."""
    weights = np.atleast_2d(np.asarray(weights))
    step = max(1, _CHUNK_ELEMENTS // max(weights.shape[1], 1))
    return np.concatenate([score_rows(weights[i:i + step].astype(np.float64))
                           for i in range(0, len(weights), step)])


def weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`[R, n]`: per row of `weights`, the average rank (1-based) each example's copies take
    among all copies of that row, ties sharing their average. Sorts `values` once."""
    values = np.asarray(values, np.float64)
    weights = np.asarray(weights, np.float64)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]])  # each tie group's first place
    starts, group = np.flatnonzero(first), np.cumsum(first) - 1
    per_group = np.add.reduceat(weights[:, order], starts, axis=1)  # [R, groups]
    average = np.cumsum(per_group, axis=1) - per_group + (per_group + 1.0) / 2.0
    ranks = np.empty_like(weights)
    ranks[:, order] = average[:, group]
    return ranks


def roc_auc_weighted(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`[R]`: the area under the ROC curve (the Mann-Whitney U statistic; ties count one half)
    of each row's weighted copies; NaN for a row with one class only."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    if np.isnan(scores).any():
        return np.full(np.atleast_2d(weights).shape[0], np.nan)

    def score_rows(w):
        ranks = weighted_ranks(scores, w)
        positives = (w * labels).sum(1)
        negatives = (w * ~labels).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((w * ranks * labels).sum(1) - positives * (positives + 1) / 2) / (positives * negatives)
        return np.where((positives > 0) & (negatives > 0), auc, np.nan)
    return _by_chunks(score_rows, weights)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic; ties count one half); NaN if a
    score is NaN.

    Raises:
      ValueError: the labels are not 0/1 (or booleans), or hold one class only.
    """
    _both_classes(labels)
    labels = np.asarray(labels).astype(bool)
    return float(roc_auc_weighted(scores, labels, np.ones((1, len(labels))))[0])


def spearman_weighted(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`[R]`: Spearman's rank correlation (Pearson's of the average ranks) of each row's
    weighted copies; NaN for a row where either is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if np.isnan(x).any() or np.isnan(y).any():
        return np.full(np.atleast_2d(weights).shape[0], np.nan)

    def score_rows(w):
        rx, ry = (weighted_ranks(v, w) for v in (x, y))
        with np.errstate(invalid="ignore", divide="ignore"):
            total = w.sum(1, keepdims=True)
            rx = rx - (w * rx).sum(1, keepdims=True) / total
            ry = ry - (w * ry).sum(1, keepdims=True) / total
            return (w * rx * ry).sum(1) / np.sqrt((w * rx * rx).sum(1) * (w * ry * ry).sum(1))
    return _by_chunks(score_rows, weights)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two length-`n` arrays (NaN if either is constant)."""
    return float(spearman_weighted(x, y, np.ones((1, len(x))))[0])


# ------------------------------------------------------------------------ margins
def guarded_difference(base: np.ndarray, candidate: np.ndarray, *, z: float = Z_ONE_SIDED_95) -> float:
    """The paired drop `mean(base - candidate)` of per-example values in [0, 1] (correctness,
    or a query's MRR, NDCG, AP or recall) plus a one-sided upper confidence margin, 95% at the default `z`: `z` times the standard
    error of Bonett and Price's adjusted Wald bound for paired proportions (J. Educ. Behav.
    Stat. 37(4), 2012), which counts one more example that dropped and one more that gained
    (pseudo-differences +1 and -1 among `n + 2`): `sqrt((p_drop + p_gain - d^2) / (n + 2))`.
    The centre stays the plain paired mean (theirs is the adjusted one), so `z = 0` gives the
    drop itself; the difference is a fraction of one row. For values between 0 and 1 (a query
    whose MRR went from 1 to 0.5) the pseudo-differences are the largest a unit can take, so
    the bound stays conservative.

    The plain standard error of the `n` differences vanishes when few examples changed, so a
    map that changed one or two rows of a few hundred passed a tolerance it misses on unseen
    rows far more often than 5% of the time (`tools/margin_coverage.py`); with this margin a
    map that changes no row passes only an allowed drop above about `2.3 / n`.
    """
    diff = np.asarray(base, np.float64) - np.asarray(candidate, np.float64)
    adjusted = np.concatenate([diff, [1.0, -1.0]])
    return float(diff.mean() + z * adjusted.std() / np.sqrt(len(adjusted)))


def unchanged_margin(metric: "Metric", n: int, evidence: np.ndarray | None = None, *,
                     z: float = Z_ONE_SIDED_95) -> float:
    """The guarded drop of a map that changes none of `n` examples: the smallest drop `metric`
    can bound on them. A bootstrapped metric's depends on the reference's `evidence` through
    its pseudo-rows (without them, or without the evidence: 0, its resamples then all agree)."""
    if metric.margin is Margin.PER_EXAMPLE:
        return guarded_difference(np.zeros(n), np.zeros(n), z=z)
    if metric.pseudo_rows is None or evidence is None or len(evidence) < 2:
        return 0.0
    return metric.guarded_drop(evidence, evidence, z=z)


def guarded_bootstrap_drop(base_metric: float, metric: float, base_resampled: np.ndarray,
                           resampled: np.ndarray, *, z: float = Z_ONE_SIDED_95) -> float:
    """`base_metric - metric` plus `z` times the standard deviation of the paired resampled
    drops `base_resampled - resampled` (resamples where either is undefined, NaN, are left
    out; fewer than two left: no margin)."""
    drops = np.asarray(base_resampled, np.float64) - np.asarray(resampled, np.float64)
    drops = drops[np.isfinite(drops)]
    drop = float(base_metric - metric)
    if len(drops) < 2:
        return drop
    return drop + z * float(drops.std(ddof=1))


@functools.lru_cache(maxsize=4)
def bootstrap_weights(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> np.ndarray:
    """`[resamples, n]` counts of each example in each seeded resample with replacement (the
    same resamples for every map judged on `n` examples: a paired bootstrap), in the smallest
    unsigned integer type that holds them (one byte each but for counts past 255): a search
    split of 200,000 rows takes 200 MB, not the 1.6 GB of float64."""
    rng = np.random.default_rng(seed)
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)])
    weights = weights.astype(np.min_scalar_type(int(weights.max(initial=0))))
    weights.flags.writeable = False
    return weights


# ------------------------------------------------------------------------ the registry
class Margin(enum.Enum):
    """How a metric's drop gets its confidence margin."""

    PER_EXAMPLE = "per_example"  # a mean of per-example (per-query) values in [0, 1]: adjusted paired bound
    RESAMPLED = "resampled"  # anything else: paired bootstrap over the examples


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The reference model's evidence and what every guarded drop against it reuses."""

    evidence: np.ndarray
    value: float  # the metric of the evidence, as the drop takes it
    resampled: np.ndarray | None  # `[R]` per bootstrap resample (resampled margins only)
    pseudo_rows: np.ndarray | None = None  # the candidate's `Metric.pseudo_rows`, if any


@dataclasses.dataclass(frozen=True, kw_only=True)
class Metric:
    """A task metric.

    Attributes:
      name: registry key, as `summary.json` and `evaluate` name it.
      display_name: how tables and plots name it.
      gold_field: the example field holding the gold answer it scores against.
      margin: how its drop gets a confidence margin (`Margin`).
      proxy: the divergence the search ranks sites by for the outputs it scores.
      evidence: `(predicted, gold, label_names) -> [n, ...]` per-example rows: `predicted` is
        what the head predicts (`Readout.predict`): class ids (`[n]` or `[n, seq]`), a
        multi-hot label set per row (`[n, labels]`) or scores (`[n]`); `gold` the matching
        labels (`IGNORE` where none applies).
      weighted: `(evidence, weights [R, n]) -> [R]`, the metric of each row's weighted copies
        (NaN where a resample leaves it undefined).
      exact: `evidence -> float`, the reported value, where it is computed in another order
        than `weighted` with one row of ones (None: that row).
      details: `evidence -> dict` of extra figures a score reports (precision, recall).
      check_gold: raises ValueError when gold answers cannot be scored (one class for ROC-AUC,
        one score for Spearman).
      balanced_subsets: a seeded subset of the examples keeps the two classes balanced.
      higher_is_better: the direction of improvement; a drop is a change the other way.
      unit, units: what one evidence row is, one and several, for messages: a row, or for the
        ranking metrics a query (the unit the margin and a split's size are counted in).
      gold: `examples -> gold array` where the gold is more than each example's `gold_field`
        (ranking: `[query, relevance]` per row, `ranking.ranking_gold`); None: that field.
      pseudo_rows: `base evidence -> (base rows, candidate rows)`, two evidence rows each that
        the bootstrap of a `Margin.RESAMPLED` drop appends (not the drop itself): one example
        on which the candidate lost one unit of the metric's counts and one on which it gained
        one, Bonett and Price's adjustment (`guarded_difference`) carried to the bootstrap.
        Without them a map that changed no counted row, or one or two, gets a margin of about
        zero, which under-covers for metrics of discrete counts (entity and label-set F1), and
        for ROC-AUC and Spearman on few rows (or few of one class) whose order a map keeps.
        None: no pseudo-rows.
      reads_labels: `label names -> bool`, whether the metric reads a task of those names
        (`reads`); None: any. A task type's `metric_for` passes over one that does not: entity
        F1 reads entity tags (`bio_tags.reads_entities`: prefixed or IO), not a
        part-of-speech tagger's.
      doubts_labels: `label names -> str | None`: why label names the metric reads may mean
        another metric (None: no doubt), which `Task` raises when the metric was not asked for
        by name: word accuracy of "O", "B_PER", "I_PER" (a NER head's tags in another
        spelling) would score mostly "O".
      bound: the largest magnitude the metric takes (1.0 for every built-in: in [0, 1], or
        Spearman's [-1, 1]), which an absolute tolerance is checked against (half of it or
        more is refused as absurd, `calibrate.search.config.validate_tolerance`); None: not
        known, as for a metric in units of its own (an error in dollars), which then takes
        any finite absolute tolerance of 0 or more.
    """

    name: str
    display_name: str
    gold_field: str
    margin: Margin
    proxy: Proxy
    evidence: Callable[[np.ndarray, np.ndarray, Sequence[str] | None], np.ndarray]
    weighted: Callable[[np.ndarray, np.ndarray], np.ndarray]
    exact: Callable[[np.ndarray], float] | None = None
    details: Callable[[np.ndarray], dict[str, float]] | None = None
    check_gold: Callable[[np.ndarray], None] | None = None
    balanced_subsets: bool = False
    higher_is_better: bool = True
    pseudo_rows: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    unit: str = "row"
    units: str = "rows"
    gold: Callable[[Sequence[dict]], np.ndarray] | None = None
    reads_labels: Callable[[Sequence[str]], bool] | None = None
    doubts_labels: Callable[[Sequence[str]], str | None] | None = None
    bound: float | None = None

    def doubt(self, labels: Sequence[str] | None) -> str | None:
        """Why label names `labels` may mean another metric than this one, or None."""
        return None if labels is None or self.doubts_labels is None else self.doubts_labels(labels)

    def reads(self, labels: Sequence[str] | None) -> bool:
        """Whether the metric reads a task of label names `labels` (None: not known, yes)."""
        return labels is None or self.reads_labels is None or bool(self.reads_labels(labels))

    def gold_of(self, examples: Sequence[dict]) -> np.ndarray:
        """The gold answers of `examples` as `evidence` takes them."""
        if self.gold is not None:
            return self.gold(examples)
        return np.array([e[self.gold_field] for e in examples])

    def value(self, evidence: np.ndarray) -> float:
        """The metric of `evidence` (all examples once)."""
        if self.exact is not None:
            return float(self.exact(evidence))
        return self._of_all(evidence)

    def resampled(self, evidence: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """`[R]`: the metric of each bootstrap resample given `[R, n]` weights (scored a
        chunk of rows at a time)."""
        return np.asarray(_by_chunks(lambda w: self.weighted(evidence, w), weights), np.float64)

    @property
    def direction(self) -> float:
        """1.0 for a metric where higher is better, -1.0 for one where lower is."""
        return 1.0 if self.higher_is_better else -1.0

    def drop(self, reference: float, value: float) -> float:
        """How much worse `value` is than `reference`: a change against the metric's direction
        (negative for a gain)."""
        return self.direction * (reference - value)

    def baseline(self, evidence: np.ndarray) -> Baseline:
        """What `guarded_drop` compares candidates with, computed once."""
        evidence = np.asarray(evidence)
        resampled = pseudo = None
        if self.margin is Margin.RESAMPLED and len(evidence) > 1:
            rows = evidence
            if self.pseudo_rows is not None:
                base_rows, pseudo = self.pseudo_rows(evidence)
                rows = np.concatenate([evidence, base_rows])
            resampled = self.resampled(rows, bootstrap_weights(len(rows)))
        return Baseline(evidence, self._of_all(evidence), resampled, pseudo)

    def guarded_drop(self, base: Baseline | np.ndarray, candidate: np.ndarray, *,
                     z: float = Z_ONE_SIDED_95) -> float:
        """The drop of `candidate`'s metric against `base`'s (same examples, same order) plus
        a one-sided margin, 95% at the default `z`: the adjusted paired bound of
        `guarded_difference` for `Margin.PER_EXAMPLE`, `z` standard deviations of the paired
        bootstrap drops (`bootstrap_weights`, seeded; over the evidence and its `pseudo_rows`)
        for `Margin.RESAMPLED` (one example: no margin).

        Raises:
          ValueError: the evidence of `base` and `candidate` differ in shape.
        """
        base = base if isinstance(base, Baseline) else self.baseline(base)
        candidate = np.asarray(candidate)
        if candidate.shape != base.evidence.shape:
            raise ValueError(f"{self.name} evidence must match: base {base.evidence.shape}, "
                             f"candidate {candidate.shape}")
        sign = self.direction
        if self.margin is Margin.PER_EXAMPLE:
            return guarded_difference(sign * base.evidence, sign * candidate, z=z)
        value = self._of_all(candidate)
        if base.resampled is None:
            return sign * (base.value - value)
        if base.pseudo_rows is not None:
            candidate = np.concatenate([candidate, base.pseudo_rows])
        resampled = self.resampled(candidate, bootstrap_weights(len(candidate)))
        return guarded_bootstrap_drop(sign * base.value, sign * value, sign * base.resampled,
                                      sign * resampled, z=z)

    def _of_all(self, evidence: np.ndarray) -> float:
        return float(self.resampled(evidence, np.ones((1, len(evidence))))[0])


def tag_rows(label_names: Sequence[str], predicted: np.ndarray,
             gold: np.ndarray) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tag names per sentence, over its labelled positions (gold not
    `IGNORE`); `predicted` and `gold` are `[n, seq]` class ids."""
    gold_rows, pred_rows = [], []
    for row in range(len(gold)):
        positions = gold[row] != IGNORE
        gold_rows.append([label_names[int(t)] for t in gold[row][positions]])
        pred_rows.append([label_names[int(t)] for t in predicted[row][positions]])
    return gold_rows, pred_rows


def _correct(predicted, gold, label_names=None) -> np.ndarray:
    return (np.asarray(predicted) == np.asarray(gold)).astype(np.float64)


def _mean_weighted(evidence: np.ndarray, weights: np.ndarray) -> np.ndarray:
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    return weights @ np.asarray(evidence, np.float64) / weights.sum(1)


def _entity_evidence(predicted, gold, label_names) -> np.ndarray:
    if label_names is None:
        raise ValueError("entity F1 needs the tag names (BIO, BIOES, BILOU or IO labels) to find "
                         "entities")
    return entity_counts(*tag_rows(label_names, predicted, gold), label_names).astype(np.float64)


def _f1_of_sums(counts: np.ndarray) -> np.ndarray:
    """F1 from `[..., 3]` summed (gold, predicted, correct) counts: `2 c / (g + p)`, 0 if empty."""
    gold, predicted, correct = counts[..., 0], counts[..., 1], counts[..., 2]
    total = gold + predicted
    return np.where(total > 0, 2.0 * correct / np.maximum(total, 1e-12), 0.0)


def _entity_weighted(evidence: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _f1_of_sums(np.atleast_2d(np.asarray(weights, np.float64)) @ np.asarray(evidence, np.float64))


def _entity_scores(evidence: np.ndarray) -> dict[str, float]:
    """Micro precision, recall and F1 as `samp_jax.data.wnut16.entity_f1` computes them."""
    n_gold, n_predicted, n_correct = (int(n) for n in np.asarray(evidence).sum(axis=0))
    precision = n_correct / n_predicted if n_predicted else 0.0
    recall = n_correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _entity_pseudo_rows(evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One sentence whose one entity the candidate gets wrong where the base got it right
    (`(gold, predicted, correct)` 1, 1, 1 -> 1, 1, 0), and one the other way."""
    right, wrong = [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]
    return np.array([right, wrong]), np.array([wrong, right])


def _pseudo_rows_on(evidence: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    """One row whose `label` the candidate misses where the base found it (`(gold, predicted,
    correct)` 1, 1, 1 -> 1, 0, 0), and one the other way; no other label."""
    found, missed = (np.zeros(np.shape(evidence)[1:]) for _ in range(2))
    found[label], missed[label] = (1.0, 1.0, 1.0), (1.0, 0.0, 0.0)
    return np.stack([found, missed]), np.stack([missed, found])


def _label_set_pseudo_rows(evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Micro-F1's pseudo-rows: on the most frequent gold label (micro-F1 pools the counts of
    every label, so which one matters little)."""
    evidence = np.asarray(evidence, np.float64)
    return _pseudo_rows_on(evidence, int(np.argmax(evidence[..., 0].sum(axis=0))))


def _macro_pseudo_rows(evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Macro-F1's pseudo-rows: on the present label (gold or predicted at least once) with the
    fewest gold and predicted counts, where one row moves the average most -- a map that costs
    a rare class is what a macro average is chosen to catch."""
    evidence = np.asarray(evidence, np.float64)
    support = evidence[..., 0].sum(axis=0) + evidence[..., 1].sum(axis=0)
    present = np.flatnonzero(support > 0)
    label = int(present[np.argmin(support[present])]) if len(present) else 0
    return _pseudo_rows_on(evidence, label)


def _word_evidence(predicted, gold, label_names=None) -> np.ndarray:
    """`[n, 2]`: per sentence, its words scored (gold not `IGNORE`: each word's first piece,
    as `types.encode_words` labels it) and those whose predicted tag is the gold one."""
    predicted, gold = np.asarray(predicted), np.asarray(gold)
    if predicted.shape != gold.shape or gold.ndim != 2:
        raise ValueError(f"word tags must be one per position of each row: predicted "
                         f"{predicted.shape}, gold {gold.shape}")
    scored = gold != IGNORE
    return np.column_stack([scored.sum(1), (scored & (predicted == gold)).sum(1)]).astype(np.float64)


def _word_accuracy(evidence: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The words right over the words scored, pooled over each row of `weights`' sentence
    copies (NaN where none is scored)."""
    counts = np.atleast_2d(np.asarray(weights, np.float64)) @ np.asarray(evidence, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts[:, 0] > 0, counts[:, 1] / counts[:, 0], np.nan)


def _word_pseudo_rows(evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One sentence of one word the candidate tags wrong where the base tagged it right
    (`(scored, right)` 1, 1 -> 1, 0), and one the other way."""
    right, wrong = [1.0, 1.0], [1.0, 0.0]
    return np.array([right, wrong]), np.array([wrong, right])


def _pair_evidence(scores, gold, label_names=None) -> np.ndarray:
    return np.column_stack([np.asarray(scores, np.float64), np.asarray(gold, np.float64)])


class GoldWithoutVariety(SampJaxError, ValueError):
    """Gold answers a metric cannot tell models apart on (one class for ROC-AUC, one score for
    Spearman): rows of a split drawn at random may hold them where the data as a whole does not."""


def _both_classes(gold: np.ndarray) -> None:
    """ROC-AUC reads a label as positive when it is 1 (true); any value but 0 and 1 would be
    read as positive too (-1/1 labels: every row), so it is refused."""
    classes = sorted(set(np.asarray(gold).tolist()))
    if not set(classes) <= {0, 1}:
        raise ValueError(f"ROC-AUC needs 0/1 labels; these rows hold {classes[:5]}"
                         + (" ..." if len(classes) > 5 else ""))
    if len(classes) < 2:
        raise GoldWithoutVariety(f"ROC-AUC needs both 0 and 1 labels among the {len(gold)} rows "
                         f"scored; these have only {classes}")


def _score_range(scores: np.ndarray) -> tuple[float, float]:
    """A score above and one below every finite score of `scores` by their whole span (and
    one), so that a candidate's scores, which move a little from the base's, stay between."""
    finite = scores[np.isfinite(scores)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    span = high - low + 1.0
    return low - span, high + span


AUC_PSEUDO_MOVE = 0.75
"""How far ROC-AUC's pseudo-row moves in its unit (a row's share of the other class ranked
the wrong side of it): from 0 to 0.75. Drawn from `tools/margin_coverage.py` (a share of the
positives given a negative's score, the true drop 1.05 times the allowed one): half the way
passed 9% of such maps at 500 rows, the whole way none but with a quarter of the power;
0.75 passes 0 to 3.75% (docs/results/margin_coverage_scores.json)."""
SPEARMAN_PSEUDO_MOVE = 0.5
"""How far Spearman's pseudo-rows move, as a share of the order: half of it. Drawn from
`tools/margin_coverage.py` (a share of the rows scored afresh, the true drop 1.05 times the
allowed one): a third passed 14 to 16% of such maps at 500 to 1,000 rows; half passes 0% at
50 to 200 rows, 7% at 500 and 12% at 1,000, above the 5% aimed at (without pseudo-rows:
17 to 71%); 0.6 passed no map half the allowed drop away at 500 rows."""


def _auc_pseudo_rows(evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC's pseudo-rows: two rows of the class with fewer rows (the unit whose count
    bounds what the split can tell: one positive among 120 rows decides the whole AUC). ROC-AUC
    is the mean over the positives of the share of negatives ranked below each (and so over the
    negatives), a value in [0, 1] per row of that class: one row the candidate moves from above
    every row of the other class to where `AUC_PSEUDO_MOVE` of them rank above it, where the
    base ranked it right, and one the other way; Bonett and Price's adjustment as
    `guarded_difference` makes it, with the move measured on `tools/margin_coverage.py`."""
    evidence = np.asarray(evidence, np.float64)
    scores, gold = evidence[:, 0], evidence[:, 1]
    positives = int((gold == 1).sum())
    label = 1.0 if positives <= len(gold) - positives else 0.0
    others = scores[(gold != label) & np.isfinite(scores)]
    low, high = _score_range(scores)
    if not others.size:
        wrong = 0.5 * (low + high)
    else:  # a positive with a quarter of the negatives below it; a negative, above it
        wrong = float(np.quantile(others, 1.0 - AUC_PSEUDO_MOVE if label == 1.0 else AUC_PSEUDO_MOVE))
    right = high if label == 1.0 else low  # past every row of the other class, the right way
    base = np.array([[right, label], [wrong, label]])
    return base, base[::-1].copy()


def _spearman_pseudo_rows(evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman's pseudo-rows: a row of the highest gold score that the candidate moves
    `SPEARMAN_PSEUDO_MOVE` of the way down the predicted order, where the base put it on top,
    and a row of the lowest that it moves from that far up to the bottom (a loss and a gain).
    Without them a map that keeps the order of a few rows gets a margin of zero (with two rows
    Spearman is +1 or -1). Not the whole way: one row moved the whole way changes Spearman by
    about 6/rows, and no split of a thousand rows could certify 1% of a Spearman of 0.9; half
    the way, the floor is about twice accuracy's on as many rows."""
    evidence = np.asarray(evidence, np.float64)
    scores, gold = evidence[:, 0], evidence[:, 1]
    finite = gold[np.isfinite(gold)]
    top, bottom = (float(finite.max()), float(finite.min())) if finite.size else (1.0, 0.0)
    low, high = _score_range(scores)
    ranked = np.sort(scores[np.isfinite(scores)])
    if not ranked.size:
        ranked = np.array([0.0])
    step = 1e-6 * (high - low)  # just past the row there, so that two rows cross
    last = len(ranked) - 1
    up_from_bottom = float(ranked[int(round(last * SPEARMAN_PSEUDO_MOVE))]) + step
    down_from_top = float(ranked[int(round(last * (1.0 - SPEARMAN_PSEUDO_MOVE)))]) - step
    return (np.array([[high, top], [up_from_bottom, bottom]]),
            np.array([[down_from_top, top], [low, bottom]]))


def _varying_scores(gold: np.ndarray) -> None:
    """Spearman's correlation with scores that are all equal is 0/0 (NaN)."""
    values = np.unique(np.asarray(gold, np.float64))
    if len(values) < 2:
        raise GoldWithoutVariety(f"Spearman needs gold scores that vary among the {len(gold)} rows "
                         f"scored; these all score {values[0]:g}")


def _label_set_evidence(predicted, gold, label_names=None) -> np.ndarray:
    """`[n, labels, 3]`: per row and label, (gold, predicted, correct) as 0/1 counts."""
    predicted, gold = np.asarray(predicted).astype(bool), np.asarray(gold) == 1
    if predicted.shape != gold.shape:
        raise ValueError(f"label sets must match: predicted {predicted.shape}, gold {gold.shape}")
    return np.stack([gold, predicted, gold & predicted], axis=-1).astype(np.float64)


def _class_set_evidence(predicted, gold, label_names=None) -> np.ndarray:
    """`[n, classes, 3]`: each row's one gold and one predicted class as a set of one label
    (`_label_set_evidence`), so the label-set F1s score classes: macro-F1 over classes."""
    predicted, gold = np.asarray(predicted), np.asarray(gold)
    if predicted.shape != gold.shape or predicted.ndim != 1:
        raise ValueError(f"classes must be one per row: predicted {predicted.shape}, gold {gold.shape}")
    width = len(label_names) if label_names is not None else int(max(predicted.max(initial=0),
                                                                     gold.max(initial=0))) + 1
    classes = np.arange(width)
    return _label_set_evidence(predicted[:, None] == classes, (gold[:, None] == classes).astype(int))


def _label_counts(evidence: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`[R, labels, 3]` summed counts of each row of `weights`' copies."""
    evidence = np.asarray(evidence, np.float64)
    summed = np.atleast_2d(np.asarray(weights, np.float64)) @ evidence.reshape(len(evidence), -1)
    return summed.reshape(len(summed), *evidence.shape[1:])


def _micro_f1(evidence: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """F1 of the counts summed over every label: `2 c / (g + p)`, 0 when nothing is gold or
    predicted."""
    return _f1_of_sums(_label_counts(evidence, weights).sum(axis=1))


def _macro_f1(evidence: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The mean F1 over the labels that are gold or predicted at least once (NaN where none is)."""
    counts = _label_counts(evidence, weights)
    present = counts[..., 0] + counts[..., 1] > 0
    with np.errstate(invalid="ignore"):
        return np.sum(_f1_of_sums(counts) * present, axis=1) / np.where(present.any(1), present.sum(1), np.nan)


def _label_set_scores(evidence: np.ndarray) -> dict[str, float]:
    """Micro precision and recall, and the macro F1, of all rows once."""
    gold, predicted, correct = np.asarray(evidence).sum(axis=(0, 1))
    return {"precision": correct / predicted if predicted else 0.0,
            "recall": correct / gold if gold else 0.0,
            "macro_f1": float(_macro_f1(evidence, np.ones((1, len(evidence))))[0])}


ACCURACY = Metric(
    bound=1.0, name="accuracy", display_name="accuracy", gold_field="label", margin=Margin.PER_EXAMPLE,
    proxy=KL, evidence=_correct, weighted=_mean_weighted, exact=lambda e: np.mean(e))
ENTITY_F1 = Metric(
    bound=1.0, name="entity_f1", display_name="entity F1", gold_field="tags", margin=Margin.RESAMPLED,
    proxy=KL, evidence=_entity_evidence, weighted=_entity_weighted,
    exact=lambda e: _entity_scores(e)["f1"],
    details=lambda e: {k: v for k, v in _entity_scores(e).items() if k != "f1"},
    reads_labels=reads_entities,
    pseudo_rows=_entity_pseudo_rows)
def _entity_tags_in_disguise(names: Sequence[str]) -> str | None:
    """Word accuracy's doubt: tag names that look like entity tags in a spelling entity F1 does
    not read (`bio_tags.near_entity_names`)."""
    near = near_entity_names(names)
    if not near:
        return None
    return (f"tags {list(near)[:6]}{' ...' if len(near) > 6 else ''} beside 'O' look like entity "
            "tags in another spelling than '<B|I|E|S|L|U>-<type>' (entity F1 reads that one, "
            "or bare types beside 'O' as IO tags); scored as word tags, by word accuracy, mostly 'O' would be counted. Rename "
            "them (B-PER, I-PER) to score entity F1, or choose --metric word_accuracy (API: a "
            "Task's metric_name) if they are word tags")


WORD_ACCURACY = Metric(
    bound=1.0, name="word_accuracy", display_name="word accuracy", gold_field="tags",
    margin=Margin.RESAMPLED, proxy=KL, evidence=_word_evidence, weighted=_word_accuracy,
    pseudo_rows=_word_pseudo_rows, doubts_labels=_entity_tags_in_disguise)
"""A tagger's words tagged right over its words scored, pooled over the sentences (each
word's tag read at its first piece; a word whose gold tag is `IGNORE` is not scored): the
accuracy of part-of-speech tagging, as seqeval's and scikit-learn's `accuracy_score` give it
on the flattened word tags. Sentences are the examples its bootstrap resamples."""
ROC_AUC = Metric(
    bound=1.0, name="roc_auc", display_name="ROC-AUC", gold_field="label", margin=Margin.RESAMPLED,
    proxy=COSINE, evidence=_pair_evidence,
    weighted=lambda e, w: roc_auc_weighted(e[:, 0], e[:, 1], w),
    check_gold=_both_classes, balanced_subsets=True, pseudo_rows=_auc_pseudo_rows)
SPEARMAN = Metric(
    bound=1.0, name="spearman", display_name="Spearman", gold_field="score", margin=Margin.RESAMPLED,
    proxy=COSINE, evidence=_pair_evidence,
    weighted=lambda e, w: spearman_weighted(e[:, 0], e[:, 1], w), check_gold=_varying_scores,
    pseudo_rows=_spearman_pseudo_rows)
MICRO_F1 = Metric(
    bound=1.0, name="micro_f1", display_name="micro-F1", gold_field="labels", margin=Margin.RESAMPLED,
    proxy=LABEL_KL, evidence=_label_set_evidence, weighted=_micro_f1, details=_label_set_scores,
    pseudo_rows=_label_set_pseudo_rows)
MACRO_F1 = Metric(
    bound=1.0, name="macro_f1", display_name="macro-F1", gold_field="labels", margin=Margin.RESAMPLED,
    proxy=LABEL_KL, evidence=_label_set_evidence, weighted=_macro_f1,
    pseudo_rows=_macro_pseudo_rows)
CLASS_MACRO_F1 = Metric(
    bound=1.0, name="class_macro_f1", display_name="macro-F1", gold_field="label", margin=Margin.RESAMPLED,
    proxy=KL, evidence=_class_set_evidence, weighted=_macro_f1,
    pseudo_rows=_macro_pseudo_rows)


def _some_relevant(gold: np.ndarray) -> None:
    """Every ranking metric is 0 on queries without a relevant row, and the same for every
    ranker on a query of one row; with only such queries it is the same for every model, and a
    tolerance relative to it bounds nothing (nor does a dev score pick a checkpoint)."""
    gold = np.asarray(gold, np.float64).reshape(-1, 2)
    queries, rows = np.unique(gold[:, 0], return_counts=True)
    if not (gold[:, 1] >= ranking.RELEVANT).any():
        raise ValueError(f"a ranking metric needs a relevant row (relevance {ranking.RELEVANT} or "
                         f"more) in some query; the {len(queries)} queries scored ({len(gold)} "
                         "rows) have none")
    if (rows == 1).all():
        raise ValueError(f"a ranking metric needs a query of 2 rows or more; each of the "
                         f"{len(queries)} queries scored has 1 row, on which every ranker scores "
                         "the same")


def _ranking_metric(name: str, display_name: str, per_query: Callable[..., np.ndarray]) -> Metric:
    """A mean over queries of `per_query(scores, relevance, queries)` values in [0, 1]
    (`samp_jax.tasks.ranking`): its evidence is one value per query, its margin the adjusted
    paired bound over queries."""
    def evidence(predicted, gold, label_names=None) -> np.ndarray:
        gold = np.asarray(gold, np.float64).reshape(-1, 2)
        return per_query(np.asarray(predicted, np.float64), gold[:, 1], gold[:, 0])
    return Metric(name=name, display_name=display_name, gold_field="relevance",
                  margin=Margin.PER_EXAMPLE, proxy=SCORE, evidence=evidence,
                  weighted=_mean_weighted, exact=lambda e: np.mean(e), check_gold=_some_relevant,
                  unit="query", units="queries", gold=ranking.ranking_gold, bound=1.0)


MRR_AT_10 = _ranking_metric("mrr@10", "MRR@10", functools.partial(ranking.reciprocal_rank, k=10))
NDCG_AT_10 = _ranking_metric("ndcg@10", "NDCG@10", functools.partial(ranking.ndcg, k=10))
MAP = _ranking_metric("map", "MAP", ranking.average_precision)
RECALLS = tuple(_ranking_metric(f"recall@{k}", f"recall@{k}",
                                functools.partial(ranking.recall, k=k)) for k in (1, 5, 10, 100))
RANKING_METRICS = (MRR_AT_10, NDCG_AT_10, MAP, *RECALLS)
"""The ranking metrics, the default (MRR@10) first."""
METRICS: dict[str, Metric] = {m.name: m for m in (ACCURACY, ENTITY_F1, WORD_ACCURACY, ROC_AUC,
                                                   SPEARMAN, MICRO_F1, MACRO_F1, CLASS_MACRO_F1,
                                                   *RANKING_METRICS)}


def get_metric(name: str) -> Metric:
    """The registered `Metric` called `name`."""
    if name not in METRICS:
        raise ValueError(f"metric {name=} is not one of {sorted(METRICS)}")
    return METRICS[name]
