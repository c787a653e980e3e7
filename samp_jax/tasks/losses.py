"""Fine-tuning losses as data: what a head is trained with, picked by how the task reads the
head's logits (`TaskType.readout`; a ranking's, by how the head is read: below) and the field
of its gold answers, and the HF
`problem_type` that a head trained with it is saved with (so HF trains and reads it alike).

| reads | gold | loss | problem_type |
|---|---|---|---|
| classes | `label` / `tags` (ids) | softmax cross-entropy | single_label_classification |
| labels | `labels` (a set per row) | sigmoid cross-entropy per label | multi_label_classification |
| a score | `label` (0/1) | sigmoid cross-entropy of the one output | multi_label_classification |
| a score | `score` (a number) | squared error of the one output | regression |
| a score | `relevance` (a ranking) | sigmoid cross-entropy of the one output, relevant = 1 | multi_label_classification |
| classes (two) | `relevance` (a ranking) | softmax cross-entropy, class 1 = relevant (or class 0: `Task.relevant_class`) | single_label_classification |

The ranking rows are sentence-transformers' defaults for a CrossEncoder reranker: its
`BinaryCrossEntropyLoss` (`BCEWithLogitsLoss` of the one output) for a head of one output, its
`CrossEntropyLoss` for a head of more. Both are pointwise: each (query, passage) row is a
binary example whose target is whether it is relevant, a relevance of `ranking.RELEVANT` (1)
or more, the line the ranking metrics draw (MRR, MAP, recall); graded relevances 1, 2, 3 are
all the target 1 (a target of 2 is no probability), so the grades weigh in NDCG, the metric,
not in training. A ranking reads a head of one output or of two classes
(`TaskType.ranks_two_classes`), so its loss is looked up by how the model's own head is read
(`training_loss`'s `readout`), which the task type's readout alone does not say.

Every loss is a mean over the labelled items: rows, tokens, or (multi-label) every label of
every row; padding rows and unlabelled tokens hold `IGNORE` and are left out (a gold score of
exactly `IGNORE`, -100, would be too).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from samp_jax.models.head_kinds import Readout
from samp_jax.tasks.metrics import IGNORE
from samp_jax.tasks.ranking import RELEVANT


@dataclasses.dataclass(frozen=True)
class Loss:
    """A training loss.

    Attributes:
      name: how reports name it.
      problem_type: HF's `problem_type` of a head trained with it (`config.json`).
      fn: `(logits, labels) -> scalar`, the mean over the labelled items of a batch.
    """

    name: str
    problem_type: str
    fn: Callable[[jax.Array, jax.Array], jax.Array]


def _masked_mean(per_item: jax.Array, valid: jax.Array) -> jax.Array:
    return jnp.sum(per_item * valid) / jnp.maximum(jnp.sum(valid), 1)


def _softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Class ids `[B]` (or `[B, seq]`) against logits `[B, C]` (or `[B, seq, C]`)."""
    valid = labels != IGNORE
    per_item = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), jnp.where(valid, labels, 0))
    return _masked_mean(per_item, valid)


