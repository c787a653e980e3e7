"""Which columns of a table hold which fields, and what task they make: your names
(`Columns`) or the usual ones (`DEFAULT_NAMES`, `DEFAULT_PAIRS`), checked against the table,
and the task type the columns and the model's head imply (`samp_jax.tasks.files.load_task`
reads a table with them).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np

from samp_jax.core.errors import SampJaxError
from samp_jax.models.head_kinds import (SENTENCE_EMBEDDING, SEQUENCE_CLASSIFICATION,
                                       TOKEN_CLASSIFICATION, Readout)
from samp_jax.tasks import cells
from samp_jax.tasks.readers import Table
from samp_jax.tasks.types import TASK_TYPES, sequence_type

FIELDS = ("text", "text_pair", "label", "tokens", "tags", "score", "relevance", "group")
DEFAULT_NAMES: dict[str, tuple[str, ...]] = {
    "text": ("text", "sentence", "sentence1", "premise", "question", "content", "review"),
    "text_pair": ("text_pair", "sentence2", "hypothesis", "pair"),
    "label": ("label", "labels", "class", "category", "gold_label", "sentiment"),
    "tokens": ("tokens", "words"),
    "tags": ("tags", "ner_tags", "labels"),
    "score": ("score", "similarity"),
    "labels": ("labels", "label", "classes", "categories", "topics"),
    "relevance": ("relevance", "rel", "is_relevant", "is_selected"),
    "group": ("qid", "query_id", "query-id", "queryid"),
}
"""Usual column names of each canonical field, tried in order."""
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("text", "text_pair"), ("sentence1", "sentence2"), ("premise", "hypothesis"),
    ("question", "context"), ("question", "passage"), ("question", "sentence"),
    ("question1", "question2"), ("query", "passage"), ("query", "document"), ("query", "doc"),
    ("text_a", "text_b"), ("sentence_a", "sentence_b"))
"""Usual names of a pair's two text columns (QNLI's question and sentence, QQP's question1
and question2, a reranker's query and passage), tried in order before `DEFAULT_NAMES` when
neither text column is named (and for the second text, when only the first is named): a
question read alone would drop its context without a word. A second column that holds one value
in every row of several (a placeholder: "NO_CONTEXT") makes no pair; a first one may (a
reranker's one query over many passages), and a one-row table is read as a pair."""
LIST_FIELDS = ("tokens", "tags")


@dataclasses.dataclass(frozen=True)
class Columns:
    """Your column names for the canonical example fields; None takes a usual name
    (`DEFAULT_NAMES`).

    Attributes:
      text: the text (or first text of a pair).
      text_pair: the second text of a pair.
      label: a class name or id (0/1 for embedding and scoring pairs); for multi-label
        data, the row's label set (a list, or a text separated by `cells.LABEL_SEPARATOR`).
      tokens: a list of words per row (token classification).
      tags: a list of tag names or ids per row, one per word.
      score: a float similarity (embedding pairs).
      relevance: a ranking task's relevance of the row's passage to its query: an integer, 0
        for not relevant (0/1, or graded 0, 1, 2, ...); default: a usual name, else the label
        (or score) column.
      group: a ranking task's query id, the rows of one query ranked together; default: a
        usual name, else the query text.
    """

    text: str | None = None
    text_pair: str | None = None
    label: str | None = None
    tokens: str | None = None
    tags: str | None = None
    score: str | None = None
    relevance: str | None = None
    group: str | None = None


def find_columns(table: Table, columns: Columns, *, warn: bool = True) -> dict[str, str | None]:
    """Field -> column: the one named in `columns` (it must exist), else a usual name. With
    `warn`, a usual second text left unread is a warning (see `DEFAULT_PAIRS`)."""
    found = {}
    for field in FIELDS:
        column = getattr(columns, field)
        if column is not None and column not in table.columns:
            raise ValueError(f"{table.where}: column {column!r}, named with {naming(field)}, "
                             "was not found; "
                             f"columns found: {list(table.columns)}")
        if column is not None and column in found.values():
            other = next(f for f, c in found.items() if c == column)
            raise ValueError(f"{table.where}: column {column!r} is named for both "
                             f"{naming(other)} and {naming(field)}; expected one column per field")
        found[field] = column
    used = {c for c in found.values() if c is not None}
    named_text = found["text"]
    if found["text"] is None and found["text_pair"] is None:
        found["text"], found["text_pair"] = _usual_pair(table, used, None) or (None, None)
        used |= {found["text"], found["text_pair"]} - {None}
    for field in FIELDS:
        if found[field] is None:
            found[field] = next((c for c in DEFAULT_NAMES[field] if c in table.columns
                                 and c not in used
                                 and _holds_lists(table, c) == (field in LIST_FIELDS)), None)
            used.add(found[field])  # None is never a column name
    if warn and found["text_pair"] is None:
        _warn_of_an_unread_second_text(table, named_text, found["text"], used)
    return found


def _usual_pair(table: Table, used: set, first: str | None) -> tuple[str, str] | None:
    """The first of `DEFAULT_PAIRS` (starting at column `first`, or any) whose columns the table
    has free: its second text varies (one value in every row of several is a placeholder), and
    its first varies too, or is one non-blank text (a reranker's one query over many passages)
    while no other usual text column is there to be read instead."""
    for a, b in DEFAULT_PAIRS:
        if not (a == first or first is None and _free(table, a, used)) or not _free(table, b, used):
            continue
        if len(table.rows) >= 2 and not _varies(table, b):
            continue
        if first is None and not _varies(table, a):
            value = next((row.get(a) for row in table.rows), None)
            others = [c for c in DEFAULT_NAMES["text"] if c not in (a, b) and _free(table, c, used)]
            if not isinstance(value, str) or not value.strip() or others:
                continue
        return a, b
    return None


def _warn_of_an_unread_second_text(table: Table, named: str | None, text: str | None,
                                   used: set) -> None:
    """A warning when the text is read alone beside a usual second text: the named text's
    usual partner, or a usual pair's second column left as a placeholder (one value)."""
    if named is not None and (partner := _usual_pair(table, used - {named}, named)) is not None:
        warnings.warn(f"{table.where}: the text column {named!r} is read alone; column "
                      f"{partner[1]!r} is the usual second text of a pair with it: give "
                      f"--text-pair-column {partner[1]} (Columns(text_pair=...)) to read pairs",
                      stacklevel=3)
        return
    constant = next((b for a, b in DEFAULT_PAIRS if a == text and b in table.columns
                     and b not in used and len(table.rows) >= 2 and not _varies(table, b)), None)
    if constant is not None:
        value = cells.shown(next(row.get(constant) for row in table.rows), 60)
        warnings.warn(f"{table.where}: column {constant!r} holds one value in every row "
                      f"({value}), so it is read as a placeholder and {text!r} alone; give "
                      f"--text-pair-column {constant} (Columns(text_pair=...)) to read pairs",
                      stacklevel=3)


def _free(table: Table, column: str, used: set) -> bool:
    """Whether `column` is in the table, unclaimed, and holds texts (not lists)."""
    return column in table.columns and column not in used and not _holds_lists(table, column)


def _varies(table: Table, column: str) -> bool:
    """Whether the column holds more than one value (a constant column is no text)."""
    first = next((row.get(column) for row in table.rows), None)
    return any(row.get(column) != first for row in table.rows)


def _holds_lists(table: Table, column: str) -> bool:
    value = next((row[column] for row in table.rows if row.get(column) is not None), None)
    return isinstance(value, (list, tuple, np.ndarray))


def _holds_scores(table: Table, column: str) -> bool:
    """Whether every value is a number (or spells one) and some are fractional (STS-B)."""
    fractional = False
    for row in table.rows:
        value = row.get(column)
        if isinstance(value, (bool, np.bool_)):
            return False
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        fractional = fractional or (math.isfinite(number) and not number.is_integer())
    return fractional


def infer_task_type(table: Table, found: dict[str, str | None], head: str | None,
                     readout: Readout | None = None, named: Columns = Columns()) -> str:
    """The task type's name from the columns `found` (`find_columns`), the model's `head` kind
    name and `readout`, and the columns `named`: text pairs with a relevance column, a named
    query id column, or a usual one (`qid`, `query_id`) beside whole-number gold, are a
    ranking (`text_pair_ranking` for a sequence head or none, `embedding_ranking` for an
    embedder)."""
    pair = found["text"] is not None and found["text_pair"] is not None
    labelled = found["label"] is not None
    scored = found["score"] is not None or (labelled and _holds_scores(table, found["label"]))
    if head == TOKEN_CLASSIFICATION.name or (head is None and found["tokens"] and found["tags"]):
        return "token_classification"
    if pair and _ranked(table, found, named):
        return "embedding_ranking" if head == SENTENCE_EMBEDDING.name else "text_pair_ranking"
    if head == SEQUENCE_CLASSIFICATION.name:
        return sequence_type(readout or Readout.CLASSES, pair).name
    if head is None and found["text"] is not None and _label_set_column(table, found):
        return sequence_type(Readout.LABELS, pair).name
    if head == SENTENCE_EMBEDDING.name:
        if pair and (labelled or scored):
            return "embedding_pairs"
        gold = found["score"] or found["label"]
        if gold is not None:  # not silently: the column looks like gold for a metric
            warnings.warn(f"{table.where}: column {gold!r} is not used: an embedding model "
                          "gives no label or score for one text (it scores pairs: a similarity); "
                          "give text pairs for a metric, or fine-tune a head on this file "
                          "(samp-jax finetune) to predict it", UserWarning, stacklevel=2)
        return "embedding_texts"
    if head is not None:
        raise ValueError(f"{head=} is not one of "
                         f"{sorted({t.head.name for t in TASK_TYPES.values()})}")
    if pair:
        if scored:
            return "embedding_pairs"
        if labelled:
            return "text_pair_classification"
        raise ValueError(f"{table.where}: text pairs ({found['text']!r}, {found['text_pair']!r}) "
                         f"need a label or score column (tried {DEFAULT_NAMES['label']} and "
                         f"{DEFAULT_NAMES['score']}); columns found: {list(table.columns)}; name "
                         f"yours with {naming('label')} or embed the texts with "
                         f"{naming_task_type('embedding_texts')}")
    if found["text"] is not None:
        if labelled:
            return "text_classification"
        # a score per text: what a one-output head gives (a regression, as HF's problem_type)
        return sequence_type(Readout.SCORE, False).name if scored else "embedding_texts"
    if found["tokens"] is not None or labelled:  # required_columns names what is missing
        return "token_classification" if found["tokens"] is not None else "text_classification"
    raise ValueError(f"{table.where}: no text column (tried {DEFAULT_NAMES['text']}) and no "
                     f"list-valued tokens and tags columns (tried {DEFAULT_NAMES['tokens']}, "
                     f"{DEFAULT_NAMES['tags']}); columns found: {list(table.columns)}; name "
                     f"yours with {naming('text')}")


def _ranked(table: Table, found: dict[str, str | None], named: Columns) -> bool:
    """Whether the columns make a ranking: a relevance column (named, or a usual one), a named
    query id column, or a usual one that repeats (queries of several rows) beside a label (or
    score) column of whole numbers. A usual id column of one row per id is a row id: such
    pairs stay pairs (an STS file with a `qid` column is scored as pairs)."""
    if found["relevance"] is not None or named.group is not None:
        return True
    gold = found["label"] or found["score"]
    return (found["group"] is not None and gold is not None and _repeats(table, found["group"])
            and _holds_relevances(table, gold))


def ranked_by_id_column(table: Table, found: dict[str, str | None], named: Columns) -> str | None:
    """The usual query id column that alone made `table` a ranking (no relevance column, no
    named id column), for a note saying so; None otherwise."""
    if found["relevance"] is not None or named.group is not None or found["group"] is None:
        return None
    return found["group"] if _ranked(table, found, named) else None


def _repeats(table: Table, column: str) -> bool:
    """Whether some value of `column` is in two rows or more."""
    seen = set()
    for row in table.rows:
        key = str(row.get(column))
        if key in seen:
            return True
        seen.add(key)
    return False


def _holds_relevances(table: Table, column: str) -> bool:
    """Whether every value is a whole number of 0 or more (or spells one): relevances."""
    for row in table.rows:
        value = row.get(column)
        if isinstance(value, (bool, np.bool_)):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        if not (math.isfinite(number) and number.is_integer() and number >= 0):
            return False
    return True


def naming(field: str) -> str:
    """How a user names the column of `field`: the command line's option, then the API's
    (label sets are named as labels are)."""
    field = "label" if field == "labels" else field
    return f"--{field.replace('_', '-')}-column (Columns({field}=...))"


def naming_task_type(name: str) -> str:
    """How a user gives the task type `name`: the command line's option, then the API's."""
    return f"--task-type {name} (task_type={name!r})"


def _label_set_column(table: Table, found: dict[str, str | None]) -> str | None:
    """The label column when it holds label sets (multi-label data), else None: a list per
    row, or texts of which some join two or more labels with `cells.LABEL_SEPARATOR`
    (`toxic|insult` in a CSV)."""
    column = _labels_column(table, found, found["label"])
    if column is None:
        return None
    return column if _holds_lists(table, column) or _holds_joined_labels(table, column) else None


def _holds_joined_labels(table: Table, column: str) -> bool:
    """Whether every value is text and some join labels with `|` (no piece blank) of which one
    also stands alone or in another set: `toxic|insult` beside `toxic`. A name that only ever
    appears joined (a class named `R&B|Soul`) may be one label and is read as one."""
    values = [row.get(column) for row in table.rows]
    if not all(isinstance(v, str) or v is None for v in values):
        return False
    sets = [{p.strip() for p in v.split(cells.LABEL_SEPARATOR)}
            for v in set(values) if v and v.strip()]
    seen = Counter(piece for pieces in sets for piece in pieces)  # distinct cells holding each
    return any(len(pieces) > 1 and "" not in pieces and any(seen[p] > 1 for p in pieces)
               for pieces in sets)


def _labels_column(table: Table, found: dict[str, str | None], named: str | None) -> str | None:
    """The column that holds label sets if any does: `named`, else the first of the usual
    names (`DEFAULT_NAMES["labels"]`) that is not a text column."""
    return named or next((c for c in DEFAULT_NAMES["labels"] if c in table.columns
                          and c not in (found["text"], found["text_pair"])), None)


def label_field(table: Table, found: dict[str, str | None], columns: Columns,
                 task_type) -> str | None:
    """The canonical field that carries the gold answer: 'label', 'tags', 'score' or None.

    Embedding pairs take a named score column, then a named label column, then a usual score
    column, then a usual label column; a label column of fractional numbers is a score.
    """
    if len(task_type.label_fields) < 2:  # one gold field; else a 0/1 label or a score
        return task_type.label_fields[0] if task_type.label_fields else None
    for field, column in (("score", columns.score), ("label", columns.label),
                          ("score", found["score"]), ("label", found["label"])):
        if column is not None:
            return "score" if field == "score" or _holds_scores(table, column) else "label"
    return "label"  # missing: required_columns says so


class ColumnNotFound(SampJaxError, ValueError):
    """No column of the table can be read as a needed field (none has its name, or the one
    that has it holds the wrong shape of value in every row: plain values for a list field,
    lists for a text). A value of the wrong kind in some row is a plain ValueError."""


def required_columns(table: Table, columns: Columns, needed: Sequence[str],
                      what: str) -> dict[str, str]:
    """Field -> column for each of the `needed` fields (of `what`, for messages).

    Raises:
      ColumnNotFound: a needed field has no column.
    """
    found = find_columns(table, columns, warn=False)  # the caller's own find_columns warned
    if "score" in needed and found["score"] is None:  # a label column of scores
        found["score"] = columns.label or found["label"]
    if "relevance" in needed and found["relevance"] is None:  # 0/1 labels, graded scores
        found["relevance"] = columns.label or columns.score or found["label"] or found["score"]
    if "labels" in needed:  # a label column of label sets: lists, or texts in CSV/TSV
        found["labels"] = _labels_column(table, found, columns.label)
    for field in needed:
        flat = [c for c in DEFAULT_NAMES[field] if c in table.columns and field in LIST_FIELDS]
        if found[field] is None and flat:
            raise ColumnNotFound(f"{table.where}: column {flat[0]!r} holds "
                             f"{type(table.rows[0].get(flat[0])).__name__} values; {what} needs "
                             f"a list of {'words' if field == 'tokens' else 'tags'} per row (CSV "
                             "and TSV cannot hold lists: use JSON Lines, Parquet or a datasets "
                             "folder)")
        listed = [c for c in DEFAULT_NAMES[field] if c in table.columns and c not in found.values()
                  and field not in LIST_FIELDS and _holds_lists(table, c)]
        if found[field] is None and listed:
            raise ColumnNotFound(f"{table.where}: column {listed[0]!r} holds lists; {what} needs one "
                             f"{'text' if field.startswith('text') else 'value'} per row in its "
                             f"{field} column (name another with {naming(field)})")
        if found[field] is None:
            names = DEFAULT_NAMES[field] + (DEFAULT_NAMES["label"] if field == "score" else ()) \
                + (DEFAULT_NAMES["label"] + DEFAULT_NAMES["score"] if field == "relevance" else ())
            shape = "list-valued " if field in LIST_FIELDS else ""
            taken = "".join(f" ({c!r} is the {f} column)" for f, c in found.items()
                            if c in names and f != field)
            raise ColumnNotFound(f"{table.where}: {what} needs a {shape}{field} column, and none of "
                             f"{names} is one{taken}; columns found: {list(table.columns)}; "
                             f"name yours with {naming(field)}")
    return {field: found[field] for field in needed}
