"""Entity spans of BIO, BIOES, BILOU and IO tags: the one reading that entity F1 scores and
`samp-jax predict` writes.

A tag is "O" (outside every entity) or "<prefix>-<type>" with any non-empty type and a prefix
of one scheme (`SCHEMES`): BIO ("B" begins an entity, "I" is inside one), BIOES, which adds
"E" (ends an entity) and "S" (a single-word entity), or BILOU, which names the same two roles
"L" (last) and "U" (unit). A scheme is data, a table of prefix -> role (`ROLES`); the reading
knows roles only, so BILOU is read exactly as BIOES with "L-" as "E-" and "U-" as "S-".

Spans are read as conlleval reads them, tag by tag, with the previous tag (`_ends`,
`_starts`): an entity starts at every begin and single tag and at every inside or end tag that
does not continue an entity of the same type (a stray "I-" after "O", at the start, after
another type, or after an entity that an end or single tag closed); it ends after an end or
single tag and before the next tag that does not continue it. On BIO tags this is the plain
BIO reading (IOB1's "I-" starts too). On well-formed tags (every entity B- I-* E-/L-, or
S-/U-) it gives the spans of seqeval's strict mode for the scheme; on others it is conlleval's
lenient reading. Spans are `(type, start, end)` word indices, `end` exclusive.

One sequence, and one head's tag names, use one scheme: BIO names fit both BIOES and BILOU,
but names of both ("E-" or "S-" beside "L-" or "U-") are refused (`scheme_of`, `tag_spans`).
Such a head comes from two conventions merged, say two data sets tagged apart; no reference
reads it (seqeval's strict mode takes one scheme, its default reading knows no "L-"/"U-"), and
an "E-PER" gold entity scored against an "L-PER" prediction would be a guess about intent.

IO tags (`IO`, `io_outside`, `type_runs`) have no prefix: "O" and bare types ("PER", "LOC"). An
entity is each maximal run of words of one type, the IO scheme's definition; two entities of
one type side by side read as one, as IO tags cannot tell them apart. A head's names are IO
tags when "O" (or "o") is one of them, another is beside it, and none of the others is a
prefixed tag or looks like one in another spelling (`near_entity_names`: "B_PER" beside "O" is
a misspelt BIO tag, not the type "B_PER"). Names without "O" (a part-of-speech tagger's NOUN,
VERB, Penn's NN, VBZ, DT) tag words, not entities. `entity_scheme` names the scheme a head's
tags are read by, IO among them.

Tags are names, or integer ids into a tuple of names given as `names` (a token-classification
head's `id2label`, a data set's tag list). The reading belongs to the head's labels, not to a
data set, so it lives with the models: `samp_jax.data.wnut16`, `samp_jax.tasks.metrics`,
`samp_jax.tasks.files` and the predictions of the app all use it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence

import numpy as np

OUTSIDE = "O"
"""The tag of a word outside every entity (its role, too)."""

BEGIN, INSIDE, END, SINGLE = "begin", "inside", "end", "single"
"""The roles a prefix names: the first, a middle and the last word of an entity, and an
entity of one word."""

SCHEMES: dict[str, dict[str, str]] = {
    "BIO": {"B": BEGIN, "I": INSIDE},
    "BIOES": {"B": BEGIN, "I": INSIDE, "E": END, "S": SINGLE},
    "BILOU": {"B": BEGIN, "I": INSIDE, "L": END, "U": SINGLE},
}
"""Each tagging scheme's prefixes and the role each names, in the order `scheme_of` tries them
(BIO first: its names fit the other two)."""

ROLES: dict[str, str] = {prefix: role for table in SCHEMES.values()
                         for prefix, role in table.items()}
"""Every prefix's role; a prefix that two schemes share names one role in both."""

PREFIXES = tuple(ROLES)
"""Every scheme's prefixes: "B", "I", "E", "S", "L", "U"."""

_TAG_FORM = f"'O' or '<{'|'.join(PREFIXES)}>-<type>' ({', '.join(SCHEMES)})"

Span = tuple[str, int, int]
"""`(type, start, end)`: an entity of `type` over words `start .. end - 1`."""


def tag_name(tag: str | int, position: int, names: Sequence[str] | None = None) -> str:
    """A tag's name: the tag itself, or a tag id's name in `names`.

    Raises:
      ValueError: an id outside `names` (or an id without `names`); the message names
        `position`.
    """
    if isinstance(tag, str):
        return tag
    tag_id = operator.index(tag)
    if names is None:
        raise ValueError(f"tag id {tag_id} at position {position} needs the tag names")
    if not 0 <= tag_id < len(names):
        raise ValueError(f"tag id {tag_id} at position {position} is not in "
                         f"0..{len(names) - 1}")
    return names[tag_id]


