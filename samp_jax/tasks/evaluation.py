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
from typing import Callable, Sequence

import numpy as np

from samp_jax.models.model import NORM_FLOOR
from samp_jax.serving.batching import DEFAULT_BUCKETS, length_batches
from samp_jax.tasks.metrics import roc_auc, roc_auc_weighted, spearman, spearman_weighted
from samp_jax.data.wnut16 import entity_counts
from samp_jax.tasks.types import IGNORE, EncodedSplit, TaskType, classification_score, tag_rows

Forward = Callable[[dict], object]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis (float64)."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def one_minus_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`1 - cos(a, b)` per row of the last axis."""
    norms = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), NORM_FLOOR)
    return 1.0 - np.sum(a * b, -1) / norms


class Evaluation:
    """Base: fixed-shape `batches` of one split and the functions of a model's outputs.

    Attributes:
      metric_name: 'accuracy', 'entity_f1', 'roc_auc', 'spearman', or None (no labels).
      agreement_name: what `score(..., reference)["agreement"]` measures.
      batches: model inputs (`input_ids`, `attention_mask`, `token_type_ids`), equal shapes
        within a length bucket.
      num_examples: examples scored.
      partial: a view on the first batches only (`subset`): proxy, but no metric.
    """

    metric_name: str | None = None
    agreement_name: str = "agreement"
    partial: bool = False
    batches: list[dict[str, np.ndarray]]
    _per_batch: tuple[str, ...] = ("batches",)  # attributes with one entry per batch

    @property
    def num_examples(self) -> int:
        raise NotImplementedError

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

    def metric(self, outputs: Sequence[np.ndarray]) -> float | None:
        """The task metric (higher is better), or None without labels or on a partial view."""
        return None

    def proxy(self, outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
        """A smooth divergence from `reference` outputs (lower is better)."""
        raise NotImplementedError

    def correct(self, outputs: Sequence[np.ndarray]) -> np.ndarray | None:
        """Per-example 0/1 correctness where the metric is their mean (accuracy), else None."""
        return None

    def entity_counts(self, outputs: Sequence[np.ndarray]) -> np.ndarray | None:
        """Per example `[gold, predicted, correct]` entity counts where the metric is the F1 of
        their sums (entity F1), else None."""
        return None

    def resampled_metric(self, outputs: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray | None:
        """The metric of each bootstrap resample, `[R]` (NaN where a resample leaves it
        undefined), given `[R, n]` weights (how many times each resample drew each example),
        for a metric that does not decompose per example (ROC-AUC, Spearman); None otherwise,
        without labels or on a partial view."""
        return None

    def agreement(self, outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
        raise NotImplementedError

    def score(self, outputs: Sequence[np.ndarray],
              reference: Sequence[np.ndarray] | None = None) -> dict[str, float]:
        """`{'metric', 'value', 'examples'}`, plus `agreement` with a reference."""
        out = {"metric": self.metric_name, "value": self.metric(outputs),
               "examples": self.num_examples}
        if reference is not None:
            out["agreement"] = self.agreement(outputs, reference)
        return out


class ClassificationEvaluation(Evaluation):
    """Sequence or token classification: logits per row (or per token)."""

    agreement_name = "same prediction as FP32"
    _per_batch = ("batches", "_rows")

    def __init__(self, task_type: TaskType, labels: Sequence[str], encoded: EncodedSplit, *,
                 batch_size: int = 64, buckets: Sequence[int] = DEFAULT_BUCKETS):
        self.task_type, self.labels, self.encoded = task_type, tuple(labels), encoded
        self.metric_name = task_type.metric
        self._rows, self.batches = [], []
        for rows, batch in encoded.batches(batch_size, buckets=buckets):
            self._rows.append(rows)
            self.batches.append({k: v for k, v in batch.items() if k != "labels"})

    @property
    def num_examples(self) -> int:
        return len(self.encoded)

    def gather(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Per-batch outputs back in row order: `[N, C]` or `[N, max_length, C]`."""
        return gather_rows(outputs, self._rows, self.encoded)

    def metric(self, outputs) -> float | None:
        if self.partial:
            return None
        return classification_score(self.task_type, self.labels, self.gather(outputs),
                                    self.encoded)["value"]

    def score(self, outputs, reference=None) -> dict[str, float]:
        out = classification_score(self.task_type, self.labels, self.gather(outputs), self.encoded)
        if reference is not None:
            out["agreement"] = self.agreement(outputs, reference)
        return out

    def proxy(self, outputs, reference) -> float:
        """Mean KL(reference || outputs) of the predictive distribution over labelled rows
        (or labelled tokens)."""
        total, count = 0.0, 0
        for out, ref, rows in zip(outputs, reference, self._rows):
            ref_logp, logp = log_softmax(ref[:len(rows)]), log_softmax(out[:len(rows)])
            kl = np.sum(np.exp(ref_logp) * (ref_logp - logp), axis=-1)
            labels = self.encoded.labels[rows]
            valid = labels[:, :kl.shape[1]] != IGNORE if labels.ndim == 2 else labels != IGNORE
            total += float(np.sum(kl * valid))
            count += int(valid.sum())
        return total / max(count, 1)

    def correct(self, outputs) -> np.ndarray | None:
        if self.metric_name != "accuracy":
            return None
        return (np.argmax(self.gather(outputs), -1) == self.encoded.labels).astype(np.float64)

    def entity_counts(self, outputs) -> np.ndarray | None:
        if self.metric_name != "entity_f1":
            return None
        predicted = np.argmax(self.gather(outputs), -1)
        return entity_counts(*tag_rows(self.labels, predicted, self.encoded))

    def agreement(self, outputs, reference) -> float:
        same = np.argmax(self.gather(outputs), -1) == np.argmax(self.gather(reference), -1)
        if same.ndim == 2:
            same = same[self.encoded.labels != IGNORE]
        return float(np.mean(same))


class EmbeddingEvaluation(Evaluation):
    """Bi-encoder embeddings of every unique text of the split; pairs scored by their cosine
    (ROC-AUC against 0/1 labels, or Spearman against scores), or no metric for plain texts."""

    agreement_name = "cosine to FP32"
    _per_batch = ("batches", "_rows")

    def __init__(self, tokenizer, examples: Sequence[dict], *, metric_name: str | None,
                 batch_size: int = 128, buckets: Sequence[int] = DEFAULT_BUCKETS):
        pairs = bool(examples) and "text_pair" in examples[0]
        texts = [e["text"] for e in examples] + ([e["text_pair"] for e in examples] if pairs else [])
        self.texts = list(dict.fromkeys(texts))
        index = {t: i for i, t in enumerate(self.texts)}
        self._left = np.array([index[e["text"]] for e in examples])
        self._right = np.array([index[e["text_pair"]] for e in examples]) if pairs else None
        self.metric_name = metric_name if pairs else None
        gold = "score" if metric_name == "spearman" else "label"
        self.gold = np.array([e[gold] for e in examples]) if self.metric_name else None
        if self.metric_name == "roc_auc" and len(set(self.gold.tolist())) < 2:
            raise ValueError(f"ROC-AUC needs both 0 and 1 labels among the {len(examples)} pairs; "
                             f"these have only {sorted(set(self.gold.tolist()))}")
        self._count = len(examples)
        self._rows, self.batches = [], []
        for rows, batch in length_batches(tokenizer, self.texts, batch_size=batch_size,
                                          buckets=buckets, truncation=True):
            self._rows.append(rows)
            self.batches.append(batch)

    @property
    def num_examples(self) -> int:
        return self._count

    def gather(self, outputs) -> np.ndarray:
        """`[unique texts, dim]` embeddings in text order."""
        emb = np.zeros((len(self.texts), outputs[0].shape[-1]), np.float32)
        for rows, out in zip(self._rows, outputs):
            emb[rows] = out[:len(rows)]
        return emb

    def metric(self, outputs) -> float | None:
        if self.partial or self.metric_name is None:
            return None
        cosine = self.pair_scores(outputs)
        if self.metric_name == "spearman":
            return spearman(cosine, self.gold)
        return roc_auc(cosine, self.gold)

    def pair_scores(self, outputs) -> np.ndarray:
        """The cosine similarity of every pair, in example order."""
        emb = self.gather(outputs)
        return 1.0 - one_minus_cosine(emb[self._left], emb[self._right])

    def resampled_metric(self, outputs, weights: np.ndarray) -> np.ndarray | None:
        if self.partial or self.metric_name is None:
            return None
        cosine = self.pair_scores(outputs)
        if self.metric_name == "spearman":
            return spearman_weighted(cosine, self.gold, weights)
        return roc_auc_weighted(cosine, self.gold, weights)

    def proxy(self, outputs, reference) -> float:
        """Mean `1 - cosine` to the reference embedding over the real rows."""
        return float(np.mean(np.concatenate([
            one_minus_cosine(out[:len(rows)], ref[:len(rows)])
            for out, ref, rows in zip(outputs, reference, self._rows)])))

    def agreement(self, outputs, reference) -> float:
        return float(np.mean(1.0 - one_minus_cosine(self.gather(outputs), self.gather(reference))))


# ------------------------------------------------------------------------- row helpers
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
