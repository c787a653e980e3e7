"""Reads a SentencePiece model file (`spm.model`, `sentencepiece.bpe.model`) without the
`sentencepiece` or `protobuf` libraries.

The file is a serialized protobuf `ModelProto` (sentencepiece's `sentencepiece_model.proto`).
`read_sentencepiece_model` decodes its wire format and keeps exactly the fields HF's
`SpmConverter` and this library's checks use (`SentencePieceModel`); every other field is
skipped, its framing checked. The reader is strict, and names the file in every error:

- the framing: a varint longer than 10 bytes or cut off by the end of its message, a length
  that runs past it, a field number 0, a group (wire types 3 and 4) or an undefined wire type;
- the fields it keeps: a wire type other than the field's, a singular field given twice (which
  sentencepiece never writes), a string that is not UTF-8, an `int32` out of range, a bool
  other than 0 or 1, an enum value the proto does not define (a piece type, a model type);
- the model as sentencepiece loads it: no pieces, an empty or repeated piece, a score that is
  not finite, no unknown piece or two;
- a `precompiled_charsmap` the `tokenizers` library would fail on: one it cannot parse (a trie
  size past the end, strings that are not UTF-8), or whose trie (sentencepiece's double array)
  leads out of the array or to a string outside the strings, where the library's normalizer
  would panic on some text (`_check_charsmap` walks every path of the trie).

Field numbers and defaults are the proto's (`sentencepiece_model.proto`, sentencepiece 0.2).
"""

from __future__ import annotations

import dataclasses
import math
import struct
from pathlib import Path
from typing import Iterator

import numpy as np

# ModelProto.SentencePiece.Type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
PIECE_TYPES = {NORMAL: "NORMAL", UNKNOWN: "UNKNOWN", CONTROL: "CONTROL",
               USER_DEFINED: "USER_DEFINED", UNUSED: "UNUSED", BYTE: "BYTE"}
# TrainerSpec.ModelType
UNIGRAM, BPE, WORD, CHAR = 1, 2, 3, 4
MODEL_TYPES = {UNIGRAM: "UNIGRAM", BPE: "BPE", WORD: "WORD", CHAR: "CHAR"}

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10


@dataclasses.dataclass(frozen=True)
class Piece:
    """One `ModelProto.SentencePiece`: its text, log-probability score and `PIECE_TYPES` type."""

    piece: str
    score: float
    type: int


@dataclasses.dataclass(frozen=True)
class SentencePieceModel:
    """The fields of a `ModelProto` that HF's converters and samp-jax's checks read.

    Attributes:
      pieces: the vocabulary; a piece's id is its index.
      model_type: `TrainerSpec.model_type` (`UNIGRAM`, `BPE`, `WORD`, `CHAR`).
      unk_id: `TrainerSpec.unk_id`.
      unk_piece: `TrainerSpec.unk_piece`.
      byte_fallback: `TrainerSpec.byte_fallback` (unknown characters as byte pieces).
      treat_whitespace_as_suffix: `TrainerSpec.treat_whitespace_as_suffix`.
      normalizer: `NormalizerSpec.name` (`nmt_nfkc`, `identity`, ...).
      precompiled_charsmap: `NormalizerSpec.precompiled_charsmap` (empty: no normalization).
      add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces: `NormalizerSpec`'s.
    """

    pieces: tuple[Piece, ...]
    model_type: int = UNIGRAM
    unk_id: int = 0
    unk_piece: str = "<unk>"
    byte_fallback: bool = False
    treat_whitespace_as_suffix: bool = False
    normalizer: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


# message -> {field number: (name, kind)}; kinds: string, bytes, float, int32, bool,
# enum:<values>, message:<name>, repeated:<message name>.
_SCHEMAS = {
    "ModelProto": {1: ("pieces", "repeated:SentencePiece"), 2: ("trainer_spec", "message:TrainerSpec"),
                   3: ("normalizer_spec", "message:NormalizerSpec")},
    "SentencePiece": {1: ("piece", "string"), 2: ("score", "float"), 3: ("type", "enum:piece")},
    "TrainerSpec": {3: ("model_type", "enum:model"), 40: ("unk_id", "int32"),
                    45: ("unk_piece", "string"), 35: ("byte_fallback", "bool"),
                    24: ("treat_whitespace_as_suffix", "bool")},
    "NormalizerSpec": {1: ("name", "string"), 2: ("precompiled_charsmap", "bytes"),
                       3: ("add_dummy_prefix", "bool"), 4: ("remove_extra_whitespaces", "bool"),
                       5: ("escape_whitespaces", "bool")},
}
_ENUMS = {"piece": PIECE_TYPES, "model": MODEL_TYPES}
_WIRE = {"string": LENGTH, "bytes": LENGTH, "float": FIXED32, "int32": VARINT, "bool": VARINT}


