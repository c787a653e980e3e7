"""What cutting rows at a length leaves out: the rows that were longer, and for a tagger the
words past the cut, whose tags are not scored.

A task encodes its rows at `Task.length` tokens (`Task.max_length`, or the model's own limit,
as `samp-jax predict` serves rows); the encoders (`samp_jax.tasks.types`) mark each row they
cut, and `Truncation` sums the marks of one split for reports (`describe`, `as_dict`), so that
a cut is never silent.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from samp_jax.models.bio_tags import OUTSIDE


@dataclasses.dataclass(frozen=True)
class Truncation:
    """What cutting one split's rows at `max_length` tokens left out.

    Attributes:
      max_length: the length, in tokens (special tokens included), rows were cut at.
      rows: the rows (examples) encoded.
      rows_truncated: how many of them were longer, and were cut.
      words_cut: a tagger's words past the cut, whose gold tags are not scored (None for other
        task types).
      entity_words_cut: of those, the words inside a gold entity (a tag other than "O"); None
        for other task types, or a tagger whose tag names have no "O".
    """

    max_length: int
    rows: int
    rows_truncated: int
    words_cut: int | None = None
    entity_words_cut: int | None = None

    def as_dict(self) -> dict:
        """The counts as JSON-ready numbers (the task types' own fields only)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if v is not None or k not in ("words_cut", "entity_words_cut")}

    def describe(self, split: str) -> str | None:
        """One sentence for a person, e.g. "12 of 400 test rows are longer than 256 tokens and
        were truncated; 31 tagged words past the cut are not scored (24 of them in gold
        entities)"; None when no row was cut."""
        if not self.rows_truncated:
            return None
        are = "is" if self.rows_truncated == 1 else "are"
        text = (f"{self.rows_truncated} of {self.rows} {split} rows {are} longer than "
                f"{self.max_length} tokens and {'was' if are == 'is' else 'were'} truncated")
        if self.words_cut:
            text += (f"; {self.words_cut} tagged word{'s' if self.words_cut != 1 else ''} past "
                     f"the cut {'are' if self.words_cut != 1 else 'is'} not scored")
            if self.entity_words_cut is not None:
                text += f" ({self.entity_words_cut} of them in gold entities)"
        return text


def describe_all(truncations: Mapping[str, Truncation | None]) -> str | None:
    """One line for several splits' `Truncation`s (by split name), or None when none was cut."""
    parts = [t.describe(split) for split, t in truncations.items() if t is not None]
    parts = [p for p in parts if p]
    return "; ".join(parts) if parts else None


def as_dicts(truncations: Mapping[str, Truncation | None]) -> dict[str, dict]:
    """`Truncation.as_dict` of each split that has one, for a JSON output."""
    return {split: t.as_dict() for split, t in truncations.items() if t is not None}


def words_past_cut(word_ids: np.ndarray, tags: list, truncated: np.ndarray,
                   labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    """`([N] words past the cut, [N] of them inside a gold entity or None)` of a tagger's rows:
    a cut row's words that kept no token (after the last kept word, or before the first one
    when the tokenizer cuts on the left). `word_ids`: each position's word, -1 for none;
    `tags`: each row's gold tag ids; `labels`: the tag names, whose "O" is outside every
    entity; without an "O" the second count is None."""
    outside = labels.index(OUTSIDE) if labels is not None and OUTSIDE in labels else None
    words = np.zeros(len(tags), np.int64)
    entity = np.zeros(len(tags), np.int64)
    for row in np.flatnonzero(truncated):
        kept = np.zeros(len(tags[row]), bool)
        kept[word_ids[row][word_ids[row] >= 0]] = True
        rest = [t for t, k in zip(tags[row], kept) if not k]
        words[row] = len(rest)
        entity[row] = sum(1 for t in rest if t != outside)
    return words, (None if outside is None else entity)
