"""An engine call's inputs as right-padded token rows, each checked against the largest bucket.

`InputReader.read` takes what `Engine.__call__` accepts: one text, a list of texts, a list of
`(text, text_pair)` pairs (a bare tuple of two texts, one pair or two texts, is refused), or
token ids (a dict with `input_ids` and optional right-padded
`attention_mask` and `token_type_ids`, a 2-D integer array, or a list of lists of ints);
`read_words` takes `Engine.classify_words`' pre-split words. Texts are cut at the limit as
they are tokenized (pairs as the tokenizer does, longest segment first), which marks each row
it cut. A row longer than the limit raises (naming its length), or with
`truncate` is cut; token ids keep their first tokens.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from samp_jax.models.config import EncoderConfig
from samp_jax.models.long_texts import head_at_word_end
from samp_jax.models.model import check_ids
from samp_jax.models.tokenizer import Tokenizer
from samp_jax.serving.forward import INPUT_KEYS

# A segment longer than this is measured by its head when a refusal names a row's length.
MEASURED_CHARS = 1 << 18


@dataclasses.dataclass(frozen=True)
class Rows:
    """Right-padded integer token arrays `[N, width]` with per-row lengths."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray
    truncated: np.ndarray
    word_ids: np.ndarray | None = None


class InputReader:
    """Reads inputs into `Rows` for a model of `config` with `tokenizer`, at most `limit`
    tokens a row (`truncate`: longer rows are cut instead of refused).

    Holds no mutable state: one reader serves many threads at once (`Tokenizer` is
    thread-safe).
    """

    def __init__(self, tokenizer: Tokenizer, config: EncoderConfig, *, limit: int, truncate: bool):
        self.tokenizer = tokenizer
        self.config = config
        self.limit = limit
        self.truncate = truncate

    def read(self, inputs) -> Rows:
        """The rows of one call's `inputs` (see the module docstring).

        Raises:
          TypeError: inputs of an unsupported type.
          ValueError: empty input, mixed kinds of rows, ids outside the vocabulary, a mask
            that is not right padding, or a row longer than `limit` (without `truncate`).
        """
        if isinstance(inputs, str):
            return self._texts([inputs], None)
        if isinstance(inputs, Mapping):
            return self._id_dict(inputs)
        if isinstance(inputs, np.ndarray) and inputs.dtype.kind == "O":
            return self.read(inputs.tolist())  # Python objects: read as the list they make
        if isinstance(inputs, np.ndarray) and inputs.dtype.kind in "US":
            return self.read(_array_rows(inputs))  # texts (or pairs) in a numpy array
        if isinstance(inputs, (np.ndarray, jax.Array)):
            return self._id_dict({"input_ids": inputs})
        if isinstance(inputs, (bytes, bytearray, memoryview)):  # a Sequence of ints, not ids
            raise TypeError(f"inputs are bytes ({bytes(inputs)!r:.60}); expected a str (decode "
                            "the bytes first, e.g. .decode('utf-8')), a list of str, a list of "
                            "(str, str) pairs or token ids")
        if isinstance(inputs, tuple) and is_pair(inputs):
            raise ValueError(f"inputs are a tuple of two texts ({inputs[0]!r:.40}, "
                             f"{inputs[1]!r:.40}), which reads as one (text, text_pair) pair "
                             "(as sentence-transformers' CrossEncoder takes it) or as two texts; "
                             "expected a list: [(text, text_pair)] for one pair, [text, text] "
                             "for two texts")
        if not isinstance(inputs, Sequence):
            raise TypeError(f"inputs must be a str, a list of str, a list of (str, str) pairs or "
                            f"token ids, got {type(inputs).__name__}")
        if len(inputs) == 0:
            raise ValueError("empty input: nothing to run")
        kinds = [_row_kind(row, index) for index, row in enumerate(inputs)]
        if len(set(kinds)) > 1:
            other = next(i for i, kind in enumerate(kinds) if kind != kinds[0])
            raise ValueError(f"inputs mix kinds of rows: row 0 is {kinds[0]}, row {other} is "
                             f"{kinds[other]}; pass one kind per call")
        if kinds[0] == "a text":
            return self._texts(list(inputs), None)
        if kinds[0] == "a (text, text_pair) pair":
            return self._texts([a for a, _ in inputs], [b for _, b in inputs])
        return self._id_lists(inputs)

    def read_words(self, words: Sequence[Sequence[str]]) -> Rows:
        """The rows of pre-split words, with `word_ids` (each token's word, -1 for none).

        Raises:
          TypeError, ValueError: `words` is not a non-empty list of lists of strings, or a row
            is longer than `limit` (without `truncate`).
        """
        if isinstance(words, str) or not isinstance(words, Sequence) or len(words) == 0:
            raise ValueError("words must be a non-empty list of word lists, e.g. [['Hello', 'world']]")
        for index, row in enumerate(words):
            if isinstance(row, str) or not all(isinstance(w, str) for w in row):
                raise TypeError(f"words[{index}] must be a list of strings, got {row!r}")
        with _texts_named(words, lambda row, item: f"words[{row}][{item}]"):
            batch, word_ids = self.tokenizer.encode_words(
                words, truncation=True, max_length=self.limit, return_truncated=True)
        return self._text_rows(batch, word_ids, lambda row: (int(self.tokenizer.lengths(
            [words[row]], words=True)[0]), False))

    def _texts(self, texts: list[str], pairs: list[str] | None) -> Rows:
        with _texts_named([texts] if pairs is None else [texts, pairs],
                          lambda part, row: f"row {row}" if pairs is None else
                          f"row {row}'s {('text', 'text_pair')[part]}"):
            batch = self.tokenizer(texts, pairs, truncation=True, max_length=self.limit,
                                   return_truncated=True)
        return self._text_rows(batch, None, lambda row: self._measure(
            texts[row], None if pairs is None else pairs[row]))

    def _measure(self, text: str, pair: str | None) -> tuple[int, bool]:
        """`(tokens, at_least)` of a row too long: its length, or where a segment is over
        `MEASURED_CHARS` characters, the length of its head (`long_texts.head_at_word_end`,
        whose tokens begin the whole segment's) as a least count, so that naming the length
        of a row of millions of characters does not tokenize it whole."""
        heads = [segment if segment is None or len(segment) <= MEASURED_CHARS
                 else head_at_word_end(segment, MEASURED_CHARS) or segment
                 for segment in (text, pair)]
        tokens = int(self.tokenizer.lengths([heads[0]], None if pair is None else [heads[1]])[0])
        return tokens, (heads[0] is not text) or (heads[1] is not pair)

    def _text_rows(self, batch, word_ids, measure) -> Rows:
        """The tokenized rows, each cut at `limit` by the tokenizer; a cut row is refused
        unless truncating, naming its length before the cut (`measure(row)`: the tokens, and
        whether that is a least count)."""
        truncated = batch.pop("truncated")
        if truncated.any() and not self.truncate:
            row = int(np.flatnonzero(truncated)[0])
            tokens, at_least = measure(row)
            self._refuse(row, tokens, int(truncated.sum()), at_least=at_least)
        return Rows(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                    batch["attention_mask"].sum(axis=1).astype(np.int64), truncated, word_ids)

    def _too_long(self, lengths: np.ndarray) -> np.ndarray:
        """Indices of rows over `limit` (the largest bucket); raises unless truncating."""
        limit = self.limit
        too_long = np.flatnonzero(lengths > limit)
        if too_long.size and not self.truncate:
            row = int(too_long[0])
            self._refuse(row, int(lengths[row]), too_long.size)
        return too_long

    def _refuse(self, row: int, length: int, count: int, *, at_least: bool = False):
        raise ValueError(
            f"row {row} has {'at least ' if at_least else ''}{length} tokens, more than the "
            f"largest bucket {self.limit} "
            f"({count} row(s) too long); pass truncate=True to compile() to cut them, "
            "or compile a larger bucket")

    def _id_lists(self, rows: Sequence[Sequence[int]]) -> Rows:
        lengths = np.array([len(row) for row in rows])
        ids = np.full((len(rows), max(lengths.max(), 1)), self.tokenizer.pad_id, np.int64)
        for index, row in enumerate(rows):
            ids[index, :len(row)] = np.asarray(row, np.int64)
        mask = (np.arange(ids.shape[1])[None] < lengths[:, None]).astype(np.int32)
        return self._id_dict({"input_ids": ids, "attention_mask": mask})

    def _id_dict(self, inputs: Mapping[str, Any]) -> Rows:
        unknown = sorted(set(inputs) - set(INPUT_KEYS))
        if unknown or "input_ids" not in inputs:
            raise ValueError(f"token-id input needs 'input_ids' and takes only {INPUT_KEYS}; "
                             f"got keys {sorted(inputs)}")
        arrays = {}
        for key in INPUT_KEYS:
            if inputs.get(key) is None:
                continue
            value = np.asarray(inputs[key])
            if value.dtype == bool and key == "attention_mask":
                value = value.astype(np.int32)
            if not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"{key} must be integers, got dtype {value.dtype}")
            arrays[key] = value.astype(np.int64)
        ids = arrays["input_ids"]
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {ids.shape}")
        if ids.shape[0] == 0:
            raise ValueError("empty input: input_ids has no rows")
        mask = arrays.get("attention_mask", np.ones_like(ids))
        types = arrays.get("token_type_ids", np.zeros_like(ids))
        for key, value in (("attention_mask", mask), ("token_type_ids", types)):
            if value.shape != ids.shape:
                raise ValueError(f"{key} has shape {value.shape}, expected {ids.shape} like input_ids")
        check_ids(self.config, ids, mask, types)  # 0/1 mask, a real token per row, id ranges
        not_right_padded = np.any(np.diff(mask, axis=1) > 0, axis=1)
        if not_right_padded.any():
            row = int(np.flatnonzero(not_right_padded)[0])
            raise ValueError(f"attention_mask row {row} is not right padding (1s, then 0s): "
                             f"{mask[row].tolist()[:24]}")
        real = mask.astype(bool)
        ids = np.where(real, ids, self.tokenizer.pad_id)  # whatever padded positions held
        types = np.where(real, types, 0)
        lengths = mask.sum(axis=1)
        too_long = self._too_long(lengths)
        limit = self.limit
        if too_long.size:  # truncate: keep the first `limit` tokens
            ids, mask, types = ids[:, :limit], mask[:, :limit], types[:, :limit]
            lengths = mask.sum(axis=1)
        truncated = np.zeros(len(lengths), bool)
        truncated[too_long] = True
        return Rows(ids, mask.astype(np.int32), types, lengths.astype(np.int64), truncated)