class _Reader:
    """Decodes messages of `_SCHEMAS` from `data`, naming `file` in errors."""

    def __init__(self, data: bytes, file: Path):
        self.data, self.file = data, file

    def fail(self, what: str, at: int) -> ValueError:
        return ValueError(f"{self.file} is not a valid SentencePiece model: {what} (byte {at} of "
                          f"{len(self.data)}); expected the ModelProto sentencepiece writes, "
                          "e.g. the spm.model a slow tokenizer saves")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        value = 0
        for index in range(_MAX_VARINT_BYTES):
            if pos + index >= end:
                raise self.fail("a varint runs past the end of its message (truncated?)", pos)
            byte = self.data[pos + index]
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                return value, pos + index + 1
        raise self.fail(f"a varint longer than {_MAX_VARINT_BYTES} bytes", pos)

    def fields(self, start: int, end: int, message: str) -> Iterator[tuple[int, int, object, int]]:
        """(field number, wire type, value, offset) of each field in data[start:end]: an int
        (varint), bytes (fixed), or the (start, end) of a length-delimited payload."""
        pos = start
        while pos < end:
            at = pos
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0 or key >= 1 << 32:
                raise self.fail(f"{message} has a field number {number}", at)
            if wire == VARINT:
                value, pos = self.varint(pos, end)
            elif wire in (FIXED64, FIXED32):
                size = 8 if wire == FIXED64 else 4
                if pos + size > end:
                    raise self.fail(f"{message} field {number}: {size} fixed bytes run past the "
                                    "end of the message (truncated?)", at)
                value, pos = self.data[pos:pos + size], pos + size
            elif wire == LENGTH:
                length, pos = self.varint(pos, end)
                if pos + length > end:
                    raise self.fail(f"{message} field {number}: a length of {length} bytes runs "
                                    f"{pos + length - end} bytes past the end of the message "
                                    "(truncated?)", at)
                value, pos = (pos, pos + length), pos + length
            else:
                kind = "a group" if wire in (3, 4) else "an undefined wire type"
                raise self.fail(f"{message} field {number} has wire type {wire} ({kind})", at)
            yield number, wire, value, at

    def message(self, start: int, end: int, name: str) -> dict:
        """The known fields of message `name` in data[start:end], by field name."""
        schema, found = _SCHEMAS[name], {}
        for number, wire, value, at in self.fields(start, end, name):
            if number not in schema:
                continue  # a field the converters never read: its framing is checked above
            field, kind = schema[number]
            label = f"{name}.{field} (field {number})"
            expected = LENGTH if kind.startswith(("message:", "repeated:")) else _WIRE.get(kind, VARINT)
            if wire != expected:
                raise self.fail(f"{label} has wire type {wire}; expected {expected}", at)
            if kind.startswith("repeated:"):
                found.setdefault(field, []).append(self.message(*value, kind.split(":")[1]))
                continue
            if field in found:
                raise self.fail(f"{label} is given twice; expected it once", at)
            found[field] = self.scalar(kind, value, label, at)
        return found

    def scalar(self, kind: str, value, label: str, at: int):
        if kind.startswith("message:"):
            return self.message(*value, kind.split(":")[1])
        if kind in ("string", "bytes"):
            raw = self.data[value[0]:value[1]]
            if kind == "bytes":
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise self.fail(f"{label} is not UTF-8 ({e.reason} at byte {e.start} of the "
                                "string)", at) from None
        if kind == "float":
            return struct.unpack("<f", value)[0]
        if kind == "bool":
            if value not in (0, 1):
                raise self.fail(f"{label} is {value}; expected a bool, 0 or 1", at)
            return bool(value)
        signed = value - (1 << 64) if value >= 1 << 63 else value
        if not -(1 << 31) <= signed < 1 << 31:
            raise self.fail(f"{label} is {value}, outside int32", at)
        if kind.startswith("enum:"):
            names = _ENUMS[kind.split(":")[1]]
            if signed not in names:
                known = ", ".join(f"{n} {v}" for v, n in names.items())
                raise self.fail(f"{label} is {signed}, which the proto does not define; "
                                f"expected one of {known}", at)
        return signed


