"""`samp-jax predict --keep-columns id`: each prediction starts with the row's kept values, as
the data holds them, in every format; the predictions themselves do not change; a kept
column that is missing, blank, repeated or named as a record's own field is refused before any
model is read."""

from __future__ import annotations

import datetime
import decimal
import io
import json
import math
import sys

import numpy as np
import pytest

from samp_jax.app import predictions
from samp_jax.app.cli import main
from samp_jax.models.head_kinds import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION
from samp_jax.tasks import cells
from samp_jax.tasks.files import KEPT, Columns, read_inputs
from tests.faults.cli_files import write_model_and_reviews
from tests.samp_jax.app.test_predict_entities import BIO, _engine, _one_hot_logits


@pytest.fixture(scope="module")
def files(tmp_path_factory, minilm_dir):
    root = write_model_and_reviews(tmp_path_factory.mktemp("kept"), minilm_dir, rows=6)
    lines = (root / "data.csv").read_text().splitlines()
    ids = ["007", "a-1", "", "9", "x y", "10"]  # a CSV cell is text: "007" stays "007"
    (root / "data_ids.csv").write_text("\n".join(
        ["id," + lines[0]] + [f"{i},{line}" for i, line in zip(ids, lines[1:])]) + "\n")
    return root


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_prediction_starts_with_its_rows_kept_values_and_is_otherwise_unchanged(
        files, tmp_path, capsys):
    plain, kept = tmp_path / "plain.jsonl", tmp_path / "kept.jsonl"
    base = ["predict", "--model", str(files / "model"), "--data", str(files / "data_ids.csv")]
    assert main([*base, "--out", str(plain)]) == 0
    assert main([*base, "--out", str(kept), "--keep-columns", "id"]) == 0, \
        capsys.readouterr().err
    with_ids, without = _records(kept), _records(plain)
    assert [r["id"] for r in with_ids] == ["007", "a-1", "", "9", "x y", "10"]
    assert [list(r)[0] for r in with_ids] == ["id"] * 6
    assert [{k: v for k, v in r.items() if k != "id"} for r in with_ids] == without


def test_standard_input_keeps_json_values_as_they_are(files, monkeypatch, capfd):
    rows = [{"text": "good movie", "doc": {"n": 1, "tags": ["a"]}, "id": 3},
            {"text": "bad plot", "doc": None, "id": 2.5}, {"text": "fine day", "id": True}]
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
    assert main(["predict", "--model", str(files / "model"), "--data", "-", "--out", "-",
                 "--keep-columns", "id", "--keep-columns", "doc"]) == 0
    out, _ = capfd.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    # a JSON Lines row without a kept key holds null
    assert [(r["id"], r["doc"]) for r in records] == [(3, {"n": 1, "tags": ["a"]}), (2.5, None),
                                                     (True, None)]
    assert [list(r)[:3] for r in records] == [["id", "doc", "text"]] * 3


@pytest.mark.parametrize("keep, message", [
    (["label"], "a prediction record has a field 'label' of its own"),
    (["text"], "a prediction record has a field 'text' of its own"),
    (["id,,doc"], "column name 2 is blank"),
    (["id", "id"], "names column 'id' twice"),
])
def test_a_kept_column_a_record_cannot_hold_is_refused_before_the_model_is_read(
        keep, message, tmp_path, capsys, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was read before the check")
    monkeypatch.setattr("samp_jax.app.cli.load", no_model)
    args = ["predict", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "d.csv"),
            "--out", str(tmp_path / "p.jsonl")]
    for column in keep:
        args += ["--keep-columns", column]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "p.jsonl").exists()


def test_a_kept_column_the_data_lacks_is_refused_with_the_columns_found(files, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(files / "model"), "--data",
                 str(files / "data_ids.csv"), "--out", str(out), "--keep-columns", "ID"]) == 1
    err = capsys.readouterr().err
    assert "column 'ID', named with --keep-columns, was not found" in err
    assert "['id', 'text', 'label']" in err and not out.exists()


