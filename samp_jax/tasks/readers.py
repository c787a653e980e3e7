"""Reading your data: a CSV, TSV, JSON Lines, Parquet or CoNLL file (`samp_jax.tasks.conll`),
a `datasets` `save_to_disk` folder, a `datasets.Dataset` / `DatasetDict` or a list of dicts,
into `Table`s of raw rows.

Refused here, before any row is converted (one line naming the file, the row or line, and the
column): an empty file, a row with more fields than the header, bad quoting, text that is not
UTF-8 (a UTF-16 or UTF-32 file is named as such; a NUL character in a CSV/TSV row, which UTF-8
text never holds but UTF-16 text without a byte-order mark does, is refused rather than read
as garbled text), and a column name that appears twice (in a CSV/TSV header, a JSON object or
a Parquet schema), since only one of the two columns could be read and nothing would say which.
A `save_to_disk` folder is read only when its JSON files name its own split folders and Arrow
files by plain names, as `save_to_disk` writes them (never an absolute path or `../`).
A TSV file is read without quoting (a field is everything between tabs), unless it was written
with CSV quoting (`tsv_is_quoted`).

With `stream=True` (`samp-jax predict`), a CSV, TSV, JSON Lines or Parquet file is checked
row by row in one pass and its `Table.rows` is a `StreamedRows`: read again from the file
each time it is iterated, so memory holds a row (a Parquet batch) at a time, not the file.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import itertools
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from samp_jax.core import strict_json
from samp_jax.core.text import readable
from samp_jax.tasks.conll import SUFFIXES as CONLL_SUFFIXES
from samp_jax.tasks.conll import read_conll


@dataclasses.dataclass(frozen=True)
class Table:
    """Rows read from one file or dataset, before any checks.

    Attributes:
      where: names the source in messages (a path, `path['train']`, ...).
      columns: the column names found.
      rows: one dict per row.
      class_names: ClassLabel names of `datasets` columns (their values are ids): a
        `Dataset`'s features, a `save_to_disk` folder's, or a Parquet file's `huggingface`
        metadata (`parquet_class_names`).
      name: a default task name.
    """

    where: str
    columns: tuple[str, ...]
    rows: Sequence[dict]  # a tuple, or `StreamedRows` (read from the file as iterated)
    class_names: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    name: str = "data"

    def __post_init__(self):  # a path's name as text (`core.text.readable`): here, once
        object.__setattr__(self, "where", readable(self.where))
        object.__setattr__(self, "name", readable(self.name))


FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
           ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"} | {
               suffix: "conll" for suffix in CONLL_SUFFIXES}
"""File suffix → format."""
SPLIT_NAMES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev",
               "calibration": "calibration", "search": "search", "test": "test"}
"""Split names a `DatasetDict` or `split_files` may use → our split."""

def read_tables(source, split_files, *, stream: bool = False) -> tuple[dict[str | None, Table], bool]:
    """Tables by split (`{None: table}` for one source to split) and whether splits are
    explicit; with `stream`, a file that can be is read as `StreamedRows`."""
    if source is not None and split_files:
        raise ValueError("pass either a source or split_files, not both")
    if split_files:
        tables = {}
        for key, path in split_files.items():
            split = split_name(key, "split_files")
            if split in tables:
                raise ValueError(f"split_files gives the {split} split twice")
            table = _read_path(Path(path))
            if isinstance(table, dict):
                raise ValueError(f"{path}: split_files[{key!r}] is a DatasetDict folder; give "
                                 "one split's data (or pass the folder as the source)")
            tables[split] = table
        return tables, True
    if source is None:
        raise ValueError("no data: pass a source (a file, a save_to_disk folder, a datasets "
                         "Dataset or a list of dicts) or split_files")
    read = (_read_path(Path(source), stream=stream) if isinstance(source, (str, Path))
            else _read_object(source))
    if isinstance(read, dict):
        return read, True
    return {None: read}, False


def describe_source(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else type(source).__name__


def split_name(key: str, what: str) -> str:
    if key not in SPLIT_NAMES:
        raise ValueError(f"{what}: split {key!r} is not one of {sorted(SPLIT_NAMES)}")
    return SPLIT_NAMES[key]


def _default_name(path: Path) -> str:
    """The file's stem, or its folder's name when the stem is a split name (`data/train.csv`)."""
    stem = path.name if path.is_dir() else path.stem
    folder = path.resolve().parent.name
    return folder if stem in SPLIT_NAMES and folder else stem


PARQUET_BATCH_ROWS = 1024  # rows of a Parquet file read at a time when streamed


class ReadEachTime(Sequence):
    """A sequence of a known length whose items are produced again by each iteration (read
    from a file): indexing and slicing iterate up to the items asked for."""

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(itertools.islice(self, *index.indices(len(self))))
        index = index + len(self) if index < 0 else index
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        return next(itertools.islice(self, index, None))


class StreamedRows(ReadEachTime):
    """The rows of a data file, read from it again each time they are iterated (memory holds a
    row, or a Parquet batch, at a time). Made by `_read_path(stream=True)` after one pass has
    checked every row and counted them. A file that changes after that pass is refused when
    read again, naming it: its size, modification time or inode (a file replaced) are those
    of the first pass at the start and at the end of every pass (an edit in place during a
    pass, of the same size and rows, would give rows of both versions), and each pass reads
    as many rows."""

    def __init__(self, path: Path, read: Callable[[], Iterator[dict]], count: int,
                 stamp: tuple[int, ...]):
        self.path, self._read, self._count, self._stamp = path, read, count, stamp

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict]:
        self._check_unchanged()
        read = 0
        for row in self._read():
            read += 1
            yield row
        if read != self._count:
            raise ValueError(f"{self.path} changed while samp-jax was reading it: {read} rows "
                             f"now, {self._count} before")
        self._check_unchanged()  # the rows just read may be of two versions

    def _check_unchanged(self) -> None:
        if _stamp(self.path) != self._stamp:
            raise ValueError(f"{self.path} changed while samp-jax was reading it (its size, "
                             "modification time or inode); write the data file before the "
                             "command starts")

    def __repr__(self) -> str:
        return f"StreamedRows({str(self.path)!r}, {self._count} rows)"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in tuple('aeiou') else 'a'} {noun}"


def _stamp(path: Path) -> tuple[int, ...]:
    """What shows a file changed: its device and inode (replaced), size and modification time
    (written)."""
    status = os.stat(path)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _streamed(path: Path, kind: str) -> Table | None:
    """`path` as a `Table` of `StreamedRows`, every row checked once now (the errors of the
    whole read, in its words); None for a file read whole (a JSON array, CoNLL)."""
    stamp = _stamp(path)  # before the first pass: a file still being written is seen to change
    if kind in ("csv", "tsv"):
        header: list[str] = []
        count = sum(1 for _ in _delimited_rows(path, kind, header))
        columns = header
        rows = StreamedRows(path, lambda: _delimited_rows(path, kind, []), count, stamp)
    elif kind == "jsonl":
        if _starts_an_array(path):
            return None
        keys: dict[str, None] = {}
        count, first, not_object = 0, None, None
        for row in _json_lines(path):  # every line parsed first, as the whole read does
            count += 1
            first = row if count == 1 else first
            if isinstance(row, Mapping):  # the union of the rows' keys, in first-seen order
                keys.update(dict.fromkeys(row))
            elif not_object is None:
                not_object = (count, row)
        if count == 0:
            raise ValueError(f"{path} is empty; expected JSON Lines, one object per line")
        if not_object is not None:
            _check_mapping(not_object[1], str(path), not_object[0])
        if count == 1:
            _check_not_a_frame(path, first)
        rows = StreamedRows(path, lambda: _json_lines(path), count, stamp)
        columns = list(keys)
    elif kind == "parquet":
        count, columns = _parquet_shape(path)
        rows = StreamedRows(path, lambda: _parquet_rows(path), count, stamp)
    else:
        return None
    if count == 0:
        raise ValueError(f"{path} has no rows")
    class_names = parquet_class_names(path) if kind == "parquet" else {}
    return Table(str(path), tuple(columns), rows, class_names, _default_name(path))


def _read_path(path: Path, *, stream: bool = False) -> Table | dict[str, Table]:
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if path.is_dir():
        return _read_saved(path)
    if not path.is_file():  # /dev/zero would be read without end, a pipe read once only
        raise ValueError(f"{path} is not a regular file (a device, pipe or socket); a data "
                         "file is read more than once (its header, then its rows): save it to "
                         "a file first (predict also reads JSON Lines from standard input: "
                         "--data -)")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown format {path.suffix!r}; expected a file ending in "
                         f"one of {sorted(FORMATS)} or a folder written by datasets' "
                         "save_to_disk")
    if kind != "parquet":
        _check_not_utf16(path, kind)
    try:
        streamed = _streamed(path, kind) if stream else None
        if streamed is not None:
            return streamed
        rows, columns = {"csv": _read_delimited, "tsv": _read_delimited, "jsonl": _read_json,
                         "parquet": _read_parquet, "conll": read_conll}[kind](path, kind)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); expected "
                         f"a {kind} file") from None
    return _table(str(path), rows, columns, name=_default_name(path),
                  class_names=parquet_class_names(path) if kind == "parquet" else None)


_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
               (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))  # UTF-32 first


def _check_not_utf16(path: Path, kind: str) -> None:
    """Names a UTF-16 or UTF-32 file by its byte-order mark (Excel's "Unicode text" and
    PowerShell write them), rather than calling it a bad UTF-8 byte."""
    with path.open("rb") as f:
        head = f.read(4)
    encoding = next((name for bom, name in _WIDE_BOMS if head.startswith(bom)), None)
    if encoding is not None:
        raise ValueError(f"{path} is {encoding} text (it starts with a {encoding} byte-order "
                         f"mark); expected a UTF-8 {kind} file (save it as UTF-8)")


def _check_no_nul(values, at: str, kind: str) -> None:
    """Refuses a NUL character: UTF-8 text has none, UTF-16 text read as UTF-8 has one in
    every other byte (without a byte-order mark it decodes without an error, as garbage)."""
    if any(value and "\x00" in value for value in values):
        raise ValueError(f"{at} holds a NUL character; expected UTF-8 {kind.upper()} text (is "
                         "the file UTF-16, or not text?)")


# Python's csv refuses a field over 131,072 characters by default; a long document in a CSV
# cell is as valid as the same text in JSON Lines. (An unclosed quote still reads as one
# field to the end of the file, then fails the column-count and label checks.)
MAX_FIELD_CHARS = 1 << 28


@contextlib.contextmanager
def _long_fields():
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, MAX_FIELD_CHARS))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


# A field quoted as Python's csv and pandas quote it: enclosed in quotes, any quote inside doubled.
_QUOTED_FIELD = re.compile(r'"(?:[^"]|"")*"')


def tsv_is_quoted(path: Path) -> bool:
    """Whether a TSV file was written with CSV quoting (Python's `csv` or pandas `to_csv(sep=
    "\\t")`): its header has a field in quotes, a field is enclosed in quotes and holds a
    doubled one (`"the ""best"" film"`), or a line whose fields are not the header's count has
    one that opens a quote (a quoted tab or line break); a field that is `""` alone (an empty
    string) too. Plain TSV has no quoting (GLUE's files: a field is everything between tabs,
    quotes included), and is read so unless the file shows one of these marks, which plain
    text almost never does (and, `_read_delimited` checks, the whole file parses quoted)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        columns = None
        for line in f:
            fields = line.rstrip("\r\n").split("\t")
            if columns is None:
                if any(_QUOTED_FIELD.fullmatch(x) for x in fields):
                    return True
                columns = len(fields)
            elif any(x == '""' or '""' in x[1:-1] and _QUOTED_FIELD.fullmatch(x)
                     for x in fields):  # `""`: pandas' empty string
                return True
            elif len(fields) != columns and any(x.startswith('"') for x in fields):
                return True  # a quoted field holding a tab or a line break
    return False


def _parses_quoted(path: Path) -> bool:
    """Whether the whole TSV file parses with CSV quoting, strictly (every field that opens a
    quote is a well-formed quoted field): one mark of quoting does not make a plain file's
    other quotes (`"Great" movie`) syntax."""
    with path.open(newline="", encoding="utf-8-sig") as f, _long_fields():
        try:
            for _ in csv.reader(f, delimiter="\t", strict=True):
                pass
        except csv.Error:
            return False
    return True


def _read_delimited(path: Path, kind: str) -> tuple[list[dict], list[str]]:
    header: list[str] = []
    rows = list(_delimited_rows(path, kind, header))
    return rows, header


def _delimited_rows(path: Path, kind: str, header_out: list[str]) -> Iterator[dict]:
    """The rows of a CSV/TSV file, each checked as it is read; `header_out` receives the
    header. Blank lines at the end of a one-column file are no rows ("" written out is one)."""
    quoted = kind == "csv" or (tsv_is_quoted(path) and _parses_quoted(path))
    with path.open(newline="", encoding="utf-8-sig") as f, _long_fields():
        reader = _DictReader(f, delimiter="," if kind == "csv" else "\t",
                             quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
        header = reader.fieldnames
        if not header:
            raise ValueError(f"{path} is empty; expected a header line with the column names")
        reader.blank_is_a_row = len(header) == 1
        _check_no_nul(header, f"{path}: the header (line 1)", kind)
        _check_distinct(header, f"{path}: the header (line 1)")
        header_out[:] = header
        held = []  # rows of blank lines, given once a later row shows they do not end the file
        row_number = 0
        try:
            for row_number, row in enumerate(reader, 1):
                _check_no_nul(row.values(), f"{path}: row {row_number}", kind)
                if None in row:
                    raise ValueError(f"{path}: row {row_number} has {len(row[None])} more "
                                     f"field(s) than the {len(header)} columns of the header "
                                     f"{header}")
                if any(value is None for value in row.values()):
                    raise ValueError(f"{path}: row {row_number} has {_filled(row)} of the "
                                     f"{len(header)} columns of the header {header}"
                                     f"{_unclosed_quote_hint(row)}")
                if reader.blank_lines and reader.blank_lines[-1] == row_number:
                    held.append(row)
                    continue
                yield from held
                held.clear()
                yield row
        except csv.Error as e:  # e.g. a NUL byte, a field over MAX_FIELD_CHARS
            raise ValueError(f"{path}: row {row_number + 1}: {e}; expected {kind.upper()} "
                             "rows") from None


class _DictReader(csv.DictReader):
    """`csv.DictReader`, except that with `blank_is_a_row` (a one-column file) a blank line is
    a row whose one value is empty, not skipped: `predict` writes one output line per input
    line, and a dropped line would shift every later one. Blank lines of a file of several
    columns separate nothing and are skipped, as `csv.DictReader` does."""

    blank_is_a_row = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.blank_lines: list[int] = []  # the rows (1-based) read from blank lines
        self.rows_read = 0

    def __next__(self):
        if not self.blank_is_a_row:
            return super().__next__()
        if self.line_num == 0:
            self.fieldnames  # noqa: B018  reads the header
        row = next(self.reader)
        self.rows_read += 1
        if not row:
            self.blank_lines.append(self.rows_read)
            row = [""]
        return {self.fieldnames[0]: row[0]} | ({self.restkey: row[1:]} if row[1:] else {})


def _filled(row: dict) -> int:
    return sum(value is not None for value in row.values())


def _unclosed_quote_hint(row: dict) -> str:
    """A field that spans lines in a short row is most likely a quote never closed."""
    if any(value and "\n" in value for value in row.values()):
        return " (a field runs over several lines: is a quote left open?)"
    return ""


def _read_json(path: Path, kind: str) -> tuple[list, list[str] | None]:
    if _starts_an_array(path):  # one JSON array of objects
        text = path.read_text(encoding="utf-8-sig")
        try:
            rows = strict_json.loads(text)
        except strict_json.BeyondReader as e:
            raise ValueError(f"{path}: {e}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(rows, list):
            for row_number, row in enumerate(rows, 1):
                _check_object(row, f"{path}: row {row_number}")
        return rows, None
    rows = list(_json_lines(path))
    if not rows:
        raise ValueError(f"{path} is empty; expected JSON Lines, one object per line")
    if len(rows) == 1:
        _check_not_a_frame(path, rows[0])
    return rows, None


def _starts_an_array(path: Path) -> bool:
    """Whether the file's first character past white space (and a byte-order mark) is `[`."""
    with path.open("rb") as f:
        start = f.read(1 << 16).removeprefix(codecs.BOM_UTF8)
        while start and not start.strip():  # megabytes of white space first
            start = f.read(1 << 16)
    return start.lstrip().startswith(b"[")


def _json_lines(path: Path) -> Iterator:
    """The rows of a JSON Lines file, one per line that is not blank, each checked as read.
    Lines end at "\n", "\r\n" or a lone "\r" (as Python reads text) only: a JSON string may
    hold U+2028, U+2029 or U+0085 unescaped, which str.splitlines() would also split at."""
    rows = 0
    for line_number, line in enumerate(_text_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = strict_json.loads(line)
        except strict_json.BeyondReader as e:
            raise ValueError(f"{path}: line {line_number} (row {rows + 1}): {e}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {line_number} is not a JSON object ({e.msg}); "
                             "expected JSON Lines, one object per line") from None
        rows += 1
        _check_object(row, f"{path}: line {line_number} (row {rows})")
        yield row


def _text_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file (a byte-order mark skipped), split at "\n", "\r\n" and
    a lone "\r" as Python's text files split them, read a line at a time; a byte that is not
    UTF-8 is named with its offset in the file."""
    with path.open("rb") as f:
        offset = 0
        for number, raw in enumerate(f, 1):  # up to each b"\n"
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                offset, raw = len(codecs.BOM_UTF8), raw[len(codecs.BOM_UTF8):]
            pieces = raw.split(b"\r")  # a "\r" is never part of a UTF-8 sequence
            if len(pieces) > 1 and pieces[-1] in (b"\n", b""):  # "\r\n", or "\r" at the end
                ending = pieces.pop()
                pieces[-1] += ending
            start = offset
            for piece in pieces:
                try:
                    yield piece.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte "
                                     f"{start + e.start}); expected a jsonl file") from None
                start += len(piece) + 1
            offset += len(raw)


def _check_not_a_frame(path: Path, row) -> None:
    """Refuses the one object of objects pandas' `DataFrame.to_json` writes by default."""
    if isinstance(row, dict) and row and all(isinstance(value, dict) for value in row.values()):
        keys = ", ".join(map(repr, list(row)[:4])) + (", ..." if len(row) > 4 else "")
        raise ValueError(f"{path} holds one JSON object of {len(row)} objects ({keys}), "
                         "as pandas' "
                         "DataFrame.to_json writes a table by default; expected one object per "
                         "row: write it with to_json(path, orient='records', lines=True)")


def _check_mapping(row, where: str, row_number: int) -> None:
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: row {row_number} is {_a(type(row).__name__)}; expected an "
                         "object (a dict of column values)")


def _check_object(row, at: str) -> None:
    """Refuses a row object with a repeated key (only its last value would be read)."""
    if isinstance(row, strict_json.JsonObject) and row.repeated:
        raise ValueError(f"{at}: column {row.repeated[0]!r} appears more than once in the "
                         "object; expected distinct column names (only the last value would be "
                         "read)")


def _check_distinct(columns: Sequence[str], at: str) -> None:
    """Refuses repeated column names (a reader keeps one of them, silently)."""
    counts = Counter(columns)
    repeated = next((name for name in columns if counts[name] > 1), None)
    if repeated is not None:
        positions = [i for i, name in enumerate(columns, 1) if name == repeated]
        raise ValueError(f"{at}: column name {repeated!r} appears {len(positions)} times "
                         f"(columns {positions} of {len(columns)}); expected distinct column "
                         "names (only one of them would be read)")


def _read_parquet(path: Path, kind: str) -> tuple[list[dict], list[str]]:
    import pyarrow  # lazily: only Parquet needs it (a dependency of `datasets`)
    import pyarrow.parquet
    with _parquet_errors(path):
        _check_distinct(pyarrow.parquet.read_schema(path).names, f"{path}: the schema")
        table = pyarrow.parquet.read_table(path)
    return narrow_floats(table.to_pylist(), table.schema), table.schema.names


def parquet_class_names(path: Path) -> dict[str, tuple[str, ...]]:
    """The ClassLabel names of the columns of a Parquet file that `datasets` wrote
    (`Dataset.to_parquet`, a Hub data set's files), from its schema's `huggingface` metadata as
    `datasets` reads them back: a ClassLabel column, or a list of them (tags). Empty for a
    file without that metadata, or with metadata that is not what `datasets` writes (the ids
    are then read as plain numbers)."""
    import pyarrow.parquet
    with _parquet_errors(path):
        metadata = pyarrow.parquet.read_schema(path).metadata or {}
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
        columns = features.items()
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}
    names = {}
    for column, feature in columns:
        if isinstance(feature, dict) and isinstance(feature.get("feature"), dict):
            feature = feature["feature"]  # List (Sequence) of ClassLabel: tags
        if not isinstance(feature, dict) or feature.get("_type") != "ClassLabel":
            continue
        labels = feature.get("names")
        if isinstance(labels, list) and labels and all(isinstance(n, str) for n in labels):
            names[column] = tuple(labels)
    return names


def _parquet_shape(path: Path) -> tuple[int, list[str]]:
    """A Parquet file's row count and columns, from its metadata (no row is read)."""
    import pyarrow.parquet
    with _parquet_errors(path):
        metadata = pyarrow.parquet.read_metadata(path)
        names = metadata.schema.to_arrow_schema().names
    _check_distinct(names, f"{path}: the schema")
    return metadata.num_rows, names


def _parquet_rows(path: Path) -> Iterator[dict]:
    """A Parquet file's rows, `PARQUET_BATCH_ROWS` read at a time."""
    import pyarrow.parquet
    with _parquet_errors(path):
        file = pyarrow.parquet.ParquetFile(path)
        schema = file.schema_arrow
        for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield from narrow_floats(batch.to_pylist(), schema)


@contextlib.contextmanager
def _parquet_errors(path: Path):
    import pyarrow
    try:
        yield
    except (pyarrow.ArrowException, OSError) as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path} is not a readable Parquet file ({problem})") from None


def narrow_floats(rows: list[dict], schema) -> list[dict]:
    """`rows` (pyarrow's `to_pylist`, or a `datasets.Dataset`'s `to_list`, of a table with
    pyarrow `schema`) with each 16- or 32-bit float (alone, in a list or in a struct) given its
    own shortest digits: 0.1 stored in float32 is read as 0.1, not as float64's
    0.10000000149011612, which those give. Changes `rows` in place and returns it."""
    for field in schema:
        narrow = _narrowing(field.type)
        if narrow is not None:
            for row in rows:
                row[field.name] = narrow(row[field.name])
    return rows


def _narrowing(arrow_type):
    """The function that gives a value of `arrow_type` its narrow floats' shortest digits, or
    None when the type holds no 16- or 32-bit float."""
    import numpy as np
    import pyarrow.types as types
    if types.is_float32(arrow_type) or types.is_float16(arrow_type):
        width = np.float32 if types.is_float32(arrow_type) else np.float16
        return lambda value: None if value is None else float(str(width(value)))
    if types.is_list(arrow_type) or types.is_large_list(arrow_type) or \
            types.is_fixed_size_list(arrow_type):
        item = _narrowing(arrow_type.value_type)
        return None if item is None else \
            (lambda value: None if value is None else [item(v) for v in value])
    if types.is_dictionary(arrow_type):  # a categorical column: its values' type
        return _narrowing(arrow_type.value_type)
    if types.is_map(arrow_type):  # read as a list of (key, value) pairs
        key, item = _narrowing(arrow_type.key_type), _narrowing(arrow_type.item_type)
        if key is None and item is None:
            return None
        key, item = key or (lambda v: v), item or (lambda v: v)
        return lambda value: None if value is None else [(key(k), item(v)) for k, v in value]
    if types.is_struct(arrow_type):
        fields = {f.name: _narrowing(f.type) for f in arrow_type}
        fields = {name: narrow for name, narrow in fields.items() if narrow is not None}
        if not fields:
            return None
        return lambda value: None if value is None else \
            {k: (fields[k](v) if k in fields else v) for k, v in value.items()}
    return None


def _read_saved(path: Path) -> Table | dict[str, Table]:
    if not ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        raise ValueError(f"{path} is a folder but not one written by datasets' save_to_disk "
                         "(it has no dataset_dict.json or state.json)")
    _check_saved(path)
    import datasets  # lazily: importing it takes a second
    return _read_object(datasets.load_from_disk(str(path)), where=str(path), name=path.name)


def _check_saved(path: Path) -> None:
    """Refuses a save_to_disk folder whose JSON names a file or folder outside it, before
    `datasets.load_from_disk` opens anything: it joins each split name of `dataset_dict.json`
    to the folder, and each `_data_files[].filename` of a `state.json` to that file's folder,
    unchecked (an absolute name or `../` would read Arrow files anywhere). `save_to_disk`
    writes plain names (`train`, `data-00000-of-00001.arrow`); only such names are taken. The
    files read are the ones `load_from_disk` reads, in its order: the folder's own
    `state.json` (with `dataset_info.json`, a Dataset), else `dataset_dict.json` and each
    split folder's `state.json` (a DatasetDict)."""
    if (path / "dataset_info.json").is_file() and (path / "state.json").is_file():
        _check_state(path)
        return
    file = path / "dataset_dict.json"
    if not file.is_file():
        raise ValueError(f"{path} is a folder written by datasets' save_to_disk but has neither "
                         "dataset_info.json with state.json (a Dataset) nor dataset_dict.json "
                         "(a DatasetDict)")
    saved = _saved_json(file)
    splits = saved.get("splits") if isinstance(saved, dict) else None
    if not isinstance(splits, list):
        raise ValueError(f"{file}: expected an object with a list of split names in 'splits', "
                         "as datasets' save_to_disk writes")
    for key in splits:
        if not _plain_name(key):
            raise ValueError(f"{file}: split {key!r} is not the name of a folder inside "
                             f"{path}; expected a plain name such as 'train'")
        split_name(key, str(path))  # refused now rather than after every split is read
        if not ((path / key / "dataset_info.json").is_file()
                and (path / key / "state.json").is_file()):
            raise ValueError(f"{path / key}: the {key!r} split of {file} has no "
                             "dataset_info.json with state.json, as datasets' save_to_disk "
                             "writes")
        _check_state(path / key)


def _check_state(folder: Path) -> None:
    file = folder / "state.json"
    state = _saved_json(file)
    data_files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(data_files, list):
        raise ValueError(f"{file}: expected an object with a list of Arrow files in "
                         "'_data_files', as datasets' save_to_disk writes")
    for i, entry in enumerate(data_files):
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not _plain_name(name):
            raise ValueError(f"{file}: _data_files[{i}].filename is {name!r}, not the name of a "
                             f"file inside {folder}; expected a plain name such as "
                             "'data-00000-of-00001.arrow', as datasets' save_to_disk writes")


def _saved_json(file: Path):
    try:  # as datasets reads it: UTF-8 text, Python's json
        return strict_json.parse(file.read_text(encoding="utf-8"))
    except strict_json.BeyondReader as e:
        raise ValueError(f"{file}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{file}: not UTF-8 text; expected JSON") from None


def _plain_name(name) -> bool:
    """A string naming an entry of its folder itself: no separator, not `.` or `..`."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and not any(c in name for c in "/\\\0"))


def _read_object(obj, *, where: str | None = None,
                 name: str | None = None) -> Table | dict[str, Table]:
    hf = sys.modules.get("datasets")  # a Dataset object means `datasets` is imported
    if hf is not None and isinstance(obj, hf.DatasetDict):
        where = where or "DatasetDict"
        return {split_name(key, where): _dataset_table(part, f"{where}[{key!r}]", name)
                for key, part in obj.items()}
    if hf is not None and isinstance(obj, hf.Dataset):
        return _dataset_table(obj, where or "datasets.Dataset", name)
    if isinstance(obj, (list, tuple)):
        return _table("list of dicts", list(obj), None, name="data")
    raise TypeError(f"source of type {type(obj).__name__} is not a path, a datasets.Dataset or "
                    "DatasetDict, or a list of dicts")


def _dataset_table(dataset, where: str, name: str | None) -> Table:
    class_names = {}
    for column, feature in dataset.features.items():
        feature = getattr(feature, "feature", feature)  # List(ClassLabel) of tags
        if hasattr(feature, "names") and hasattr(feature, "str2int"):  # ClassLabel
            class_names[column] = tuple(feature.names)
    rows = narrow_floats(dataset.to_list(), dataset.features.arrow_schema)
    return _table(where, rows, dataset.column_names, class_names=class_names,
                  name=name or dataset.info.dataset_name or "data")


def _table(where: str, rows: list, columns: Sequence[str] | None, *,
           class_names: Mapping[str, tuple[str, ...]] | None = None, name: str) -> Table:
    for row_number, row in enumerate(rows, 1):
        _check_mapping(row, where, row_number)
    if not rows:
        raise ValueError(f"{where} has no rows")
    if columns is None:  # the union of the rows' keys, in first-seen order
        columns = list(dict.fromkeys(key for row in rows for key in row))
    return Table(where, tuple(columns), tuple(rows), dict(class_names or {}), name)
