"""Your own data as a `Task`: a CSV, TSV, JSON Lines, Parquet or CoNLL file, a folder written by
`datasets`' `save_to_disk`, a `datasets.Dataset` / `DatasetDict`, or a list of dicts.

`load_task` reads the rows into the canonical example dicts of `samp_jax.tasks.types` and
checks all of them before it returns. Each error names the file (and split), the row, the
column and what was expected: a missing column (with the columns found), an empty file, an
unknown or missing label, labels the model does not have, a token/tag length mismatch, a
text that is not a string or is blank (an empty cell is a missing value), a word that is blank,
one column named for two fields, too few rows to split, a label named twice in one row's label
set. Rows are counted from 1, after any header.
Data that is not what it seems is refused too: a column name that appears twice
(`samp_jax.tasks.readers`), a label string that spells a missing value (`MISSING_LABELS`), and
labels (or tags) that hold one class when the classes come from the data.

Columns. `Columns` names your columns; a field left as None takes the first of its usual
names (`DEFAULT_NAMES`) that the data has, except that two text columns named as a usual pair
(`DEFAULT_PAIRS`: question and context, query and passage, sentence1 and sentence2, ...) are
read as `text` and `text_pair` when neither is named. `tokens` and `tags` only take list-valued
columns, the other fields only scalar ones (so `labels` is a label column or a tag column
depending on what it holds).

Task type, when not given: tokens + tags → `token_classification` (scored by entity F1 when
a tag name is an entity tag, `B-PER`, or the names are IO tags, `O` beside bare types like
`PER`; else by word accuracy); text + text_pair + label
→ `text_pair_classification`; text + text_pair + score (or a label column holding fractional
numbers, like STS-B) → `embedding_pairs`; text (+ text_pair) + a label column holding a list
per row, or texts that join labels with `|` (`toxic|insult` beside `toxic`) → `text_multi_label`
(`text_pair_multi_label`); text + label → `text_classification`;
text alone → `embedding_texts`. The model's `head` and `readout` narrow this: a
`token_classification` head means token classification, a `sequence_classification` head the
text (pair) type that reads it as it is read (`Readout`: classes; a set of labels for a head
with problem_type multi_label_classification; a score for a head of one output, against 0/1
labels or scores), and a `sentence_embedding` head embedding pairs (labels 0/1 or scores) or
else embedding texts. Text pairs with a relevance column (`relevance`, `rel`, `is_relevant`,
`is_selected`, or `Columns(relevance=...)`), a named query id column (`Columns(group=...)`), or
a usual one (`qid`, `query_id`) beside a label or score column of whole numbers, are a ranking:
`embedding_ranking` for a `sentence_embedding` head, else `text_pair_ranking`.

Rankings. Each row is a query (`text`), a passage (`text_pair`) and a relevance: a whole
number of 0 or more (0 is not relevant; 0/1 or graded), read from the relevance column, else
the label (or score) column. Rows are grouped into queries by the query id column when there
is one, else by the query text; a relevance that is not a whole number of 0 or more is
refused. A query of one row is scored as trec_eval scores it (1 by every measure when its row
is relevant, else 0) and counts in the mean; every ranker scores the same on it, so a warning
says how many queries have one row, and data in which every query has one is refused.

Label sets (multi-label). Each row's `labels` are a list of label names or ids (JSON Lines,
Parquet, datasets), `[]` for none, or in CSV/TSV a text of them separated by `|`
(`LABEL_SEPARATOR`: `toxic|insult`), an empty cell for none. They are read from the label
column (`Columns.label`, else the first of `DEFAULT_NAMES["labels"]`) and checked as labels
are (below), each label at most once per row. A column in which every row is a 0/1 vector of
one width (the model's number of labels, when known) is HF's multi-hot encoding: `[0, 1, 1]`
names labels 1 and 2 (`_multi_hot`). A boolean label is the name a CSV spells it with ("True",
"False"); a 0/1 gold column (embedding pairs, a one-output head's scores) reads it as 1/0.

Labels. A label (or a tag) is a name or an integer id; strings that all spell whole numbers
(a CSV's "0"/"1", or "0.0"/"1.0" as pandas writes an integer column that had a missing value,
just as JSON's 1.0 is the id 1) are ids unless they are all names in `labels`. With `labels` (the model's
`id2label` names, in order), names map to their index and ids must lie in
`[0, len(labels))`, except when the model's names are all numbers ("1" .. "5" stars): then
a number in the data, stored as a number or as text, is the class of that name (1 is "1"),
in every format alike. Without `labels`, names are sorted (tags: "O" first), ids are named by
a `datasets` ClassLabel column's names (a `Dataset`, a `save_to_disk` folder, or a Parquet
file `datasets` wrote, whose schema metadata keeps them), and plain numbers name the classes in numeric order,
as HF's `run_glue` numbers them (1..5 make five classes "1".."5"; -1/1 make two).
A ClassLabel column given `labels` is matched by its names (so a model that orders the
classes differently still gets the right ids; names that differ from the model's only in case,
glue/sst2's `negative` for distilbert-sst2's `NEGATIVE`, are matched regardless of case where
that match is one to one, as `datasets`' `align_labels_with_mapping` matches them, said in a
warning line; a plain label is matched as it is spelt, and its refusal says when only case
differs), unless `labels` are transformers' generic
`LABEL_<i>` names: then its ids are taken as they are, and its names, as many as the model's
outputs, name them (the task's labels: a BIO-tagged column is scored by entity F1, not by
word accuracy of `LABEL_<i>`), said in a warning line; another number of names is an error
naming both counts. A ClassLabel declaration over a column that holds anything but integer
ids (a Parquet file edited with pyarrow or pandas keeps its `huggingface` metadata) no longer
describes it: it is ignored, said in a warning line naming the file and column, and the
values are read as they are.
Embedding pairs take labels 0/1 or float scores and have no label names.

Splits. One source is shuffled with `np.random.default_rng(seed)` and cut into test (20%),
search (20%), calibration (10%, at most 512) and dev (10%), in that order, and train (the
rest); calibration, search and test get at least one row each and the source needs at
least `MIN_ROWS` rows. `sizes` overrides any of them (an int is a count, a float in (0, 1)
a fraction; a sized train leaves the rest unused). Explicit splits (`split_files`, or a
`DatasetDict`) are used as given; calibration and search, when not given, and any other
missing split named in `sizes`, are carved from train (from dev when there is no train),
the rest stays there. A missing test split is not carved from train (a model fine-tuned on
train would be scored on its own training rows): it stays empty unless `sizes` names it.
Rows of the other splits whose input (text and text pair, or tokens) equals a test input
are dropped, and the task's `source` says how many. Every carve is stratified by the gold
answer where each row has one (a class, a 0/1 label, a score by tenths:
`samp_jax.tasks.carving`), so a rare class is in each split in its share; label sets and tags
are shuffled plainly. A ranking is split by query: the
shuffle, `sizes` and `MIN_ROWS` count queries, no query's rows are in two splits, and a query
of another split whose text is a test query's is dropped whole.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from samp_jax.core.errors import SampJaxError
from samp_jax.data.splits import TaskSplits
from samp_jax.models.bio_tags import entity_scheme
from samp_jax.models.head_kinds import Readout
from samp_jax.models.hf_labels import all_generic
from samp_jax.tasks import cells
from samp_jax.tasks.carving import (CARVE_ORDER, DEFAULT_FRACTIONS, MAX_CALIBRATION,  # noqa: F401
                                    MIN_ROWS, carve_splits, gold_strata, query_rows,
                                    split_sizes, without_test_inputs)
from samp_jax.tasks.cells import MISSING_LABELS  # noqa: F401
from samp_jax.tasks.columns import (DEFAULT_NAMES, DEFAULT_PAIRS, FIELDS, LIST_FIELDS,  # noqa: F401
                                    Columns, find_columns, infer_task_type, label_field, naming,
                                    ranked_by_id_column,
                                    naming_task_type, required_columns)
from samp_jax.tasks.metrics import ENTITY_F1
from samp_jax.tasks.readers import (FORMATS, SPLIT_NAMES, ReadEachTime, StreamedRows,  # noqa: F401
                                    Table, describe_source, read_tables)
from samp_jax.tasks.task import SPLITS, LabelMismatch, Task, a_kind, readout_mismatch
from samp_jax.tasks.types import get_task_type

_SET_FIELDS = ("tags", "labels")  # gold fields holding a list of labels per row
INPUT_BLOCK_ROWS = 4096  # rows of a streamed file converted at a time (`InputRows`)


@dataclasses.dataclass(frozen=True)
class _Part:
    """A table's rows as canonical examples (labels still raw); `examples[i]` is row i + 1."""

    table: Table
    columns: dict[str, str]  # field -> column
    examples: list[dict]

    def at(self, row: int, field: str) -> str:
        return f"{self.table.where}: row {row}: column {self.columns[field]!r}"


