"""Task types as data: what a task's examples hold, how they are encoded, and how a model's
outputs on them are scored.

An example is a plain dict with canonical fields:
- `text_classification`: `text`, `label` (class id);
- `text_pair_classification`: `text`, `text_pair`, `label` (a cross-encoder, e.g. NLI);
- `token_classification`: `tokens` (words), `tags` (one class id per word): entity F1 for
  BIO, BIOES, BILOU or IO tag names, word accuracy for other names (a part-of-speech tagger);
- `embedding_pairs`: `text`, `text_pair` and `label` (0/1, scored by ROC-AUC of the cosine) or
  `score` (a float, scored by Spearman correlation of the cosine), for a bi-encoder;
- `embedding_texts`: `text` only: no metric, the search bounds the divergence from FP32;
- `text_scoring`, `text_pair_scoring`: `text` (and `text_pair`) with a 0/1 `label` (ROC-AUC)
  or a `score` (Spearman) against the one output of a sequence head (num_labels=1: a reranker
  or a regression cross-encoder);
- `text_multi_label`, `text_pair_multi_label`: `text` (and `text_pair`) with `labels`, the
  list of label ids that apply (possibly none), against a multi-label sequence head (a
  sigmoid per label; micro-F1 at the task's `label_threshold`, `LABEL_THRESHOLD` unless given);
- `text_pair_ranking`, `embedding_ranking`: `text` (a query), `text_pair` (a passage), an
  integer `relevance` (0 not relevant; 0/1 or graded) and `group` (the query id, else the
  query text): each query's rows ranked by a cross-encoder's score (a head of one output, or
  P(class 1) of a two-class head, or P(class 0) where `Task.relevant_class` says so:
  `proxies.row_scores`) or by a bi-encoder's similarity, and
  scored per query (MRR@10 by default, NDCG@10, MAP, recall@k: `samp_jax.tasks.ranking`).

Each type says how it reads a head's logits (`readout`, a `samp_jax.models.Readout`), which
`check_head_fits` compares with the model's own.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import numpy as np

from samp_jax.data.wnut16 import align_labels
from samp_jax.models.head_kinds import (
    LABEL_THRESHOLD,
    SENTENCE_EMBEDDING,
    SEQUENCE_CLASSIFICATION,
    TOKEN_CLASSIFICATION,
    HeadKind,
    Readout,
)
from samp_jax.serving.batching import (DEFAULT_BUCKETS, bucket_batches, bucket_for, buckets_to,
                                       rows_for_length)
from samp_jax.serving.forward import INPUT_KEYS
from samp_jax.tasks.metrics import (ACCURACY, CLASS_MACRO_F1, ENTITY_F1, IGNORE, MACRO_F1, METRICS,
                                    MICRO_F1, RANKING_METRICS, ROC_AUC, SPEARMAN, WORD_ACCURACY,
                                    Metric)
from samp_jax.tasks.proxies import row_scores
from samp_jax.tasks.ranking import ranking_gold
from samp_jax.core.registry import check_free
from samp_jax.tasks.truncation import Truncation, words_past_cut


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    """A tokenized split: `[N, width]` arrays plus labels: `[N]`, `[N, width]` with `IGNORE`
    where no label applies, or (`label_sets`) a multi-hot `[N, num_labels]` row each; for a
    ranking task, `labels` are the relevances and `groups` each row's query (`gold`).

    The task encoders (`TASK_TYPES`) cut rows at `max_length` tokens and keep `width`, the
    smallest length bucket that holds the longest row (`serving.batching.buckets_to`), and
    mark what the cut left out: `truncated` rows and, for a tagger, `words_cut` (the words
    past the cut, whose tags are not scored) and `entity_words_cut` (those inside a gold
    entity). Hand-built splits may leave them None.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    labels: np.ndarray
    label_sets: bool = False  # labels are one multi-hot row per example, not one per token
    max_length: int | None = None  # the length rows were cut at
    truncated: np.ndarray | None = None  # [N] bool: the row was longer, and was cut
    words_cut: np.ndarray | None = None  # [N] a tagger's words past the cut
    entity_words_cut: np.ndarray | None = None  # [N] of those, words inside a gold entity
    groups: np.ndarray | None = None  # [N] a ranking task's query of each row

    @property
    def gold(self) -> np.ndarray:
        """What a metric scores against: `labels`, or for rows in groups `[N, 2]` of each
        row's query and relevance (`ranking.ranking_gold`)."""
        if self.groups is None:
            return self.labels
        return np.column_stack([self.groups, self.labels]).astype(np.float64)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return self.attention_mask.sum(axis=1)

    def subset(self, rows: np.ndarray) -> "EncodedSplit":
        return dataclasses.replace(self, **{name: getattr(self, name)[rows]
                                            for name in (*INPUT_KEYS, "labels", *_PER_ROW_MARKS)
                                            if getattr(self, name) is not None})

    @property
    def truncation(self) -> Truncation | None:
        """What the cut at `max_length` left out (None when the split records no cut)."""
        if self.max_length is None or self.truncated is None:
            return None
        words = None if self.words_cut is None else int(self.words_cut.sum())
        entity = None if self.entity_words_cut is None else int(self.entity_words_cut.sum())
        return Truncation(self.max_length, len(self), int(self.truncated.sum()), words, entity)

    def batches(self, batch_size: int, *, buckets: Sequence[int] = DEFAULT_BUCKETS,
                rng: np.random.Generator | None = None):
        """Fixed-size batches, each cut to the smallest length bucket that fits
        (`serving.batching.bucket_batches`).

        Without `rng`, rows are sorted by length so each batch pads little (evaluation). With
        `rng` (training), rows are shuffled, sorted by length within chunks of 50 batches, and
        the batches are shuffled: random batches that still mostly fit a short bucket. The one
        short batch is filled with all-padding rows, whose labels are `IGNORE`. In length
        order, rows past 512 tokens go fewer to a batch (`rows_for_length`). Yields
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
        buckets = buckets_to(self.input_ids.shape[1], buckets)
        arrays = {name: getattr(self, name) for name in (*INPUT_KEYS, "labels")}
        yield from bucket_batches(arrays, self.lengths, batch_size=batch_size, seq_buckets=buckets,
                                  order=order, pad_values={"labels": IGNORE},
                                  per_row=("labels",) if self.label_sets else (),
                                  max_rows=functools.partial(rows_for_length, batch_size))


@dataclasses.dataclass(frozen=True)
class TaskType:
    """One kind of task.

    Attributes:
      name: registry key.
      head: the model head kind it needs (a `samp_jax.models.HeadKind`).
      fields: example fields every example must have (the gold answer's field comes from the
        metric: `label_fields`).
      metrics: the metrics it can be scored by, in order of preference; the examples' gold
        field and the label names pick one (`metric_for`). Empty: no labels, the proxy only.
      encode: `(tokenizer, examples, max_length, *, labels) -> EncodedSplit` for the types
        whose head gives logits (`labels`: the task's label names), None for embedding types
        (they embed unique texts, see `samp_jax.tasks.evaluation`).
      readout: how the head's logits are read (`Readout`): one class per row or token, a set
        of labels per row, or one score per row; None for embeddings.
      other_metrics: metrics a user may choose instead of the one `metric_for` picks (`Task`'s
        `metric_name`, `--metric`), read from the same gold answers (macro-F1 for classes and
        label sets; NDCG@10, MAP and recall@k for rankings; word accuracy for entity tags).
      grouped: rows come in groups, one per query (`group`), scored query by query: splits
        and subsets take whole queries.
      ranks_two_classes: a head of two classes (a softmax) is read too, each row scored by
        P(class 1), or P(class 0) where a task says class 0 is the relevant one
        (`Task.relevant_class`, `proxies.row_scores`), beside the `readout`'s one output.
    """

    name: str
    head: HeadKind
    fields: tuple[str, ...]
    metrics: tuple[Metric, ...]
    encode: Callable[..., EncodedSplit] | None
    readout: Readout | None = Readout.CLASSES
    other_metrics: tuple[Metric, ...] = ()
    grouped: bool = False
    ranks_two_classes: bool = False

    def reads(self, readout: Readout, width: int | None = None) -> bool:
        """Whether a head read as `readout`, of `width` outputs (None: unknown), fits: its
        own `readout` (any, for the types without one), or two classes where it ranks them."""
        return self.readout is None or readout is self.readout or (
            self.ranks_two_classes and readout is Readout.CLASSES and width in (None, 2))

    def predicted(self, logits: np.ndarray, threshold: float = LABEL_THRESHOLD,
                  relevant_class: int = 1) -> np.ndarray:
        """What the head predicts from logits, as this type reads them: `readout.predict`,
        or, where it ranks two classes too, each row's score (`proxies.row_scores`: a
        two-class head's log-odds of `relevant_class`)."""
        if self.ranks_two_classes:
            return row_scores(logits, relevant_class)
        return self.readout.predict(logits, threshold)

    @property
    def classifies(self) -> bool:
        """Whether the outputs are logits over classes, one per row or token (a softmax)."""
        return self.readout is Readout.CLASSES

    @property
    def scores(self) -> bool:
        """Whether the head's one output is a score per row (scoring types)."""
        return self.readout is Readout.SCORE

    @property
    def named_labels(self) -> bool:
        """Whether the gold is label (or tag) names or ids: classes or label sets."""
        return self.readout in (Readout.CLASSES, Readout.LABELS)

    @property
    def pair(self) -> bool:
        """Whether examples are text pairs read by one model (a cross-encoder)."""
        return self.encode is not None and "text_pair" in self.fields

    @property
    def label_fields(self) -> tuple[str, ...]:
        """The fields that may carry the gold answer, in order of preference."""
        return tuple(dict.fromkeys(m.gold_field for m in self.metrics))

    @property
    def metric(self) -> Metric | None:
        """The default metric, or None (proxy only)."""
        return self.metrics[0] if self.metrics else None

    def metric_for(self, examples: Sequence[dict],
                   labels: Sequence[str] | None = None) -> Metric | None:
        """The first of `metrics` that reads the label names `labels` (`Metric.reads`; None:
        any) and whose gold field the examples hold (embedding pairs: ROC-AUC for 0/1
        `label`s, Spearman for `score`s; tags: entity F1 for entity tags, else word
        accuracy); the first that reads them without examples."""
        fitting = [metric for metric in self.metrics if metric.reads(labels)]
        for metric in fitting:
            if examples and metric.gold_field in examples[0]:
                return metric
        return fitting[0] if fitting else None

    def metrics_for(self, examples: Sequence[dict],
                    labels: Sequence[str] | None = None) -> tuple[Metric, ...]:
        """Every metric the examples can be scored by: `metric_for`'s first, then
        `other_metrics` (none without a metric)."""
        first = self.metric_for(examples, labels)
        return () if first is None else tuple(dict.fromkeys((first, *self.other_metrics)))

    def check(self, example: dict, where: str) -> None:
        """Raises ValueError naming `where` when `example` lacks a field this type needs."""
        missing = [f for f in self.fields if f not in example]
        if self.label_fields and not any(f in example for f in self.label_fields):
            missing.append(" or ".join(self.label_fields))
        if missing:
            raise ValueError(f"{where}: a {self.name} example needs {missing}, got fields "
                             f"{sorted(example)}")


_PER_ROW_MARKS = ("truncated", "words_cut", "entity_words_cut", "groups")


def _tokenized(tokenizer, examples: Sequence[dict], max_length: int, pair: bool) -> dict:
    """The examples' texts (and, for `pair`, their text pairs) as model inputs, cut at
    `max_length` tokens, with the cut rows marked (`EncodedSplit` fields)."""
    texts = [e["text"] for e in examples]
    pairs = [e["text_pair"] for e in examples] if pair else None
    batch = tokenizer(texts, pairs, truncation=True, max_length=max_length, return_truncated=True)
    truncated = batch.pop("truncated")
    return _bucket_wide(batch, max_length, tokenizer.pad_id) | {"max_length": max_length,
                                                                 "truncated": truncated}


def _bucket_wide(arrays: dict[str, np.ndarray], max_length: int, pad_id: int) -> dict[str, np.ndarray]:
    """The `[N, longest row]` arrays padded to the smallest length bucket (`buckets_to`) that
    holds the longest row: the width batches are cut at, whatever `max_length` allows, and no
    wider (a split of short rows holds no columns of padding alone)."""
    longest = int(arrays["attention_mask"].sum(axis=1).max())
    width = bucket_for(longest, buckets_to(max_length))
    fill = {"input_ids": pad_id, "labels": IGNORE, "word_ids": -1}
    return {name: np.pad(value, ((0, 0), (0, width - value.shape[1])),
                         constant_values=fill.get(name, 0))
            for name, value in arrays.items()}


def encode_texts(tokenizer, examples: Sequence[dict], max_length: int, *, labels=None,
                 pair: bool = False) -> EncodedSplit:
    """Texts (or text pairs) with one class id each."""
    return EncodedSplit(**_tokenized(tokenizer, examples, max_length, pair),
                        labels=np.array([e["label"] for e in examples], np.int32))


def encode_label_sets(tokenizer, examples: Sequence[dict], max_length: int, *,
                      labels: Sequence[str], pair: bool = False) -> EncodedSplit:
    """Texts (or text pairs) with a multi-hot row over `labels` each (from their label ids)."""
    hot = np.zeros((len(examples), len(labels)), np.int32)
    for row, e in enumerate(examples):
        hot[row, list(e["labels"])] = 1
    return EncodedSplit(**_tokenized(tokenizer, examples, max_length, pair), labels=hot,
                        label_sets=True)


def _gold_scores(examples: Sequence[dict]) -> np.ndarray:
    """Each example's 0/1 `label` or `score`, as float32 (the field the first one holds)."""
    field = "score" if examples and "score" in examples[0] else "label"
    return np.array([e[field] for e in examples], np.float32)


def encode_scored(tokenizer, examples: Sequence[dict], max_length: int, *, labels=None,
                  pair: bool = False) -> EncodedSplit:
    """Texts (or text pairs) with a float gold each: a 0/1 label or a score."""
    return EncodedSplit(**_tokenized(tokenizer, examples, max_length, pair),
                        labels=_gold_scores(examples))


def encode_ranked(tokenizer, examples: Sequence[dict], max_length: int, *,
                  labels=None) -> EncodedSplit:
    """Query-passage pairs with each row's relevance and query (`EncodedSplit.gold`)."""
    gold = ranking_gold(examples)
    return EncodedSplit(**_tokenized(tokenizer, examples, max_length, True),
                        labels=gold[:, 1].astype(np.float32), groups=gold[:, 0].astype(np.int64))


def encode_words(tokenizer, examples: Sequence[dict], max_length: int, *,
                 labels=None) -> EncodedSplit:
    """Each word is labelled at its first word piece; other pieces and specials are IGNORE.

    Raises:
      ValueError: a word gives no word piece (a zero-width or control character alone): its
        tag would silently be left out of the metric and the loss.
    """
    words = [e["tokens"] for e in examples]
    batch, word_ids = tokenizer.encode_words(words, truncation=True, max_length=max_length,
                                             return_truncated=True)
    truncated = batch.pop("truncated")
    _check_every_word_has_a_piece(examples, word_ids, truncated,
                                  tokenizer.truncation_side)
    aligned = np.stack([
        align_labels([None if w < 0 else int(w) for w in ids], e["tags"], ignore_index=IGNORE)
        for ids, e in zip(word_ids, examples)]).astype(np.int32)
    words_cut, entity_words_cut = words_past_cut(
        word_ids, [e["tags"] for e in examples], truncated,
        None if labels is None else list(labels))
    return EncodedSplit(**_bucket_wide(batch | {"labels": aligned}, max_length,
                                       tokenizer.pad_id),
                        max_length=max_length, truncated=truncated, words_cut=words_cut,
                        entity_words_cut=entity_words_cut)


def _check_every_word_has_a_piece(examples: Sequence[dict], word_ids: np.ndarray,
                                  truncated: np.ndarray, side: str) -> None:
    """Words missing from `word_ids` are refused, except those a truncated row lost past the
    last word it kept (or, cut on the left `side`, before the first): those were cut, as
    documented."""
    for row, (e, ids) in enumerate(zip(examples, word_ids)):
        present = set(ids[ids >= 0].tolist())
        if len(present) == len(e["tokens"]):
            continue
        first, last = min(present, default=0), max(present, default=-1)

        def cut(w: int) -> bool:
            return bool(truncated[row]) and (w < first if side == "left" else w > last)
        word = next((w for w in range(len(e["tokens"])) if w not in present and not cut(w)),
                    None)
        if word is not None:
            raise ValueError(f"the row with words {list(e['tokens'][:8])}"
                             f"{' ...' if len(e['tokens']) > 8 else ''}: word {word} "
                             f"({e['tokens'][word]!r}) gives no token, so its tag would not be "
                             "scored; expected words the tokenizer reads (drop or replace it)")


TASK_TYPES: dict[str, TaskType] = {t.name: t for t in (
    TaskType("text_classification", SEQUENCE_CLASSIFICATION, ("text",), (ACCURACY,),
             encode_texts, other_metrics=(CLASS_MACRO_F1,)),
    TaskType("text_pair_classification", SEQUENCE_CLASSIFICATION, ("text", "text_pair"),
             (ACCURACY,), functools.partial(encode_texts, pair=True),
             other_metrics=(CLASS_MACRO_F1,)),
    TaskType("token_classification", TOKEN_CLASSIFICATION, ("tokens",),
             (ENTITY_F1, WORD_ACCURACY), encode_words, other_metrics=(WORD_ACCURACY,)),
    TaskType("embedding_pairs", SENTENCE_EMBEDDING, ("text", "text_pair"), (ROC_AUC, SPEARMAN),
             None, readout=None),
    TaskType("embedding_texts", SENTENCE_EMBEDDING, ("text",), (), None, readout=None),
    TaskType("text_scoring", SEQUENCE_CLASSIFICATION, ("text",), (ROC_AUC, SPEARMAN),
             encode_scored, readout=Readout.SCORE),
    TaskType("text_pair_scoring", SEQUENCE_CLASSIFICATION, ("text", "text_pair"),
             (ROC_AUC, SPEARMAN), functools.partial(encode_scored, pair=True),
             readout=Readout.SCORE),
    TaskType("text_multi_label", SEQUENCE_CLASSIFICATION, ("text",), (MICRO_F1,),
             encode_label_sets, readout=Readout.LABELS, other_metrics=(MACRO_F1,)),
    TaskType("text_pair_multi_label", SEQUENCE_CLASSIFICATION, ("text", "text_pair"),
             (MICRO_F1,), functools.partial(encode_label_sets, pair=True),
             readout=Readout.LABELS, other_metrics=(MACRO_F1,)),
    TaskType("text_pair_ranking", SEQUENCE_CLASSIFICATION, ("text", "text_pair"),
             RANKING_METRICS[:1], encode_ranked, readout=Readout.SCORE,
             other_metrics=RANKING_METRICS[1:], grouped=True, ranks_two_classes=True),
    TaskType("embedding_ranking", SENTENCE_EMBEDDING, ("text", "text_pair"), RANKING_METRICS[:1],
             None, readout=None, other_metrics=RANKING_METRICS[1:], grouped=True),
)}


def get_task_type(name: str) -> TaskType:
    """The registered `TaskType` called `name`."""
    if name not in TASK_TYPES:
        raise ValueError(f"task type {name=} is not one of {sorted(TASK_TYPES)}")
    return TASK_TYPES[name]


def sequence_type(readout: Readout, pair: bool) -> TaskType:
    """The sequence-head task type that reads logits as `readout`, for text pairs or not."""
    return next(t for t in TASK_TYPES.values() if t.head is SEQUENCE_CLASSIFICATION
                and t.readout is readout and t.pair == pair and not t.grouped)


def task_score(task_type: TaskType, metric: Metric, labels: Sequence[str] | None,
               logits: np.ndarray, encoded: EncodedSplit, *,
               threshold: float = LABEL_THRESHOLD, relevant_class: int = 1) -> dict[str, float]:
    """`metric` (`{'metric', 'value', 'examples'}` and the metric's details, e.g. entity F1's
    precision and recall) of what the head predicts from logits aligned with `encoded` rows,
    read as the task type reads them (`TaskType.predicted`; label sets at `threshold`, a
    ranking's two classes by P(`relevant_class`)); a metric counted in other units than rows
    (queries) gives their number too."""
    predicted = task_type.predicted(logits, threshold, relevant_class)
    evidence = metric.evidence(predicted, encoded.gold, labels)
    details = {} if metric.details is None else metric.details(evidence)
    score = {"metric": metric.name, "value": metric.value(evidence), "examples": len(encoded),
             **units_scored(metric, evidence),
             **{name: float(value) for name, value in details.items()}}
    return with_non_finite(score, non_finite_rows(logits, encoded.labels))


def units_scored(metric: Metric, evidence: np.ndarray) -> dict[str, int]:
    """`{metric.units: count}` for a metric whose evidence rows are not the examples (a ranking
    metric's queries), else empty."""
    return {} if metric.unit == "row" else {metric.units: len(evidence)}


def non_finite_rows(logits: np.ndarray, labels: np.ndarray | None = None) -> int:
    """Rows of `logits` (`[n, C]`, or `[n, seq, C]` per token) with a NaN or Inf where an
    answer is read: any of a row's outputs, or per token those of its labelled positions
    (`labels` not `IGNORE`). Such outputs come from values past a precision's range (FP16
    overflows above 65,504) or from NaN input; no answer can be read from them."""
    logits = np.asarray(logits)
    finite = np.isfinite(logits.reshape(len(logits), *logits.shape[1:-1], -1)).all(-1)
    if finite.ndim == 2 and labels is not None:
        finite |= np.asarray(labels)[:, :finite.shape[1]] == IGNORE
    return int((~finite.reshape(len(finite), -1)).any(-1).sum())


def with_non_finite(score: dict, count: int) -> dict:
    """`score` with its value (and its details: precision, recall) NaN and `non_finite_rows`
    when `count` rows had NaN or Inf outputs; unchanged otherwise."""
    if not count:
        return score
    nan = {k: float("nan") for k, v in score.items()
           if isinstance(v, float) and k not in ("agreement",)}
    return score | nan | {"non_finite_rows": count}


def register_metric(metric: Metric, *, task_types: Sequence[str], replace: bool = False) -> Metric:
    """Registers `metric` in both places a metric lives, consistently: `METRICS` (which the
    search, its report and `summary.json` read by name) and the `other_metrics` of each of
    `task_types` (which `Task`, `--metric` and the CLI help offer); returns it.

    Args:
      metric: the `Metric`; its `gold_field` must be one the task types read their gold from.
      task_types: names of `TASK_TYPES` whose tasks may be scored by it (at least one).
      replace: allow a taken name (a built-in's included): the new metric replaces the old one
        everywhere it is offered.

    Raises:
      TypeError: `metric` is not a `Metric`.
      ValueError: a taken name without `replace`; no task type, an unknown one, or one whose
        gold fields do not hold `metric.gold_field`.
    """
    if not isinstance(metric, Metric):
        raise TypeError(f"register_metric: expected a samp_jax.tasks.Metric, got {type(metric).__name__}")
    if not isinstance(metric.name, str) or not metric.name.strip():
        raise ValueError(f"register_metric: name={metric.name!r}; expected a non-empty str")
    if isinstance(task_types, str) or not task_types:
        raise ValueError(f"register_metric({metric.name!r}): task_types={task_types!r}; expected "
                         f"a non-empty sequence of names from {sorted(TASK_TYPES)}")
    for name in task_types:
        task_type = get_task_type(name)
        if metric.gold_field not in task_type.label_fields:
            raise ValueError(f"register_metric({metric.name!r}): task type {name!r} reads its gold "
                             f"from {list(task_type.label_fields) or 'no field (no labels)'}, not "
                             f"{metric.gold_field!r} (the metric's gold_field)")
    check_free(METRICS, metric.name, f"metric {metric.name!r}", replace=replace)
    METRICS[metric.name] = metric
    for name, task_type in TASK_TYPES.items():
        swap = lambda ms: tuple(metric if m.name == metric.name else m for m in ms)  # noqa: E731
        others = swap(task_type.other_metrics)
        if name in task_types and metric not in (*task_type.metrics, *others):
            others = (*others, metric)
        if (swap(task_type.metrics), others) != (task_type.metrics, task_type.other_metrics):
            TASK_TYPES[name] = dataclasses.replace(task_type, metrics=swap(task_type.metrics),
                                                   other_metrics=others)
    return metric