def split_tag(tag: str | int, position: int, names: Sequence[str] | None = None) -> tuple[str, str]:
    """`("O", "")` or `(prefix, type)` (a prefix of `PREFIXES`) for a tag name, or a tag id
    into `names`.

    Raises:
      ValueError: an id outside `names` (or an id without `names`), or a name that is not
        'O' or '<prefix>-<type>'; the message names `position`.
    """
    tag = tag_name(tag, position, names)
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ROLES or not kind:
        raise ValueError(f"tag {tag!r} at position {position} is not {_TAG_FORM}")
    return prefix, kind


def _schemes_with(prefix: str) -> frozenset[str]:
    """The schemes that have `prefix` ("O" is in every one)."""
    return frozenset(name for name, table in SCHEMES.items()
                     if prefix == OUTSIDE or prefix in table)


def _narrowed(schemes: frozenset[str], prefix: str, tag, position: int) -> frozenset[str]:
    """The schemes of `schemes` that also have `prefix`; none left raises a ValueError naming
    the tag that mixes schemes."""
    left = schemes & _schemes_with(prefix)
    if not left:
        fits = "/".join(sorted(_schemes_with(prefix)))
        raise ValueError(f"tag {tag!r} at position {position} is {fits} and the tags before it are"
                         f" {'/'.join(sorted(schemes))}: one sequence "
                         f"(one head) uses one scheme of {list(SCHEMES)}")
    return left


def scheme_of(names: Sequence[str]) -> str:
    """The first scheme of `SCHEMES` that has the prefix of every name of `names` (BIO for
    "O" alone): a head's tag scheme.

    Raises:
      ValueError: a name is not a tag (the message lists the first few), or the names use
        prefixes of two schemes, BIOES's "E-"/"S-" beside BILOU's "L-"/"U-" (see the module).
    """
    bad = not_bio(names)
    if bad:
        raise ValueError(f"tags {bad[:6]} are not {_TAG_FORM}")
    used = {split_tag(name, position)[0] for position, name in enumerate(names)} - {OUTSIDE}
    for scheme, table in SCHEMES.items():
        if used <= table.keys():
            return scheme
    schemes = "; ".join(f"{scheme}: {' '.join(table)}" for scheme, table in SCHEMES.items())
    raise ValueError(f"tags {list(names)[:8]} use the prefixes {sorted(used)}, which no one "
                     f"scheme has ({schemes}); a head's tags are of one scheme")


