"""Labelled tasks: loading, encoding, batching by length bucket, predicting and scoring.

- `snli`: 3-class NLI over sentence pairs with a cross-encoder (`SequenceClassifier`); accuracy.
- `polarity`: binary sentiment of movie-review snippets; accuracy.
- `wnut16`: Twitter NER in BIO with 10 entity types (`TokenClassifier`); entity-level F1 with
  exact span matching, each word labelled at its first word piece.

Every task has fixed, seeded `train` / `dev` / `calibration` / `search` / `test` splits; the
test split is never used for fine-tuning decisions, calibration or precision search.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from samp_jax.assets import minilm_path
from samp_jax.data import LABELS as SNLI_LABELS
from samp_jax.data import (
    POLARITY_LABELS,
    WNUT16_LABELS,
    TaskSplits,
    align_labels,
    entity_f1,
    polarity_splits,
    snli_splits,
    wnut16_splits,
)
from samp_jax.models.tokenizer import Tokenizer
from samp_jax.serving.batching import DEFAULT_BUCKETS, bucket_batches
from samp_jax.serving.forward import INPUT_KEYS, jit_forward
from samp_jax.serving.sharding import as_sharded, data_mesh, round_batch_size

IGNORE = -100
SNLI_DEV_SIZE = 2000


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
                rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, dict]]:
        """Fixed-size batches cut to the smallest length bucket that fits each batch.

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
        max_length = self.input_ids.shape[1]
        buckets = [b for b in sorted(buckets) if b < max_length] + [max_length]
        arrays = {name: getattr(self, name) for name in (*INPUT_KEYS, "labels")}
        yield from bucket_batches(arrays, self.lengths, batch_size=batch_size, seq_buckets=buckets,
                                  order=order, pad_values={"labels": IGNORE})


@dataclasses.dataclass(frozen=True)
class Task:
    """A labelled task: how to load, encode and score it.

    Attributes:
      name: registry name.
      head: 'sequence_classification' or 'token_classification'.
      labels: class (or BIO tag) names; ids index into it.
      metric: 'accuracy' or 'entity_f1'.
      max_length: tokens per example (longer ones are truncated).
    """

    name: str
    head: str
    labels: tuple[str, ...]
    metric: str
    max_length: int
    _splits: Callable[[int], TaskSplits]
    _encode: Callable[..., EncodedSplit]

    def splits(self, seed: int = 0) -> TaskSplits:
        return self._splits(seed)

    def encode(self, tokenizer, examples: Sequence) -> EncodedSplit:
        if len(examples) == 0:
            raise ValueError(f"task {self.name!r}: no examples to encode")
        return self._encode(tokenizer, examples, self.max_length)

    def loss(self, logits, labels):
        """Mean cross-entropy over labelled examples (or tokens)."""
        valid = labels != IGNORE
        safe = jnp.where(valid, labels, 0)
        per_item = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
        return jnp.sum(per_item * valid) / jnp.maximum(jnp.sum(valid), 1)

    def score(self, logits: np.ndarray, encoded: EncodedSplit) -> dict[str, float]:
        """The task metric from logits aligned with `encoded` rows."""
        predicted = np.argmax(logits, axis=-1)
        if self.metric == "accuracy":
            return {"metric": "accuracy", "value": float(np.mean(predicted == encoded.labels)),
                    "examples": len(encoded)}
        gold_rows, pred_rows = [], []
        for row in range(len(encoded)):
            positions = encoded.labels[row] != IGNORE
            gold_rows.append([int(t) for t in encoded.labels[row][positions]])
            pred_rows.append([int(t) for t in predicted[row][positions]])
        f1 = entity_f1([[self.labels[t] for t in r] for r in gold_rows],
                       [[self.labels[t] for t in r] for r in pred_rows])
        return {"metric": "entity_f1", "value": float(f1["f1"]), "examples": len(encoded),
                "precision": float(f1["precision"]), "recall": float(f1["recall"])}


def gather_rows(batch_outputs: Sequence[np.ndarray], batch_rows: Sequence[np.ndarray], encoded: EncodedSplit) -> np.ndarray:
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


def predict(forward: Callable[[dict], object], encoded: EncodedSplit, *, batch_size: int = 64,
            buckets: Sequence[int] = DEFAULT_BUCKETS, mesh: Mesh | None = None) -> np.ndarray:
    """Logits for every row of `encoded`, in row order (`[N, C]` or `[N, max_length, C]`).

    Args:
      forward: `batch -> logits`, e.g. `jit_forward(model)`. With `mesh`: the model itself, or
        a `sharded_forward(model, mesh)` built once to reuse its compilations.
      encoded: the rows to predict.
      batch_size: rows per batch; with `mesh`, rounded up to a multiple of the device count
        so that every device gets `batch_size / devices` rows of each batch.
      buckets: sequence lengths that batches are padded to.
      mesh: a `jax.sharding.Mesh` (e.g. `sharding.data_mesh()`) to split every batch's rows
        over (data parallel, weights replicated); None runs on one device.
    """
    if mesh is not None:
        forward = as_sharded(forward, mesh)
        batch_size = round_batch_size(batch_size, forward.num_shards)
    outputs, rows = [], []
    for batch_rows, batch in encoded.batches(batch_size, buckets=buckets):
        outputs.append(np.asarray(forward({k: v for k, v in batch.items() if k != "labels"})))
        rows.append(batch_rows)
    return gather_rows(outputs, rows, encoded)