def test_parquet_values_become_json_by_their_meaning(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({
        "text": ["a", "b"],
        "when": [datetime.datetime(2026, 1, 2, 3, 4, 5), None],
        "day": [datetime.date(2026, 1, 2), datetime.date(1999, 12, 31)],
        "price": pa.array([decimal.Decimal("1.10"), decimal.Decimal("-0.5")], pa.decimal128(5, 2)),
        "vector": [[1.5, float("nan")], []],
        "count": pa.array([2**40, -1], pa.int64()),
    })
    pq.write_table(table, tmp_path / "rows.parquet")
    rows = read_inputs(tmp_path / "rows.parquet", keep=["when", "day", "price", "vector", "count"])
    written = predictions.json_lines([r[KEPT] for r in rows]).decode().splitlines()
    assert [json.loads(line) for line in written] == [  # strict JSON: the NaN is written null
        {"when": "2026-01-02T03:04:05", "day": "2026-01-02", "price": "1.10",
         "vector": [1.5, None], "count": 2**40},
        {"when": None, "day": "1999-12-31", "price": "-0.50", "vector": [], "count": -1}]
    assert math.isnan(rows[0][KEPT]["vector"][1])


def test_narrow_floats_keep_their_own_digits_from_parquet_and_datasets(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({
        "text": ["a", "b", "c"],
        "score": pa.array([0.1, None, 3.3], pa.float32()),
        "half": pa.array([0.1, 2.5, None], pa.float16()),
        "wide": pa.array([0.1, 0.2, 0.3], pa.float64()),
        "vector": pa.array([[0.1, 0.7], None, []], pa.list_(pa.float32())),
        "meta": pa.array([{"p": 0.3, "name": "x"}, None, {"p": None, "name": "y"}],
                         pa.struct([("p", pa.float32()), ("name", pa.string())])),
    })
    keep = ["score", "half", "wide", "vector", "meta"]
    expected = [  # what was stored, not float64's 0.10000000149011612
        {"score": 0.1, "half": 0.1, "wide": 0.1, "vector": [0.1, 0.7],
         "meta": {"p": 0.3, "name": "x"}},
        {"score": None, "half": 2.5, "wide": 0.2, "vector": None, "meta": None},
        {"score": 3.3, "half": None, "wide": 0.3, "vector": [], "meta": {"p": None, "name": "y"}}]
    dataset = datasets.Dataset(table).select([2, 0, 1])  # an indices mapping, as select leaves
    dataset.save_to_disk(str(tmp_path / "saved"))
    assert [r[KEPT] for r in read_inputs(tmp_path / "saved", keep=keep)] == \
        [expected[2], expected[0], expected[1]]
    assert [r[KEPT] for r in read_inputs(dataset, keep=keep)] == [expected[2], expected[0], expected[1]]
    # Parquet holds more than datasets does: a map, and a categorical (dictionary) column
    table = table.append_column("grades", pa.array([[("x", 0.1)], None, []],
                                                    pa.map_(pa.string(), pa.float32())))
    table = table.append_column("level", pa.array([0.1, 0.1, 3.3], pa.float32()).dictionary_encode())
    for row, grades, level in zip(expected, ([["x", 0.1]], None, []), (0.1, 0.1, 3.3)):
        row |= {"grades": grades, "level": level}
    pq.write_table(table, tmp_path / "rows.parquet")
    assert [r[KEPT] for r in read_inputs(tmp_path / "rows.parquet",
                                          keep=keep + ["grades", "level"])] == expected


def test_a_value_json_cannot_hold_is_refused_naming_its_row_and_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"text": ["a", "b"], "blob": [b"", b"\x00\x01"]}),
                   tmp_path / "rows.parquet")
    with pytest.raises(ValueError, match=r"rows.parquet: row 1: column 'blob' holds b'' \(bytes\)"):
        read_inputs(tmp_path / "rows.parquet", keep=["blob"])


@pytest.mark.parametrize("value, expected", [
    (np.int64(7), 7), (np.float32(0.5), 0.5), (np.float64(0.25), 0.25), (np.bool_(True), True), (np.str_("x"), "x"),
    (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]), ((1, "a"), [1, "a"]),
    (datetime.time(12, 30), "12:30:00"), ({"k": np.int8(-3)}, {"k": -3}),
    (np.float32(0.1), 0.1), (np.float16(0.3), 0.3),
    (np.datetime64("2026-01-02T03:04:05.123456789"), "2026-01-02T03:04:05.123456789"),
    (np.datetime64("NaT", "s"), None),
])
def test_passthrough_converts_numpy_and_python_values(value, expected):
    found = cells.passthrough(value, "here")
    assert found == expected and type(found) is type(expected)


def test_passthrough_refuses_a_mapping_with_keys_json_cannot_name():
    with pytest.raises(ValueError, match=r"here holds \{1: 'a'\} \(dict\)"):
        cells.passthrough({1: "a"}, "here")