def load_task(source: Any = None, *, task_type: str | None = None, columns: Columns = Columns(),
              labels: Sequence[str] | None = None,
              split_files: Mapping[str, str | Path] | None = None, name: str | None = None,
              seed: int = 0, sizes: Mapping[str, int | float] | None = None,
              max_length: int | None = None, head: str | None = None,
              readout: Readout | None = None) -> Task:
    """Reads your data into a checked, split `Task`.

    Args:
      source: a CSV, TSV (`.tsv`/`.tab`), JSON Lines (`.jsonl`/`.json`/`.ndjson`; a `.json`
        holding one array of objects also works), Parquet or CoNLL (`.conll`/`.bio`/`.iob`/
        `.iob2`: `samp_jax.tasks.conll`) file, a `save_to_disk` folder, a
        `datasets.Dataset` or `DatasetDict`, or a list of dicts. None with `split_files`.
      task_type: one of `samp_jax.tasks.TASK_TYPES`; None infers it from the columns (and
        `head`), see the module docstring.
      columns: your column names; fields left None take a usual name.
      labels: the model's label names in id order (`id2label`); the data's labels must be
        among them (a `datasets` ClassLabel column is matched by its names, regardless of case
        where only case differs, one to one, unless these are
        transformers' generic `LABEL_<i>`: then its ids are the model's and its names theirs,
        as many as there are). None takes them from the data. Embedding tasks ignore it.
      split_files: explicit files per split (`train`, `dev` or `validation`, `calibration`,
        `search`, `test`), instead of `source`.
      name: the task name; default the file's stem (its folder's name for `train.csv` and
        the like).
      seed: the split seed.
      sizes: rows per carved split (keys from `samp_jax.tasks.SPLITS`): an int is a count, a
        float in (0, 1) a fraction.
      max_length: tokens per example, special tokens included (longer rows are cut); None:
        the model's own limit, its tokenizer's `max_length` (`Task.length`).
      head: the model's head kind name (`EncoderModel.head_kind`), to pick and check the task
        type.
      readout: how the model's head is read (`EncoderModel.readout`), to pick and check the
        task type: a score (one output) makes it `text_scoring` or `text_pair_scoring`, a set
        of labels `text_multi_label` or `text_pair_multi_label`.

    Returns:
      The `Task`; its `source` names the data, the rows, the seed and any dropped rows.

    Raises:
      ValueError: the data cannot make this task (the message says where and why).
      TypeError: `source` is none of the kinds above.
    """
    columns = as_columns(columns)
    if isinstance(labels, (str, bytes)):  # a str is a Sequence of its characters
        raise TypeError(f"labels={labels!r} is one string; expected the label names in id order, "
                        "e.g. labels=model.labels or ('neg', 'pos')")
    task_type_obj = None if task_type is None else get_task_type(task_type)
    if task_type_obj is not None and head is not None and task_type_obj.head.name != head:
        raise ValueError(f"task_type={task_type!r} needs a {task_type_obj.head} head; the model "
                         f"has a {head} head")
    tables, explicit = read_tables(source, split_files)
    first = next(tables[s] for s in (None, *SPLITS) if s in tables)
    found = find_columns(first, columns)
    if task_type_obj is None:
        task_type_obj = get_task_type(infer_task_type(first, found, head, readout, columns))
        by_id = ranked_by_id_column(first, found, columns) if task_type_obj.grouped else None
        if by_id is not None:
            warnings.warn(f"{first.where}: read as {task_type_obj.name}, its rows grouped into "
                          f"queries by column {by_id!r} and its gold read as relevance; to score "
                          f"each pair alone, give {_pair_task_types()}", UserWarning, stacklevel=2)
    width = None if labels is None else len(labels)
    if readout is not None and not task_type_obj.reads(readout, width):
        what = (f"task_type={task_type!r}" if task_type is not None else
                f"task type {task_type_obj.name} (read from the columns)")
        raise ValueError(readout_mismatch(what, task_type_obj, readout, width))
    target = label_field(first, found, columns, task_type_obj)
    parts = _parts(tables, columns, task_type_obj, target,
                   None if labels is None else len(labels))
    names = (_labels_to_ids(parts, target, labels, task_type_obj, first.where)
             if task_type_obj.named_labels else None)
    grouped = task_type_obj.grouped
    stratify = None if grouped else target
    splits, carved, stratified = _split(parts, explicit, sizes or {}, seed, grouped, stratify)
    splits, dropped = without_test_inputs(splits, grouped=grouped)
    return Task(
        name=name or first.name, task_type=task_type_obj,
        labels=None if names is None else tuple(names),
        splits=TaskSplits(**{s: tuple(splits.get(s, ())) for s in SPLITS}),
        max_length=max_length,
        source=_describe(parts, explicit, carved, seed, dropped, grouped, stratified),
        split_seed=seed if not explicit or carved else None,
        drawn_splits=tuple(SPLITS) if not explicit else tuple(carved))


