"""What a search measures: a task metric (when labels exist) and a smooth proxy.

An objective owns fixed-shape batches of its search data, the FP32 reference outputs on them,
and two functions of a candidate's outputs (a list with one array per batch):
- `metric(outputs)`: the task metric (higher is better), or None without labels;
- `proxy(outputs)`: a divergence from FP32 (lower is better): the mean KL of the predictive
  distribution for classifiers, `1 - cosine` for embeddings. It has far lower variance than
  the metric, so single-site sensitivities can be ranked on few examples.
`guarded_drop(outputs, base)` adds a one-sided 95% confidence margin to the metric drop (a
paired standard error for accuracy, a paired bootstrap for entity F1, ROC-AUC and Spearman), so
a map accepted on the search split keeps its promise on unseen data. A search that picks the
fastest of many maps that each passed widens the margin for the one it returns
(`selection_z`): the best of many looks better on the search split than it is.

A task's objective is its `samp_jax.tasks.Evaluation` of the search split (`EvaluationObjective`,
built by `task_objective`): the same object that scores the test split in the accuracy tables.
"""

from __future__ import annotations

import copy
import functools
from statistics import NormalDist
from typing import Sequence

import numpy as np

from samp_jax.serving.forward import jit_forward
from samp_jax.tasks import Evaluation, Task, get_task
from samp_jax.tasks.evaluation import log_softmax, one_minus_cosine

Z_ONE_SIDED_95 = 1.645
CONFIDENCE = 0.95


