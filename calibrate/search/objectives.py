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
from statistics import NormalDist
from typing import Sequence

import numpy as np

from samp_jax.serving.forward import jit_forward
from samp_jax.tasks import Evaluation, Task, get_task
from samp_jax.tasks.task import check_head_fits
from samp_jax.tasks.evaluation import log_softmax, one_minus_cosine, score_change
from samp_jax.tasks.metrics import COSINE, KL, SCORE, Z_ONE_SIDED_95, Baseline, Proxy

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
    proxy_kind: Proxy = KL  # what `proxy` measures (its name in reports)
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
        self.proxy_kind = evaluation.proxy_kind
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
        paired per example, as the task's `Metric.guarded_drop` takes it: `z` paired standard
        errors for accuracy, `z` standard deviations of the paired bootstrap drop for entity
        F1, ROC-AUC and Spearman. None without a metric or on a partial view."""
        metric = self.evaluation.task_metric
        evidence = None if self.partial else self.evaluation.evidence(outputs)
        if metric is None or evidence is None:
            return None
        return metric.guarded_drop(self._baseline(base), evidence, z=z)

    def _baseline(self, base) -> Baseline:
        """The metric's `Baseline` of `base` outputs, computed once per base (every candidate
        is compared with the same FP32 outputs)."""
        cached = self.__dict__.get("_base_cache")
        if cached is None or cached[0] is not base:
            metric = self.evaluation.task_metric
            cached = (base, metric.baseline(self.evaluation.evidence(base)))
            self._base_cache = cached
        return cached[1]


def task_objective(model, task: Task | str, tokenizer, *, split: str = "search", seed: int = 0,
                   max_examples: int | None = None, batch_size: int = SEARCH_BATCH_SIZE
                   ) -> EvaluationObjective:
    """The search objective of `task` (a `Task` or a registered name): its `split`
    (all of it, or a fixed seeded subset of `max_examples`) against the model's FP32 outputs."""
    task = get_task(task, seed=seed) if isinstance(task, str) else task
    check_head_fits(model, task)
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
        kind = model.head_declaration  # logits: KL; anything else (custom heads too): cosine
        self.proxy_kind = KL if kind is not None and kind.classifies else COSINE
        if model.gives_a_score:  # one logit: a score
            self.proxy_kind = SCORE

    def proxy(self, outputs) -> float:
        if self.proxy_kind is SCORE:  # as `ScoringEvaluation.proxy`
            valid = [b["attention_mask"].sum(-1) > 0 for b in self.batches]
            return score_change(np.concatenate([o[v, 0] for o, v in zip(outputs, valid)]),
                                np.concatenate([r[v, 0] for r, v in zip(self.reference, valid)]))
        values = []
        for out, ref, batch in zip(outputs, self.reference, self.batches):
            valid = batch["attention_mask"].sum(-1) > 0
            if self.proxy_kind is KL:
                ref_logp, logp = log_softmax(ref), log_softmax(out)
                kl = np.sum(np.exp(ref_logp) * (ref_logp - logp), -1)
                values.append(kl.reshape(len(valid), -1).mean(-1)[valid])
            else:
                values.append(one_minus_cosine(out, ref).reshape(len(valid), -1).mean(-1)[valid])
        return float(np.mean(np.concatenate(values)))