def _parts(tables: dict[str | None, Table], columns: Columns, task_type,
           target: str | None, num_labels: int | None = None) -> dict[str | None, _Part]:
    """Each split's table as examples of `task_type`, with the gold `target` field if any; a
    label-set column that is multi-hot in every row (`_multi_hot`) becomes ids."""
    needed = (*task_type.fields, *([target] if target else []))
    binary = target == "label" and not task_type.named_labels  # gold 0/1, not class names
    found = {split: required_columns(table, columns, needed, f"a {task_type.name} task")
             for split, table in tables.items()}
    if task_type.grouped:  # a query id column where there is one, else the query text
        for split, table in tables.items():
            group = find_columns(table, columns, warn=False)["group"]
            if group is not None and group not in found[split].values():
                found[split]["group"] = group
    hot = target == "labels" and _multi_hot(
        [(table, found[split]["labels"]) for split, table in tables.items()], num_labels)
    parts = {split: _convert(table, found[split], binary_label=task_type.name if binary else None,
                             blank_texts=False, multi_hot=hot)
             for split, table in tables.items()}
    if task_type.grouped:
        _check_queries(list(parts.values()))
    return parts


def _check_queries(parts: list[_Part]) -> None:
    """Gives each row its query (`group`: its id, else its text) and says, in one warning,
    how many queries have a single row: every ranker scores the same on such a query (1 when
    its row is relevant, else 0, as trec_eval scores it), so it cannot tell rankers apart.
    Data in which every query has a single row is refused: it holds nothing to rank."""
    singles, queries, first = 0, 0, None
    for part in parts:
        for example in part.examples:
            example.setdefault("group", example["text"])
        rows = Counter(e["group"] for e in part.examples)
        queries += len(rows)
        singles += sum(count == 1 for count in rows.values())
        row = next((n for n, e in enumerate(part.examples, 1) if rows[e["group"]] == 1), None)
        if first is None and row is not None:
            file = f"{part.table.where} " if len(parts) > 1 else ""
            first = f"{file}row {row}, query {cells.shown(part.examples[row - 1]['group'], 60)}"
    if not singles:
        return
    where = ", ".join(part.table.where for part in parts)
    if singles == queries:
        raise ValueError(f"{where}: every one of its {queries} queries has 1 row (passage), so "
                         "no ranking can be read (every ranker scores the same); expected "
                         f"queries of 2 rows or more, grouped by {_grouped_by(parts)}; to score "
                         f"each pair alone, give {_pair_task_types()}")
    warnings.warn(f"{where}: {singles} of {queries} queries have a single row (passage; the "
                  f"first: {first}); every ranker scores the same on such a query (1 when its "
                  "row is relevant, else 0, as trec_eval scores it), so they cannot tell "
                  "rankers apart; they count in the mean over queries, so a drop on the other "
                  "queries shows diluted in it (and a tolerance relative to it is wider for "
                  "them); a split whose queries all have one row is refused", UserWarning,
                  stacklevel=4)


def _grouped_by(parts: list[_Part]) -> str:
    """The column rows are grouped into queries by, for a message: the query id, else the text."""
    columns = parts[0].columns
    return (f"the query id column {columns['group']!r}" if "group" in columns
            else f"the query text (column {columns['text']!r})")


def _pair_task_types() -> str:
    """The options that read text pairs one by one, for a message about a ranking."""
    return ", ".join(f"--task-type {name}" for name in (
        "text_pair_classification", "text_pair_scoring", "embedding_pairs"))


