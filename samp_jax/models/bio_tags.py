"""Entity spans of BIO tags: the one reading that entity F1 scores and `samp-jax predict` writes.

A BIO tag is "O" (outside every entity), "B-<type>" (begins an entity) or "I-<type>" (inside
one); any non-empty type is accepted. Spans are read as conlleval reads them: an entity starts
at every "B-" tag and at every "I-" tag that does not continue an entity of the same type (a
stray "I-" after "O", at the start, or after another type); it ends before the next tag that
does not continue it. Spans are `(type, start, end)` word indices, `end` exclusive.

Tags are names, or integer ids into a tuple of names given as `names` (a token-classification
head's `id2label`, a data set's tag list). The reading belongs to the head's labels, not to a
data set, so it lives with the models: `samp_jax.data.wnut16`, `samp_jax.tasks.metrics`,
`samp_jax.tasks.files` and the predictions of the app all use it.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

OUTSIDE = "O"
"""The tag of a word outside every entity."""

Span = tuple[str, int, int]
"""`(type, start, end)`: an entity of `type` over words `start .. end - 1`."""


def split_tag(tag: str | int, position: int, names: Sequence[str] | None = None) -> tuple[str, str]:
    """`("O", "")` or `("B" | "I", type)` for a tag name, or a tag id into `names`.

    Raises:
      ValueError: an id outside `names` (or an id without `names`), or a name that is not
        'O', 'B-<type>' or 'I-<type>'; the message names `position`.
    """
    if not isinstance(tag, str):
        tag_id = operator.index(tag)
        if names is None:
            raise ValueError(f"tag id {tag_id} at position {position} needs the tag names")
        if not 0 <= tag_id < len(names):
            raise ValueError(f"tag id {tag_id} at position {position} is not in "
                             f"0..{len(names) - 1}")
        tag = names[tag_id]
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I") or not kind:
        raise ValueError(f"tag {tag!r} at position {position} is not 'O', 'B-<type>' or "
                         "'I-<type>'")
    return prefix, kind


def tag_spans(tags: Sequence[str] | Sequence[int], names: Sequence[str] | None = None) -> list[Span]:
    """The entity spans of one BIO tag sequence, in order of their start (see the module).

    Raises:
      ValueError: as `split_tag`, for the first tag that is not BIO.
    """
    spans: list[Span] = []
    current: tuple[str, int] | None = None  # (type, start) of the open entity
    for position, tag in enumerate(tags):
        prefix, kind = split_tag(tag, position, names)
        if current is not None and (prefix != "I" or kind != current[0]):
            spans.append((current[0], current[1], position))
            current = None
        if prefix != OUTSIDE and current is None:
            current = (kind, position)
    if current is not None:
        spans.append((current[0], current[1], len(tags)))
    return spans


def not_bio(names: Sequence[str]) -> list[str]:
    """The names among `names` that are not BIO tags, in order (empty: all are)."""
    bad = []
    for name in names:
        try:
            split_tag(name, 0)
        except ValueError:
            bad.append(name)
    return bad


def entity_counts(gold: Sequence[Sequence[int | str]], predicted: Sequence[Sequence[int | str]],
                  names: Sequence[str] | None = None) -> np.ndarray:
    """Per sentence: `[gold entities, predicted entities, correct]` (`[N, 3]` int64), where a
    predicted entity is correct when its type, start and end all equal a gold entity's in the
    same sentence. Entity F1 is computed from these rows (a resampled F1 from weighted sums).

    Raises:
      ValueError: the sentence counts differ, a sentence's tag counts differ (the message
        names the sentence index), or a tag is not BIO (`split_tag`).
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    counts = np.zeros((len(gold), 3), np.int64)
    for index, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(f"sentence {index}: {len(gold_tags)} gold tags but "
                             f"{len(predicted_tags)} predicted")
        gold_spans = set(tag_spans(gold_tags, names))
        predicted_spans = set(tag_spans(predicted_tags, names))
        counts[index] = (len(gold_spans), len(predicted_spans), len(gold_spans & predicted_spans))
    return counts