def test_a_taggers_plain_sentences_carry_their_kept_values_to_the_record(tmp_path):
    data = tmp_path / "sentences.jsonl"
    data.write_text('{"text": "Ada Lovelace went home", "id": "s1"}\n'
                    '{"text": "Paris", "id": "s2"}\n')
    rows = predictions.read_model_inputs(data, Columns(), head=TOKEN_CLASSIFICATION.name,
                                         keep=["id"])
    assert [(r[KEPT], r["tokens"]) for r in rows] == [
        ({"id": "s1"}, ["Ada", "Lovelace", "went", "home"]), ({"id": "s2"}, ["Paris"])]
    tags = [["B-PER", "I-PER", "O", "O"], ["B-LOC"]]
    records = predictions._predict(_engine(BIO, [_one_hot_logits(BIO, t) for t in tags]), rows)
    assert [list(r)[:3] for r in records] == [["id", "text", "tokens"]] * 2
    assert [r["id"] for r in records] == ["s1", "s2"]
    assert records[0]["entities"][0]["text"] == "Ada Lovelace"


def test_the_api_reads_kept_columns_for_a_classifier_too(files):
    rows = predictions.read_model_inputs(files / "data_ids.csv", Columns(),
                                         head=SEQUENCE_CLASSIFICATION.name, keep=["id"])
    assert [r[KEPT]["id"] for r in rows][:2] == ["007", "a-1"]
    assert all(set(r) == {"text", KEPT} for r in rows)


def test_kept_values_that_look_like_marks_do_not_count_as_marked_rows(files, tmp_path, capsys):
    """The truncated and non-finite counts come from the records' own fields, not from the
    text of the lines, which a kept value can make look marked."""
    data = tmp_path / "meta.jsonl"
    data.write_text('{"text": "good movie", "meta": {"truncated": true, "non_finite": true}}\n'
                    '{"text": "bad plot", "meta": {}}\n')
    out = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(files / "model"), "--data", str(data), "--out",
                 str(out), "--keep-columns", "meta", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["truncated"] == 0 and "non_finite" not in summary
    assert "truncated" not in captured.err and "NaN" not in captured.err
    assert _records(out)[0]["meta"] == {"truncated": True, "non_finite": True}


def test_a_taggers_missing_kept_column_is_named_not_the_tokens_column(tmp_path):
    data = tmp_path / "sentences.jsonl"
    data.write_text('{"text": "Ada went home", "id": "s1"}\n')
    with pytest.raises(ValueError, match=r"column 'ID', named with --keep-columns, was not "
                                         r"found; columns found: \['text', 'id'\]"):
        predictions.read_model_inputs(data, Columns(), head=TOKEN_CLASSIFICATION.name,
                                      keep=["ID"])


def test_every_field_a_record_may_have_is_a_record_field_kept_columns_may_not_take():
    """`check_kept` refuses `RECORD_FIELDS`; a record field missing from it would let a kept
    column of that name be overwritten without a word."""
    from types import SimpleNamespace
    from samp_jax.models.head_kinds import SENTENCE_EMBEDDING, Readout

    class Engine(SimpleNamespace):
        def __call__(self, inputs):
            return self.result
    rows = [{"text": "a", "text_pair": "b"}]
    engines = []
    for readout, labels, width in ((Readout.CLASSES, np.array([1]), 2),
                                   (Readout.LABELS, np.array([[True, False]]), 2),
                                   (Readout.SCORE, None, 1)):
        for activation in (None, "Sigmoid", "Identity"):
            for bad in (False, True):
                result = SimpleNamespace(logits=np.ones((1, width), np.float32), labels=labels,
                                         truncated=[True], non_finite=[bad])
                engines.append(Engine(head_kind=SEQUENCE_CLASSIFICATION.name, readout=readout,
                                      labels=("a", "b")[:width], result=result,
                                      cross_encoder_activation=activation))
    embedder = SimpleNamespace(head=SimpleNamespace(similarity="cosine"))
    for bad in (False, True):
        embedding = SimpleNamespace(embeddings=np.ones((1, 4), np.float32), truncated=[True],
                                    non_finite=[bad])
        engines.append(Engine(head_kind=SENTENCE_EMBEDDING.name, result=embedding,
                              model=embedder))
    fields = set()
    for engine in engines:
        for read in (rows, [{"text": "a"}]):  # a pair, and one text
            for record in predictions._answers(engine, read):
                fields |= set(record)
    tagger = _engine(BIO, [_one_hot_logits(BIO, ["B-PER"])])
    fields |= set(predictions._answers(tagger, [{"text": "Ada", "tokens": ["Ada"],
                                                 "word_spans": [(0, 3)]}])[0])
    assert fields <= set(predictions.RECORD_FIELDS), fields - set(predictions.RECORD_FIELDS)
    assert {"label", "labels", "score", "scores", "logit", "cross_encoder_scores", "embedding",
            "embedding_pair", "similarity", "non_finite", "entities"} <= fields  # all reached