def _multi_hot(columns: list[tuple[Table, str]], num_labels: int | None) -> bool:
    """Whether every row of every table holds a 0/1 vector (`cells.is_multi_hot`) in its
    label-set column, all of one width, the model's number of labels when it is known: HF's
    multi-hot encoding (`[0, 1, 1]`: labels 1 and 2), not ids (`[0, 1]` as ids names both
    labels of two). A column where some rows are not such vectors is read as names or ids."""
    widths = set()
    for table, column in columns:
        for row in table.rows:
            value = row.get(column)
            if not cells.is_multi_hot(value):
                return False
            widths.add(len(value))
    return len(widths) == 1 and (num_labels is None or widths == {num_labels})


def _labels_to_ids(parts: dict[str | None, _Part], field: str, labels: Sequence[str] | None,
                   task_type, where: str) -> list[str]:
    """Checks the labels (or tags) in `field` of every part and replaces them by ids, in
    place; returns the label names in id order. `where` names the first table."""
    for key, part in parts.items():  # a ClassLabel declaration the column's values belie
        parts[key] = _without_stale_class_names(part, field)
    if labels is not None and all_generic(labels):  # a head nothing names: the data's names
        labels = _class_names_for(parts, field, labels) or labels
    if labels is not None and not all_generic(labels):
        for part in parts.values():  # ClassLabel ids → names, matched by name to the model's
            _class_ids_to_names(part, field, [str(name) for name in labels])
    try:
        names, to_id = _label_ids(list(parts.values()), field, labels)
    except ValueError as e:
        hint = _tags_elsewhere(parts, field, labels)
        if hint is None:
            raise
        raise ValueError(f"{e}; {hint}") from None
    if labels is None:  # the classes come from the data: a classifier needs two
        _check_two_classes(list(parts.values()), field)
    if task_type.metric_for((), names) is ENTITY_F1:  # entity tags, of one scheme
        _check_bio(names, where, field)
    for part in parts.values():
        part.examples[:] = [_with_ids(e, field, to_id) for e in part.examples]
        if field == "labels":  # "1" and 1, or a name and its id, are one label
            _check_distinct(part, field, names)
    return names


def _class_names_for(parts: dict[str | None, _Part], field: str,
                     generic: Sequence[str]) -> list[str] | None:
    """The names a `datasets` ClassLabel column gives a head of transformers' generic
    `LABEL_<i>` names (`generic`, one per output): its ids are the head's (nothing else names
    them), so its names name the head's outputs, for choosing the metric (entity F1 of BIO
    tags, not word accuracy of `LABEL_<i>`), reading entities and reports. Said in one warning
    line. None when no part's column is a ClassLabel, or its names are `generic`.

    Raises:
      LabelMismatch: the ClassLabel has another number of names than the head has outputs, or
        two parts' ClassLabels name their ids otherwise (the ids would mean other classes).
    """
    found = {p.table.class_names[p.columns[field]]: p for p in parts.values()
             if p.columns.get(field) in p.table.class_names}
    if not found:
        return None
    (names, part), *others = found.items()
    column = part.columns[field]
    if others:
        other_names, other = others[0]
        raise LabelMismatch(
            f"{part.table.where}: column {column!r} is a ClassLabel of names {list(names)[:8]}, "
            f"{other.table.where}: column {other.columns[field]!r} one of names "
            f"{list(other_names)[:8]}; with a model of generic names ({generic[0]} ..) its ids "
            "are the data's, which must name them alike in every split")
    if len(names) != len(generic):
        raise LabelMismatch(
            f"{part.table.where}: column {column!r} is a ClassLabel of {len(names)} names "
            f"{list(names)[:8]}{' ...' if len(names) > 8 else ''}, and the model's head has "
            f"{len(generic)} outputs, named with HF's generic {generic[0]} .. {generic[-1]}: "
            "its outputs cannot be the data's classes; give a model of "
            f"{len(names)} outputs (samp-jax finetune trains a head for the data)")
    if tuple(names) == tuple(generic):
        return None
    warnings.warn(f"{part.table.where}: the model names its {len(generic)} outputs with HF's "
                  f"generic {generic[0]} .. {generic[-1]}; column {column!r} is a ClassLabel of "
                  f"as many names, {list(names)[:8]}{' ...' if len(names) > 8 else ''}, read as "
                  "the names of the model's outputs in id order", UserWarning, stacklevel=4)
    return list(names)


def _tags_elsewhere(parts: dict[str | None, _Part], field: str,
                    labels: Sequence[str] | None) -> str | None:
    """For tags the model lacks: a hint naming another list column of the first table whose
    every row holds only the model's `labels` (a CoNLL-2003 file's part-of-speech field "2"
    for a part-of-speech tagger, its entity tags being the default), else None."""
    if field != "tags" or labels is None:
        return None
    part = next(iter(parts.values()))
    names = set(map(str, labels))
    for column in part.table.columns:
        if column in part.columns.values():
            continue
        values = [row.get(column) for row in part.table.rows]
        if all(isinstance(v, (list, tuple)) and v and all(isinstance(t, str) and t in names
                                                          for t in v) for v in values):
            return (f"column {column!r} holds only the model's labels: read its tags with "
                    f"--tags-column {column} (Columns(tags={column!r}))")
    return None


def _check_distinct(part: _Part, field: str, names: Sequence[str]) -> None:
    for row_number, example in enumerate(part.examples, 1):
        ids = example[field]
        if len(set(ids)) < len(ids):
            repeated = next(i for n, i in enumerate(ids) if i in ids[:n])
            raise ValueError(f"{part.at(row_number, field)} names label {names[repeated]!r} "
                             "twice; expected each label at most once per row")


