"""CoNLL files as data: sentences of `TOKEN ... TAG` lines (`samp_jax.tasks.conll`), read as
the built-in WNUT-16 task reads its own CoNLL file, and refused line by line when malformed."""

from __future__ import annotations

import shutil

import pytest

from samp_jax.core.assets import fetch
from samp_jax.data.wnut16 import WNUT16_LABELS, load_wnut16
from samp_jax.tasks import Columns, load_task
from samp_jax.tasks.conll import read_conll

CONLL_2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_conll_2003_columns_docstart_and_a_last_sentence_without_a_blank_line(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text(CONLL_2003)
    rows, columns = read_conll(path)
    assert columns == ["tokens", "tags", "2", "3", "4"]  # each field after the token by its place
    assert [{k: row[k] for k in ("tokens", "tags")} for row in rows] == [
        {"tokens": ["EU", "rejects", "German", "call", "."],
         "tags": ["B-ORG", "O", "B-MISC", "O", "O"]},
        {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]}]
    assert rows[0]["2"] == ["NNP", "VBZ", "JJ", "NN", "."]
    assert rows[0]["3"] == ["B-NP", "B-VP", "B-NP", "I-NP", "O"] and rows[1]["4"] == rows[1]["tags"]


def test_a_two_field_file_has_tokens_and_tags_alone(tmp_path):
    path = tmp_path / "pos.conll"
    path.write_text("The DET\ndog NOUN\n\nruns VERB\n")
    assert read_conll(path) == ([{"tokens": ["The", "dog"], "tags": ["DET", "NOUN"]},
                                 {"tokens": ["runs"], "tags": ["VERB"]}], ["tokens", "tags"])


def _conll_2003_file(path, sentences=12):
    """CoNLL-2003-shaped lines: word, part of speech, chunk, entity tag."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for i in range(sentences):
        lines += [f"EU{i} NNP B-NP B-ORG", "rejects VBZ B-VP O", "German JJ B-NP B-MISC",
                  "call NN I-NP O", ". . O O", ""]
    path.write_text("\n".join(lines))
    return path


def test_the_tags_column_picks_a_conll_2003_field_and_its_metric(tmp_path):
    """The entity tags by default (entity F1); `Columns(tags="2")` the part-of-speech tags,
    scored by word accuracy; "3" the chunk tags, BIO, so scored as chunks by entity F1."""
    path = _conll_2003_file(tmp_path / "c03.conll")
    ner = load_task(path)
    assert ner.metric == "entity_f1" and set(ner.labels) == {"O", "B-ORG", "B-MISC"}
    pos = load_task(path, columns=Columns(tags="2"))
    assert pos.task_type.name == "token_classification" and pos.metric == "word_accuracy"
    assert pos.labels == (".", "JJ", "NN", "NNP", "VBZ")
    assert {tuple(e["tags"]) for e in pos.split("test")} == {(3, 4, 1, 2, 0)}
    chunks = load_task(path, columns=Columns(tags="3"))
    assert chunks.metric == "entity_f1" and chunks.labels[0] == "O"
    with pytest.raises(ValueError, match=r"column '5', named with --tags-column .* was not found; "
                                         r"columns found: \['tokens', 'tags', '2', '3', '4'\]"):
        load_task(path, columns=Columns(tags="5"))


def test_the_wnut16_file_reads_as_the_builtin_task_reads_it(tmp_path):
    """The asset's own CoNLL file (tab-separated, a lone tab between tweets), renamed `.conll`:
    the same tweets, words and tags as `load_wnut16`, and a BIO tagging task."""
    path = tmp_path / "ner.conll"
    shutil.copy(fetch("wnut16") / "ner.txt", path)
    rows, _ = read_conll(path)
    expected = load_wnut16()
    assert len(rows) == len(expected) == 2394
    assert all(row["tokens"] == list(s.words) and row["tags"] == [WNUT16_LABELS[t] for t in s.tags]
               for row, s in zip(rows, expected))
    task = load_task(path)
    assert task.task_type.name == "token_classification" and task.labels[0] == "O"
    assert set(task.labels) <= set(WNUT16_LABELS)


def test_a_token_may_hold_any_whitespace_but_tabs_and_spaces(tmp_path):
    """A no-break space or a line separator inside a tweet's token is part of the token."""
    path = tmp_path / "odd.conll"
    path.write_text("foo\xa0bar\tB-PER\nx\u2028y\tO\r\n\nnext O\n", encoding="utf-8")
    rows, _ = read_conll(path)
    assert rows == [{"tokens": ["foo\xa0bar", "x\u2028y"], "tags": ["B-PER", "O"]},
                    {"tokens": ["next"], "tags": ["O"]}]


def test_tokens_alone_are_rows_to_predict(tmp_path):
    path = tmp_path / "new.bio"
    path.write_text("Hello\nworld\n\nAgain\n")
    assert read_conll(path) == ([{"tokens": ["Hello", "world"]}, {"tokens": ["Again"]}], ["tokens"])


@pytest.mark.parametrize("text, message", [
    ("EU B-ORG\nrejects\n", r"line 2 holds 1 field\(s\) \['rejects'\], while the lines before "
                            r"hold a token and its tag"),
    ("EU\nrejects O\n", r"line 2 holds 2 field\(s\) .* hold a token alone"),
    ("\n\n-DOCSTART- O\n\n", r"is empty; expected CoNLL lines"),
    ("E\x00U O\n", r"holds a NUL character"),
    ("Visit O\nNew York B-LOC\ntoday O\n", r"line 2 holds 3 fields \['New', 'York', 'B-LOC'\], "
                                          r"line 1 2; expected the same columns on every line"),
])
def test_malformed_conll_is_refused_naming_the_line(tmp_path, text, message):
    path = tmp_path / "bad.conll"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad.conll:? {message}|bad.conll {message}"):
        read_conll(path)
