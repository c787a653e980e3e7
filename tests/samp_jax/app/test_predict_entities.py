"""`samp-jax predict` on a tagger: entity spans grouped from the tags as entity F1 groups them,
their text and score, tag names that are not BIO, and one run through the CLI."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

import samp_jax as sj
from samp_jax.app import predictions
from samp_jax.app.cli import main
from samp_jax.data.wnut16 import tags_to_spans
from samp_jax.models.head_kinds import TOKEN_CLASSIFICATION
from tests.helpers import GOLDEN

BIO = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
TAGGER = GOLDEN / "families" / "bert" / "tokcls"  # tiny BERT tagger: O, B-X, I-X, B-Y, I-Y


def _engine(names, rows_logits, truncated=None):
    """A stand-in engine with the tagger's interface: per row `[words, tags]` logits, NaN for
    a word truncation removed (its label -1), as `Engine.classify_words` returns them."""
    logits = [np.asarray(r, np.float32) for r in rows_logits]
    labels = [np.where(np.isnan(r).any(-1), -1, np.argmax(np.nan_to_num(r), -1)) for r in logits]
    result = SimpleNamespace(word_logits=logits, word_labels=labels,
                             truncated=truncated or [False] * len(logits),
                             non_finite=[False] * len(logits))
    return SimpleNamespace(head_kind=TOKEN_CLASSIFICATION.name, labels=names,
                           classify_words=lambda words: result)


def _one_hot_logits(names, tags):
    """Logits that predict `tags` (None: a word truncation removed)."""
    rows = np.zeros((len(tags), len(names)), np.float32)
    for word, tag in enumerate(tags):
        rows[word] = np.nan if tag is None else 0.0
        if tag is not None:
            rows[word, names.index(tag)] = 5.0
    return rows


def _predict_tags(names, tags):
    words = [f"w{i}" for i in range(len(tags))]
    [record] = predictions._predict(_engine(names, [_one_hot_logits(names, tags)]),
                                    [{"tokens": words}])
    assert record["tags"] == list(tags)
    return record


BIO_CASES = {  # tags -> (type, start, end) of each entity
    "B-I-I": (["B-PER", "I-PER", "I-PER"], [("PER", 0, 3)]),
    "B-B": (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    "I without B": (["O", "I-PER", "I-PER", "O"], [("PER", 1, 3)]),
    "I at the start": (["I-LOC", "O"], [("LOC", 0, 1)]),
    "type change": (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),
    "O gap": (["B-PER", "O", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("PER", 2, 3), ("LOC", 4, 5)]),
    "null words at the end": (["O", "B-LOC", "I-LOC", None, None], [("LOC", 1, 3)]),
    "null word inside": (["B-PER", None, "I-PER"], [("PER", 0, 1), ("PER", 2, 3)]),
    "all O": (["O", "O"], []),
}


@pytest.mark.parametrize("tags, expected", BIO_CASES.values(), ids=BIO_CASES.keys())
def test_bio_entities_are_the_spans_entity_f1_scores(tags, expected):
    record = _predict_tags(BIO, tags)
    spans = [(e["type"], e["start"], e["end"]) for e in record["entities"]]
    assert spans == expected
    # the spans entity F1 reads from these tags, a null word counted as "O"
    assert set(spans) == tags_to_spans(["O" if t is None else t for t in tags])
    for entity in record["entities"]:
        assert entity["text"] == " ".join(record["tokens"][entity["start"]:entity["end"]])
        assert 0 < entity["score"] <= 1


def test_an_entity_score_is_the_mean_softmax_probability_of_its_words_tags():
    ln = math.log
    rows = [[0, ln(2), 0, 0, 0],        # B-PER with p = 2/6
            [0, 0, ln(6), 0, 0],        # I-PER with p = 6/10
            [ln(3), 0, 0, 0, 0],        # O
            [0, 0, 0, ln(4), 0],        # B-LOC with p = 4/8
            [np.nan] * 5]               # truncated away: null tag, in no entity
    engine = _engine(BIO, [rows], truncated=[True])
    [record] = predictions._predict(engine, [{"tokens": ["John", "Smith", "in", "Paris", "x"]}])
    assert record["tags"] == ["B-PER", "I-PER", "O", "B-LOC", None] and record["truncated"] is True
    assert [(e["type"], e["start"], e["end"], e["text"]) for e in record["entities"]] == [
        ("PER", 0, 2, "John Smith"), ("LOC", 3, 4, "Paris")]
    assert record["entities"][0]["score"] == pytest.approx((2 / 6 + 6 / 10) / 2, rel=1e-6)
    assert record["entities"][1]["score"] == pytest.approx(4 / 8, rel=1e-6)


def test_each_row_gets_its_own_logits():
    names = ("O", "B-PER", "I-PER")
    rows = [[[0, math.log(3), 0]], [[0, math.log(8), 0]]]  # p = 3/5, then 8/10
    records = predictions._predict(_engine(names, rows), [{"tokens": ["a"]}, {"tokens": ["b"]}])
    assert [r["entities"][0]["score"] for r in records] == pytest.approx([3 / 5, 8 / 10], rel=1e-6)
    assert [r["entities"][0]["text"] for r in records] == ["a", "b"]


def test_type_names_group_maximal_runs_of_one_tag():
    names = ("O", "PER", "LOC")
    record = _predict_tags(names, ["PER", "PER", "LOC", "O", "PER", None, "PER", "LOC", "LOC"])
    assert [(e["type"], e["start"], e["end"]) for e in record["entities"]] == [
        ("PER", 0, 2), ("LOC", 2, 3), ("PER", 4, 5), ("PER", 6, 7), ("LOC", 7, 9)]
    assert record["entities"][0]["text"] == "w0 w1"


@pytest.mark.parametrize("names", [
    ("0", "1", "2"),                                   # a head without names: its class ids
    ("LABEL_0", "LABEL_1", "LABEL_2"),                 # HF's generic names
    ("NOUN", "VERB", "ADJ"),                           # no tag says "outside"
    ("O", "B-PER", "I-PER", "PER"),                    # BIO mixed with type names
    ("O", "B-PER", "E-PER", "L-PER"),                  # BIOES mixed with BILOU
    ("O", "B-PER", "S-PER", "U-PER"),
])
def test_names_that_name_no_outside_tag_or_mix_schemes_give_no_entities(names):
    record = _predict_tags(names, [names[1], names[1], names[0]])
    assert set(record) == {"tokens", "tags", "truncated"}


def test_bioes_names_group_as_entity_f1_reads_them():
    names = ("O", "B-PER", "I-PER", "E-PER", "S-PER", "S-LOC")
    record = _predict_tags(names, ["B-PER", "E-PER", "S-PER", "S-LOC", "O", "I-PER", "E-PER"])
    assert [(e["type"], e["start"], e["end"]) for e in record["entities"]] == [
        ("PER", 0, 2), ("PER", 2, 3), ("LOC", 3, 4), ("PER", 5, 7)]


def test_bilou_names_group_as_bioes_with_l_as_e_and_u_as_s():
    names = ("O", "B-PER", "I-PER", "L-PER", "U-PER", "U-LOC")
    record = _predict_tags(names, ["B-PER", "L-PER", "U-PER", "U-LOC", "O", "I-PER", "L-PER"])
    assert [(e["type"], e["start"], e["end"]) for e in record["entities"]] == [
        ("PER", 0, 2), ("PER", 2, 3), ("LOC", 3, 4), ("PER", 5, 7)]


def test_the_entity_reader_by_names():
    assert predictions.entity_reader(("O",))(["O", None]) == []
    assert predictions.entity_reader(BIO)(["B-PER", "I-PER"]) == [("PER", 0, 2)]
    assert predictions.entity_reader(("O", "PER"))(["PER", "PER"]) == [("PER", 0, 2)]
    assert predictions.entity_reader(("PER", "LOC")) is None


def test_predict_writes_entities_through_the_cli(tmp_path, capsys):
    words = ("A man is playing a guitar in a small kitchen while Children are playing soccer in "
             "the park on Tuesday after the central bank raised interest rates").split()
    # 33 and 38 tokens, and one longer than the model's 40: all in one bucket of 40
    rows = [words[:16], words[:19], words]
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    out = tmp_path / "p.jsonl"
    code = main(["predict", "--model", str(TAGGER), "--data", str(data), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["truncated"] for r in records] == [False, False, True]
    assert records[2]["tags"][-1] is None  # words past the truncation have no tag
    # the scores are the engine's word probabilities, row by row
    engine = sj.compile(sj.load(TAGGER), seq_buckets=(40,), batch_size=3, truncate=True)
    served = engine.classify_words(rows)
    found = 0
    for record, words_, labels, logits in zip(records, rows, served.word_labels, served.word_logits):
        assert list(record) == ["tokens", "tags", "entities", "truncated"]
        assert record["tokens"] == words_
        tags = record["tags"]
        assert tags == [engine.labels[i] if i >= 0 else None for i in labels]
        spans = [(e["type"], e["start"], e["end"]) for e in record["entities"]]
        assert set(spans) == tags_to_spans(["O" if t is None else t for t in tags])
        for entity in record["entities"]:
            start, end = entity["start"], entity["end"]
            assert entity["text"] == " ".join(words_[start:end])
            z = logits[start:end].astype(np.float64)
            p = np.exp(z - z.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            assert entity["score"] == pytest.approx(p[np.arange(end - start), labels[start:end]].mean(),
                                                    rel=1e-5)
        found += len(spans)
    assert found > 0


def test_entities_of_a_plain_sentence_name_their_characters():
    """Words read from a text: each entity's `text` is the characters its words cover in the
    text (spaces, punctuation and all), at `char_start` .. `char_end`."""
    text = "  Ms. Ada  Lovelace visited New-York (U.S.)  today "
    spans = predictions.whitespace_spans(text)
    row = predictions._split({"text": text}, spans)
    assert row["tokens"] == text.split()
    tags = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    [record] = predictions._predict(_engine(BIO, [_one_hot_logits(BIO, tags)]), [row])
    assert list(record)[:3] == ["text", "tokens", "tags"] and record["text"] == text
    found = [(e["type"], e["start"], e["end"], e["text"], e["char_start"], e["char_end"])
             for e in record["entities"]]
    assert found == [("PER", 0, 3, "Ms. Ada  Lovelace", 2, 19),
                     ("LOC", 4, 6, "New-York (U.S.)", 28, 43)]
    assert all(text[e["char_start"]:e["char_end"]] == e["text"] for e in record["entities"])


def test_predict_gives_the_characters_of_the_entities_of_a_text_column(tmp_path, capsys):
    """Through the CLI, the words as the tagger's tokenizer splits them: each entity's
    characters are those of its words, by the tokenizer's own offsets."""
    texts = ["Two dogs run across a snowy field while their owner watches from the porch.",
             "The stock market fell sharply on Tuesday, after the central bank raised rates!"]
    data = tmp_path / "texts.csv"
    data.write_text("text\n" + "".join(f'"{t}"\n' for t in texts))
    out = tmp_path / "p.jsonl"
    code = main(["predict", "--model", str(TAGGER), "--data", str(data), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    tokenizer = sj.load(TAGGER).tokenizer
    found = 0
    for record, text in zip(records, texts):
        spans = tokenizer.word_spans(text)
        assert record["text"] == text and record["tokens"] == [text[a:b] for a, b in spans]
        for entity in record["entities"]:
            first, last = spans[entity["start"]][0], spans[entity["end"] - 1][1]
            assert (entity["char_start"], entity["char_end"]) == (first, last)
            assert entity["text"] == text[first:last]
            found += 1
    assert found > 0