def _check_two_classes(parts: list[_Part], field: str) -> None:
    """Refuses data whose rows all hold one class: a classifier trained on it always answers
    that class and scores 1.0 on data like it."""
    values = {value for value, _ in _occurrences(parts, field)}  # tags one by one
    if len(values) < 2:
        rows = sum(len(p.examples) for p in parts)
        where = ", ".join(p.table.where for p in parts)
        raise ValueError(f"{where}: column {parts[0].columns[field]!r} holds one class "
                         f"({next(iter(values), None)!r}) in all {rows} rows; expected at least "
                         "2 classes to classify; rows of one class can be scored against a "
                         "model's label names (eval and search read them from --model; "
                         "load_task(..., labels=...)), not trained on")


def _check_bio(names: Sequence[str], where: str, column: str) -> None:
    """Entity tags are scored by entity spans, which need the tags of one scheme: BIO ('O',
    'B-x', 'I-x'), BIOES (and 'E-x', 'S-x') or BILOU (and 'L-x', 'U-x'), not two, or IO tags
    ('O' beside bare types: `samp_jax.models.bio_tags.entity_scheme`). Tag names of which
    none is an entity tag (a part-of-speech tagger's) are scored by word accuracy instead,
    and not checked here."""
    try:
        entity_scheme(names)
    except ValueError as e:
        raise ValueError(f"{where}: column {column!r}: {e}; entity F1 needs BIO, BIOES or BILOU "
                         "names ('O', 'B-<type>', 'I-<type>', with 'E-<type>', 'S-<type>' or "
                         "'L-<type>', 'U-<type>'), one scheme per column, or IO names ('O' "
                         "beside bare types, 'PER'); tags of which none is an entity tag, such "
                         "as part-of-speech tags, are scored by word accuracy") from None


KEPT = "kept"
"""The key of `read_inputs`' rows that holds the kept columns' values."""


class KeptColumnError(SampJaxError, ValueError):
    """A column `read_inputs` was asked to keep is not in the data."""


def as_columns(columns: Columns | Mapping[str, str]) -> Columns:
    """`columns` as `Columns`: given so, or as a dict of its fields (`{"text": "review"}`).

    Raises:
      TypeError: a dict with a key that is no field, or another kind of value.
    """
    if isinstance(columns, Columns):
        return columns
    if isinstance(columns, Mapping):
        unknown = sorted(set(columns) - {f.name for f in dataclasses.fields(Columns)})
        if unknown:
            raise TypeError(f"columns: {unknown} are not fields; expected some of "
                            f"{[f.name for f in dataclasses.fields(Columns)]}")
        return Columns(**columns)
    raise TypeError(f"columns is {a_kind(columns)}; expected samp_jax.tasks.Columns(...) or a "
                    "dict of its fields, e.g. {'text': 'review', 'label': 'sentiment'}")


def read_inputs(source: Any, *, columns: Columns = Columns(),
                fields: Sequence[str] = ("text", "text_pair"),
                keep: Sequence[str] = (), stream: bool = False) -> Sequence[dict]:
    """The model inputs of every row of one source, in order (labels are not read).

    Args:
      source: a file, a `save_to_disk` folder of one dataset, a `datasets.Dataset` or a list
        of dicts (as for `load_task`).
      columns: your column names; fields left None take a usual name.
      fields: the canonical input fields to read: the first is required, the others are
        read when the source has them (e.g. `("text", "text_pair")` or `("tokens",)`).
      keep: columns whose values each row carries as they are, for its prediction to repeat
        (an id): under `KEPT`, by column name, as JSON (`cells.passthrough`); a JSON Lines
        row without the key holds None.
      stream: a CSV, TSV, JSON Lines or Parquet file is not held in memory: its rows are
        checked as read once now, and the result is an `InputRows` that reads and converts
        them again, a block at a time, each time it is iterated (`InputRows.blocks`); a
        row's value of the wrong kind is then raised by its first iteration.

    Returns:
      One dict per row with the fields found (texts as strings, tokens as lists of strings)
      and, with `keep`, the kept values: a list, or with `stream` an `InputRows`.

    Raises:
      ValueError: the source is missing, empty or unreadable, lacks the first field's column
        or a kept column, or a row holds a value of the wrong kind (the message says where).
    """
    columns = as_columns(columns)
    tables, explicit = read_tables(source, None, stream=stream)
    if explicit:
        folder = f" (e.g. {Path(str(source)) / sorted(tables)[0]})" if isinstance(
            source, (str, Path)) and Path(str(source)).is_dir() else ""
        raise ValueError(f"{describe_source(source)} holds several splits ({sorted(tables)}); "
                         f"give one split's data{folder}")
    table = tables[None]
    missing = [column for column in keep if column not in table.columns]  # the named ones first
    if missing:
        raise KeptColumnError(f"{table.where}: column {missing[0]!r}, named with --keep-columns, "
                              f"was not found; columns found: {list(table.columns)}")
    found = find_columns(table, columns)
    wanted = {**{f: found[f] for f in fields[1:] if found[f] is not None},
              **required_columns(table, columns, fields[:1], "a model input")}
    read = {f: wanted[f] for f in fields if f in wanted}
    if isinstance(table.rows, StreamedRows):
        return InputRows(table, read, tuple(keep))
    return _inputs(table, read, tuple(keep))


def _inputs(table: Table, columns: dict[str, str], keep: tuple[str, ...],
            first_row: int = 1) -> list[dict]:
    """`table`'s rows (numbered from `first_row` in messages) as model inputs, with `keep`."""
    examples = _convert(table, columns, first_row=first_row).examples
    if keep:
        for row_number, (row, example) in enumerate(zip(table.rows, examples), first_row):
            example[KEPT] = {column: cells.passthrough(
                row.get(column), f"{table.where}: row {row_number}: column {column!r}")
                for column in keep}
    return examples


