"""`samp-jax predict`: one JSON line per input row, from a float or quantized model folder.

- sequence classification: `{"text", ["text_pair"], "label", "score", "probabilities"}`; a
  multi-label head (problem_type multi_label_classification) `{"text", ["text_pair"], "labels",
  "scores"}`: the names of the labels whose sigmoid is at least the threshold (`--threshold`,
  default 0.5: `LABEL_THRESHOLD`), and every label's sigmoid probability; a head of one
  output (num_labels=1: a reranker or a regression cross-encoder) `{"text", ["text_pair"],
  "score"}`, its raw output (the logit, before any sigmoid);
- a sentence-transformers CrossEncoder (`samp_jax.models.cross_encoder`: its folder says so):
  the same records, with what `CrossEncoder.predict` returns for the row, its activation
  (default Sigmoid for one output, Identity for more, or the one the folder states) applied
  to the logits: for one output `"score"` is that value and `"logit"` the raw output; for
  more, `"scores"` maps each label name to its value (beside `"label"`, `"score"` and
  `"probabilities"`, the softmax reading); a multi-label head keeps its `"labels"` and
  `"scores"` (the sigmoids at the threshold) and has `CrossEncoder.predict`'s values as
  `"cross_encoder_scores"`;
- token classification: `{"tokens", "tags", "entities"}` from a tokens column, or
  `{"text", "tokens", "tags", "entities"}` from a text column split into words as the model's
  tokenizer splits text (`Tokenizer.word_spans`: BERT's
  splits off punctuation and each CJK character, SentencePiece's only spaces): one tag per
  word (its first sub-token's; null for a word without a sub-token: one that truncation
  removed, or a word the tokenizer makes no token of, such as a zero-width or control
  character), and the entities the tags name. The words are encoded one by one, as a tagger
  fine-tuned on pre-split words (HF's `run_ner`: `is_split_into_words=True`) saw its rows.
  For WordPiece and SentencePiece tokenizers (BERT, XLM-R, DeBERTa) these are the ids of the
  text itself; for byte-level BPE they differ (RoBERTa gives every word a leading space
  token, the first and punctuation included; ModernBERT none), so HF's token-classification
  pipeline, which encodes the text whole, can tag some words otherwise;
- sentence embedding: `{"text", "embedding"}`, each value to `EMBEDDING_DECIMALS` (6)
  decimals; a row with a pair's second text (a `text_pair` column, or `--text-pair-column`)
  `{"text", "text_pair", "embedding", "embedding_pair", "similarity"}`: both texts embedded
  alone and compared by the model's similarity (sentence-transformers' `similarity_fn_name`:
  cosine unless its folder says dot, euclidean or manhattan; `samp_jax.models.similarity`),
  as a bi-encoder scores a pair.

Scores, probabilities and similarities are the model's float32 values, each written in the
fewest digits that read back as that float32 (`_number`).

Kept columns (`--keep-columns id,source`; `read_model_inputs(..., keep=...)`) start each record
with the row's values of those columns, as the data holds them (`cells.passthrough`: a CSV
cell stays text, JSON and Parquet values keep their types), so that predictions can be joined
on an id; a name of a record's own field (`RECORD_FIELDS`) is refused.

Entities (taggers). Each is `{"type", "start", "end", "text", "score"}`: word indices `start`
.. `end - 1` (`end` exclusive), the words joined by single spaces (for a text column: the
characters its words cover, `text[char_start:char_end]`, with `"char_start"` and `"char_end"`,
as HF's pipeline gives `start` and `end`), and a score, the mean over
its words of the softmax probability of each word's predicted tag (from the per-word logits:
the score HF's token-classification pipeline gives with `aggregation_strategy="first"`). How
tags group into entities depends on the head's tag names (`entity_reader`):
- BIO, BIOES or BILOU names (every name "O" or "<prefix>-<type>", the prefixes of one scheme:
  B I, B I E S, or B I L U): as entity F1 groups them (`samp_jax.models.bio_tags`), so
  `predict` shows the entities `evaluate` scores: an entity starts at every "B-" or "S-"/"U-"
  and at every "I-" or "E-"/"L-" that does not continue an entity of its type, and
  "E-"/"L-" and "S-"/"U-" end one ("B-PER O I-PER" is two entities, as in entity F1 and
  in HF's token-classification pipeline);
- IO names ("O", or "o", beside bare types, e.g. "O", "PER", "LOC", none of them a prefixed
  tag in any spelling: `bio_tags.io_outside`): each maximal run of one tag other than "O" is
  an entity of that type, as entity F1 reads them (HF's pipeline, too, reads an unprefixed
  name as a type that continues itself);
- any other names: a head without an "O" name (one without names, whose tags are its class
  ids "0", "1", ...; HF's generic `LABEL_<i>`; part-of-speech tags), where no tag is known to
  mean "outside"; a mix of prefixed and other names; entity tags in a spelling that is not
  read ("B_PER", "PER-B" beside "O": `bio_tags.near_entity_names`); or the prefixes of two
  schemes (BIOES's "E-"/"S-" beside BILOU's "L-"/"U-"), which no reference reads
  (`bio_tags`). Any span would be a guess, so the records have no `entities` field.
A word with a null tag is outside every entity (it ends an open one).

Rows are served through `samp_jax.compile` (compiled length buckets, `FINE_BUCKETS`: steps of
at most 1.5x; only those the rows reach are compiled) up to the model's limit (its tokenizer's
`max_length`, or a smaller `max_length`: the length `samp-jax eval`, `search` and `finetune`
cut rows at); longer rows are truncated and marked `"truncated": true`, and `write` counts
them. They are predicted and written `CHUNK_ROWS` at a time, so memory holds one chunk's
predictions whatever the size of the file (a distributed run keeps each process's JSON Lines
until process 0 gathers them); rows read with `stream=True` (`samp-jax predict` in one
process: `read_inputs(stream=True)`) are read from the file a chunk at a time too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import sys
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import jax
import numpy as np

from samp_jax.core import strict_json
from samp_jax.core.atomic import atomic_file
from samp_jax.app.outputs import silence_stdout, stdout_errors
from samp_jax.core.errors import SampJaxError
from samp_jax.models.bio_tags import (OUTSIDE, Span, io_outside, scheme_of, tag_spans,
                                      type_runs)
from samp_jax.models.cross_encoder import apply_activation
from samp_jax.models.similarity import pair_similarity, similarity_of
from samp_jax.models.token_rows import TokenizerFailure
from samp_jax.models.head_kinds import (SENTENCE_EMBEDDING, SEQUENCE_CLASSIFICATION,
                                       TOKEN_CLASSIFICATION, Readout, sigmoid)
from samp_jax.serving import compile as compile_engine
from samp_jax.serving.engine import row_limit
from samp_jax.serving.batching import FINE_BUCKETS, buckets_to
from samp_jax.serving.distributed import gather_bytes, is_distributed, is_primary, process_rows
from samp_jax.tasks.proxies import log_softmax
from samp_jax.tasks.columns import ColumnNotFound, naming
from samp_jax.tasks.files import FORMATS, KEPT, Columns, InputRows
from samp_jax.tasks.files import read_inputs as read_rows

CHUNK_ROWS = 4096  # rows predicted, then written, at a time
EMBEDDING_DECIMALS = 6  # an embedding's values as written: float32 holds about 7 digits
HEAD_FIELDS = {SEQUENCE_CLASSIFICATION.name: ("text", "text_pair"),
               TOKEN_CLASSIFICATION.name: ("tokens",),
               SENTENCE_EMBEDDING.name: ("text", "text_pair")}
RECORD_FIELDS = ("text", "text_pair", "label", "labels", "score", "scores", "probabilities",
                 "logit", "cross_encoder_scores", "tokens", "tags", "entities", "embedding",
                 "embedding_pair", "similarity", "truncated", "non_finite")
"""Every field a prediction record may have (see the module); a kept column may not be named
as one."""


def whitespace_spans(text: str) -> list[tuple[int, int]]:
    """The character spans of the whitespace-separated words of `text` (`str.split`'s)."""
    return [match.span() for match in re.finditer(r"\S+", text)]


def _split(row: dict, spans: list[tuple[int, int]]) -> dict:
    """A tagger's row read from its `"text"`: the text, its words at `spans`, the spans, and
    what else the row carries (kept columns)."""
    text = row["text"]
    return row | {"tokens": [text[start:end] for start, end in spans], "word_spans": spans}


def read_model_inputs(source, columns: Columns, *, head: str,
                      word_spans: Callable[[str], list[tuple[int, int]]] = whitespace_spans,
                      keep: Sequence[str] = (), stream: bool = False) -> Sequence[dict]:
    """The rows of `source` with the fields a model with `head` reads (labels are ignored); a
    tagger's plain sentences (a text column, no tokens column) are split into words at the
    character spans `word_spans` gives (the model's `Tokenizer.word_spans`: as its tokenizer
    splits them), kept with the text (`"text"`, `"word_spans"`) so that entities can name
    their characters. The `keep` columns' values (`check_kept`) go with each row, and its
    record starts with them (`--keep-columns id`). With `stream`, a file is read again, a
    block at a time, whenever the rows are iterated (`read_inputs(stream=True)`)."""
    if head not in HEAD_FIELDS:
        raise ValueError(f"predict needs a classification or sentence-embedding model; this one "
                         f"has head {head!r}")
    check_named_columns(columns, head)
    check_kept(keep)
    if head != TOKEN_CLASSIFICATION.name:
        return read_rows(source, columns=columns, fields=HEAD_FIELDS[head], keep=keep,
                         stream=stream)
    try:
        return read_rows(source, columns=columns, fields=("tokens",), keep=keep, stream=stream)
    except ColumnNotFound as missing_tokens:  # plain sentences: words as the tokenizer splits
        # them (a tokens column with a bad value in some row is that row's error, not this)
        try:
            rows = read_rows(source, columns=columns, fields=("text",), keep=keep, stream=stream)
        except ValueError:
            raise missing_tokens from None
        words = lambda row: _split(row, word_spans(row["text"]))  # noqa: E731
        return rows.map(words) if isinstance(rows, InputRows) else [words(r) for r in rows]


def check_kept(keep: Sequence[str]) -> None:
    """Refuses kept columns (`--keep-columns`) that a record could not hold beside its own
    fields: a name of one of them (`RECORD_FIELDS`), a blank name, or a name given twice.

    Raises:
      ValueError: naming the column and why.
    """
    for i, column in enumerate(keep):
        if not column.strip():
            raise ValueError(f"--keep-columns: column name {i + 1} is blank; expected the names "
                             "of the columns to copy into each prediction, separated by commas")
        if column in keep[:i]:
            raise ValueError(f"--keep-columns names column {column!r} twice")
        if column in RECORD_FIELDS:
            raise ValueError(f"--keep-columns {column}: a prediction record has a field "
                             f"{column!r} of its own, which a kept column would overwrite; its "
                             f"fields: {', '.join(RECORD_FIELDS)}. To score predictions against "
                             "gold labels, run samp-jax eval")


class RowScan(NamedTuple):
    """What one pass over the rows found (1-based row numbers): `blank`, the rows with
    something missing (a blank text, a pair with a blank side, or no words), which `predict`
    answers too, with the model's answer to what input there is; `unspaced`, a tagger's plain
    sentences with a word of `UNSPACED_RUN` or more characters of a script written without
    spaces (Chinese, Japanese, Thai, ...), which a tokenizer that splits words at spaces keeps
    as one word with one tag."""

    blank: list[int]
    unspaced: list[int]


UNSPACED_RUN = 6
"""Characters of a script written without spaces that make a tagger's word worth a warning:
a run this long is most likely several words."""

# Han (with its extensions and compatibility ideographs), kana (half-width too), Thai, Lao,
# Tibetan, Myanmar, Khmer
_UNSPACED = re.compile("[\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff"
                       "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
                       "\uff66-\uff9f\U00020000-\U0003134f]")


def scan_rows(rows: Sequence[dict]) -> RowScan:
    """Converts every row once (its errors come now, before any prediction) and notes the rows
    worth a warning (`RowScan`)."""
    def blank(row: dict) -> bool:
        if "tokens" in row and "text" not in row:
            return not any(word.strip() for word in row["tokens"])
        return any(not str(row.get(field) or "").strip() for field in ("text", "text_pair")
                   if field == "text" or field in row)

    def unspaced(row: dict) -> bool:  # words split from a text, not given
        return ("word_spans" in row and _UNSPACED.search(row["text"]) is not None and any(
            len(_UNSPACED.findall(word)) >= UNSPACED_RUN for word in row["tokens"]))

    scan = RowScan([], [])
    for number, row in enumerate(rows, 1):
        if blank(row):
            scan.blank.append(number)
        if unspaced(row):
            scan.unspaced.append(number)
    return scan


def check_named_columns(columns: Columns, head: str) -> None:
    """Refuses a column named for a field a model with `head` does not read (a pair's second
    text for a tagger, words for a classifier): it would be dropped without a word. (A
    cross-encoder, a classifier of pairs, reads both texts; a sentence embedder embeds each
    and scores the pair by its similarity.)

    Raises:
      ValueError: naming the option and the fields the model reads.
    """
    read = HEAD_FIELDS[head] + (("text",) if head == TOKEN_CLASSIFICATION.name else ())
    for field in ("text", "text_pair", "tokens"):
        if getattr(columns, field) is not None and field not in read:
            raise ValueError(f"{naming(field)} names a column a {head} model does not read: "
                             f"it reads {' and '.join(repr(f) for f in read)} per row")


def check_suffix(out: str | Path) -> None:
    """Refuses an output path whose suffix names another format (`.csv`, `.parquet`, ...):
    predictions are written as JSON Lines whatever the name, and a reader that trusts the
    suffix would misread them.

    Raises:
      ValueError: naming the path and the suffixes that fit.
    """
    suffix = Path(out).suffix.lower()
    if suffix in FORMATS and FORMATS[suffix] != "jsonl":
        fitting = sorted(s for s, kind in FORMATS.items() if kind == "jsonl")
        raise ValueError(f"--out {out}: predictions are JSON Lines, not {FORMATS[suffix]}; give "
                         f"a path ending in one of {fitting}")


@dataclasses.dataclass(frozen=True)
class Written:
    """What `write` wrote: `rows` records, `truncated` of them cut at `max_length` tokens,
    `non_finite` of them with NaN or Inf outputs (no answer written)."""

    rows: int
    truncated: int
    max_length: int
    non_finite: int = 0


def serving_limit(model, max_length: int | None = None) -> int:
    """The tokens a row is served at: the model's limit (the smaller of its positions and its
    tokenizer's `max_length`), or `max_length` when that is smaller."""
    limit = row_limit(model.config, model.tokenizer)
    return limit if max_length is None else min(max_length, limit)


def records(model, rows: Sequence[dict], *, batch_size: int = 32,
            label_threshold: float | None = None, max_length: int | None = None) -> list[dict]:
    """One prediction record per row, in input order (an empty list for no rows); a
    multi-label model's labels are read at `label_threshold` (None: the model's own, else
    `LABEL_THRESHOLD`; only for a multi-label model, as `samp_jax.compile` takes it); rows are
    cut at `serving_limit(model, max_length)` tokens. The model runs on every device of this
    process, `batch_size` rows per device and call."""
    if not rows:
        return []
    return _predict(_engine(model, len(rows), batch_size, label_threshold, max_length), rows)


class Chunk(NamedTuple):
    """One chunk of `chunks`: the rows done so far, the chunk's JSON Lines, and how many of
    its records are marked truncated and non-finite (read from the records, not the text: a
    kept column may hold anything)."""

    done: int
    data: bytes
    truncated: int
    non_finite: int


def chunks(model, rows: Sequence[dict], *, batch_size: int = 32, chunk_rows: int | None = None,
           label_threshold: float | None = None, max_length: int | None = None,
           first_row: int = 1) -> Iterator[Chunk]:
    """The predictions of `rows` as JSON Lines, in input order, `chunk_rows` rows (default
    `CHUNK_ROWS`) at a time (`Chunk`). One engine serves every chunk, compiling each bucket
    the first time a chunk reaches it; a multi-label model's labels are read at
    `label_threshold`, rows cut at `max_length` (`records`). A text the tokenizers library
    fails on is named as the row of the data it is (`rows[0]` being row `first_row`)."""
    if not rows:
        return
    chunk_rows = chunk_rows or CHUNK_ROWS
    engine = _engine(model, len(rows), batch_size, label_threshold, max_length)
    done = 0
    for block in _blocks(rows, chunk_rows):
        try:
            predicted = _predict(engine, block)
        except TokenizerFailure as e:
            if e.index is None:
                raise
            raise e.at(f"row {first_row + done + e.index} of the data") from None
        done += len(block)
        yield Chunk(done, json_lines(predicted), sum(r["truncated"] is True for r in predicted),
                    sum(r.get("non_finite") is True for r in predicted))


def _blocks(rows: Sequence[dict], size: int) -> Iterator[Sequence[dict]]:
    """`rows` in order, `size` at a time: a streamed file's read as they go (`InputRows`)."""
    if isinstance(rows, InputRows):
        yield from rows.blocks(size)
        return
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _engine(model, count: int, batch_size: int, label_threshold: float | None,
            max_length: int | None):
    """The engine that predicts `count` rows: `FINE_BUCKETS` up to `serving_limit`
    (`buckets_to`; finer than evaluation's, for less padding), compiled only when reached
    (the rows are known; most reach few buckets), reading a multi-label model's labels at
    `label_threshold`, on every device of this process (`compile(devices=...)`: each call's
    rows split over them, `batch_size` rows per device)."""
    buckets = tuple(buckets_to(serving_limit(model, max_length), FINE_BUCKETS))
    devices = jax.local_devices()  # several: each call's rows split over them
    # a batch larger than the rows is all padding
    batch_size = min(batch_size * len(devices), count)
    return compile_engine(model, seq_buckets=buckets, batch_size=batch_size, truncate=True,
                          precompile=False, label_threshold=label_threshold,
                          devices=devices if len(devices) > 1 else None)


def json_lines(records: Sequence[dict]) -> bytes:
    """The records as JSON Lines (UTF-8)."""
    return "".join(strict_json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


STDOUT = "-"
"""The `out` of `write` (and `--out` of `samp-jax predict`) that streams the predictions to
standard output, each chunk as it is done."""


def write(model, rows: Sequence[dict], out: str | Path, *, batch_size: int = 32,
          chunk_rows: int | None = None, progress: Callable[[int, int], None] | None = None,
          label_threshold: float | None = None, max_length: int | None = None) -> Written:
    """Predicts every row and writes them, in input order, as JSON Lines to `out`, a chunk of
    `chunk_rows` rows (default `CHUNK_ROWS`) at a time, atomically: into a temporary file
    beside it, renamed when complete (an error or an interrupt leaves `out` as it was).
    `progress(done, total)` is called after each chunk; a multi-label model's labels are read at
    `label_threshold`, rows cut at `max_length` (`records`). Returns the rows written and how
    many of them were truncated (`Written`). `out` = `STDOUT` streams the chunks to standard
    output instead. Raises `NoFiniteOutputs` when every row gave NaN or Inf outputs (a file
    `out` is then left as it was).

    In a distributed run (`samp_jax.serving.distributed`) every process predicts its own block
    of the rows and process 0 gathers them and writes `out`; every process returns the totals.
    """
    options = {"batch_size": batch_size, "chunk_rows": chunk_rows,
               "label_threshold": label_threshold, "max_length": max_length}
    limit = serving_limit(model, max_length)
    if is_distributed():
        block = process_rows(len(rows))
        done = list(chunks(model, rows[block], first_row=block.start + 1, **options))
        parts = gather_bytes(b"".join(chunk.data for chunk in done))
        counts = gather_bytes(strict_json.dumps([sum(c.truncated for c in done),
                                                 sum(c.non_finite for c in done)]).encode())
        truncated, non_finite = np.sum([strict_json.loads(c) for c in counts], axis=0).tolist()
        check_some_finite(non_finite, len(rows), out)  # every process: each stops alike
        if is_primary() and str(out) == STDOUT:
            _to_stdout(b"".join(parts))
        elif is_primary():
            with atomic_file(out) as tmp:
                tmp.write_bytes(b"".join(parts))
        return Written(len(rows), truncated, limit, non_finite)
    truncated = non_finite = 0
    with contextlib.ExitStack() as stack:
        if str(out) == STDOUT:
            emit = _to_stdout
        else:
            emit = stack.enter_context(open(stack.enter_context(atomic_file(out)), "wb")).write
        for chunk in chunks(model, rows, **options):
            emit(chunk.data)
            truncated += chunk.truncated
            non_finite += chunk.non_finite
            if progress is not None:
                progress(chunk.done, len(rows))
        check_some_finite(non_finite, len(rows), out)  # raised here, `out` is left as it was
    return Written(len(rows), truncated, limit, non_finite)


class NoFiniteOutputs(SampJaxError, ValueError):
    """Every row predicted gave NaN or Inf outputs: the model (or its precision map) cannot
    run this data, and a file of null answers would pass for a result."""


def check_some_finite(non_finite: int, rows: int, out) -> None:
    """Raises `NoFiniteOutputs` when all of `rows` (one or more) gave NaN or Inf outputs."""
    if rows and non_finite == rows:
        kept = ("standard output has them" if str(out) == STDOUT
                else f"{out} is left as it was")
        raise NoFiniteOutputs(
            f"every one of the {rows} rows gave NaN or Inf outputs (values past the range of the "
            "model's precision, e.g. above FP16's 65,504, or NaN weights): the model or its "
            f"precision map cannot run this data; {kept}. A map that keeps FP32 or BF16 (FP32's "
            "range) where the values grow may run it")


def _to_stdout(data: bytes) -> None:
    """Writes to standard output; a reader that closed it (`| head`) ends the run quietly, as
    a killed pipe ends other tools (exit 141 = 128 + SIGPIPE)."""
    try:
        with stdout_errors():  # a full disk behind `> FILE` is said as such
            sys.stdout.flush()
            view = memoryview(data)
            while view:  # a short write (a file grown to its limit) is followed by the error
                view = view[sys.stdout.buffer.write(view):]
            sys.stdout.buffer.flush()
    except BrokenPipeError:
        silence_stdout()
        raise SystemExit(141) from None


def _predict(engine, rows: Sequence[dict]) -> list[dict]:
    """The rows' records, each starting with its kept columns' values (`read_model_inputs`)."""
    if any(KEPT in r for r in rows):
        return [r.get(KEPT, {}) | record for r, record in zip(rows, _answers(engine, rows))]
    return _answers(engine, rows)


def _answers(engine, rows: Sequence[dict]) -> list[dict]:
    head = engine.head_kind
    if head == TOKEN_CLASSIFICATION.name:
        result = engine.classify_words([r["tokens"] for r in rows])
        names = _label_names(engine, result.word_logits[0].shape[-1])
        spans = entity_reader(names)
        # a word without a sub-token, or whose logits are NaN or Inf, has label -1: no tag
        return [_tagged(r, names, labels, logits, spans) | _marks(cut, bad)
                for r, labels, logits, cut, bad in zip(rows, result.word_labels,
                                                       result.word_logits, result.truncated,
                                                       result.non_finite)]
    pairs = head == SEQUENCE_CLASSIFICATION.name and "text_pair" in rows[0]
    inputs = [(r["text"], r["text_pair"]) for r in rows] if pairs else [r["text"] for r in rows]
    result = engine(inputs)
    records = []
    if head == SENTENCE_EMBEDDING.name and "text_pair" in rows[0]:
        return _embedded_pairs(engine, rows, result)
    if head == SENTENCE_EMBEDDING.name:
        for r, embedding, cut, bad in zip(rows, result.embeddings, result.truncated,
                                          result.non_finite):
            records.append({"text": r["text"],
                            "embedding": None if bad else _written(embedding)}
                           | _marks(cut, bad))
        return records
    names = _label_names(engine, result.logits.shape[-1])
    values, read = _SEQUENCE_RECORDS[Readout.SCORE if result.labels is None else engine.readout]
    predicted = [None] * len(rows) if result.labels is None else result.labels
    activation = getattr(engine, "cross_encoder_activation", None)
    scored = ([{}] * len(rows) if activation is None else
              [_cross_encoder(names, logits, scores) for logits, scores
               in zip(result.logits, apply_activation(activation, result.logits))])
    broken = result.non_finite
    return [{"text": r["text"]} | ({"text_pair": r["text_pair"]} if pairs else {})
            | (_no_answer(read(names, row, label) | fields) if bad
               else _beside(read(names, row, label), fields)) | _marks(cut, bad)
            for r, row, label, fields, cut, bad in zip(rows, values(result.logits), predicted,
                                                       scored, result.truncated, broken)]


def _embedded_pairs(engine, rows: Sequence[dict], first) -> list[dict]:
    """A bi-encoder's records of pairs: each text embedded alone (`first`: the first texts'
    `EngineOutput`), and the pair's similarity by the model's own (`similarity_of`), from the
    unrounded embeddings. A pair is marked truncated or non-finite when either text is."""
    second = engine([r["text_pair"] for r in rows])
    similarity = pair_similarity(similarity_of(engine.model), first.embeddings, second.embeddings)
    records = []
    for i, r in enumerate(rows):
        cut = bool(first.truncated[i] or second.truncated[i])
        bad = bool(first.non_finite[i] or second.non_finite[i]) or not np.isfinite(similarity[i])
        answer = ({"embedding": None, "embedding_pair": None, "similarity": None} if bad else
                  {"embedding": _written(first.embeddings[i]),
                   "embedding_pair": _written(second.embeddings[i]),
                   "similarity": _number(similarity[i])})
        records.append({"text": r["text"], "text_pair": r["text_pair"]} | answer | _marks(cut, bad))
    return records


def _written(embedding) -> list[float]:
    """An embedding as a record holds it: each value rounded to `EMBEDDING_DECIMALS` in float64,
    so the JSON carries the short decimal (`-0.055882`), not the 17 digits of a float32 that
    rounding left in float32 (`-0.05588199943304062`)."""
    return np.round(np.asarray(embedding, dtype=np.float64), EMBEDDING_DECIMALS).tolist()


def _number(value) -> float:
    """A float32 output as a record holds it: the shortest decimal that reads back as the same
    float32 (`0.9187461`), not the 17 digits of its float64 widening
    (`0.9187461137771606`)."""
    return float(str(np.float32(value)))


def _marks(truncated, non_finite) -> dict:
    """A record's marks: `"truncated"` always, `"non_finite": true` for a row whose outputs
    hold NaN or Inf (no answer read from them: its answer fields are null)."""
    return {"truncated": bool(truncated)} | ({"non_finite": True} if non_finite else {})


def _no_answer(record: dict) -> dict:
    """A sequence record of NaN or Inf logits: every answer field null (argmax of NaN would
    name the first class)."""
    return {key: None for key in record}


def _beside(record: dict, cross_encoder: dict) -> dict:
    """A row's readout fields with a CrossEncoder's (`_cross_encoder`): its one-output "score"
    replaces the raw logit (kept as "logit"); its "scores" by label go under
    "cross_encoder_scores" where the readout has "scores" of its own (a multi-label head's
    sigmoids, which its "labels" are read from)."""
    if "scores" in record and "scores" in cross_encoder:
        cross_encoder = {"cross_encoder_scores": cross_encoder["scores"]}
    return record | cross_encoder


def entity_reader(names: Sequence[str]) -> Callable[[Sequence[str | None]], list[Span]] | None:
    """How a tagger with tag `names` reads one row's tags (None: a word without a tag) as
    entity spans, as entity F1 reads them (`samp_jax.models.bio_tags`): as IO tags, each run
    of one type an entity (`type_runs`), when the names are IO tags (`io_outside`); as BIO,
    BIOES or BILOU tags (`tag_spans`) when they are the tags of one scheme (`scheme_of`); None
    for any other names (see the module).
    A word without a tag is outside every entity."""
    outside = io_outside(names)
    if outside is not None:
        return functools.partial(type_runs, outside=outside)
    try:
        scheme_of(names)
        return lambda tags: tag_spans([OUTSIDE if t is None else t for t in tags])
    except ValueError:  # not the tags of one scheme
        return None


def entities(words: Sequence[str], labels: np.ndarray, word_logits: np.ndarray,
             spans: Sequence[Span], *, text: str | None = None,
             word_spans: Sequence[tuple[int, int]] | None = None) -> list[dict]:
    """One record per span: its type, word indices (`end` exclusive), text and score: the mean
    over its words of the softmax probability of each word's predicted tag (`labels`, ids into
    the last axis of `word_logits` `[words, tags]`). Its text is the words joined by single
    spaces; for words read from `text` at `word_spans` (character spans), the characters
    they cover, `text[char_start:char_end]`, with `char_start` and `char_end` (exclusive), as
    HF's token-classification pipeline gives `start` and `end`."""
    found = []
    if not spans:
        return found
    # each word's probability of its tag, from one softmax over the row; a word without a tag
    # (-1: no sub-token, or NaN or Inf logits, whose softmax is NaN) is in no span
    chosen = np.asarray(labels)
    with np.errstate(invalid="ignore"):
        tag_p = np.exp(log_softmax(word_logits))[np.arange(len(chosen)), np.maximum(chosen, 0)]
    for kind, start, end in spans:
        p = tag_p[start:end]
        entity = {"type": kind, "start": start, "end": end, "text": " ".join(words[start:end])}
        if text is not None:
            first, last = word_spans[start][0], word_spans[end - 1][1]
            entity |= {"text": text[first:last], "char_start": first, "char_end": last}
        found.append(entity | {"score": _number(p.mean())})
    return found


def _tagged(row: dict, names: list[str], labels: np.ndarray, word_logits: np.ndarray,
            spans: Callable[[Sequence[str | None]], list[Span]] | None) -> dict:
    """A tagger's record: the text when the words were read from one, the words, each word's
    tag (None for a word without a sub-token) and, where the tag names can be read as
    entities, the entities (with their characters in the text)."""
    words = row["tokens"]
    tags = [names[i] if i >= 0 else None for i in labels]
    record = {"text": row["text"]} if "word_spans" in row else {}
    record |= {"tokens": list(words), "tags": tags}
    if spans is not None:
        record["entities"] = entities(words, labels, word_logits, spans(tags),
                                      text=record.get("text"), word_spans=row.get("word_spans"))
    return record


def _class(names: list[str], p: np.ndarray, predicted: np.ndarray) -> dict:
    """One class per row: the engine's class, its probability and every class's (`p`, the
    row's softmax)."""
    best = int(predicted)
    return {"label": names[best], "score": _number(p[best]),
            "probabilities": {n: _number(v) for n, v in zip(names, p)}}


def _label_set(names: list[str], p: np.ndarray, predicted: np.ndarray) -> dict:
    """A set of labels per row: the engine's (`Readout.LABELS`), and every label's sigmoid
    (`p`)."""
    return {"labels": [n for n, keep in zip(names, predicted) if keep],
            "scores": {n: _number(v) for n, v in zip(names, p)}}


def _score(names: list[str], logits: np.ndarray, predicted: None) -> dict:
    """One output: its raw score (the logit)."""
    return {"score": _number(logits[0])}


def _cross_encoder(names: list[str], logits: np.ndarray, scores: np.ndarray) -> dict:
    """A CrossEncoder's fields, over the readout's: `CrossEncoder.predict`'s value for the row
    (`scores`), as `"score"` with the raw `"logit"` for one output, else `"scores"` by name."""
    if np.ndim(scores) == 0:
        return {"score": _number(scores), "logit": _number(logits[0])}
    return {"scores": {n: _number(v) for n, v in zip(names, scores)}}


_SEQUENCE_RECORDS = {Readout.CLASSES: (lambda logits: np.exp(log_softmax(logits)), _class),
                     Readout.LABELS: (sigmoid, _label_set),
                     Readout.SCORE: (lambda logits: logits, _score)}
"""A sequence head's record fields, by how its logits are read: what the whole chunk's logits
become (once per chunk), and one row's record from its row of that."""


def _label_names(engine, count: int) -> list[str]:
    """The head's class names, or the class ids as text for a head without names."""
    return list(engine.labels) if engine.labels else [str(i) for i in range(count)]
