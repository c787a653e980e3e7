"""SentencePiece models (`spm.model`, `sentencepiece.bpe.model`) read without sentencepiece or
protobuf: the committed models decode to the fields sentencepiece wrote, malformed protobuf and
models HF's converters would not convert exactly are refused naming the file, and a folder
with only a SentencePiece model loads, saves and carries its model along. (That the converted
tokenizers are HF's: `test_slow_tokenizer.py`, the deberta-v2 and xlm-roberta cases.)"""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

import samp_jax
from samp_jax import PrecisionMap, Tokenizer, quantize
from samp_jax.models.checkpoint import save_pretrained
from samp_jax.models.sentencepiece_model import (
    BPE,
    CONTROL,
    NORMAL,
    UNIGRAM,
    UNKNOWN,
    USER_DEFINED,
    Piece,
    read_sentencepiece_model,
)
from tests.samp_jax.models.slow_cases import FAMILIES, HOSTILE, sentencepiece_model, write_case

FILE = "/models/x/spm.model"


# ------------------------------------------------------------------ a protobuf writer
def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32s as 10-byte two's complement, as protobuf writes
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def length(number: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return key(number, 2) + varint(len(payload)) + payload


def number(field: int, value: int) -> bytes:
    return key(field, 0) + varint(value)


def piece(text: str, score: float = -1.0, kind: int = NORMAL) -> bytes:
    return length(1, length(1, text) + key(2, 5) + struct.pack("<f", score) + number(3, kind))


DEBERTA_PIECES = (piece("[PAD]", 0.0, CONTROL) + piece("[CLS]", 0.0, CONTROL)
                  + piece("[SEP]", 0.0, CONTROL) + piece("[UNK]", 0.0, UNKNOWN)
                  + b"".join(piece(p, score) for p, score in [
                      ("\u2581", -1.0), ("a", -2.0), ("b", -3.0), ("\u2581a", -2.5), ("ab", -3.5),
                      ("\u2581ab", -1.5)]))
DEBERTA_TRAINER = number(3, UNIGRAM) + number(40, 3) + length(45, "[UNK]")


def model(pieces: bytes = DEBERTA_PIECES, trainer: bytes = DEBERTA_TRAINER,
          normalizer: bytes = length(1, "identity")) -> bytes:
    return pieces + length(2, trainer) + length(3, normalizer)


def test_the_writer_s_model_reads_back_and_tokenizes(tmp_path):
    spm = read_sentencepiece_model(model(), FILE)
    assert spm.pieces[3] == Piece("[UNK]", 0.0, UNKNOWN) and spm.pieces[7] == Piece("\u2581a", -2.5, NORMAL)
    assert (spm.model_type, spm.unk_id, spm.unk_piece) == (UNIGRAM, 3, "[UNK]")
    folder = _deberta_folder(tmp_path, model())
    tokenizer = Tokenizer.from_pretrained(folder, max_length=16)
    assert tokenizer(["ab ab", "a b"])["input_ids"].tolist() == [[1, 9, 9, 2, 0], [1, 7, 4, 6, 2]]
    assert tokenizer._backend.id_to_token(10) == "[MASK]"  # appended after the pieces, as HF does


# ------------------------------------------------------------------ the committed models
def test_the_committed_models_decode_to_what_sentencepiece_wrote():
    deberta = read_sentencepiece_model(sentencepiece_model("deberta-v2"), "deberta-v2.model")
    assert len(deberta.pieces) == 180 and deberta.model_type == UNIGRAM
    assert [p.piece for p in deberta.pieces[:4]] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
    assert [p.type for p in deberta.pieces[:5]] == [CONTROL, CONTROL, CONTROL, UNKNOWN, NORMAL]
    assert deberta.pieces[4] == Piece("\u2581", struct.unpack("<f", struct.pack("<f", -2.40915))[0], NORMAL)
    assert deberta.unk_id == 3
    assert deberta.normalizer == "nmt_nfkc" and len(deberta.precompiled_charsmap) > 200_000
    assert deberta.add_dummy_prefix and deberta.remove_extra_whitespaces and not deberta.byte_fallback
    xlmr = read_sentencepiece_model(sentencepiece_model("xlm-roberta"), "xlm-roberta.model")
    assert [p.piece for p in xlmr.pieces[:3]] == ["<unk>", "<s>", "</s>"] and len(xlmr.pieces) == 198
    assert xlmr.unk_id == 0
    bpe = read_sentencepiece_model(sentencepiece_model("deberta-v2-bpe"), "deberta-v2-bpe.model")
    assert bpe.model_type == BPE and bpe.normalizer == "identity" and bpe.precompiled_charsmap == b""
    assert [(p.piece, p.type) for p in bpe.pieces[4:6]] == [("[E2]", CONTROL), ("[E1]", USER_DEFINED)]


def test_every_truncation_is_read_or_refused_naming_the_file():
    data = sentencepiece_model("xlm-roberta-bpe")
    refused = 0
    for end in range(len(data)):
        try:
            read_sentencepiece_model(data[:end], FILE)
        except ValueError as e:
            assert str(e).startswith(FILE), str(e)
            refused += 1
    assert refused > len(data) * 0.9  # a cut between two pieces leaves a valid, shorter model


# ------------------------------------------------------------------ malformed protobuf
MALFORMED = [
    (b"\x0a\x80", r"a varint runs past the end of its message \(truncated\?\) \(byte 1 of 2\)"),
    (b"\x08" + b"\xff" * 11, r"a varint longer than 10 bytes"),
    (number(1, 5) + model(), r"ModelProto.pieces \(field 1\) has wire type 0; expected 2"),
    (model(trainer=key(40, 5) + b"\0\0\0\0"),
     r"TrainerSpec.unk_id \(field 40\) has wire type 5; expected 0"),
    (model() + key(3, 2) + varint(50) + b"\x0a", r"ModelProto field 3: a length of 50 bytes runs "
                                                  r"49 bytes past the end of the message"),
    (model(pieces=length(1, length(1, "a") + key(2, 5) + b"\0\0")),
     r"SentencePiece field 2: 4 fixed bytes run past the end of the message"),
    (model() + key(9, 3), r"ModelProto field 9 has wire type 3 \(a group\)"),
    (model() + key(9, 7), r"ModelProto field 9 has wire type 7 \(an undefined wire type\)"),
    (b"\x00" + model(), r"ModelProto has a field number 0"),
    (model() + length(2, DEBERTA_TRAINER), r"ModelProto.trainer_spec \(field 2\) is given twice"),
    (model(pieces=DEBERTA_PIECES + length(1, length(1, b"\xff\xfe"))),
     r"SentencePiece.piece \(field 1\) is not UTF-8"),
    (model(trainer=DEBERTA_TRAINER + number(35, 2)), r"TrainerSpec.byte_fallback \(field 35\) is 2; "
                                                     r"expected a bool, 0 or 1"),
    (model(trainer=DEBERTA_TRAINER.replace(number(40, 3), number(40, 1 << 40))),
     r"TrainerSpec.unk_id \(field 40\) is 1099511627776, outside int32"),
    (model(pieces=DEBERTA_PIECES + piece("c", -9.0, 7)),
     r"SentencePiece.type \(field 3\) is 7, which the proto does not define; expected one of "
     r"NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6"),
    (model(trainer=number(3, 9)), r"TrainerSpec.model_type \(field 3\) is 9, which the proto does not "
                                  r"define; expected one of UNIGRAM 1, BPE 2, WORD 3, CHAR 4"),
    (model(pieces=b""), r"holds no pieces"),
    (model(pieces=DEBERTA_PIECES + length(1, number(3, NORMAL))), r"piece 10 is empty"),
    (model(pieces=DEBERTA_PIECES + piece("ab")), r"has the piece 'ab' twice \(ids 8 and 10\)"),
    (model(pieces=DEBERTA_PIECES + piece("c", float("nan"))), r"piece 10 \('c'\) has score nan"),
    (model(pieces=DEBERTA_PIECES.replace(b"\x18\x02", b"\x18\x03")),
     r"has 0 pieces of type UNKNOWN; expected exactly one"),
    (model(pieces=DEBERTA_PIECES + piece("<unk>", 0.0, UNKNOWN)),
     r"has 2 pieces of type UNKNOWN \(ids \[3, 10\]\)"),
]


# ------------------------------------------------------------------ precompiled charsmaps
def charsmap(units: dict[int, int], size: int = 256, strings: bytes = b"\xc3\xa9\0") -> bytes:
    """A precompiled charsmap: a trie of `size` u32 units (zero but `units`), then `strings`."""
    trie = [units.get(index, 0) for index in range(size)]
    return struct.pack(f"<I{size}I", 4 * size, *trie) + strings


# "a" -> the string at byte `value`: unit 97 holds label 97, a leaf, and an offset of 1024 to
# the node at unit 97 ^ 1024, whose unit holds the value
def maps_a(value: int, size: int = 1280) -> bytes:
    return charsmap({97: 97 | 1 << 8 | 1024 << 10, 97 ^ 1024: value}, size)


def test_a_charsmap_is_read_as_the_tokenizers_library_reads_it():
    from tokenizers import normalizers
    assert normalizers.Precompiled(maps_a(0)).normalize_str("cab") == "c\u00e9b"
    spm = read_sentencepiece_model(model(normalizer=length(2, maps_a(0))), FILE)
    assert spm.precompiled_charsmap == maps_a(0)


CHARSMAPS = [
    (b"\x08\0", r"is shorter than the 4 bytes of its trie size"),
    (b"\0\0\0\0", r"states a trie of 0 units, which is empty"),
    (b"\x08\0\0\0\x01\x02", r"states a trie of 2 units, which runs past its end"),
    (charsmap({}, strings=b"\xff\0"), r"holds strings that are not UTF-8"),
    (charsmap({}, size=1), r"has a trie node at unit 0, whose children lie past the 1 units"),
    (maps_a(0, size=1024), r"has a trie path to unit 1121, past the 1024 units of the trie"),
    (maps_a(9), r"has a trie leaf pointing to byte 9 of its 3 bytes of strings"),
    (maps_a(1), r"has a trie leaf pointing inside a character \(byte 1 of its strings\)"),
]


@pytest.mark.parametrize("data, message", CHARSMAPS)
def test_a_charsmap_the_tokenizers_library_would_fail_on_is_refused(data, message):
    with pytest.raises(ValueError, match=r"^/models/x/spm.model: its precompiled_charsmap \(\d+ "
                                         r"bytes\) " + message):
        read_sentencepiece_model(model(normalizer=length(2, data)), FILE)


@pytest.mark.parametrize("data, message", MALFORMED)
def test_malformed_protobuf_is_refused_naming_the_file(data, message):
    with pytest.raises(ValueError, match=message):
        read_sentencepiece_model(data, FILE)
    with pytest.raises(ValueError, match="^/models/x/spm.model[ :]"):
        read_sentencepiece_model(data, FILE)


def test_unknown_fields_are_skipped():
    extra = (length(99, b"anything") + number(7, 3) + key(8, 1) + b"\0" * 8)  # kept by protobuf
    spm = read_sentencepiece_model(model(trainer=DEBERTA_TRAINER + extra) + extra, FILE)
    assert spm == read_sentencepiece_model(model(), FILE)


# ------------------------------------------------------------------ what the converters refuse
def _deberta_folder(tmp_path, data: bytes, config: dict | None = None, name: str = "spm.model"):
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    model_type = "deberta-v2" if name == "spm.model" else "xlm-roberta"
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


XLMR_PIECES = (piece("<unk>", 0.0, UNKNOWN) + piece("<s>", 0.0, CONTROL) + piece("</s>", 0.0, CONTROL)
               + piece("\u2581", -1.0) + piece("a", -2.0))
XLMR_TRAINER = number(3, UNIGRAM)

CONVERTER_REFUSALS = [
    (model(trainer=number(3, 3)), None, r"spm.model is a SentencePiece WORD model; HF's "
                                        r"DebertaV2Converter converts UNIGRAM and BPE models only"),
    (model(trainer=number(3, 4) + number(40, 3) + length(45, "[UNK]")), None,
     r"is a SentencePiece CHAR model"),
    (model(trainer=DEBERTA_TRAINER + number(35, 1)), None,
     r"spm.model sets byte_fallback to True, which HF's DebertaV2Converter ignores \(it has no "
     r"byte fallback, and gives the unknown token where the model gives byte pieces\)"),
    (model(normalizer=number(3, 0)), None,
     r"sets add_dummy_prefix to False, which HF's DebertaV2Converter ignores \(it assumes True\): "
     r"its tokenizer would not split text as the SentencePiece model"),
    (model(normalizer=number(4, 0)), None, r"sets remove_extra_whitespaces to False"),
    (model(normalizer=number(5, 0)), None, r"sets escape_whitespaces to False"),
    (model(trainer=DEBERTA_TRAINER + number(24, 1)), None, r"sets treat_whitespace_as_suffix to True"),
    (model(trainer=number(3, UNIGRAM)), None,
     r"its trainer_spec names the unknown token '<unk>' with id 0, but its UNKNOWN piece is "
     r"'\[UNK\]', id 3; expected the two to agree"),
    (model(), {"cls_token": "[SEP]"}, r"model: the tokenizer's cls_token is '\[SEP\]', but HF's "
                                      r"DebertaV2Converter puts '\[CLS\]' around every text"),
    (model(pieces=DEBERTA_PIECES.replace(b"[CLS]", b"[CLZ]")), None,
     r"special token '\[CLS\]' is not in .*spm.model; expected the vocabulary"),
    (model(), {"pad_token": "<pad>"}, r"special token '<pad>' is not in .*spm.model"),
]


@pytest.mark.parametrize("data, config, message", CONVERTER_REFUSALS)
def test_models_the_converter_would_not_convert_exactly_are_refused(data, config, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        Tokenizer.from_pretrained(_deberta_folder(tmp_path, data, config), max_length=16)


@pytest.mark.parametrize("pieces, unk, message", [
    (piece("x", -1.0) + XLMR_PIECES, 1, r"sentencepiece.bpe.model starts with the pieces "
                                        r"\[\('x', 1\), \('<unk>', 2\), \('<s>', 3\)\]; "
                                        r"XLMRobertaConverter replaces the first three pieces"),
    (XLMR_PIECES + piece("<pad>", 0.0, CONTROL), 0, r"has the piece '<pad>' after its first three; "
                                                    r"XLMRobertaConverter gives it its own fairseq id"),
])
def test_xlm_roberta_models_need_its_fairseq_layout(pieces, unk, message, tmp_path):
    data = model(pieces, XLMR_TRAINER + number(40, unk), b"")
    folder = _deberta_folder(tmp_path, data, name="sentencepiece.bpe.model")
    with pytest.raises(ValueError, match=message):
        Tokenizer.from_pretrained(folder, max_length=16)


def test_a_class_s_model_file_missing_is_named(tmp_path):
    folder = write_case("xlm-roberta/shipped", tmp_path / "xlmr")
    (folder / "sentencepiece.bpe.model").rename(folder / "spm.model")
    with pytest.raises(FileNotFoundError, match=r"sentencepiece.bpe.model is missing: "
                                                r"XLMRobertaTokenizer reads sentencepiece.bpe.model"):
        Tokenizer.from_pretrained(folder)


# ------------------------------------------------------------------ folders
def test_a_deberta_folder_with_spm_model_loads_saves_and_serves_as_the_shipped_one(tmp_path):
    shipped = FAMILIES / "deberta-v2" / "seqcls"
    folder = tmp_path / "slow"
    shutil.copytree(shipped, folder, ignore=shutil.ignore_patterns("tokenizer.json"))
    (folder / "spm.model").write_bytes(sentencepiece_model("deberta-v2"))
    model, reference = samp_jax.load(folder), samp_jax.load(shipped)
    texts = HOSTILE[1:8]
    batch = model.tokenizer(texts, truncation=True)
    for key, value in reference.tokenizer(texts, truncation=True).items():
        np.testing.assert_array_equal(batch[key], value)
    np.testing.assert_array_equal(np.asarray(model(**batch)), np.asarray(reference(**batch)))
    saved = save_pretrained(model, tmp_path / "copy", tokenizer_dir=folder)
    assert (saved / "spm.model").read_bytes() == (folder / "spm.model").read_bytes()
    assert not (saved / "tokenizer.json").exists()  # the copy is converted again, as its source
    quantized = quantize(model, PrecisionMap.preset("fp16", model.config.num_layers)).save(tmp_path / "q")
    again = samp_jax.load(quantized)
    np.testing.assert_array_equal(again.tokenizer(texts, truncation=True)["input_ids"],
                                  batch["input_ids"])