def read_sentencepiece_model(data: bytes, file: str | Path) -> SentencePieceModel:
    """The `SentencePieceModel` serialized in `data`, the content of `file` (named in errors).

    Raises:
      ValueError: the bytes are not a `ModelProto`, or not a model sentencepiece would load
        (see the module docstring).
    """
    file = Path(file)
    reader = _Reader(bytes(data), file)
    proto = reader.message(0, len(reader.data), "ModelProto")
    pieces = tuple(Piece(p.get("piece", ""), p.get("score", 0.0), p.get("type", NORMAL))
                   for p in proto.get("pieces", []))
    _check_pieces(pieces, file)
    trainer, normalizer = proto.get("trainer_spec", {}), proto.get("normalizer_spec", {})
    if normalizer.get("precompiled_charsmap"):
        _check_charsmap(normalizer["precompiled_charsmap"], file)
    return SentencePieceModel(
        pieces=pieces, **trainer,
        **{"normalizer" if key == "name" else key: value for key, value in normalizer.items()})


def _check_pieces(pieces: tuple[Piece, ...], file: Path) -> None:
    """What sentencepiece checks when it loads a model, and finite scores."""
    if not pieces:
        raise ValueError(f"{file} holds no pieces; expected a SentencePiece model's vocabulary")
    seen: dict[str, int] = {}
    for index, piece in enumerate(pieces):
        if not piece.piece:
            raise ValueError(f"{file}: piece {index} is empty; expected a non-empty piece")
        if piece.piece in seen:
            raise ValueError(f"{file} has the piece {piece.piece!r} twice (ids {seen[piece.piece]} "
                             f"and {index}); expected each piece once")
        if not math.isfinite(piece.score):
            raise ValueError(f"{file}: piece {index} ({piece.piece!r}) has score {piece.score}; "
                             "expected a finite log-probability")
        seen[piece.piece] = index
    unknown = [index for index, piece in enumerate(pieces) if piece.type == UNKNOWN]
    if len(unknown) != 1:
        ids = f" (ids {unknown})" if unknown else ""
        raise ValueError(f"{file} has {len(unknown)} pieces of type UNKNOWN{ids}; expected exactly "
                         "one, the unknown token")


def _check_charsmap(charsmap: bytes, file: Path) -> None:
    """Refuses a charsmap that `tokenizers`' `Precompiled` normalizer cannot parse or would panic
    on. The charsmap is a u32 byte size, the trie (a double array of u32 units, as
    `spm_precompiled` reads it), then NUL-terminated UTF-8 strings that the trie's leaves point
    into. From every node the trie reaches, the next byte of a text (1-255) selects a unit, so
    each reachable node's 256 units must lie in the array (sentencepiece's arrays are whole
    blocks of 256), and so must each child node; a leaf's value must start a string."""
    def fail(what: str) -> ValueError:
        return ValueError(f"{file}: its precompiled_charsmap ({len(charsmap)} bytes) {what}; "
                          "expected the charsmap sentencepiece compiles")

    if len(charsmap) < 4:
        raise fail("is shorter than the 4 bytes of its trie size")
    size = int.from_bytes(charsmap[:4], "little") // 4
    if size == 0 or 4 + 4 * size > len(charsmap):
        state = "is empty" if size == 0 else "runs past its end"
        raise fail(f"states a trie of {size} units, which {state}")
    units = np.frombuffer(charsmap, "<u4", count=size, offset=4).astype(np.int64)
    strings = charsmap[4 + 4 * size:]
    try:
        strings.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"holds strings that are not UTF-8 ({e.reason} at byte {e.start} of them)") from None
    offsets = (units >> 10) << ((units & (1 << 9)) >> 6)
    labels, leaves, values = units & ((1 << 31) | 0xFF), (units >> 8) & 1, units & ((1 << 31) - 1)
    string_bytes, text_bytes = np.frombuffer(strings, np.uint8), np.arange(1, 256)
    nodes, seen = np.array([offsets[0]]), np.zeros(size, bool)
    while nodes.size:
        if (nodes | 0xFF).max() >= size:  # a text's next byte b reads the unit node ^ b
            raise fail(f"has a trie node at unit {int(nodes.max())}, whose children lie past "
                       f"the {size} units of the trie")
        children = nodes[:, None] ^ text_bytes[None, :]
        children = children[labels[children] == text_bytes[None, :]]
        nodes = children ^ offsets[children]
        if nodes.size and nodes.max() >= size:
            raise fail(f"has a trie path to unit {int(nodes.max())}, past the {size} units of the trie")
        starts = values[nodes[leaves[children] == 1]]
        if starts.size and starts.max() > len(strings):
            raise fail(f"has a trie leaf pointing to byte {int(starts.max())} of its "
                       f"{len(strings)} bytes of strings")
        inside = starts[starts < len(strings)]
        inside = inside[(string_bytes[inside] >= 0x80) & (string_bytes[inside] < 0xC0)]
        if inside.size:
            raise fail(f"has a trie leaf pointing inside a character (byte {int(inside[0])} of "
                       "its strings)")
        nodes = np.unique(nodes[~seen[nodes]])
        seen[nodes] = True
