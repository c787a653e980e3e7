"""One split of a task, tokenized and cut into fixed-shape batches, with everything that scores
a model's outputs on it: the metric, a smooth proxy of the divergence from a reference model,
per-example correctness and agreement.

The same `Evaluation` serves the accuracy tables (test split) and the precision search
(`calibrate.search.objectives.EvaluationObjective` on the search split); fine-tuning's early stopping
and `evaluate` score with `Task.score`, the same scoring function over the same encoding. Outputs are kept per batch, as the model returns
them (padding rows included).
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import numpy as np

from samp_jax.models.head_kinds import LABEL_THRESHOLD, Readout, check_label_threshold
from samp_jax.models.similarity import DEFAULT_SIMILARITY, check_similarity, pair_similarity
from samp_jax.serving.batching import DEFAULT_BUCKETS, TokenizedRows, balanced_batch_size
from samp_jax.tasks.metrics import IGNORE, Metric, spearman
from samp_jax.tasks.proxies import (KL, LABEL_KL, SCORE, Proxy, embedding_proxy,
                                    one_minus_cosine)
from samp_jax.tasks.truncation import Truncation
from samp_jax.tasks.types import (EncodedSplit, TaskType, non_finite_rows, task_score,
                                  units_scored, with_non_finite)

Forward = Callable[[dict], object]


class Evaluation:
    """Base: fixed-shape `batches` of one split and the functions of a model's outputs.

    Attributes:
      task_metric: the `samp_jax.tasks.metrics.Metric` it scores by, or None (no labels).
      metric_name: its name ('accuracy', 'entity_f1', 'roc_auc', 'spearman'), or None.
      proxy_kind: the `Proxy` that `proxy` computes (`samp_jax.tasks.proxies`: the KL of the
        softmax, the per-label binary KL, the scale-free score change, or 1 - cosine).
      agreement_name: what `score(..., reference)["agreement"]` measures.
      batches: model inputs (`input_ids`, `attention_mask`, `token_type_ids`), equal shapes
        within a length bucket.
      num_examples: examples scored.
      truncation: what cutting the rows at the task's length left out (`Truncation`), or
        None when not recorded.
      partial: a view on the first batches only (`subset`): proxy, but no metric.
    """

    task_metric: Metric | None = None
    proxy_kind: Proxy
    agreement_name: str = "agreement"
    partial: bool = False
    batches: list[dict[str, np.ndarray]]
    _per_batch: tuple[str, ...] = ("batches",)  # attributes with one entry per batch

    @property
    def metric_name(self) -> str | None:
        return None if self.task_metric is None else self.task_metric.name

    @property
    def num_examples(self) -> int:
        raise NotImplementedError

    @property
    def truncation(self) -> Truncation | None:
        return None

    def outputs(self, forward: Forward) -> list[np.ndarray]:
        """`forward(batch)` for every batch (e.g. `jit_forward(model)`), as numpy."""
        return [np.asarray(forward(batch)) for batch in self.batches]

    def subset(self, num_batches: int | None) -> "Evaluation":
        """A view on the first `num_batches` batches; its metric is None (proxy only)."""
        if num_batches is None or num_batches >= len(self.batches):
            return self
        view = copy.copy(self)
        for name in self._per_batch:
            setattr(view, name, getattr(self, name)[:num_batches])
        view.partial = True
        return view

    def evidence(self, outputs: Sequence[np.ndarray]) -> np.ndarray | None:
        """The per-example rows `task_metric` scores (`Metric.evidence`), in example order; None
        without labels or on a partial view."""
        return None

    def metric(self, outputs: Sequence[np.ndarray], non_finite: int | None = None) -> float | None:
        """The task metric, or None without labels or on a partial view; NaN when any output
        it reads is NaN or Inf (`non_finite`, counted here unless given): no answer is read
        from such an output."""
        evidence = self.evidence(outputs)
        if evidence is None:
            return None
        if non_finite is None:
            non_finite = self.non_finite(outputs)
        return math.nan if non_finite else self.task_metric.value(evidence)

    def non_finite(self, outputs: Sequence[np.ndarray]) -> int:
        """How many of the split's rows (examples; texts of an embedding split) have a NaN or
        Inf output where the metric and the proxy read it (a per-token head: its labelled
        tokens). Such outputs come from values past a precision's range (FP16 overflows
        above 65,504) or from NaN input."""
        raise NotImplementedError

    def proxy(self, outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
        """A smooth divergence from the `reference` outputs (lower is better): the proxy's
        (`proxy_kind`) divergence over the real rows of each batch (the labelled tokens of a
        per-token head, `_counted`), pooled by `Proxy.pooled` (its mean, over its scale)."""
        values, real_reference = [], []
        for out, ref, rows in zip(outputs, reference, self._rows):
            out, ref = out[:len(rows)], ref[:len(rows)]
            divergence = self.proxy_kind.rows(out, ref)
            values.append(divergence[self._counted(rows, divergence)])
            real_reference.append(ref)
        values = np.concatenate(values) if values else np.zeros(0)
        return self.proxy_kind.pooled(values, real_reference) if values.size else 0.0

    def _counted(self, rows: np.ndarray, divergence: np.ndarray) -> np.ndarray:
        """Which entries of a batch's `divergence` (its real `rows`') the proxy counts: all."""
        return np.ones(divergence.shape, bool)

    def agreement(self, outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
        raise NotImplementedError

    def score(self, outputs: Sequence[np.ndarray],
              reference: Sequence[np.ndarray] | None = None) -> dict[str, float]:
        """`{'metric', 'value', 'examples'}` (and `queries` for a ranking metric), plus
        `agreement` with a reference, and `non_finite_rows` when some outputs are NaN or Inf
        (the value is then NaN)."""
        bad = self.non_finite(outputs)
        out = {"metric": self.metric_name, "value": self.metric(outputs, bad),
               "examples": self.num_examples}
        evidence = self.evidence(outputs)
        if evidence is not None:
            out |= units_scored(self.task_metric, evidence)
        if reference is not None:
            out["agreement"] = self.agreement(outputs, reference)
        return with_non_finite(out, bad)


class ClassificationEvaluation(Evaluation):
    """Sequence or token classification: logits per row (or per token), one class each."""

    agreement_name = "same prediction as FP32"
    proxy_kind = KL
    threshold: float = LABEL_THRESHOLD  # label sets' decision threshold (LabelSetEvaluation)
    relevant_class: int = 1  # the class of a ranking's two-class head read as relevance
    _per_batch = ("batches", "_rows")

    def __init__(self, task_type: TaskType, metric: Metric | None, labels: Sequence[str] | None,
                 encoded: EncodedSplit, *, batch_size: int = 64,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, balanced: bool = False):
        self.task_type, self.labels, self.encoded = task_type, labels, encoded
        self.task_metric = metric
        if metric is not None and metric.check_gold is not None:
            metric.check_gold(encoded.gold)
        if balanced:
            batch_size = balanced_batch_size(len(encoded), batch_size)
        self._rows, self.batches = encoded_batches(encoded, batch_size, buckets)

    @property
    def num_examples(self) -> int:
        return len(self.encoded)

    @property
    def truncation(self) -> Truncation | None:
        return self.encoded.truncation

    def gather(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Per-batch outputs back in row order: `[N, C]` or `[N, max_length, C]`."""
        return gather_rows(outputs, self._rows, self.encoded)

    def predicted(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """What the head predicts for each row (or token), read as the task type reads it."""
        return self.task_type.predicted(self.gather(outputs), self.threshold, self.relevant_class)

    def evidence(self, outputs) -> np.ndarray | None:
        if self.partial or self.task_metric is None:
            return None
        return self.task_metric.evidence(self.predicted(outputs), self.encoded.gold, self.labels)

    def score(self, outputs, reference=None) -> dict[str, float]:
        out = task_score(self.task_type, self.task_metric, self.labels, self.gather(outputs),
                         self.encoded, threshold=self.threshold,
                         relevant_class=self.relevant_class)  # NaN for NaN or Inf outputs
        if reference is not None:
            out["agreement"] = self.agreement(outputs, reference)
        return out

    def non_finite(self, outputs) -> int:
        return non_finite_rows(self.gather(outputs), self.encoded.labels)

    def _finite_answers(self, outputs) -> np.ndarray:
        """Per row (per token), whether its outputs are finite: no answer is read otherwise."""
        gathered = self.gather(outputs)
        return np.isfinite(gathered).all(-1)

    def _counted(self, rows, divergence) -> np.ndarray:
        """Every row, or, per token, the labelled positions only."""
        if divergence.ndim == 2:
            return self.encoded.labels[rows][:, :divergence.shape[1]] != IGNORE
        return np.ones(divergence.shape, bool)

    def agreement(self, outputs, reference) -> float:
        same = self.predicted(outputs) == self.predicted(reference)
        same &= self._finite_answers(outputs) & self._finite_answers(reference)
        if same.ndim == 2:
            same = same[self.encoded.labels != IGNORE]
        return float(np.mean(same))


class LabelSetEvaluation(ClassificationEvaluation):
    """Multi-label sequence classification: a sigmoid per label; a row's predicted labels are
    those with a probability of at least `threshold` (`Readout.LABELS`), scored by micro- or
    macro-F1 against the gold label sets, and compared with the reference's label sets at the
    same threshold (`agreement`); the proxy, the per-label binary KL of the probabilities, does
    not depend on it.

    Attributes:
      threshold: the decision threshold, strictly between 0 and 1 (default `LABEL_THRESHOLD`).
    """

    agreement_name = "same label set as FP32"
    proxy_kind = LABEL_KL

    def __init__(self, *args, threshold: float = LABEL_THRESHOLD, **kwargs):
        self.threshold = check_label_threshold(threshold)
        super().__init__(*args, **kwargs)

    def agreement(self, outputs, reference) -> float:
        """The share of rows whose predicted label set is the reference's, label for label
        (a row of NaN or Inf outputs agrees with nothing)."""
        same = np.all(self.predicted(outputs) == self.predicted(reference), -1)
        return float(np.mean(same & self._finite_answers(outputs) & self._finite_answers(reference)))


class EmbeddingEvaluation(Evaluation):
    """Bi-encoder embeddings of every unique text of the split; pairs scored by the model's
    `similarity` (`samp_jax.models.similarity`: cosine unless its folder says dot, euclidean
    or manhattan; ROC-AUC against 0/1 labels, Spearman against scores, or a ranking metric of
    each query's passages against their relevance), or no metric for plain texts. The agreement with FP32 is the embeddings' cosine whatever the similarity; the proxy is
    `embedding_proxy(similarity)`: `1 - cosine` for cosine, the relative squared change of each
    embedding (its length included) for the others."""

    agreement_name = "cosine to FP32"
    _per_batch = ("batches", "_rows")

    def __init__(self, tokenizer, examples: Sequence[dict], *, metric: Metric | None,
                 batch_size: int = 128, buckets: Sequence[int] = DEFAULT_BUCKETS,
                 max_length: int | None = None, similarity: str = DEFAULT_SIMILARITY,
                 balanced: bool = False):
        self.similarity = check_similarity(similarity)
        self.proxy_kind = embedding_proxy(self.similarity)
        pairs = bool(examples) and "text_pair" in examples[0]
        texts = [e["text"] for e in examples] + ([e["text_pair"] for e in examples] if pairs else [])
        self.texts = list(dict.fromkeys(texts))
        index = {t: i for i, t in enumerate(self.texts)}
        self._left = np.array([index[e["text"]] for e in examples])
        self._right = np.array([index[e["text_pair"]] for e in examples]) if pairs else None
        self.task_metric = metric if pairs else None
        self.gold = None
        if self.task_metric is not None:
            self.gold = self.task_metric.gold_of(examples)
            if self.task_metric.check_gold is not None:
                self.task_metric.check_gold(self.gold)
        self._count = len(examples)
        self._rows, self.batches = [], []
        rows = TokenizedRows.of(tokenizer, self.texts, truncation=True, max_length=max_length,
                                buckets=buckets)
        if balanced:
            batch_size = balanced_batch_size(len(self.texts), batch_size)
        for batch_rows, batch in rows.batches(batch_size):
            self._rows.append(batch_rows)
            self.batches.append(batch)
        cut = rows.truncated  # pairs: either text was cut
        cut = cut[self._left] if self._right is None else cut[self._left] | cut[self._right]
        self._truncation = Truncation(rows.buckets[-1], self._count, int(cut.sum()))

    @property
    def num_examples(self) -> int:
        return self._count

    @property
    def truncation(self) -> Truncation | None:
        return self._truncation

    def real_batches(self) -> list[dict[str, np.ndarray]]:
        """Each batch without the all-padding rows that fill it to its batch size."""
        return [{key: value[:len(rows)] for key, value in batch.items()}
                for batch, rows in zip(self.batches, self._rows)]

    def gather(self, outputs) -> np.ndarray:
        """`[unique texts, dim]` embeddings in text order."""
        emb = np.zeros((len(self.texts), outputs[0].shape[-1]), np.float32)
        for rows, out in zip(self._rows, outputs):
            emb[rows] = out[:len(rows)]
        return emb

    def evidence(self, outputs) -> np.ndarray | None:
        if self.partial or self.task_metric is None:
            return None
        return self.task_metric.evidence(self.pair_scores(outputs), self.gold, None)

    def non_finite(self, outputs) -> int:
        """Examples (pairs: either text) whose embedding holds NaN or Inf; plain texts without
        pairs: texts."""
        bad = ~np.isfinite(self.gather(outputs)).all(-1)  # per unique text
        if self._right is None:
            return int(bad[self._left].sum())
        return int((bad[self._left] | bad[self._right]).sum())

    def pair_scores(self, outputs) -> np.ndarray:
        """The similarity of every pair, in example order."""
        emb = self.gather(outputs)
        return pair_similarity(self.similarity, emb[self._left], emb[self._right])

    def agreement(self, outputs, reference) -> float:
        return float(np.mean(1.0 - one_minus_cosine(self.gather(outputs), self.gather(reference))))


class ScoringEvaluation(ClassificationEvaluation):
    """A sequence head of one output (num_labels=1: a reranker, a regression cross-encoder):
    its logit is the row's score, ranked against 0/1 labels (ROC-AUC) or scores (Spearman);
    for a ranking task, each query's rows by it (or by P(`relevant_class`) of a two-class head,
    class 1 unless the task says otherwise: `Task.relevant_class`) against their relevance
    (MRR@10, NDCG@10, MAP, recall@k)."""

    agreement_name = "rank correlation with FP32"
    proxy_kind = SCORE

    def __init__(self, task_type: TaskType, metric: Metric, labels: Sequence[str] | None,
                 encoded: EncodedSplit, *, batch_size: int = 64,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, relevant_class: int = 1,
                 balanced: bool = False):
        self.relevant_class = relevant_class
        super().__init__(task_type, metric, None, encoded, batch_size=batch_size, buckets=buckets,
                         balanced=balanced)

    def scores(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """`[N]` scores in row order."""
        return self.predicted(outputs)

    def agreement(self, outputs, reference) -> float:
        """Spearman's rank correlation of the scores with the reference's."""
        return spearman(self.scores(outputs), self.scores(reference))


EVALUATIONS: dict[Readout, type[ClassificationEvaluation]] = {
    Readout.CLASSES: ClassificationEvaluation, Readout.LABELS: LabelSetEvaluation,
    Readout.SCORE: ScoringEvaluation}
"""The `Evaluation` of each way a head's logits are read (`TaskType.readout`)."""


# ------------------------------------------------------------------------- row helpers
def encoded_batches(encoded: EncodedSplit, batch_size: int,
                    buckets: Sequence[int]) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
    """`(rows, batches)`: each evaluation batch's row indices and its model inputs (labels
    left out), batched by length as `EncodedSplit.batches` does."""
    rows, batches = [], []
    for batch_rows, batch in encoded.batches(batch_size, buckets=buckets):
        rows.append(batch_rows)
        batches.append({k: v for k, v in batch.items() if k != "labels"})
    return rows, batches


def gather_rows(batch_outputs: Sequence[np.ndarray], batch_rows: Sequence[np.ndarray],
                encoded: EncodedSplit) -> np.ndarray:
    """Puts per-batch outputs (`[batch, ...]`, padding rows included) back in row order:
    `[N, C]`, or `[N, max_length, C]` for token outputs (positions past a bucket stay 0)."""
    first = batch_outputs[0]
    shape = (len(encoded),) + ((encoded.input_ids.shape[1],) if first.ndim == 3 else ()) + first.shape[-1:]
    out = np.zeros(shape, np.float32)
    for rows, logits in zip(batch_rows, batch_outputs):
        logits = logits[:len(rows)]
        if logits.ndim == 3:
            out[rows, :logits.shape[1]] = logits
        else:
            out[rows] = logits
    return out