class InputRows(ReadEachTime):
    """The model inputs of a streamed file (`read_inputs(stream=True)`): its rows are read
    and converted again, `INPUT_BLOCK_ROWS` (or `blocks(size)`) at a time, each time they are
    iterated, so memory holds a block, not the file. `map(f)` gives the rows through `f`."""

    def __init__(self, table: Table, columns: dict[str, str], keep: tuple[str, ...],
                 transform: Callable[[dict], dict] | None = None):
        self.table, self.columns, self.keep, self.transform = table, columns, keep, transform

    def __len__(self) -> int:
        return len(self.table.rows)

    def blocks(self, size: int = 0) -> Iterator[list[dict]]:
        """The inputs in order, `size` rows (default `INPUT_BLOCK_ROWS`) a list."""
        rows, first = iter(self.table.rows), 1
        while block := list(itertools.islice(rows, size or INPUT_BLOCK_ROWS)):
            part = dataclasses.replace(self.table, rows=tuple(block))
            examples = _inputs(part, self.columns, self.keep, first)
            yield examples if self.transform is None else [self.transform(e) for e in examples]
            first += len(block)

    def __iter__(self) -> Iterator[dict]:
        for block in self.blocks():
            yield from block

    def map(self, transform: Callable[[dict], dict]) -> "InputRows":
        before = self.transform
        return InputRows(self.table, self.columns, self.keep,
                         transform if before is None else lambda row: transform(before(row)))

    def __repr__(self) -> str:
        return f"InputRows({self.table.where!r}, {len(self)} rows)"


# ---------------------------------------------------------------------- rows to examples
def _convert(table: Table, columns: dict[str, str], *, binary_label: str | None = None,
             blank_texts: bool = True, multi_hot: bool = False, first_row: int = 1) -> _Part:
    """Every row as a canonical example dict (labels and tags still as in the data; 0/1 with
    `binary_label`, the name of the task type that reads them so). Without `blank_texts`, a
    text or word that is empty or only spaces is refused: it is a missing value (an empty CSV
    cell), and a blank word has no token to carry its tag, so the tag would not be scored. A
    JSON row without a column's key is refused as such, not as a value of None."""
    text = cells.text if blank_texts else cells.filled_text
    part = _Part(table, columns, [])
    for row_number, row in enumerate(table.rows, first_row):
        example = {}
        for field, column in columns.items():
            value, at = row.get(column), part.at(row_number, field)
            if column not in row:  # a JSON Lines row without the key (a table's cell is None)
                raise ValueError(f"{at}: the row has no {column!r} key; its keys: "
                                 f"{sorted(row)[:12]}; expected it in every row")
            if field in ("text", "text_pair"):
                example[field] = text(value, at)
            elif field == "tokens":
                example[field] = [text(word, f"{at} item {i}")
                                  for i, word in enumerate(cells.sequence(value, at, "words"))]
            elif field == "tags":
                example[field] = [cells.raw_label(tag, f"{at} item {i}")
                                  for i, tag in enumerate(cells.sequence(value, at, "tags"))]
            elif field == "score":
                example[field] = cells.score(value, at)
            elif field == "relevance":
                example[field] = cells.relevance(value, at)
            elif field == "group":
                example[field] = cells.query_id(value, at)
            elif field == "labels":
                example[field] = (cells.multi_hot_ids(value) if multi_hot
                                  else cells.label_set(value, at))
            else:
                example[field] = cells.raw_label(value, at)
        if "tags" in example and len(example["tokens"]) != len(example["tags"]):
            raise ValueError(f"{table.where}: row {row_number}: {len(example['tokens'])} tokens "
                             f"in column {columns['tokens']!r} but {len(example['tags'])} tags in "
                             f"column {columns['tags']!r}; expected one tag per token")
        if binary_label:
            example["label"] = cells.binary(example["label"], part.at(row_number, "label"),
                                            binary_label)
        part.examples.append(example)
    return part


# ------------------------------------------------------------------------------- labels
def _occurrences(parts: list[_Part], field: str) -> Iterator[tuple[Any, str]]:
    """Every label (or tag) value with where it is."""
    for part in parts:
        for row_number, example in enumerate(part.examples, 1):
            at = part.at(row_number, field)
            if field in _SET_FIELDS:
                yield from ((tag, f"{at} item {i}") for i, tag in enumerate(example[field]))
            else:
                yield example[field], at


