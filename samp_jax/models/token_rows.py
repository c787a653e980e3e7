"""Token rows as arrays: the tokenizers library's encodings of a batch, made a chunk at a time
into right-padded `[rows, width]` arrays with each row's cut mark (`encode_rows`), and the
backend a tagger's pre-split words are read with (`words_backend`).

`Tokenizer` (`samp_jax.models.tokenizer`) holds the backends and the options; this module
only turns a backend's output into what the model takes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

from samp_jax.core.errors import SampJaxError

# Rows handed to the tokenizers library at once: its `Encoding`s take several KB a row, so a
# file of a million rows is tokenized a chunk at a time into compact arrays.
ENCODE_CHUNK_ROWS = 4096

# The fast classes (without "Fast") that refuse `is_split_into_words` unless loaded with
# `add_prefix_space=True` (transformers 4.57; HF's run_ner.py loads RoBERTa's so): a tagger of
# theirs saw every word after a space. Other classes (ModernBERT's PreTrainedTokenizerFast)
# tokenize each word as they are set.
PREFIXED_WORDS_CLASSES = frozenset({
    "RobertaTokenizer", "GPT2Tokenizer", "BartTokenizer", "LongformerTokenizer",
    "DebertaTokenizer", "BlenderbotTokenizer", "LEDTokenizer", "MvpTokenizer",
    "CodeGenTokenizer", "BloomTokenizer"})


def is_panic(error: BaseException) -> bool:
    """Whether `error` is a Rust panic of the tokenizers library: pyo3's `PanicException`,
    which derives from BaseException (an `except Exception` misses it) and has no class to
    import. A regex of `tokenizer.json` that gives up on a text (Oniguruma's retry limit)
    panics so."""
    return type(error).__name__ == "PanicException"


class TokenizerFailure(SampJaxError, ValueError):
    """The tokenizers library failed (panicked) on an input: `source` names the tokenizer,
    `index` the input (its position in the call, None when not known), `message` the panic's
    first line. A caller that knows where the input came from names it (`at`)."""

    def __init__(self, source: str, message: str, index: int | None = None,
                 where: str | None = None):
        self.source, self.message, self.index = source, message, index
        where = where or (None if index is None else f"inputs[{index}]")
        super().__init__(f"{source}: the tokenizers library failed"
                         f"{'' if where is None else f' on {where}'}: {message}")

    def at(self, where: str) -> "TokenizerFailure":
        """The same failure, its input named as `where` (e.g. a data file's row)."""
        return TokenizerFailure(self.source, self.message, self.index, where)


def panic_error(error: BaseException, source: str, row: int | None = None) -> TokenizerFailure:
    """The `TokenizerFailure` naming `source` (the tokenizer, e.g. "tokenizer.json of
    FOLDER"), the input's index when known and the panic's message (its first line)."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else "a panic"
    return TokenizerFailure(source, message, row)


def encode_batch(backend, inputs: Sequence, *, pretokenized: bool, source: str,
                 first_row: int = 0) -> list:
    """`backend.encode_batch(inputs)`, with a panic of the tokenizers library raised as a
    ValueError (`panic_error`) naming `source` and the row (`first_row` + its index in
    `inputs`): the rows are then encoded one at a time, up to the first that panics, to find it
    (only after a panic; the library prints each panic to stderr)."""
    try:
        return backend.encode_batch(inputs, is_pretokenized=pretokenized)
    except BaseException as e:
        if not is_panic(e):
            raise
        failed = e
    for i, row in enumerate(inputs):
        try:
            backend.encode_batch([row], is_pretokenized=pretokenized)
        except BaseException as e:
            if not is_panic(e):
                raise
            raise panic_error(e, source, first_row + i) from None
    raise panic_error(failed, source) from None  # no single row panics again


def encode_rows(backend, inputs: Sequence, *, pretokenized: bool, limit: int, truncating: bool,
                width: int | None, pad_id: int, limit_named: str,
                source: str = "the tokenizer",
                ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """`(batch, word_ids, truncated)`: `inputs` encoded by `backend`, `ENCODE_CHUNK_ROWS` at a
    time, padded to `width` (None: the longest row) with `pad_id`; `word_ids` holds each
    position's word (-1 for none) and `truncated` marks a row the backend cut (its
    `Encoding.overflowing`).

    Raises:
      ValueError: the tokenizers library panics on a row (`encode_batch`; `source` names the
        tokenizer), or a row longer than `limit` tokens (`limit_named` names the setting, e.g.
        "max_length=16"): the backend does not truncate (`truncating` False), or it could not
        cut the row to `limit` (its special tokens alone take more).
    """
    chunks, too_long = [], []
    for start in range(0, len(inputs), ENCODE_CHUNK_ROWS):
        encodings = encode_batch(backend, inputs[start:start + ENCODE_CHUNK_ROWS],
                                 pretokenized=pretokenized, source=source, first_row=start)
        too_long += [(start + i, len(e.ids)) for i, e in enumerate(encodings)
                     if len(e.ids) > limit]
        if not too_long:  # past the first refused row, only count the others
            chunks.append(_EncodedChunk.of(encodings, pad_id))
    if too_long:
        i, n = too_long[0]
        advice = (f"{limit_named} is below the special tokens a row needs" if truncating else
                  "pass truncation=True or use a larger length")
        raise ValueError(f"{len(too_long)} row(s) exceed {limit} tokens (first: row {i} with "
                         f"{n}); {advice}")
    width = max(c.input_ids.shape[1] for c in chunks) if width is None else width
    joined = {name: np.concatenate([c.padded(name, width) for c in chunks]) if len(chunks) > 1
              else chunks[0].padded(name, width)
              for name in ("input_ids", "token_type_ids", "word_ids")}
    lengths = np.concatenate([c.lengths for c in chunks])
    attention_mask = (np.arange(width)[None] < lengths[:, None]).astype(np.int32)
    return ({"input_ids": joined["input_ids"], "attention_mask": attention_mask,
             "token_type_ids": joined["token_type_ids"]}, joined["word_ids"],
            np.concatenate([c.truncated for c in chunks]))


@dataclasses.dataclass(frozen=True)
class _EncodedChunk:
    """One chunk of rows as `[rows, longest row]` arrays, each row's `lengths` and whether it
    was `truncated` (`Encoding.overflowing`); padding holds `pad_id`, type 0 and word -1."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    word_ids: np.ndarray
    lengths: np.ndarray
    truncated: np.ndarray
    pad_id: int

    @classmethod
    def of(cls, encodings, pad_id: int) -> "_EncodedChunk":
        lengths = np.array([len(e.ids) for e in encodings], np.int64)
        width = int(lengths.max())
        ids = np.full((len(encodings), width), pad_id, np.int32)
        types = np.zeros((len(encodings), width), np.int32)
        words = np.full((len(encodings), width), -1, np.int32)
        for row, (enc, n) in enumerate(zip(encodings, lengths)):
            ids[row, :n] = enc.ids
            types[row, :n] = enc.type_ids
            words[row, :n] = [-1 if w is None else w for w in enc.word_ids]
        truncated = np.array([bool(e.overflowing) for e in encodings], bool)
        return cls(ids, types, words, lengths, truncated, pad_id)

    def padded(self, name: str, width: int) -> np.ndarray:
        """The array `name` padded on the right to `width` columns."""
        value = getattr(self, name)
        if value.shape[1] == width:  # the common case of one chunk: nothing to pad
            return value
        fill = {"input_ids": self.pad_id, "token_type_ids": 0, "word_ids": -1}[name]
        return np.pad(value, ((0, 0), (0, width - value.shape[1])), constant_values=fill)


def words_backend(backend, prefix_space: bool):
    """The backend for pre-split words. With `prefix_space` (a class in
    `PREFIXED_WORDS_CLASSES`), as HF's class loaded with `add_prefix_space=True` (which it
    requires for `is_split_into_words`) has it: a byte-level pre-tokenizer reads every word as
    following a space; otherwise each word would be encoded as if it began the text. As the
    class's own rule, only a pre-tokenizer with the field is changed (one inside a `Sequence`
    is kept). Otherwise, or for other tokenizers, `backend` as it is."""
    if not prefix_space:
        return backend
    spec = json.loads(backend.to_str())
    pre = spec.get("pre_tokenizer")
    if not isinstance(pre, dict) or pre.get("add_prefix_space") is not False:
        return backend
    pre["add_prefix_space"] = True
    words = HFTokenizer.from_str(json.dumps(spec))
    words.no_padding()
    words.no_truncation()
    return words
