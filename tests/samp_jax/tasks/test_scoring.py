"""A sequence head of one output (num_labels=1: a reranker, a regression cross-encoder) scores
rows: its task types, evaluation, search proxy and command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

import samp_jax as sj
from calibrate.search.objectives import UnlabelledObjective
from samp_jax.app.cli import main
from samp_jax.models import Readout, make_head, save_pretrained
from samp_jax.serving.forward import jit_forward
from samp_jax.tasks import ScoringEvaluation, load_task, roc_auc, spearman
from samp_jax.tasks.task import check_head_fits, predict
from tests.helpers import TINY_CONFIG, random_batches

WORDS = "good bad movie film day night river city warm cold".split()
CONFIG = sj.EncoderConfig(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4,
                          intermediate_size=64, max_position_embeddings=64)  # MiniLM's tokenizer


def _model(num_labels: int, seed: int = 3):
    rngs = nnx.Rngs(seed)
    head = make_head("sequence_classification", CONFIG, num_labels=num_labels, rngs=rngs)
    return sj.EncoderModel(CONFIG, head, rngs=rngs)


def _rows(n=60, gold="label", seed=0):
    rng = np.random.default_rng(seed)
    return [{"query": " ".join(rng.choice(WORDS, 3)), "passage": " ".join(rng.choice(WORDS, 6)),
             gold: (i % 2) if gold == "label" else round(float(rng.uniform(0, 5)), 2)}
            for i in range(n)]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return sj.Tokenizer.from_pretrained(minilm_dir)


@pytest.mark.parametrize("gold, metric", [("label", "roc_auc"), ("score", "spearman")])
def test_a_one_output_head_makes_a_scoring_task_of_labels_or_scores(gold, metric):
    columns = sj.tasks.Columns(text="query", text_pair="passage")
    task = load_task(_rows(gold=gold), columns=columns, head="sequence_classification", readout=Readout.SCORE)
    assert task.task_type.name == "text_pair_scoring" and task.metric == metric
    assert task.labels is None and not task.task_type.classifies
    alone = load_task([{"text": r["query"], gold: r[gold]} for r in _rows(gold=gold)],
                      head="sequence_classification", readout=Readout.SCORE)
    assert alone.task_type.name == "text_scoring"
    with pytest.raises(ValueError, match="reads classes; the model's head has one output"):
        load_task(_rows(), columns=columns, task_type="text_pair_classification",
                  head="sequence_classification", readout=Readout.SCORE)
    with pytest.raises(ValueError, match="row 1: column 'label'.*reads a label column as 0/1 gold"):
        load_task([r | {"label": "relevant"} for r in _rows()], columns=columns,
                  head="sequence_classification", readout=Readout.SCORE)


def test_the_metric_ranks_the_one_output_and_the_proxy_ignores_its_scale(tokenizer):
    columns = sj.tasks.Columns(text="query", text_pair="passage")
    task = load_task(_rows(80), columns=columns, head="sequence_classification", readout=Readout.SCORE)
    model = _model(1)
    evaluation = task.evaluation(tokenizer, "test", batch_size=8)
    assert isinstance(evaluation, ScoringEvaluation)
    outputs = evaluation.outputs(jit_forward(model))
    encoded = task.encode(tokenizer, task.split("test"))
    direct = predict(jit_forward(model), encoded)[:, 0]
    gold = np.array([e["label"] for e in task.split("test")])
    assert evaluation.score(outputs)["value"] == pytest.approx(roc_auc(direct, gold), abs=1e-12)
    assert task.score(predict(jit_forward(model), encoded), encoded)["value"] == \
        pytest.approx(roc_auc(direct, gold), abs=1e-12)
    # the proxy: 0 for the reference itself, scale-free, and growing with the change
    noisy = [o + np.random.default_rng(1).normal(0, 0.1, o.shape).astype(np.float32) * o.std()
             for o in outputs]
    assert evaluation.proxy(outputs, outputs) == 0.0
    assert evaluation.proxy([10 * o for o in noisy], [10 * o for o in outputs]) == \
        pytest.approx(evaluation.proxy(noisy, outputs), rel=5e-5)  # float32 rounding
    assert 0 < evaluation.proxy(noisy, outputs) < evaluation.proxy([o * -1 for o in outputs], outputs)
    assert evaluation.agreement(outputs, outputs) == pytest.approx(1.0)
    assert evaluation.agreement([-o for o in outputs], outputs) == pytest.approx(-1.0)


def test_heads_and_task_types_must_read_the_output_alike():
    columns = sj.tasks.Columns(text="query", text_pair="passage")
    scoring = load_task(_rows(), columns=columns, head="sequence_classification", readout=Readout.SCORE)
    classes = load_task(_rows(), columns=columns, head="sequence_classification")
    with pytest.raises(ValueError, match="scores rows by a head of one output; the model's head has 2"):
        check_head_fits(_model(2), scoring)
    with pytest.raises(ValueError, match="reads classes; the model's head has one output"):
        check_head_fits(_model(1), classes)
    check_head_fits(_model(1), scoring)
    check_head_fits(_model(2), classes)
    quantized = sj.quantize(_model(1), sj.PrecisionMap.preset("fully_quant", CONFIG.num_layers))
    check_head_fits(quantized, scoring)  # a QuantizedModel is read as its float model
    with pytest.raises(ValueError, match="reads classes; the model's head has one output"):
        check_head_fits(quantized, classes)


def test_unlabelled_search_of_a_one_output_head_measures_the_score_change():
    rngs = nnx.Rngs(3)
    model = sj.EncoderModel(TINY_CONFIG, make_head("sequence_classification", TINY_CONFIG,
                                                   num_labels=1, rngs=rngs), rngs=rngs)
    objective = UnlabelledObjective(model, random_batches(2))
    assert objective.proxy_kind.name == "score"
    assert objective.proxy(objective.reference) == 0.0
    shifted = [r + 0.5 * np.std(np.concatenate(objective.reference)) for r in objective.reference]
    assert objective.proxy(shifted) == pytest.approx(0.25, rel=1e-3)


def test_a_model_that_scores_every_row_alike_has_no_spearman_to_search_against(tokenizer):
    """A regression head whose weights are zero gives every row one score: Spearman is 0/0
    (NaN). The search says so in one line and why, instead of failing every map with NaN
    figures; `undefined_metric` gives the line."""
    from calibrate import SearchConfig, search
    from samp_jax.tasks.chance import undefined_metric
    model = _model(1)
    classifier = model.head.classifier
    classifier.kernel.set_value(classifier.kernel[...] * 0)
    classifier.bias.set_value(classifier.bias[...] * 0 + 0.25)
    task = load_task([{"text": r["query"], "score": i / 7} for i, r in enumerate(_rows(60))],
                     head="sequence_classification", readout=Readout.SCORE)
    with pytest.raises(ValueError, match=r"the FP32 model's search-split spearman is undefined "
                                         r"\(NaN\): the model gives all \d+ rows the same score "
                                         r"\(0\.25\).*the tolerance cannot be checked"):
        search(model, task, SearchConfig(target="cpu", options=("fp32", "int8-dynamic"),
                                         progress=False), tokenizer=tokenizer)
    assert undefined_metric("spearman", 0.5, "x") is None and undefined_metric(None, np.nan, "x") is None
    assert undefined_metric("roc_auc", np.nan, "the test") == (
        "the test roc_auc is undefined (NaN): nothing can be compared with it")


@pytest.mark.slow
def test_the_command_line_scores_predicts_and_searches_a_reranker(tmp_path, capsys, minilm_dir):
    folder = save_pretrained(_model(1), tmp_path / "reranker", tokenizer_dir=minilm_dir)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(80)))
    names = ["--text-column", "query", "--text-pair-column", "passage"]
    assert main(["eval", "--model", str(folder), "--data", str(data), *names,
                 "--precision", "fully_quant", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows[0]["metric"] == "roc_auc" and 0 <= rows[0]["value"] <= 1
    assert main(["predict", "--model", str(folder), "--data", str(data), *names,
                 "--out", str(tmp_path / "p.jsonl")]) == 0
    capsys.readouterr()
    predicted = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert set(predicted[0]) == {"text", "text_pair", "score", "truncated"}
    assert main(["search", "--model", str(folder), "--data", str(data), *names,
                 "--out", str(tmp_path / "s"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["metric"] == "roc_auc" and "chosen" in summary["test"]
    served = sj.compile(sj.load(tmp_path / "s" / "model"), seq_buckets=(8,), batch_size=1)(
        [("a b", "c d")])  # one bucket: which buckets an engine compiles is tested elsewhere
    assert served.logits.shape == (1, 1) and served.labels is None


def test_finetune_trains_a_score_head_on_texts_with_a_score_column(tmp_path, capsys, minilm_dir):
    """Texts with a `score` column and no head to say otherwise are a regression
    (text_scoring): `finetune` trains a one-output head on them (it had called them
    embedding_texts and refused)."""
    save_pretrained(_model(1), tmp_path / "base", tokenizer_dir=minilm_dir)
    rng = np.random.default_rng(0)
    (tmp_path / "scores.csv").write_text("text,score\n" + "".join(
        f"{' '.join(rng.choice(WORDS, 4))},{rng.uniform(0, 5):.2f}\n" for _ in range(60)))
    assert main(["finetune", "--model", str(tmp_path / "base"), "--data",
                 str(tmp_path / "scores.csv"), "--out", str(tmp_path / "tuned"), "--min-steps",
                 "2", "--max-train-examples", "16", "--json"]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["task_type"] == "text_scoring" and summary["metric"] == "spearman"
    assert summary["problem_type"] == "regression"


@pytest.mark.parametrize("metric, value, warned", [
    ("spearman", -0.2, True), ("spearman", 0.1, False), ("roc_auc", 0.4, True),
    ("roc_auc", 0.6, False), ("accuracy", 0.1, False)])
def test_a_fine_tune_that_ranks_worse_than_no_skill_is_said(metric, value, warned, recwarn):
    from samp_jax.app.figure_warnings import warn_if_trained_below_no_skill
    warn_if_trained_below_no_skill(metric, value)
    said = [str(w.message) for w in recwarn]
    assert len(said) == warned
    if warned:
        assert said[0].startswith(f"the fine-tuned model's dev {metric} {value:.4f} is below")
