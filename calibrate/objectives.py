"""What a search measures: a task metric (when labels exist) and a smooth proxy.

An objective owns fixed-shape batches of its search data, the FP32 reference outputs on them,
and two functions of a candidate's outputs (a list with one array per batch):
- `metric(outputs)`: the task metric (higher is better), or None without labels;
- `proxy(outputs)`: a divergence from FP32 (lower is better): the mean KL of the predictive
  distribution for classifiers, `1 - cosine` for embeddings. It has far lower variance than
  the metric, so single-site sensitivities can be ranked on few examples.
`guarded_drop(outputs)` adds a one-sided confidence margin to the metric drop where the
metric decomposes per example (accuracy), so a map accepted on the search split keeps its
promise on unseen data.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np

from samp_jax.data import embedding_eval_pairs, snli_splits
from samp_jax.models.model import NORM_FLOOR
from samp_jax.serving.batching import length_batches
from samp_jax.serving.forward import jit_forward
from samp_jax.tasks.metrics import roc_auc
from samp_jax.tasks.task import IGNORE, Task, gather_rows, get_task, split_examples

Z_ONE_SIDED_95 = 1.645


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


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

    def guarded_drop(self, outputs: Sequence[np.ndarray], base: Sequence[np.ndarray]) -> float | None:
        """Metric drop against `base` plus a confidence margin; None if it has no metric."""
        m, b = self.metric(outputs), self.metric(base)
        return None if m is None else b - m

    def _reference(self, model) -> list[np.ndarray]:
        forward = jit_forward(model)
        return [np.asarray(forward(batch)) for batch in self.batches]


class TaskObjective(Objective):
    """A labelled classification or tagging task on one split (default: `search`)."""

    _per_batch = ("_rows", "_labels", "_reference_logp")

    def __init__(self, model, task: Task | str, tokenizer, *, split: str = "search", seed: int = 0,
                 max_examples: int | None = None, batch_size: int = 64):
        self.task = get_task(task) if isinstance(task, str) else task
        examples = list(split_examples(self.task, split, seed))[:max_examples]
        self.encoded = self.task.encode(tokenizer, examples)
        self.name, self.metric_name = self.task.name, self.task.metric
        self._rows, self.batches = [], []
        for rows, batch in self.encoded.batches(batch_size):
            self._rows.append(rows)
            self.batches.append({k: v for k, v in batch.items() if k != "labels"})
        self._labels = [self.encoded.labels[rows] for rows in self._rows]
        self.reference = self._reference(model)
        self._reference_logp = [_log_softmax(r[:len(rows)]) for r, rows in zip(self.reference, self._rows)]

    def _gather(self, outputs) -> np.ndarray:
        return gather_rows(outputs, self._rows, self.encoded)

    def metric(self, outputs) -> float | None:
        if self.partial:
            return None
        return self.task.score(self._gather(outputs), self.encoded)["value"]

    def proxy(self, outputs) -> float:
        total, count = 0.0, 0
        for out, ref_logp, labels, rows in zip(outputs, self._reference_logp, self._labels, self._rows):
            logp = _log_softmax(out[:len(rows)].astype(np.float64))
            kl = np.sum(np.exp(ref_logp) * (ref_logp - logp), axis=-1)
            valid = labels != IGNORE
            total += float(np.sum(kl * valid))
            count += int(valid.sum())
        return total / max(count, 1)

    def guarded_drop(self, outputs, base) -> float:
        if self.task.metric != "accuracy":
            return self.metric(base) - self.metric(outputs)
        # Paired per-example differences: most predictions agree, so the margin is small.
        correct = np.argmax(self._gather(outputs), -1) == self.encoded.labels
        correct_base = np.argmax(self._gather(base), -1) == self.encoded.labels
        diff = correct_base.astype(np.float64) - correct
        margin = Z_ONE_SIDED_95 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        return float(diff.mean() + margin)


class EmbeddingPairsObjective(Objective):
    """Zero-shot text matching: ROC-AUC of the cosine of two embeddings per pair."""

    _per_batch = ("_rows",)

    def __init__(self, model, tokenizer, premises: Sequence[str], hypotheses: Sequence[str],
                 labels: np.ndarray, *, batch_size: int = 64, name: str = "snli-embed"):
        texts = list(dict.fromkeys(list(premises) + list(hypotheses)))
        index = {t: i for i, t in enumerate(texts)}
        self._left = np.array([index[t] for t in premises])
        self._right = np.array([index[t] for t in hypotheses])
        self.labels = np.asarray(labels)
        self.name, self.metric_name = name, "roc_auc"
        self._rows, self.batches = [], []
        for rows, batch in length_batches(tokenizer, texts, batch_size=batch_size):
            self._rows.append(rows)
            self.batches.append(batch)
        self._count = len(texts)
        self.reference = self._reference(model)

    def _gather(self, outputs) -> np.ndarray:
        emb = np.zeros((self._count, outputs[0].shape[-1]), np.float32)
        for rows, out in zip(self._rows, outputs):
            emb[rows] = out[:len(rows)]
        return emb

    def metric(self, outputs) -> float | None:
        if self.partial:
            return None
        emb = self._gather(outputs)
        return roc_auc(np.sum(emb[self._left] * emb[self._right], -1), self.labels)

    def proxy(self, outputs) -> float:
        """Mean `1 - cosine` to the FP32 embedding over the real rows."""
        return float(np.mean(np.concatenate([
            _one_minus_cosine(out[:len(rows)], ref[:len(rows)])
            for out, ref, rows in zip(outputs, self.reference, self._rows)])))


class UnlabelledObjective(Objective):
    """Unlabelled inputs: only the proxy (KL for logits, 1 - cosine otherwise) is available."""

    def __init__(self, model, batches: Sequence[dict[str, np.ndarray]], *, name: str = "unlabelled"):
        if not batches:
            raise ValueError("empty search set: no batches")
        self.batches, self.name = list(batches), name
        self.reference = self._reference(model)
        self._classifier = model.head_kind in ("sequence_classification", "token_classification")

    def proxy(self, outputs) -> float:
        values = []
        for out, ref, batch in zip(outputs, self.reference, self.batches):
            valid = batch["attention_mask"].sum(-1) > 0
            if self._classifier:
                ref_logp, logp = _log_softmax(ref.astype(np.float64)), _log_softmax(out.astype(np.float64))
                kl = np.sum(np.exp(ref_logp) * (ref_logp - logp), -1)
                values.append(kl.reshape(len(valid), -1).mean(-1)[valid])
            else:
                values.append(_one_minus_cosine(out, ref).reshape(len(valid), -1).mean(-1)[valid])
        return float(np.mean(np.concatenate(values)))


def _one_minus_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), NORM_FLOOR)
    return 1.0 - np.sum(a * b, -1) / norms


def snli_embed_objective(model, tokenizer, *, max_pairs: int = 600, seed: int = 0) -> EmbeddingPairsObjective:
    """Zero-shot SNLI entailment-vs-contradiction on the *search* split (never the test file)."""
    premises, hypotheses, labels = embedding_eval_pairs(snli_splits(seed).search, max_pairs=max_pairs, seed=seed)
    return EmbeddingPairsObjective(model, tokenizer, premises, hypotheses, labels)
