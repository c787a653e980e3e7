"""What a search measures: a task metric (when labels exist) and a smooth proxy.

An objective owns fixed-shape batches of its search data, the FP32 reference outputs on them,
and two functions of a candidate's outputs (a list with one array per batch):
- `metric(outputs)`: the task metric (higher is better), or None without labels;
- `proxy(outputs)`: a divergence from FP32 (lower is better, `samp_jax.tasks.proxies`): the
  mean KL of the predictive distribution for classifiers, the per-label binary KL for
  multi-label heads, the scale-free score change for one-output heads, `1 - cosine` for
  embeddings. It has far lower variance than the metric, so single-site sensitivities can be
  ranked on few examples.
`guarded_drop(outputs, base)` adds a one-sided 95% confidence margin to the metric drop (a
paired bound for accuracy that counts one more row lost and one more gained, and the same
over queries for the ranking metrics, MRR@10, NDCG@10, MAP and recall@k; a paired
bootstrap for entity F1 and the label-set F1s, with the same two pseudo-rows, and for ROC-AUC
and Spearman), so a map accepted on the search split keeps its promise on unseen data. A
search that picks the fastest of many maps that each passed widens the margin for the one it
returns (`selection_z`): the best of many looks better on the search split than it is.

A task's objective is its `samp_jax.tasks.Evaluation` of the search split (`EvaluationObjective`,
built by `task_objective`): the same object that scores the test split in the accuracy tables.
"""

from __future__ import annotations

import copy
import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

from samp_jax.models.similarity import similarity_of
from samp_jax.serving.forward import jit_forward
from samp_jax.tasks import Evaluation, Task, get_task
from samp_jax.tasks.task import check_head_fits, with_model_relevant_class
from samp_jax.tasks.metrics import Z_ONE_SIDED_95, Baseline
from samp_jax.tasks.proxies import KL, Proxy, proxy_for
from samp_jax.tasks.types import non_finite_rows

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
# Outputs this close to the reference's are its own computation in another order (float32
# rounding: about 1e-7 relative per operation); any lower precision moves logits by far more
# (FP16 by about 1e-3 relative, an INT8 step by 1e-2).
SAME_COMPUTATION_RTOL, SAME_COMPUTATION_ATOL = 1e-5, 1e-6


def same_computation(outputs: Sequence[np.ndarray], base: Sequence[np.ndarray]) -> bool:
    """Whether `outputs` equal `base` to float32 rounding, batch by batch."""
    return len(outputs) == len(base) and all(
        np.shape(o) == np.shape(b) and np.allclose(o, b, rtol=SAME_COMPUTATION_RTOL,
                                                   atol=SAME_COMPUTATION_ATOL)
        for o, b in zip(outputs, base))


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

    def non_finite(self, outputs: Sequence[np.ndarray]) -> int:
        """How many of the objective's rows hold NaN or Inf in `outputs`."""
        return sum(non_finite_rows(np.asarray(out)) for out in outputs)

    @property
    def rows(self) -> int:
        """How many rows the objective scores."""
        return sum(len(next(iter(batch.values()))) for batch in self.batches)

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
        check_reference_finite(evaluation.non_finite(self.reference), evaluation.num_examples,
                               name)

    def subset(self, num_batches: int | None) -> "EvaluationObjective":
        view = super().subset(num_batches)
        if view is not self:
            view.evaluation = self.evaluation.subset(num_batches)
        return view

    def metric(self, outputs) -> float | None:
        if self.partial:
            return None
        return self.evaluation.metric(outputs)

    def non_finite(self, outputs) -> int:
        return self.evaluation.non_finite(outputs)

    @property
    def rows(self) -> int:
        return self.evaluation.num_examples

    def proxy(self, outputs) -> float:
        return self.evaluation.proxy(outputs, self.reference)

    def guarded_drop(self, outputs, base, *, z: float = Z_ONE_SIDED_95) -> float | None:
        """The metric drop against `base` plus a one-sided margin (95% at the default `z`),
        paired per example, as the task's `Metric.guarded_drop` takes it: `z` adjusted paired
        standard errors for accuracy, `z` standard deviations of the paired bootstrap drop for
        the others. None without a metric or on a partial view; 0 for outputs equal to
        `base`'s to float32 rounding (`same_computation`: the reference's own map, which a
        vmapped or switchable program computes in another order; nothing changed, nothing to
        bound, where a margin that counts a pseudo-row changed would fail FP32 itself)."""
        metric = self.evaluation.task_metric
        evidence = None if self.partial else self.evaluation.evidence(outputs)
        if metric is None or evidence is None:
            return None
        if self.evaluation.non_finite(outputs):  # no answer read from NaN or Inf outputs
            return math.inf
        if same_computation(outputs, base):
            return 0.0
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