def evaluate(model, task: "Task | str", split: str = "test", *, tokenizer=None, seed: int = 0,
             batch_size: int = 64, encoded: EncodedSplit | None = None, mesh: Mesh | None = None) -> dict[str, float]:
    """The task metric of a float or quantized model on one split.

    Batched and jit-compiled, with rows padded to length buckets (one compilation per bucket).

    Args:
      model: an `EncoderModel` or `QuantizedModel` with the task's head.
      task: a `Task` or its name.
      split: 'train', 'dev', 'calibration', 'search' or 'test'.
      tokenizer: the model's `Tokenizer`; defaults to all-MiniLM-L6-v2's.
      batch_size: rows per batch; with `mesh`, rounded up to a multiple of the device count.
      encoded: a pre-encoded split (skips tokenization when evaluating many variants).
      mesh: a `jax.sharding.Mesh` (e.g. `sharding.data_mesh()`): each batch is split over its
        devices with `sharding.sharded_forward`. None: all devices when there are several
        (`data_mesh()`; across hosts after `jax.distributed.initialize()`), else one device.

    Returns:
      {'metric': 'accuracy' | 'entity_f1', 'value': float, 'examples': int, ...}.
    """
    task = get_task(task) if isinstance(task, str) else task
    if tokenizer is None and encoded is None:
        tokenizer = Tokenizer.from_pretrained(minilm_path())
    if model.head_kind != task.head:
        raise ValueError(f"task {task.name!r} needs a {task.head} head, the model has {model.head_kind}")
    if encoded is None:
        encoded = task.encode(tokenizer, split_examples(task, split, seed))
    if mesh is None and jax.device_count() > 1:
        mesh = data_mesh()
    forward = jit_forward(model) if mesh is None else model  # predict shards the model
    return task.score(predict(forward, encoded, batch_size=batch_size, mesh=mesh), encoded)


def split_examples(task: Task, split: str, seed: int = 0) -> Sequence:
    splits = task.splits(seed)
    names = [f.name for f in dataclasses.fields(splits) if f.name in
             ("train", "dev", "calibration", "search", "test")]
    if split not in names:
        raise ValueError(f"{split=} is not one of {names}")
    return getattr(splits, split)


# --------------------------------------------------------------------------- encoders
def _encode_pairs(tokenizer, examples, max_length):
    batch = tokenizer([e.premise for e in examples], [e.hypothesis for e in examples],
                      padding=max_length, truncation=True)
    return EncodedSplit(**batch, labels=np.array([e.label for e in examples], np.int32))


def _encode_texts(tokenizer, examples, max_length):
    batch = tokenizer([e.text for e in examples], padding=max_length, truncation=True)
    return EncodedSplit(**batch, labels=np.array([e.label for e in examples], np.int32))


def _encode_words(tokenizer, examples, max_length):
    batch, word_ids = tokenizer.encode_words([e.words for e in examples], padding=max_length,
                                             truncation=True)
    labels = np.stack([
        align_labels([None if w < 0 else int(w) for w in ids], e.tags, ignore_index=IGNORE)
        for ids, e in zip(word_ids, examples)]).astype(np.int32)
    return EncodedSplit(**batch, labels=labels)


@functools.lru_cache(maxsize=8)
def _snli_task_splits(seed: int) -> TaskSplits:
    s = snli_splits(seed)
    return TaskSplits(train=s.train[SNLI_DEV_SIZE:], dev=s.train[:SNLI_DEV_SIZE],
                      calibration=s.calibration, search=s.search, test=s.test)


TASKS: dict[str, Task] = {
    "snli": Task("snli", "sequence_classification", SNLI_LABELS, "accuracy", 128,
                 _snli_task_splits, _encode_pairs),
    "polarity": Task("polarity", "sequence_classification", POLARITY_LABELS, "accuracy", 128,
                     lambda seed: polarity_splits(seed), _encode_texts),
    "wnut16": Task("wnut16", "token_classification", WNUT16_LABELS, "entity_f1", 128,
                   lambda seed: wnut16_splits(seed), _encode_words),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task {name=} is not one of {sorted(TASKS)}")
    return TASKS[name]
