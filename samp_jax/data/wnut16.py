"""WNUT-16 Twitter named entities: loading, splits, sub-token label alignment and entity F1.

The data is the `wnut16` asset (see `samp_jax.core.assets`): `ner.txt`, the WNUT-16 shared-task
training set in CoNLL format, one `token<TAB>tag` line per token and a blank line (a lone
tab in this file) after each tweet. It holds 2,394 tweets, 46,469 tokens and 1,496 entities
of 10 types, tagged BIO (no tweet in it starts an entity with a stray `I-` tag).

The file repeats tweets: 88 word sequences occur more than once (99 extra copies, 2,295
distinct tweets), and 14 of those repeated tweets are tagged differently in different copies
(e.g. "Pxleyes" is B-company once and O once). `load_wnut16` returns every copy;
`wnut16_splits` keeps only the first so that no tweet text is in two parts.

Tags are ids into `WNUT16_LABELS`: "O" is 0, then a "B-"/"I-" pair for each of
`ENTITY_TYPES` in sorted order, so `B-<type>` is `1 + 2 * k` and `I-<type>` is `2 + 2 * k`
for `k = ENTITY_TYPES.index(type)`.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Sequence

import numpy as np

from samp_jax.core.assets import fetch
from samp_jax.data.splits import TaskSplits, seeded_splits
from samp_jax.models import bio_tags

ENTITY_TYPES: tuple[str, ...] = (
    "company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
    "sportsteam", "tvshow",
)
"""The 10 WNUT-16 entity types, sorted."""

WNUT16_LABELS: tuple[str, ...] = ("O",) + tuple(
    f"{prefix}-{kind}" for kind in ENTITY_TYPES for prefix in ("B", "I"))
"""Tag names: "O", then "B-<type>", "I-<type>" for each of `ENTITY_TYPES`; a tag id indexes this."""

_FILE = "ner.txt"
_LABEL_IDS = {name: i for i, name in enumerate(WNUT16_LABELS)}


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    """One tokenized, tagged tweet.

    Attributes:
      words: the tokens as given in the file.
      tags: one id into `WNUT16_LABELS` per word.
    """

    words: tuple[str, ...]
    tags: tuple[int, ...]


def load_wnut16() -> list[TaggedSentence]:
    """Reads all 2,394 tagged tweets of `ner.txt`, in file order.

    The file is parsed once per process; each call returns a fresh list.

    Raises:
      ValueError: a line is neither blank nor `token tag`, or a tag is not in
        `WNUT16_LABELS` (the message names the line number).
    """
    return list(_load())


def wnut16_splits(seed: int = 0, *, dev_size: int = 200, calibration_size: int = 200,
                  search_size: int = 300, test_size: int = 500) -> TaskSplits:
    """Splits `load_wnut16()` deterministically into disjoint train/dev/calibration/search/test.

    Tweets whose word sequence occurred earlier in the file are dropped first (the first copy
    is kept, even where a later copy is tagged differently), so the parts are disjoint by
    text; 2,295 tweets remain. They are shuffled with `np.random.default_rng(seed)`: the first
    `test_size` are `test`, then `search_size` are `search`, `calibration_size` are
    `calibration`, `dev_size` are `dev` and the rest (1,095 at the defaults) are `train`.
    Results are cached per arguments.

    Raises:
      ValueError: a size is not positive, or the sizes leave no tweets for `train`.
    """
    return _splits(operator.index(seed), operator.index(dev_size),
                   operator.index(calibration_size), operator.index(search_size),
                   operator.index(test_size))


def align_labels(word_ids: Sequence[int | None], word_tags: Sequence[int], *,
                 ignore_index: int = -100) -> np.ndarray:
    """Word tags spread over sub-tokens: only the first sub-token of each word is labelled.

    Args:
      word_ids: for each sub-token position, the index of the word it came from, or None for
        special tokens and padding (as `tokenizers.Encoding.word_ids` gives).
      word_tags: one tag id per word.
      ignore_index: the label of special tokens, padding and non-first sub-tokens.

    Returns:
      An int32 array with one label per position: `word_tags[w]` at the first position whose
      word id is `w`, `ignore_index` everywhere else. Words cut off by truncation get no label.

    Raises:
      ValueError: a word id is negative or has no tag.
    """
    labels = np.full(len(word_ids), operator.index(ignore_index), dtype=np.int32)
    seen: set[int] = set()
    for position, word in enumerate(word_ids):
        if word is None:
            continue
        word = operator.index(word)
        if not 0 <= word < len(word_tags):
            raise ValueError(f"word id {word} at position {position} is outside the "
                             f"{len(word_tags)} word tags")
        if word not in seen:
            seen.add(word)
            labels[position] = operator.index(word_tags[word])
    return labels


def tags_to_spans(tags: Sequence[str] | Sequence[int]) -> set[tuple[str, int, int]]:
    """Entity spans `(type, start, end_exclusive)` of one BIO tag sequence, as conlleval finds them.

    Tags are names ("O", "B-x", "I-x"; any type x is accepted) or ids into `WNUT16_LABELS`;
    the spans are `samp_jax.models.bio_tags.tag_spans`'s: an entity starts at every `B-` tag
    and at every `I-` tag that does not continue an entity of the same type (a stray `I-`
    after "O" or after another type); it ends before the next tag that does not continue it.

    Raises:
      ValueError: a tag id is out of range or a tag name is malformed.
    """
    return set(bio_tags.tag_spans(tags, WNUT16_LABELS))


def entity_counts(gold: Sequence[Sequence[int | str]],
                  predicted: Sequence[Sequence[int | str]]) -> np.ndarray:
    """Per sentence: `[gold entities, predicted entities, correct]` (`[N, 3]` int64), the
    counts `entity_f1` sums (`samp_jax.models.bio_tags.entity_counts`, ids into
    `WNUT16_LABELS`); a resampled F1 is a weighted sum of these rows.

    Raises:
      ValueError: as `entity_f1`.
    """
    return bio_tags.entity_counts(gold, predicted, WNUT16_LABELS)


def entity_f1(gold: Sequence[Sequence[int | str]],
              predicted: Sequence[Sequence[int | str]]) -> dict[str, float]:
    """Exact-match entity precision, recall and F1, micro-averaged over all sentences.

    A predicted entity is correct only when its type, start and end all equal those of a gold
    entity in the same sentence (spans from `tags_to_spans`). Ratios with a zero denominator
    are 0.0.

    Returns:
      {"precision", "recall", "f1"} as floats and {"gold_entities", "predicted_entities",
      "correct"} as ints.

    Raises:
      ValueError: the sentence counts differ, a sentence's tag counts differ (the message
        names the sentence index), or a tag is invalid.
    """
    n_gold, n_predicted, n_correct = (int(n) for n in entity_counts(gold, predicted).sum(axis=0))
    precision = n_correct / n_predicted if n_predicted else 0.0
    recall = n_correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold_entities": n_gold,
            "predicted_entities": n_predicted, "correct": n_correct}


@functools.lru_cache(maxsize=None)
def _load() -> tuple[TaggedSentence, ...]:
    path = fetch("wnut16") / _FILE
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[int] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                if words:
                    sentences.append(TaggedSentence(words=tuple(words), tags=tuple(tags)))
                    words, tags = [], []
                continue
            if len(fields) != 2:
                raise ValueError(f"{path} line {number}: expected 'token tag', got {line!r}")
            word, tag = fields
            if tag not in _LABEL_IDS:
                raise ValueError(f"{path} line {number}: {tag=} is not one of "
                                 f"{list(WNUT16_LABELS)}")
            words.append(word)
            tags.append(_LABEL_IDS[tag])
    if words:
        sentences.append(TaggedSentence(words=tuple(words), tags=tuple(tags)))
    return tuple(sentences)


@functools.lru_cache(maxsize=None)
def _splits(seed: int, dev_size: int, calibration_size: int, search_size: int,
            test_size: int) -> TaskSplits:
    first_by_words: dict[tuple[str, ...], TaggedSentence] = {}
    for sentence in _load():
        first_by_words.setdefault(sentence.words, sentence)
    return seeded_splits(tuple(first_by_words.values()), seed, dev_size=dev_size,
                         calibration_size=calibration_size, search_size=search_size,
                         test_size=test_size)