def _one_output(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The logits shaped as the gold: `[B, 1]` logits against `[B]` gold are `[B]`."""
    return logits[..., 0] if logits.ndim == labels.ndim + 1 else logits


def _sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """0/1 gold, multi-hot `[B, C]` or one per row `[B]`, against a sigmoid per output."""
    valid = labels != IGNORE
    logits = _one_output(logits, labels).astype(jnp.float32)
    per_item = optax.sigmoid_binary_cross_entropy(logits, jnp.where(valid, labels, 0).astype(jnp.float32))
    return _masked_mean(per_item, valid)


def _squared_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Scores `[B]` against the one output `[B, 1]`."""
    valid = labels != IGNORE
    change = _one_output(logits, labels).astype(jnp.float32) - jnp.where(valid, labels, 0)
    return _masked_mean(change ** 2, valid)


def _relevant(labels: jax.Array) -> jax.Array:
    """A ranking's relevances `[B]` as 0/1 targets (1: `RELEVANT` or more), `IGNORE` kept."""
    return jnp.where(labels == IGNORE, IGNORE, (labels >= RELEVANT).astype(labels.dtype))


def _relevant_sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Relevances `[B]` against the one output `[B, 1]`: sigmoid cross-entropy of relevant."""
    return _sigmoid_cross_entropy(logits, _relevant(labels))


def _relevant_softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Relevances `[B]` against two classes `[B, 2]`: softmax cross-entropy, class 1 relevant."""
    return _softmax_cross_entropy(logits, _relevant(labels).astype(jnp.int32))


def _relevant_class_0_softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Relevances `[B]` against two classes `[B, 2]`: softmax cross-entropy, class 0 relevant."""
    return _relevant_softmax_cross_entropy(logits[..., ::-1], labels)


SOFTMAX_CROSS_ENTROPY = Loss("softmax cross-entropy", "single_label_classification",
                             _softmax_cross_entropy)
SIGMOID_CROSS_ENTROPY = Loss("sigmoid cross-entropy", "multi_label_classification",
                             _sigmoid_cross_entropy)
SQUARED_ERROR = Loss("squared error", "regression", _squared_error)
RELEVANT_SIGMOID_CROSS_ENTROPY = Loss("sigmoid cross-entropy (target: relevance >= 1)",
                                      "multi_label_classification",
                                      _relevant_sigmoid_cross_entropy)
RELEVANT_SOFTMAX_CROSS_ENTROPY = Loss("softmax cross-entropy (class 1: relevance >= 1)",
                                      "single_label_classification",
                                      _relevant_softmax_cross_entropy)
LOSSES: dict[tuple[Readout, str], Loss] = {
    (Readout.CLASSES, "label"): SOFTMAX_CROSS_ENTROPY,
    (Readout.CLASSES, "tags"): SOFTMAX_CROSS_ENTROPY,
    (Readout.LABELS, "labels"): SIGMOID_CROSS_ENTROPY,
    (Readout.SCORE, "label"): SIGMOID_CROSS_ENTROPY,
    (Readout.SCORE, "score"): SQUARED_ERROR,
    (Readout.SCORE, "relevance"): RELEVANT_SIGMOID_CROSS_ENTROPY,
    (Readout.CLASSES, "relevance"): RELEVANT_SOFTMAX_CROSS_ENTROPY,
}
"""`(how the head is read, the gold field) -> Loss`."""

RELEVANT_CLASS_0_SOFTMAX_CROSS_ENTROPY = Loss("softmax cross-entropy (class 0: relevance >= 1)",
                                              "single_label_classification",
                                              _relevant_class_0_softmax_cross_entropy)
RELEVANT_CLASS_0: dict[Loss, Loss] = {
    RELEVANT_SOFTMAX_CROSS_ENTROPY: RELEVANT_CLASS_0_SOFTMAX_CROSS_ENTROPY}
"""The loss that trains class 0 as the relevant one in place of class 1, for a ranking whose
two-class head names class 0 relevant (`Task.relevant_class`)."""


def training_loss(task_type, gold_field: str | None, where: str, *,
                  readout: Readout | None = None, width: int | None = None,
                  relevant_class: int = 1) -> Loss:
    """The `Loss` a head is fine-tuned with on `gold_field` answers: by how the head is read
    (`readout`, of `width` outputs: the model's own, where `task_type` reads a head so, as a
    ranking reads a two-class head, with `relevant_class` its relevant class), else as
    `task_type` reads it.

    Raises:
      ValueError: naming `where` when there is none (embedding tasks: no head to train).
    """
    read = task_type.readout  # None: an embedding type, whatever head the model has
    if read is not None and readout is not None and task_type.reads(readout, width):
        read = readout
    loss = LOSSES.get((read, gold_field))
    if loss is None:
        raise ValueError(f"{where} ({task_type.name}) has no loss to fine-tune a head on; "
                         "fine-tuning trains a head of logits on gold classes, label sets, "
                         "scores or relevances (a classification, multi-label, scoring or "
                         "text_pair_ranking task type), not a sentence-embedding model's "
                         "embeddings (train those with sentence-transformers)")
    return RELEVANT_CLASS_0.get(loss, loss) if relevant_class == 0 else loss
