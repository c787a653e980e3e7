"""Task types as data: what a task's examples hold, how they are encoded, and how a model's
outputs on them are scored.

An example is a plain dict with canonical fields:
- `text_classification`: `text`, `label` (class id);
- `text_pair_classification`: `text`, `text_pair`, `label` (a cross-encoder, e.g. NLI);
- `token_classification`: `tokens` (words), `tags` (one class id per word, BIO names);
- `embedding_pairs`: `text`, `text_pair` and `label` (0/1, scored by ROC-AUC of the cosine) or
  `score` (a float, scored by Spearman correlation of the cosine), for a bi-encoder;
- `embedding_texts`: `text` only: no metric, the search bounds the divergence from FP32.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from samp_jax.data.wnut16 import align_labels, entity_f1
from samp_jax.serving.batching import DEFAULT_BUCKETS, bucket_batches, capped_buckets
from samp_jax.serving.forward import INPUT_KEYS

IGNORE = -100  # label of positions and rows that no metric or loss counts


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    """A tokenized split: `[N, max_length]` arrays plus labels (`[N]`, or `[N, max_length]`
    with `IGNORE` where no label applies)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return self.attention_mask.sum(axis=1)

    def subset(self, rows: np.ndarray) -> "EncodedSplit":
        return EncodedSplit(*(a[rows] for a in dataclasses.astuple(self)))

    def batches(self, batch_size: int, *, buckets: Sequence[int] = DEFAULT_BUCKETS,
                rng: np.random.Generator | None = None):
        """Fixed-size batches, each cut to the smallest length bucket that fits
        (`serving.batching.bucket_batches`).

        Without `rng`, rows are sorted by length so each batch pads little (evaluation). With
        `rng` (training), rows are shuffled, sorted by length within chunks of 50 batches, and
        the batches are shuffled: random batches that still mostly fit a short bucket. The last
        batch is filled with all-padding rows, whose labels are `IGNORE`. Yields
        `(row_indices, batch)`.
        """
        order = None  # by length
        if rng is not None:
            order = rng.permutation(len(self))
            chunk = 50 * batch_size
            order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")]
                                    for c in np.split(order, range(chunk, len(order), chunk))])
            starts = rng.permutation(np.arange(0, len(order), batch_size))
            order = np.concatenate([order[i:i + batch_size] for i in starts])
        buckets = capped_buckets(buckets, self.input_ids.shape[1])
        arrays = {name: getattr(self, name) for name in (*INPUT_KEYS, "labels")}
        yield from bucket_batches(arrays, self.lengths, batch_size=batch_size, seq_buckets=buckets,
                                  order=order, pad_values={"labels": IGNORE})


@dataclasses.dataclass(frozen=True)
class TaskType:
    """One kind of task.

    Attributes:
      name: registry key.
      head: the model head it needs (`samp_jax.models.HEAD_KINDS`).
      fields: example fields every example must have (`label`/`score` alternatives are
        listed in `label_fields`).
      label_fields: the fields that may carry the gold answer, in order of preference.
      metric: the default metric name, or None (proxy only).
      encode: `(tokenizer, examples, max_length) -> EncodedSplit` for classification types,
        None for embedding types (they embed unique texts, see `samp_jax.tasks.evaluation`).
    """

    name: str
    head: str
    fields: tuple[str, ...]
    label_fields: tuple[str, ...]
    metric: str | None
    encode: Callable[..., EncodedSplit] | None

    @property
    def classifies(self) -> bool:
        """Whether the model's outputs are logits over classes (else embeddings)."""
        return self.head in ("sequence_classification", "token_classification")

    def metric_for(self, examples: Sequence[dict]) -> str | None:
        """The metric for these examples (embedding pairs: ROC-AUC for 0/1 labels, Spearman
        for scores)."""
        if self.name == "embedding_pairs" and examples and "score" in examples[0]:
            return "spearman"
        return self.metric

    def check(self, example: dict, where: str) -> None:
        """Raises ValueError naming `where` when `example` lacks a field this type needs."""
        missing = [f for f in self.fields if f not in example]
        if self.label_fields and not any(f in example for f in self.label_fields):
            missing.append(" or ".join(self.label_fields))
        if missing:
            raise ValueError(f"{where}: a {self.name} example needs {missing}, got fields "
                             f"{sorted(example)}")


def encode_texts(tokenizer, examples: Sequence[dict], max_length: int) -> EncodedSplit:
    batch = tokenizer([e["text"] for e in examples], padding=max_length, truncation=True)
    return EncodedSplit(**batch, labels=np.array([e["label"] for e in examples], np.int32))


def encode_pairs(tokenizer, examples: Sequence[dict], max_length: int) -> EncodedSplit:
    batch = tokenizer([e["text"] for e in examples], [e["text_pair"] for e in examples],
                      padding=max_length, truncation=True)
    return EncodedSplit(**batch, labels=np.array([e["label"] for e in examples], np.int32))


def encode_words(tokenizer, examples: Sequence[dict], max_length: int) -> EncodedSplit:
    """Each word is labelled at its first word piece; other pieces and specials are IGNORE."""
    batch, word_ids = tokenizer.encode_words([e["tokens"] for e in examples], padding=max_length,
                                             truncation=True)
    labels = np.stack([
        align_labels([None if w < 0 else int(w) for w in ids], e["tags"], ignore_index=IGNORE)
        for ids, e in zip(word_ids, examples)]).astype(np.int32)
    return EncodedSplit(**batch, labels=labels)


TASK_TYPES: dict[str, TaskType] = {t.name: t for t in (
    TaskType("text_classification", "sequence_classification", ("text",), ("label",), "accuracy",
             encode_texts),
    TaskType("text_pair_classification", "sequence_classification", ("text", "text_pair"),
             ("label",), "accuracy", encode_pairs),
    TaskType("token_classification", "token_classification", ("tokens",), ("tags",), "entity_f1",
             encode_words),
    TaskType("embedding_pairs", "sentence_embedding", ("text", "text_pair"), ("label", "score"),
             "roc_auc", None),
    TaskType("embedding_texts", "sentence_embedding", ("text",), (), None, None),
)}


def get_task_type(name: str) -> TaskType:
    """The registered `TaskType` called `name`."""
    if name not in TASK_TYPES:
        raise ValueError(f"task type {name=} is not one of {sorted(TASK_TYPES)}")
    return TASK_TYPES[name]


def tag_rows(labels: Sequence[str], predicted: np.ndarray,
             encoded: EncodedSplit) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tag names per sentence, over its labelled positions."""
    gold_rows, pred_rows = [], []
    for row in range(len(encoded)):
        positions = encoded.labels[row] != IGNORE
        gold_rows.append([labels[int(t)] for t in encoded.labels[row][positions]])
        pred_rows.append([labels[int(t)] for t in predicted[row][positions]])
    return gold_rows, pred_rows


def classification_score(task_type: TaskType, labels: Sequence[str], logits: np.ndarray,
                         encoded: EncodedSplit) -> dict[str, float]:
    """Accuracy (sequence classification) or entity-level F1 (BIO tagging) from logits aligned
    with `encoded` rows."""
    predicted = np.argmax(logits, axis=-1)
    if task_type.metric == "accuracy":
        return {"metric": "accuracy", "value": float(np.mean(predicted == encoded.labels)),
                "examples": len(encoded)}
    f1 = entity_f1(*tag_rows(labels, predicted, encoded))
    return {"metric": "entity_f1", "value": float(f1["f1"]), "examples": len(encoded),
            "precision": float(f1["precision"]), "recall": float(f1["recall"])}