def _ends(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """conlleval's `endOfChunk` on roles: whether an entity open at the previous tag ends
    before this one."""
    (before, before_kind), (role, kind) = previous, current
    return (before in (END, SINGLE)
            or (before in (BEGIN, INSIDE) and role in (BEGIN, SINGLE, OUTSIDE))
            or (before != OUTSIDE and before_kind != kind))


def _starts(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """conlleval's `startOfChunk` on roles: whether an entity starts at this tag."""
    (before, before_kind), (role, kind) = previous, current
    return (role in (BEGIN, SINGLE) or (before in (END, SINGLE, OUTSIDE) and role in (INSIDE, END))
            or (role != OUTSIDE and before_kind != kind))


def tag_spans(tags: Sequence[str] | Sequence[int], names: Sequence[str] | None = None) -> list[Span]:
    """The entity spans of one BIO, BIOES or BILOU tag sequence, in order of their start (see
    the module).

    Raises:
      ValueError: as `split_tag`, for the first tag that is not a tag; or a tag whose prefix
        is not in the scheme of the tags before it (BIOES and BILOU mixed).
    """
    spans: list[Span] = []
    start: int | None = None  # where the open entity started
    previous = (OUTSIDE, "")
    schemes = frozenset(SCHEMES)  # those the tags so far fit
    for position, tag in enumerate(tags):
        prefix, kind = split_tag(tag, position, names)
        schemes = _narrowed(schemes, prefix, tag, position)
        current = (ROLES.get(prefix, OUTSIDE), kind)
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
    """The names among `names` that are not tags of any scheme (BIO, BIOES, BILOU), in order
    (empty: each is; `scheme_of` also checks that they are of one scheme)."""
    bad = []
    for name in names:
        try:
            split_tag(name, 0)
        except ValueError:
            bad.append(name)
    return bad


def names_entities(names: Sequence[str]) -> bool:
    """Whether some of a head's tag `names` is an entity tag, '<prefix>-<type>' with a prefix of
    `PREFIXES`: the names are then read as prefixed entity tags, to be of one scheme
    (`scheme_of`). Names with none are IO tags (`io_outside`: "O" beside bare types) or tag
    words (a part-of-speech tagger's NOUN and VERB, Penn's NN and VBZ); `reads_entities` says
    which names are read as entities at all."""
    return any(name != OUTSIDE and not not_bio([name]) for name in names)


# An entity tag in a spelling `split_tag` does not read: a prefix of any case with "-" or "_"
# ("b-per", "B_PER"), the prefix after the type ("PER-B"), or a typeless prefix ("B", "I").
_NEAR_ENTITY = re.compile(r"(?i)^(?:[BIESLU][-_].+|.+[-_][BIESLU]|[BIESLU])$")


def near_entity_names(names: Sequence[str]) -> list[str]:
    """The names among `names` that look like entity tags in a spelling this module does not
    read (`_NEAR_ENTITY`), when the names also hold an outside tag ("O" or "o") and no entity
    tag it does read (`names_entities`): a NER head whose tags, read as plain word tags, would
    be scored by word accuracy, mostly "O". Empty otherwise (part-of-speech tag sets have no
    "O")."""
    names = [str(n) for n in names]
    if names_entities(names) or not any(n.lower() == "o" for n in names):
        return []
    return [n for n in names if n.lower() != "o" and _NEAR_ENTITY.fullmatch(n)]


IO = "IO"
"""The scheme of tags without prefixes: "O" (or "o") and bare types (`io_outside`)."""

_OUTSIDE_SPELLINGS = (OUTSIDE, OUTSIDE.lower())


def io_outside(names: Sequence[str]) -> str | None:
    """The outside tag ("O", or "o") of a head's tag `names` when they are IO tags (see the
    module): that one name, at least one other beside it, and none of the others an entity tag
    of a prefixed scheme (`names_entities`) or one in a spelling this module does not read
    (`near_entity_names`). None for other names: part-of-speech tags (no "O"), prefixed tags,
    "O" alone, or both "O" and "o" (which would be outside is a guess)."""
    names = [str(n) for n in names]
    outside = [n for n in names if n in _OUTSIDE_SPELLINGS]
    if len(outside) != 1 or len(names) < 2 or names_entities(names) or near_entity_names(names):
        return None
    return outside[0]


def type_runs(tags: Sequence[str | None], outside: str = OUTSIDE) -> list[Span]:
    """IO's entities: each maximal run of one tag other than `outside` (and None, a word
    without a tag, which is outside every entity) as an entity of that type, in order."""
    spans: list[Span] = []
    for position, tag in enumerate(tags):
        if tag is None or tag == outside:
            continue
        if spans and spans[-1][0] == tag and spans[-1][2] == position:
            spans[-1] = (tag, spans[-1][1], position + 1)
        else:
            spans.append((tag, position, position + 1))
    return spans


def entity_scheme(names: Sequence[str]) -> str:
    """The scheme a head's tag `names` are read by as entities: `IO` for IO tags
    (`io_outside`), else the prefixed scheme of `scheme_of`.

    Raises:
      ValueError: as `scheme_of`, for names that are neither.
    """
    return IO if io_outside(names) is not None else scheme_of(names)


def reads_entities(names: Sequence[str]) -> bool:
    """Whether a head's tag `names` are read as entity tags: some name is a prefixed entity
    tag (`names_entities`; then they must be of one scheme), or they are IO tags
    (`io_outside`). Other names (part of speech) tag words."""
    return names_entities(names) or io_outside(names) is not None


def entity_counts(gold: Sequence[Sequence[int | str]], predicted: Sequence[Sequence[int | str]],
                  names: Sequence[str] | None = None) -> np.ndarray:
    """Per sentence: `[gold entities, predicted entities, correct]` (`[N, 3]` int64), where a
    predicted entity is correct when its type, start and end all equal a gold entity's in the
    same sentence. Entity F1 is computed from these rows (a resampled F1 from weighted sums).
    The tags (`names`, else every tag name of both) choose the reading: IO tags as runs of one
    type (`type_runs`), others as prefixed tags (`tag_spans`).

    Raises:
      ValueError: the sentence counts differ, a sentence's tag counts differ (the message
        names the sentence index), a tag is not a tag (`split_tag`), or the tags are neither
        IO tags nor of one prefixed scheme (`entity_scheme`).
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    # gold and predictions are read by one scheme: "E-PER" against "L-PER" would be a guess
    tags = names if names is not None else sorted(
        {t for rows in (gold, predicted) for row in rows for t in row if isinstance(t, str)})
    outside = io_outside(tags)
    if outside is None:
        scheme_of(tags)

    def spans(row: Sequence[int | str]) -> set[Span]:
        if outside is None:
            return set(tag_spans(row, names))
        return set(type_runs([tag_name(t, i, names) for i, t in enumerate(row)], outside))
    counts = np.zeros((len(gold), 3), np.int64)
    for index, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(f"sentence {index}: {len(gold_tags)} gold tags but "
                             f"{len(predicted_tags)} predicted")
        gold_spans, predicted_spans = spans(gold_tags), spans(predicted_tags)
        counts[index] = (len(gold_spans), len(predicted_spans), len(gold_spans & predicted_spans))
    return counts
