"""tools/multilabel_check.py: a snippet's labels are its sentiment and strength, a tweet's the
entity types its BIO tags name; every seed-0 split is written as multi-label rows that
`load_task` reads back as such, and the constant baseline is the best constant label set."""

import importlib.util
import json
import sys

import pytest

from samp_jax.data.polarity import polarity_splits
from samp_jax.data.wnut16 import ENTITY_TYPES, WNUT16_LABELS, wnut16_splits
from samp_jax.tasks import load_task
from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("multilabel_check", ROOT / "tools" / "multilabel_check.py")
multilabel_check = importlib.util.module_from_spec(spec)
sys.modules["multilabel_check"] = multilabel_check
spec.loader.exec_module(multilabel_check)


def test_a_tweets_labels_are_the_entity_types_its_tags_name():
    tag = WNUT16_LABELS.index
    tags = [tag("O"), tag("B-person"), tag("I-person"), tag("B-geo-loc"), tag("B-person")]
    assert multilabel_check.entity_types(tags) == ["geo-loc", "person"]
    assert multilabel_check.entity_types([tag("O")] * 3) == []


def test_every_split_is_written_as_multi_label_rows(tmp_path):
    files = multilabel_check.write_splits(tmp_path, multilabel_check.DATA_SETS["wnut16"])
    splits = wnut16_splits(0)
    for name, path in files.items():
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(rows) == len(getattr(splits, name))
        assert rows[0]["text"] == " ".join(getattr(splits, name)[0].words)
    task = load_task(split_files={s: files[s] for s in ("calibration", "search", "test")},
                     labels=ENTITY_TYPES)
    assert task.task_type.name == "text_multi_label" and task.labels == ENTITY_TYPES
    baseline = multilabel_check.constant_f1([json.loads(line) for line in
                                             files["test"].read_text().splitlines()], ENTITY_TYPES)
    assert baseline["labels"] == "person" and 0 < baseline["micro_f1"] < 0.3
    assert baseline["micro_f1"] == pytest.approx(2 * 77 / (500 + 248))  # person in 77 of 500 rows


def test_a_snippets_labels_are_its_sentiment_and_whether_it_is_strong():
    assert multilabel_check.snippet_labels(-2.5) == ["negative", "strong"]
    assert multilabel_check.snippet_labels(-2.0) == ["negative", "strong"]
    assert multilabel_check.snippet_labels(1.9) == ["positive"]
    assert multilabel_check.snippet_labels(0.1) == ["positive"]


def test_polarity_splits_are_written_as_rows_of_one_or_two_labels(tmp_path):
    data = multilabel_check.DATA_SETS["polarity"]
    files = multilabel_check.write_splits(tmp_path, data)
    test = polarity_splits(0).test
    rows = [json.loads(line) for line in files["test"].read_text().splitlines()]
    assert [r["text"] for r in rows] == [e.text for e in test]
    assert all(1 <= len(r["labels"]) <= 2 for r in rows)
    task = load_task(split_files={s: files[s] for s in ("calibration", "search", "test")},
                     labels=data.labels)
    assert task.task_type.name == "text_multi_label" and task.labels == data.labels
    strong = sum("strong" in r["labels"] for r in rows)
    positive = sum("positive" in r["labels"] for r in rows)
    baseline = multilabel_check.constant_f1(rows, data.labels)  # all three labels, every row
    assert baseline["labels"] == "negative|positive|strong"
    assert baseline["micro_f1"] == pytest.approx(2 * (len(rows) + strong)
                                                 / (3 * len(rows) + len(rows) + strong))
    assert 0 < strong < len(rows) and 0 < positive < len(rows)
