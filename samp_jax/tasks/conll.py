"""CoNLL files (`.conll`, `.bio`, `.iob`, `.iob2`): one token per line and a blank line after
each sentence, as the CoNLL-2003 and WNUT shared tasks wrote them.

A line's fields are separated by tabs or spaces (only): the first is the token, the last its tag;
a file whose lines all hold one field has tokens only (rows to predict). `-DOCSTART-` lines are
skipped, and a line of whitespace alone ends a sentence, as a blank one does. Each sentence
becomes one row `{"tokens": [...], "tags": [...]}` (the columns a tagging task reads by
default). Lines of three fields or more also give each field after the token as a column named
by its place on the line, from "2": CoNLL-2003's `word POS chunk NER` gives "2" (part of
speech), "3" (chunk) and "4" (entity tags, as "tags"), so `--tags-column 2`
(`Columns(tags="2")`) reads the part-of-speech tags.

Refused, naming the file and the line: a line of one field in a file of tagged lines (a token
without its tag) or the other way round, a tagged line with another number of fields than the
first (`New York B-LOC` among `TOKEN TAG` lines: a token holding a space would lose a word),
and a NUL character (UTF-16 text read as UTF-8).
"""

from __future__ import annotations

import re
from pathlib import Path

SUFFIXES = (".conll", ".bio", ".iob", ".iob2")
FIELD_SEPARATOR = re.compile(r"[ \t]+")
DOCSTART = "-DOCSTART-"


def read_conll(path: Path, kind: str = "conll") -> tuple[list[dict], list[str]]:
    """The sentences of the CoNLL file at `path` as rows, and their columns (`tokens`, and
    `tags` when the lines are tagged). `kind` is the format's name, as every reader of
    `samp_jax.tasks.readers` takes it (one here). Lines end at "\n" and fields are separated by
    tabs and spaces only: a token may hold any other character (a no-break space, U+2028)."""
    text = path.read_text(encoding="utf-8-sig")
    if "\x00" in text:
        raise ValueError(f"{path} holds a NUL character; expected UTF-8 CoNLL text (is the file "
                         "UTF-16, or not text?)")
    rows: list[dict] = []
    tokens: list[str] = []
    tags: list[list[str]] = []  # each word's fields after the token
    tagged: bool | None = None
    width: tuple[int, int] | None = None  # the first tagged line's field count and number
    for line_number, line in enumerate(text.split("\n"), 1):
        fields = FIELD_SEPARATOR.split(line.strip(" \t\r")) if line.strip(" \t\r") else []
        if fields and fields[0] == DOCSTART:
            continue
        if not fields:
            if tokens:
                rows.append(_row(tokens, tags, tagged))
                tokens, tags = [], []
            continue
        has_tag = len(fields) > 1
        if tagged is None:
            tagged = has_tag
        elif has_tag != tagged:
            raise ValueError(
                f"{path}: line {line_number} holds {len(fields)} field(s) {fields!r}, while "
                f"the lines before hold {'a token and its tag' if tagged else 'a token alone'}; "
                "expected every line to be 'TOKEN TAG' (or every line a token alone)")
        if has_tag and width is None:
            width = (len(fields), line_number)
        elif has_tag and len(fields) != width[0]:
            raise ValueError(
                f"{path}: line {line_number} holds {len(fields)} fields {fields!r}, line "
                f"{width[1]} {width[0]}; expected the same columns on every line, the token "
                "first and its tag last (a token holding a space or a tab would lose a word)")
        tokens.append(fields[0])
        if has_tag:
            tags.append(fields[1:])
    if tokens:
        rows.append(_row(tokens, tags, tagged))
    if not rows:
        raise ValueError(f"{path} is empty; expected CoNLL lines, one 'TOKEN TAG' per line and a "
                         "blank line after each sentence")
    if not tagged:
        return rows, ["tokens"]
    return rows, ["tokens", "tags", *(_placed(width[0]) if width[0] > 2 else ())]


def _placed(width: int) -> list[str]:
    """The column names of the fields after the token on lines of `width` fields: "2" ..."""
    return [str(place) for place in range(2, width + 1)]


def _row(tokens: list[str], tags: list[list[str]], tagged: bool | None) -> dict:
    if not tagged:
        return {"tokens": list(tokens)}
    row = {"tokens": list(tokens), "tags": [fields[-1] for fields in tags]}
    if len(tags[0]) > 1:  # three fields or more: each by its place on the line too
        row |= {name: [fields[i] for fields in tags]
                for i, name in enumerate(_placed(len(tags[0]) + 1))}
    return row