def _label_ids(parts: list[_Part], field: str,
               labels: Sequence[str] | None) -> tuple[list[str], Callable[[Any], int]]:
    """The task's label names and `value -> id`, after checking every value (the rules are
    the module's "Labels")."""
    values = list(_occurrences(parts, field))
    spaced: dict[str, str] = {}  # stripped spelling -> a model's name with spaces around it
    for value, at in values:
        if isinstance(value, float):
            raise ValueError(f"{at} holds {value!r}; expected a class name or an integer id "
                             f"(similarity scores: {naming('score')} or "
                             f"{naming_task_type('embedding_pairs')})")
    strings = {v for v, _ in values if isinstance(v, str)}
    numbered = _number_names(labels)
    if numbered is not None:  # the model's classes are numbers: 1 is the class named "1"
        values = [(numbered.get(cells.as_id(v), str(v)) if _numbers([v]) else v, at)
                  for v, at in values]
    elif strings and _numbers(strings) and not (
            labels is not None and strings <= set(map(str, labels))):  # a CSV's "0"/"1": ids
        values = [(cells.whole_number(v) if isinstance(v, str) else v, at) for v, at in values]
    names = [(v, at) for v, at in values if isinstance(v, str)]
    ids = [(v, at) for v, at in values if isinstance(v, int)]
    if names and ids:
        raise ValueError(f"column {parts[0].columns[field]!r} mixes label names and ids: "
                         f"{names[0][0]!r} ({names[0][1]}) and {ids[0][0]!r} ({ids[0][1]}); "
                         "expected one kind")
    if labels is not None:
        labels = [str(name) for name in labels]
        # a data label is read stripped; a model name with spaces around it (" negative") is
        # matched by its stripped spelling when no other name has it
        spaced = {name.strip(): name for name in labels if name != name.strip()}
        if len({name.strip() for name in labels}) != len(labels):
            spaced = {}
        names = [(spaced.get(v, v), at) for v, at in names]
        _check_not_ids_spoiled(names, labels, numbered is None)
        unknown = sorted({v for v, _ in names} - set(labels))
        if unknown:
            value, at = next((v, at) for v, at in names if v not in labels)
            more = (f"; the data has {len(unknown)} label names the model lacks: {unknown}"
                    if len(unknown) > 1 else "")
            case = _case_matched(unknown, labels)
            why = (" (the model's classes are numbers: a number in the data is the class of "
                   "that name, not an id)" if numbered is not None else
                   f" (it differs from the model's {case[value]!r} only in case: a label is "
                   "matched as it is spelt; spell the data's labels as the model does)"
                   if set(case) == set(unknown) else
                   " (a JSON or Parquet boolean is read as its name, as a CSV spells it)"
                   if value in ("True", "False") else "")
            raise ValueError(f"{at} has label {value!r}, which is not one of the model's "
                             f"labels {labels}{more}{why}")
        _check_ids(ids, len(labels), f"the model's labels {labels}")
    elif names:
        labels = sorted({v for v, _ in names})
        if field == "tags" and "O" in labels:
            labels = ["O"] + [name for name in labels if name != "O"]
    else:
        labels = next((list(p.table.class_names[p.columns[field]]) for p in parts
                       if p.columns[field] in p.table.class_names), None)
        if labels is None:  # numbers name the classes, in numeric order: 1..5 stars, -1/1
            distinct = sorted({v for v, _ in ids})
            index = {number: i for i, number in enumerate(distinct)}
            return [str(number) for number in distinct], lambda value: index[cells.as_id(value)]
        _check_ids(ids, len(labels), f"the ClassLabel names {labels}")
    if not names:
        return labels, cells.as_id  # ids, or strings that spell them
    index = {name: i for i, name in enumerate(labels)}
    index |= {stripped: index[name] for stripped, name in spaced.items()}
    numbered = _number_names(labels)
    if numbered is not None:  # names that are numbers: the data's 1, "1" and "1.0" name one
        return labels, lambda value: index[numbered[cells.as_id(value)] if _numbers([value])
                                           else value]
    return labels, index.__getitem__


def _check_not_ids_spoiled(names: list[tuple[str, str]], labels: list[str],
                           ids_possible: bool) -> None:
    """Refuses a column of whole-number ids with a few other values (`True`, `yes`): they make
    every value a name, and the message would otherwise blame the first id."""
    if not ids_possible:
        return
    numbers = [(v, at) for v, at in names if _numbers([v])]
    others = [(v, at) for v, at in names if not _numbers([v]) and v not in labels]
    if numbers and others:
        (value, at), (number, number_at) = others[0], numbers[0]
        kinds = sorted({v for v, _ in others})
        raise ValueError(f"{at} has label {value!r}, neither one of the model's labels {labels} "
                         f"nor a whole-number id like the {number!r} at {number_at}; the column's "
                         f"values that are neither: {kinds[:8]}{' ...' if len(kinds) > 8 else ''}"
                         "; expected ids or names, one kind")


def _number_names(labels: Sequence[str] | None) -> dict[int, str] | None:
    """number -> label name when every name spells a distinct whole number ("1", "2.0"), else
    None."""
    if labels is None or not labels or not _numbers(labels):
        return None
    names = {cells.as_id(str(name)): str(name) for name in labels}
    return names if len(names) == len(labels) else None


def _numbers(values) -> bool:
    """Whether every value is an int or a string that spells a whole number."""
    return all(isinstance(v, int) and not isinstance(v, bool)
               or isinstance(v, str) and cells.WHOLE_NUMBER.fullmatch(v) for v in values)


def _without_stale_class_names(part: _Part, field: str) -> _Part:
    """`part`, without its column's ClassLabel declaration where the column holds a value that
    is not an integer id (a name, a fraction, a boolean): a Parquet file that `datasets`
    wrote and pyarrow or pandas edited keeps its schema's `huggingface` metadata, which then
    no longer describes the column. The declaration is ignored, said in one warning line
    naming the file, the column and the first such value, and the values are read as they
    are (names as names); refusing would leave no way to read the file as it is."""
    column = part.columns.get(field)
    names = part.table.class_names.get(column)
    if names is None:
        return part
    for row_number, example in enumerate(part.examples, 1):
        values = example[field] if field in _SET_FIELDS else [example[field]]
        value = next((v for v in values if not isinstance(v, int)), None)
        if value is None:
            continue
        warnings.warn(f"{part.at(row_number, field)} holds {value!r}, not an integer id, though "
                      f"the column is declared a `datasets` ClassLabel of names "
                      f"{list(names)[:8]}{' ...' if len(names) > 8 else ''} (in the file's "
                      "metadata, kept when the file was edited after datasets wrote it): the "
                      "declaration no longer describes the column and is ignored; its values "
                      "are read as they are", UserWarning, stacklevel=4)
        kept = {name: v for name, v in part.table.class_names.items() if name != column}
        return dataclasses.replace(part, table=dataclasses.replace(part.table, class_names=kept))
    return part


def _case_matched(names: Sequence[str], labels: Sequence[str]) -> dict[str, str]:
    """`ClassLabel name -> the model's label` for the names that are not the model's labels
    but one of them in another case (glue/sst2's `negative` for distilbert-sst2's
    `NEGATIVE`), where that match is one-to-one (no two names, nor two labels, alike but for
    case); as `datasets`' `align_labels_with_mapping` matches them. Empty otherwise."""
    folded = {label.casefold(): label for label in labels}
    if len(folded) != len(labels) or len({n.casefold() for n in names}) != len(names):
        return {}
    return {name: folded[name.casefold()] for name in names
            if name not in labels and name.casefold() in folded}


