"""`--metric`: `eval` scores the test split by the metric chosen among those the task type
offers (macro-F1 over classes here), the same value a user computes from `predict`'s labels;
a metric the task type does not offer is a usage error that lists the ones it does."""

from __future__ import annotations

import csv
import json
import re

import numpy as np

from samp_jax.app.cli import main
from tests.helpers import GOLDEN

MODEL = GOLDEN / "families" / "bert" / "seqcls"  # a tiny BERT over neg / neu / pos
WORDS = "good bad fine great awful okay movie film plot actor scene boring fun dull nice".split()


def _data(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(" ".join(rng.choice(WORDS, 6)), str(rng.choice(["neg", "neu", "pos"], p=[.2, .1, .7])))
            for _ in range(40)]
    path = tmp_path / "test.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path, [label for _, label in rows]


def _macro_f1(gold, predicted):
    """The mean F1 over the classes gold or predicted at least once, by hand."""
    f1 = []
    for c in sorted(set(gold) | set(predicted)):
        tp = sum(g == p == c for g, p in zip(gold, predicted))
        f1.append(2 * tp / (gold.count(c) + predicted.count(c)))
    return sum(f1) / len(f1)


def test_eval_scores_by_the_chosen_metric_as_predict_s_labels_give_it(tmp_path, capsys):
    data, gold = _data(tmp_path)
    assert main(["predict", "--model", str(MODEL), "--data", str(data),
                 "--out", str(tmp_path / "p.jsonl")]) == 0
    predicted = [json.loads(line)["label"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    capsys.readouterr()
    assert main(["eval", "--model", str(MODEL), "--split-file", f"test={data}", "--precision", "fp16",
                 "--metric", "class_macro_f1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metric"] == "class_macro_f1"
    fp32 = result["rows"][0]
    assert fp32["metric"] == "class_macro_f1" and fp32["examples"] == 40
    assert fp32["value"] == _macro_f1(gold, predicted) != _macro_f1(gold, gold)


def test_a_metric_the_task_type_lacks_is_a_usage_error_listing_its_metrics(tmp_path, capsys):
    data, _ = _data(tmp_path)
    code = main(["eval", "--model", str(MODEL), "--split-file", f"test={data}", "--precision", "fp16",
                 "--metric", "micro_f1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(r"error: --metric micro_f1: task '[^']+' \(text_classification\): metric "
                     r"'micro_f1' is not one it can be scored by; these rows are scored by "
                     r"accuracy or class_macro_f1\n$", err), err
