"""Entity spans of BIO and BIOES tags: the one reading that entity F1 scores and
`samp-jax predict` writes.

A tag is "O" (outside every entity) or "<prefix>-<type>" with any non-empty type and a prefix
of BIO ("B" begins an entity, "I" is inside one) or of BIOES, which adds "E" (ends an entity)
and "S" (a single-word entity). Spans are read as conlleval reads them, tag by tag, with the
previous tag (`_ends`, `_starts`): an entity starts at every "B-" and "S-" tag and at every
"I-" or "E-" tag that does not continue an entity of the same type (a stray "I-" after "O", at
the start, after another type, or after an entity that "E-" or "S-" closed); it ends after an
"E-" or "S-" tag and before the next tag that does not continue it. On BIO tags this is the
plain BIO reading (IOB1's "I-" starts too). Spans are `(type, start, end)` word indices, `end`
exclusive.

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

PREFIXES = ("B", "I", "E", "S")
"""Begin, inside, end, single: BIO's two prefixes and the two BIOES adds."""

Span = tuple[str, int, int]
"""`(type, start, end)`: an entity of `type` over words `start .. end - 1`."""


def split_tag(tag: str | int, position: int, names: Sequence[str] | None = None) -> tuple[str, str]:
    """`("O", "")` or `(prefix, type)` (a prefix of `PREFIXES`) for a tag name, or a tag id
    into `names`.

    Raises:
      ValueError: an id outside `names` (or an id without `names`), or a name that is not
        'O' or '<B|I|E|S>-<type>'; the message names `position`.
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
    if prefix not in PREFIXES or not kind:
        raise ValueError(f"tag {tag!r} at position {position} is not 'O' or "
                         "'<B|I|E|S>-<type>' (BIO or BIOES)")
    return prefix, kind


def _ends(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """conlleval's `endOfChunk`: whether an entity open at the previous tag ends before this."""
    (before, before_kind), (tag, kind) = previous, current
    return (before in "ES" or (before in "BI" and tag in "BSO")
            or (before != OUTSIDE and before_kind != kind))


def _starts(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """conlleval's `startOfChunk`: whether an entity starts at this tag."""
    (before, before_kind), (tag, kind) = previous, current
    return (tag in "BS" or (before in "ESO" and tag in "IE")
            or (tag != OUTSIDE and before_kind != kind))


def tag_spans(tags: Sequence[str] | Sequence[int], names: Sequence[str] | None = None) -> list[Span]:
    """The entity spans of one BIO or BIOES tag sequence, in order of their start (see the
    module).

    Raises:
      ValueError: as `split_tag`, for the first tag that is neither.
    """
    spans: list[Span] = []
    start: int | None = None  # where the open entity started
    previous = (OUTSIDE, "")
    for position, tag in enumerate(tags):
        current = split_tag(tag, position, names)
        if start is not None and _ends(previous, current):
            spans.append((previous[1], start, position))
            start = None
        if _starts(previous, current):
            start = position
        previous = current
    if start is not None:
        spans.append((previous[1], start, len(tags)))
    return spans


def not_bio(names: Sequence[str]) -> list[str]:
    """The names among `names` that are not BIO or BIOES tags, in order (empty: all are)."""
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
        names the sentence index), or a tag is neither BIO nor BIOES (`split_tag`).
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
