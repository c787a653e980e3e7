"""A negative FP32 metric: a Spearman whose gold scores are a distance, not a similarity.

- a change is measured against |FP32|: -0.89365 -> -0.89356 is a rise, not a fall;
- a relative tolerance allows `tolerance * |FP32|`, so the FP32 map itself (and any map that
  changes nothing) meets it: `tolerance * FP32` is a negative drop, which not even FP32 meets;
- `eval` and `search` say that a score below what a model that learned nothing scores
  (Spearman 0, ROC-AUC 0.5) ranks the other way round.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from flax import nnx

import samp_jax as sj
from calibrate import search
from calibrate.search.config import allowed_drop
from calibrate.search.report import tolerance_edge, write_report
from calibrate.search.tolerance import tolerance_measure, warn_if_at_chance
from samp_jax.app.cli import main
from samp_jax.models import make_head, save_pretrained
from samp_jax.tasks import metrics
from samp_jax.tasks.chance import NO_SKILL, below_no_skill
from samp_jax.tasks.files import load_task
from samp_jax.workflows.experiments import format_table, relative_change
from tests.helpers import TINY_MINILM_VOCAB

WORDS = "good great fine nice bad awful poor sad movie film plot actor day night city river".split()


def test_a_change_is_relative_to_the_size_of_the_fp32_metric():
    assert relative_change(-0.89356, -0.89365) == pytest.approx(0.00009 / 0.89365)  # a rise
    assert relative_change(-0.9, -0.8) == pytest.approx(-0.125)  # a fall
    assert relative_change(0.9, 0.8) == pytest.approx(0.125)
    assert relative_change(0.5, 0.0) is None and relative_change(None, 0.8) is None
    rows = [{"variant": "fp32 (reference)", "value": -0.89365, "relative_change": 0.0,
             "agreement": 1.0, "param_mb": None, "seconds": 0.1},
            {"variant": "fp16", "value": -0.89356, "agreement": 0.999, "param_mb": 1.0,
             "seconds": 0.1, "relative_change": relative_change(-0.89356, -0.89365)}]
    assert "| fp16 | -0.8936 | +0.01% |" in format_table(rows, metric="spearman")


class _Fake:
    metric_name = "spearman"
    reference = ("ref",)

    def guarded_drop(self, outputs, base, *, z):
        return outputs[0]


@pytest.mark.parametrize("mode, allowed", [("relative", 0.01 * 0.894), ("absolute", 0.01)])
def test_the_allowed_drop_of_a_negative_fp32_metric_is_positive(mode, allowed):
    name, measure, got = tolerance_measure(_Fake(), -0.894, 0.01, mode)
    assert name == "spearman drop" and got == pytest.approx(allowed)
    assert measure([0.0]) <= got  # a map that changes nothing passes
    assert allowed_drop(0.01, mode, -0.894) == allowed_drop(0.01, mode, 0.894)


def test_the_tolerance_edge_follows_the_direction_of_the_metric(monkeypatch):
    result = SimpleNamespace(metric_name="spearman", fp32_metric=-0.8, tolerance=0.05,
                             tolerance_mode="relative")
    assert tolerance_edge(result) == pytest.approx(-0.84)  # below FP32, by 5% of 0.8
    lower = dataclasses.replace(metrics.SPEARMAN, name="lower", higher_is_better=False)
    monkeypatch.setitem(metrics.METRICS, "lower", lower)
    lower_result = SimpleNamespace(**{**vars(result), "metric_name": "lower"})
    assert tolerance_edge(lower_result) == pytest.approx(-0.76)  # above FP32 when lower is better
    absolute = SimpleNamespace(**{**vars(result), "tolerance_mode": "absolute"})
    assert tolerance_edge(absolute) == pytest.approx(-0.85)


def test_a_score_below_no_skill_is_said():
    said = below_no_skill("spearman", -0.8937, "the FP32 model's test")
    assert said.startswith("the FP32 model's test spearman -0.8937 is below 0 (no correlation): "
                           "the gold scores rank the other way (a distance rather than a "
                           "similarity?)")
    assert below_no_skill("roc_auc", 0.3, "dev").startswith(
        "dev roc_auc 0.3000 is below 0.5 (a random ranking): the model ranks the gold classes "
        "the other way")
    assert set(NO_SKILL) == {"spearman", "roc_auc"}
    for metric, score in [("spearman", 0.0), ("spearman", 0.3), ("roc_auc", 0.5),
                          ("accuracy", -1.0), (None, -1.0), ("spearman", None),
                          ("spearman", float("nan"))]:
        assert below_no_skill(metric, score, "dev") is None


def test_the_search_warns_of_a_score_below_no_skill():
    session = SimpleNamespace(objective=SimpleNamespace(metric_name="spearman", evaluation=None),
                              reference=SimpleNamespace(metric=-0.8937))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_at_chance(session)
    assert [w.category for w in caught] == [UserWarning]
    assert "search-split spearman -0.8937 is below 0" in str(caught[0].message)


@pytest.fixture(scope="module")
def distance_model(tmp_path_factory, minilm_dir):
    """A tiny random sentence-embedding BERT saved with MiniLM's tokenizer, and 120 pairs whose
    gold score is a distance: 0 for a sentence paired with itself (cosine 1 under every map),
    2 to 5 otherwise, so the FP32 Spearman is strongly negative."""
    root = tmp_path_factory.mktemp("distance")
    config = sj.EncoderConfig(**TINY_MINILM_VOCAB)
    rngs = nnx.Rngs(7)
    model = sj.EncoderModel(config, make_head("sentence_embedding", config, rngs=rngs), rngs=rngs)
    folder = save_pretrained(model, root / "model", tokenizer_dir=minilm_dir)
    rng = np.random.default_rng(0)
    with open(root / "distance.jsonl", "w") as f:
        for i in range(120):
            text = " ".join(rng.choice(WORDS, 6))
            pair = text if i % 2 else " ".join(rng.choice(WORDS, 6))
            score = 0.0 if i % 2 else round(float(rng.uniform(2, 5)), 2)
            f.write(json.dumps({"text": text, "text_pair": pair, "score": score}) + "\n")
    return folder, root / "distance.jsonl"


def test_a_search_on_a_negative_spearman_meets_its_tolerance(distance_model, tmp_path):
    """The FP32 map, which changes nothing, passes a 1% tolerance; the search says why the
    metric is negative."""
    folder, data = distance_model
    model = sj.load(folder)
    task = load_task(data, head=model.head_kind, sizes={"search": 60, "test": 20})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = search(model, task, tokenizer=model.tokenizer, tolerance=0.01, target="cpu",
                        options=("fp32", "int8-dynamic"), progress=False)
    said = [str(w.message) for w in caught]
    assert result.metric_name == "spearman" and result.fp32_metric < -0.5
    assert result.tolerance_met is True and not any("no map meets tolerance" in s for s in said)
    fp32_map = result.tolerance_checks[0]
    assert (fp32_map.drop, fp32_map.bounded) == (0.0, 0.0) and fp32_map.passes
    assert fp32_map.allowed == pytest.approx(0.01 * abs(result.fp32_metric))
    assert result.tolerance_checks[-1].passes
    assert any("spearman" in s and "is below 0 (no correlation)" in s for s in said)
    write_report(result, tmp_path / "report")  # the plot draws the tolerance below FP32
    text = (tmp_path / "report" / "report.md").read_text()
    assert "**The tolerance is not met:**" not in text
    assert (tmp_path / "report" / "pareto.png").is_file()


def test_eval_of_a_negative_spearman_warns_and_measures_changes_against_its_size(distance_model,
                                                                                 capsys):
    folder, data = distance_model
    code = main(["eval", "--model", str(folder), "--data", str(data), "--precision", "fp16",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    fp32, fp16 = json.loads(out)["rows"]
    assert fp32["value"] < -0.5
    change = (fp16["value"] - fp32["value"]) / -fp32["value"]
    assert fp16["relative_change"] == pytest.approx(change)
    assert (f"samp-jax eval: warning: the FP32 model's test spearman {fp32['value']:.4f} is "
            "below 0 (no correlation): the gold scores rank the other way") in err