def selection_z(compared: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided z of a margin that holds with `confidence` for every one of `compared`
    maps at once (Bonferroni: `1 - (1 - confidence) / compared` each), never below
    `Z_ONE_SIDED_95`.

    Picking the fastest of many maps that each passed at 95% favours a map whose search-split
    score was lucky; judging the pick at this z keeps the 95% for the pick.

    Raises:
      ValueError: `compared` < 1, or `confidence` not in (0, 1).
    """
    if compared < 1:
        raise ValueError(f"compared={compared} must be at least 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} must be in (0, 1)")
    return max(Z_ONE_SIDED_95, NormalDist().inv_cdf(1.0 - (1.0 - confidence) / compared))
SEARCH_BATCH_SIZE = 64


class Objective:
    """Base: batches, reference outputs, metric and proxy."""

    name: str = "objective"
    metric_name: str | None = None
    batches: list[dict[str, np.ndarray]]
    reference: list[np.ndarray]
    partial: bool = False  # a subset view: proxy only
    _per_batch: tuple[str, ...] = ()  # attributes with one entry per batch

    def metric(self, outputs: Sequence[np.ndarray]) -> float | None:
        return None

    def subset(self, num_batches: int | None) -> "Objective":
        """A view on the first `num_batches` batches; its metric is None (proxy only)."""
        if num_batches is None or num_batches >= len(self.batches):
            return self
        view = copy.copy(self)
        for name in ("batches", "reference", *self._per_batch):
            setattr(view, name, getattr(self, name)[:num_batches])
        view.partial = True
        return view

    def proxy(self, outputs: Sequence[np.ndarray]) -> float:
        raise NotImplementedError

    def guarded_drop(self, outputs: Sequence[np.ndarray], base: Sequence[np.ndarray], *,
                     z: float = Z_ONE_SIDED_95) -> float | None:
        """Metric drop against `base` plus `z` standard errors of it; None if it has no metric."""
        m, b = self.metric(outputs), self.metric(base)
        return None if m is None else b - m


class EvaluationObjective(Objective):
    """A task's `Evaluation` of its search split against the model's own FP32 outputs."""

    def __init__(self, model, evaluation: Evaluation, *, name: str = "task"):
        self.evaluation, self.name = evaluation, name
        self.metric_name = evaluation.metric_name
        self.batches = evaluation.batches
        self.reference = evaluation.outputs(jit_forward(model))

    def subset(self, num_batches: int | None) -> "EvaluationObjective":
        view = super().subset(num_batches)
        if view is not self:
            view.evaluation = self.evaluation.subset(num_batches)
        return view

    def metric(self, outputs) -> float | None:
        if self.partial:
            return None
        return self.evaluation.metric(outputs)

    def proxy(self, outputs) -> float:
        return self.evaluation.proxy(outputs, self.reference)

    def guarded_drop(self, outputs, base, *, z: float = Z_ONE_SIDED_95) -> float | None:
        """The metric drop against `base` plus a one-sided margin (95% at the default `z`),
        paired per example:
        for accuracy the mean per-example difference plus `z` standard errors
        (`guarded_difference`); for entity F1 the drop plus `z` standard deviations of the
        paired bootstrap drop over sentences (`guarded_ratio_drop`); for ROC-AUC and Spearman
        the drop plus `z` standard deviations of the paired bootstrap drop over examples
        (`guarded_bootstrap_drop`)."""
        correct = self.evaluation.correct(outputs)
        if correct is not None:
            return guarded_difference(self._of_base("correct", base), correct, z=z)
        counts = self.evaluation.entity_counts(outputs)
        if counts is not None:
            return guarded_ratio_drop(self._of_base("entity_counts", base), counts, z=z)
        weights = _bootstrap_weights(self.evaluation.num_examples, BOOTSTRAP_RESAMPLES, 0)
        resampled = self.evaluation.resampled_metric(outputs, weights)
        if resampled is not None:
            base_resampled = self._of_base("resampled_metric", base, weights)
            return guarded_bootstrap_drop(self._of_base("metric", base), self.metric(outputs),
                                          base_resampled, resampled, z=z)
        return super().guarded_drop(outputs, base, z=z)

    def _of_base(self, name: str, base, *args):
        """`evaluation.<name>(base, *args)`, computed once per base (every candidate is compared
        with the same FP32 outputs)."""
        cache = self.__dict__.setdefault("_base_cache", {})
        key = (name, id(base))
        if key not in cache or cache[key][0] is not base:
            cache[key] = (base, getattr(self.evaluation, name)(base, *args))
        return cache[key][1]


def guarded_difference(base: np.ndarray, candidate: np.ndarray, *, z: float = Z_ONE_SIDED_95) -> float:
    """`mean(base - candidate) + z * std(base - candidate, ddof=1) / sqrt(n)`: the paired
    drop with a one-sided upper confidence margin, 95% at the default `z` (no margin for one
    example)."""
    diff = np.asarray(base, np.float64) - np.asarray(candidate, np.float64)
    margin = z * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return float(diff.mean() + margin)


BOOTSTRAP_RESAMPLES = 1000


def _f1_of_sums(counts: np.ndarray) -> np.ndarray:
    """F1 from `[..., 3]` summed (gold, predicted, correct) counts: `2 c / (g + p)`, 0 if empty."""
    gold, predicted, correct = counts[..., 0], counts[..., 1], counts[..., 2]
    total = gold + predicted
    return np.where(total > 0, 2.0 * correct / np.maximum(total, 1e-12), 0.0)


@functools.lru_cache(maxsize=4)
def _bootstrap_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """`[resamples, n]` counts of each example in each seeded resample with replacement."""
    rng = np.random.default_rng(seed)
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)])
    weights = weights.astype(np.float64)
    weights.flags.writeable = False
    return weights


def guarded_ratio_drop(base: np.ndarray, candidate: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0, z: float = Z_ONE_SIDED_95) -> float:
    """Entity-F1 drop of `candidate` against `base` plus a one-sided margin (95% at the default
    `z`).

    Both are `[N, 3]` per-example (gold, predicted, correct) counts (`entity_counts`). The
    examples are resampled with replacement `resamples` times (the same resamples for both:
    a paired bootstrap, seeded so every candidate map is judged on the same ones); the margin
    is `z` times the standard deviation of the resampled drops. One example: no margin.
    """
    base, candidate = np.asarray(base, np.float64), np.asarray(candidate, np.float64)
    if base.shape != candidate.shape or base.ndim != 2 or base.shape[1] != 3:
        raise ValueError(f"counts must both be [N, 3]; got {base.shape} and {candidate.shape}")
    drop = float(_f1_of_sums(base.sum(0)) - _f1_of_sums(candidate.sum(0)))
    n = len(base)
    if n < 2:
        return drop
    weights = _bootstrap_weights(n, resamples, seed)
    drops = _f1_of_sums(weights @ base) - _f1_of_sums(weights @ candidate)
    return drop + z * float(drops.std(ddof=1))


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


def task_objective(model, task: Task | str, tokenizer, *, split: str = "search", seed: int = 0,
                   max_examples: int | None = None, batch_size: int = SEARCH_BATCH_SIZE
                   ) -> EvaluationObjective:
    """The search objective of `task` (a `Task` or a registered name): its `split`
    (all of it, or a fixed seeded subset of `max_examples`) against the model's FP32 outputs."""
    task = get_task(task, seed=seed) if isinstance(task, str) else task
    if model.head_kind != task.head:
        raise ValueError(f"task {task.name!r} needs a {task.head} head, the model has {model.head_kind}")
    evaluation = task.evaluation(tokenizer, split, max_examples=max_examples, seed=seed,
                                 batch_size=batch_size)
    return EvaluationObjective(model, evaluation, name=task.name)


class UnlabelledObjective(Objective):
    """Unlabelled inputs: only the proxy (KL for logits, 1 - cosine otherwise) is available."""

    def __init__(self, model, batches: Sequence[dict[str, np.ndarray]], *, name: str = "unlabelled"):
        if not batches:
            raise ValueError("empty search set: no batches")
        self.batches, self.name = list(batches), name
        forward = jit_forward(model)
        self.reference = [np.asarray(forward(batch)) for batch in self.batches]
        self._classifier = model.head_kind in ("sequence_classification", "token_classification")

    def proxy(self, outputs) -> float:
        values = []
        for out, ref, batch in zip(outputs, self.reference, self.batches):
            valid = batch["attention_mask"].sum(-1) > 0
            if self._classifier:
                ref_logp, logp = log_softmax(ref), log_softmax(out)
                kl = np.sum(np.exp(ref_logp) * (ref_logp - logp), -1)
                values.append(kl.reshape(len(valid), -1).mean(-1)[valid])
            else:
                values.append(one_minus_cosine(out, ref).reshape(len(valid), -1).mean(-1)[valid])
        return float(np.mean(np.concatenate(values)))