def check_reference_finite(non_finite: int, rows: int, name: str) -> None:
    """Refuses a search whose FP32 reference outputs hold NaN or Inf: nothing can be measured
    against them.

    Raises:
      ValueError: naming the rows and the likely causes.
    """
    if non_finite:
        raise ValueError(f"the FP32 model gives NaN or Inf outputs for {non_finite} of {rows} "
                         f"rows of {name}'s search split: no precision can be measured against "
                         "them (are the weights damaged, or do some rows overflow float32?)")


def task_objective(model, task: Task | str, tokenizer, *, split: str = "search", seed: int = 0,
                   max_examples: int | None = None, batch_size: int = SEARCH_BATCH_SIZE
                   ) -> EvaluationObjective:
    """The search objective of `task` (a `Task` or a registered name): its `split`
    (all of it, or a fixed seeded subset of `max_examples`) against the model's FP32 outputs,
    in balanced batches of at most `batch_size` rows (every map the search runs pads no more
    rows than the split needs)."""
    task = get_task(task, seed=seed) if isinstance(task, str) else task
    check_head_fits(model, task)
    task = with_model_relevant_class(model, task)
    evaluation = task.evaluation(tokenizer, split, max_examples=max_examples, seed=seed,
                                 batch_size=batch_size, similarity=similarity_of(model),
                                 balanced=True)
    return EvaluationObjective(model, evaluation, name=task.name)


class UnlabelledObjective(Objective):
    """Unlabelled inputs: only the proxy is available, the one of how the model's outputs are
    read (`proxy_for(model.readout, similarity_of(model))`: KL for classes, the per-label
    binary KL for label sets, the score change for one output; for embeddings, 1 - cosine where
    the model compares them by cosine and the relative squared change of each embedding (its
    length included) where by a dot product or a distance; 1 - cosine for a custom head's)."""

    def __init__(self, model, batches: Sequence[dict[str, np.ndarray]], *, name: str = "unlabelled"):
        if not batches:
            raise ValueError("empty search set: no batches")
        self.batches, self.name = list(batches), name
        forward = jit_forward(model)
        self.reference = [np.asarray(forward(batch)) for batch in self.batches]
        self.proxy_kind = proxy_for(model.readout, similarity_of(model))
        # the real rows of each batch, and their reference outputs: the same for every map
        self._valid = [batch["attention_mask"].sum(-1) > 0 for batch in self.batches]
        bad = sum(non_finite_rows(ref[valid]) for ref, valid in zip(self.reference, self._valid))
        check_reference_finite(bad, int(sum(v.sum() for v in self._valid)), name)
        self._valid_reference = [ref[valid] for ref, valid in zip(self.reference, self._valid)]

    def non_finite(self, outputs) -> int:
        return sum(non_finite_rows(np.asarray(out)[valid]) for out, valid in zip(outputs, self._valid))

    @property
    def rows(self) -> int:
        return int(sum(valid.sum() for valid in self._valid))

    def proxy(self, outputs) -> float:
        """The proxy over the real rows (a per-token output: each row's mean over positions)."""
        values = []
        for out, ref, valid in zip(outputs, self.reference, self._valid):
            divergence = self.proxy_kind.rows(out, ref)
            values.append(divergence.reshape(len(valid), -1).mean(-1)[valid])
        return self.proxy_kind.pooled(np.concatenate(values), self._valid_reference)