def _class_ids_to_names(part: _Part, field: str, labels: Sequence[str]) -> None:
    """Replaces the ids of a `datasets` ClassLabel column by its names, in place, matched to
    the model's `labels`: as they are, else regardless of case where that match is one-to-one
    (`_case_matched`, said in a warning line).

    Raises:
      LabelMismatch: a row's ClassLabel name is none of the model's labels, in any case.
    """
    column = part.columns[field]
    names = part.table.class_names.get(column)
    if names is None:
        return
    renamed = _case_matched(names, labels)
    shown = f"{list(names)[:8]}{' ...' if len(names) > 8 else ''}"
    if renamed:
        warnings.warn(f"{part.table.where}: column {column!r} is a `datasets` ClassLabel of "
                      f"names {shown}; {', '.join(f'{a!r}' for a in renamed)} matched to the "
                      f"model's {', '.join(f'{b!r}' for b in renamed.values())}, which differ "
                      "only in case", UserWarning, stacklevel=4)

    def name(value, at: str):
        _check_ids([(value, at)], len(names), f"the ClassLabel names {list(names)}")
        found = renamed.get(names[value], names[value])
        if found not in labels:
            raise LabelMismatch(
                f"{at} has id {value}, {names[value]!r}: the column is a `datasets` ClassLabel "
                f"with names {shown}, which differ from the model's labels {labels[:8]}"
                f"{' ...' if len(labels) > 8 else ''} (not only in case), and its ids are "
                "matched to the model's by name; map the ids to the model's (datasets' "
                f"Dataset.align_labels_with_mapping(label2id, {column!r}) with the model's "
                "label2id), or, where its ids already are the model's, give the column the "
                "model's names (cast_column with ClassLabel(names=...))")
        return found
    for row_number, example in enumerate(part.examples, 1):
        at = part.at(row_number, field)
        value = example[field]
        example[field] = ([name(v, f"{at} item {i}") for i, v in enumerate(value)]
                          if field in _SET_FIELDS else name(value, at))


def _check_ids(ids: list[tuple[int, str]], count: int | None, names: str) -> None:
    for value, at in ids:
        if value < 0 or (count is not None and value >= count):
            expected = f"in [0, {count}) for {names}" if count is not None else "of 0 or more"
            raise ValueError(f"{at} has label id {value}; expected an id {expected}")


def _with_ids(example: dict, field: str, to_id: Callable[[Any], int]) -> dict:
    value = example[field]
    return {**example, field: [to_id(v) for v in value] if field in _SET_FIELDS else to_id(value)}


# ------------------------------------------------------------------------------- splits
def _split(parts: dict[str | None, _Part], explicit: bool, sizes: Mapping[str, int | float],
           seed: int, grouped: bool = False, stratify: str | None = None
           ) -> tuple[dict[str, list[dict]], list[str], bool]:
    """Examples per split, the splits that were carved from a pool, and whether the carve was
    stratified (`grouped`: whole queries, `sizes` counted in queries; `stratify`: the gold
    field to stratify by, where its rows hold one value each, `gold_strata`)."""
    units = "queries" if grouped else "rows"

    def size(examples: list[dict]) -> int:
        return len(query_rows(examples)) if grouped else len(examples)
    for key in sizes:
        if key not in SPLITS:
            raise ValueError(f"sizes: split {key!r} is not one of {SPLITS}")
    if not explicit:
        part = parts[None]
        carve = [s for s in CARVE_ORDER if s != "train" or s in sizes]
        counts = split_sizes(size(part.examples), sizes, carve, part.table.where, units)
        strata = gold_strata(part.examples, stratify)
        return (carve_splits(part.examples, counts, "train", seed, grouped=grouped,
                             strata=strata), carve, strata is not None)
    given = {split: list(part.examples) for split, part in parts.items()}
    for key in sizes:
        if key in given:
            raise ValueError(f"sizes[{key!r}]: the {key} split is given explicitly; sizes only "
                             "apply to splits carved from train")
    pool = next((s for s in ("train", "dev") if s in given), None)
    # search, calibration and (from train) dev are carved when missing: fine-tuning needs a
    # dev split for early stopping; a missing test split is never carved (see the docstring)
    carve = [s for s in CARVE_ORDER
             if s not in given and (s in ("search", "calibration") or s in sizes
                                    or (s == "dev" and pool == "train"))]
    if pool is None:
        if sizes:
            raise ValueError(f"sizes {dict(sizes)}: there is no train or dev split to carve "
                             "them from")
        return given, [], False
    counts = split_sizes(size(given[pool]), sizes, carve, f"{parts[pool].table.where} ({pool})",
                         units)
    strata = gold_strata(given[pool], stratify) if carve else None
    return ({**given, **carve_splits(given[pool], counts, pool, seed, grouped=grouped,
                                     strata=strata)}, carve, strata is not None)


def _describe(parts: dict[str | None, _Part], explicit: bool, carved: list[str], seed: int,
              dropped: dict[str, int], grouped: bool = False, stratified: bool = False) -> str:
    by = ", stratified by gold" if stratified else ""
    if not explicit:
        part = parts[None]
        text = f"{part.table.where} ({len(part.examples):,} rows; split seed {seed}{by})"
    else:
        text = ", ".join(f"{split}: {part.table.where} ({len(part.examples):,} rows)"
                         for split, part in parts.items())
        if carved:
            pool = "train" if "train" in parts else "dev"
            text += f"; {', '.join(carved)} carved from {pool} with split seed {seed}{by}"
    if dropped:
        counts = ", ".join(f"{n:,} from {split}" for split, n in dropped.items())
        why = "their query is a test query" if grouped else "they repeat a test input"
        text += f"; dropped {counts} ({why})"
    return text