@contextlib.contextmanager
def _texts_named(groups: Sequence[Sequence[str]], name):
    """Turns the tokenizers library's TypeError on a text UTF-8 cannot encode (a lone
    surrogate such as '\\ud800') into a ValueError naming the text as `name(group, index)`."""
    try:
        yield
    except TypeError:
        for group, texts in enumerate(groups):
            for index, text in enumerate(texts):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise ValueError(
                        f"{name(group, index)} has a lone surrogate {text[e.start]!r} at character "
                        f"{e.start}, which is not Unicode text; expected a str that UTF-8 can "
                        "encode (was it decoded with errors='surrogateescape' or 'surrogatepass'?)"
                    ) from None
        raise


def is_pair(row) -> bool:
    """Whether `row` is a (text, text_pair) pair: two strings in a tuple or list."""
    return isinstance(row, (tuple, list)) and len(row) == 2 and all(isinstance(x, str) for x in row)


def _row_kind(row, index: int) -> str:
    if isinstance(row, str):
        return "a text"
    if is_pair(row):
        return "a (text, text_pair) pair"
    if isinstance(row, np.ndarray) and row.ndim == 1 and np.issubdtype(row.dtype, np.integer):
        return "token ids"
    if isinstance(row, (tuple, list)) and all(
            isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) for x in row):
        if len(row) == 0:
            raise ValueError(f"row {index} is an empty list of token ids")
        return "token ids"
    raise TypeError(f"row {index} is {row!r:.80}; expected a str, a (str, str) pair or a list of "
                    "int token ids (a tagger's pre-split words go to Engine.classify_words)")


def _array_rows(array: np.ndarray) -> list:
    """The rows of a numpy array of texts: `[N]` texts, or `[N, 2]` (text, text_pair) pairs.

    Raises:
      TypeError: an array of bytes (`dtype` 'S'), or of another shape.
    """
    if array.dtype.kind == "S":
        raise TypeError(f"inputs are a numpy array of bytes (dtype {array.dtype}); expected "
                        "texts (decode them first, e.g. array.astype(str))")
    if array.ndim == 1:
        return array.tolist()
    if array.ndim == 2 and array.shape[1] == 2:
        return [tuple(row) for row in array.tolist()]
    raise TypeError(f"inputs are a numpy array of texts of shape {array.shape}; expected [N] "
                    "texts or [N, 2] (text, text_pair) pairs")
