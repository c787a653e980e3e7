"""A multi-label sequence head (a sigmoid per label, HF's multi_label_classification): its data,
metric, search proxy, head/task fit, serving, predictions and fine-tuning, the decision
threshold through each of them, and fine-tuning the one-output head too."""

from __future__ import annotations

import dataclasses
import functools
import json
import re

import numpy as np
import pytest
from flax import nnx

import samp_jax as sj
from calibrate.search.objectives import UnlabelledObjective, task_objective
from samp_jax.app.cli import main
from samp_jax.models import Readout, make_head, save_pretrained
from samp_jax.serving import CompileCounter
from samp_jax.serving.forward import jit_forward
from samp_jax.tasks import LabelSetEvaluation, load_task
from samp_jax.tasks.chance import chance_level
from samp_jax.tasks.metrics import MACRO_F1, MICRO_F1
from samp_jax.tasks.proxies import LABEL_KL
from samp_jax.tasks.task import check_head_fits, evaluate
from samp_jax.training import FinetuneConfig, finetune
from samp_jax.workflows.pipeline import run_search
from tests.helpers import TINY_CONFIG, random_batches, tiny_classifier

WORDS = "good bad movie film day night river city warm cold".split()
NAMES = ("cold", "good", "river")  # a row holds a label when its text holds the word
CONFIG = sj.EncoderConfig(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4,
                          intermediate_size=64, max_position_embeddings=64)  # MiniLM's tokenizer
MULTI = "multi_label_classification"


def _model(num_labels=3, problem_type=MULTI, seed=3, labels=NAMES):
    """A random model whose logits vary over rows and sit on both sides of 0 (so rows get no
    label, one or several)."""
    rngs = nnx.Rngs(seed)
    head = make_head("sequence_classification", CONFIG, num_labels=num_labels, rngs=rngs,
                     labels=labels if num_labels == len(NAMES) else None, problem_type=problem_type)
    model = sj.EncoderModel(CONFIG, head, rngs=rngs)
    model.head.classifier.kernel[...] = 100 * model.head.classifier.kernel[...]
    logits = np.asarray(model(**_minilm_tokenizer()([r["text"] for r in _rows(40, seed=9)], padding=16)))
    model.head.classifier.bias[...] = model.head.classifier.bias[...] - np.median(logits, axis=0)
    return model


@functools.lru_cache(maxsize=1)
def _minilm_tokenizer():
    return sj.Tokenizer.from_pretrained(sj.minilm_path())


def _rows(n=90, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        text = " ".join(rng.choice(WORDS, 4))
        rows.append({"text": text, "labels": [name for name in NAMES if name in text.split()]})
    return rows


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return sj.Tokenizer.from_pretrained(minilm_dir)


# ------------------------------------------------------------------------------ data
def test_label_sets_come_from_lists_or_separated_text_and_empty_is_no_label(tmp_path):
    rows = _rows()
    task = load_task(rows)  # a list per row: multi-label, no head needed
    assert task.task_type.name == "text_multi_label" and task.metric == "micro_f1"
    assert task.labels == NAMES
    every = [e for split in ("train", "dev", "calibration", "search", "test") for e in task.split(split)]
    by_text = {r["text"]: sorted(NAMES.index(n) for n in r["labels"]) for r in rows}
    assert all(sorted(e["labels"]) == by_text[e["text"]] for e in every)
    assert any(e["labels"] == [] for e in every)
    csv = tmp_path / "rows.csv"
    csv.write_text("text,label\n" + "".join(f"{r['text']},{'|'.join(r['labels'])}\n" for r in rows))
    from_csv = load_task(csv, task_type="text_multi_label")
    assert from_csv.labels == NAMES and from_csv.split("test") == task.split("test")
    # the model's readout picks the task type; its names order the ids
    pairs = [{"text": r["text"], "text_pair": "x", "label": r["labels"]} for r in rows]
    paired = load_task(pairs, head="sequence_classification", readout=Readout.LABELS,
                       labels=("river", "good", "cold"))
    assert paired.task_type.name == "text_pair_multi_label" and paired.labels == ("river", "good", "cold")
    ids = load_task([{"text": r["text"], "labels": [NAMES.index(n) for n in r["labels"]]} for r in rows],
                    labels=NAMES)
    assert ids.split("test") == task.split("test")


@pytest.mark.parametrize("cell, message", [
    ('["good", "good"]', r"rows.jsonl: row 2: column 'labels' names label 'good' twice"),
    ('["good", " good "]', r"rows.jsonl: row 2: column 'labels' names label 'good' twice"),
    ('[1, "1.0"]', r"rows.jsonl: row 2: column 'labels' names label 'good' twice"),  # one id
    ('["good", "warm"]', r"rows.jsonl: row 2: column 'labels' item 1 has label 'warm', which is not "
                         r"one of the model's labels \['cold', 'good', 'river'\]"),
    ('[0, 3]', r"rows.jsonl: row 2: column 'labels' item 1 has label id 3; expected an id in \[0, 3\)"),
    ('null', r"rows.jsonl: row 2: column 'labels' holds None \(NoneType\); expected a list of label "
             r"names or ids \(\[\] for a row with no label\)"),
    ('"good||cold"', r"row 2: column 'labels' holds 'good\|\|cold', with an empty label between "
                     r"separators; expected label names or ids separated by '\|'"),
    ('[0.5]', r"row 2: column 'labels' item 0 holds 0.5; expected a class name or an integer id"),
    ('["nan"]', r"row 2: column 'labels' item 0 has label 'nan', a spelling of a missing value"),
])
def test_bad_label_sets_are_refused_naming_file_row_and_expected(tmp_path, cell, message):
    ids = cell.startswith("[0") or cell.startswith("[1")  # the other rows give ids too
    rows = [{"text": "a good day", "labels": ["good"]}, *_rows(30)]
    if ids:
        rows = [r | {"labels": [NAMES.index(n) for n in r["labels"]]} for r in rows]
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(1, f'{{"text": "a cold river", "labels": {cell}}}')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        load_task(path, labels=NAMES, task_type="text_multi_label")


def test_a_csv_label_set_is_read_as_one_unless_the_task_type_says_otherwise(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("text,label\n" + "".join(f"row {i},{('good|cold', 'cold')[i % 2]}\n"
                                             for i in range(30)))
    assert load_task(path, labels=("good", "cold")).task_type.name == "text_multi_label"
    with pytest.raises(ValueError, match="has label 'good\\|cold', which is not one of the model's"):
        load_task(path, labels=("good", "cold"), task_type="text_classification")
    with pytest.raises(ValueError, match="rows.csv: row 3: column 'label' names label 'good' twice"):
        path.write_text("text,label\nrow 0,good\nrow 1,cold\nrow 2,good|good\n"
                        + "".join(f"row {i},good\n" for i in range(3, 30)))
        load_task(path, task_type="text_multi_label")


# ---------------------------------------------------------------------------- metric
def _numpy_f1(logits: np.ndarray, gold: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    predicted = 1.0 / (1.0 + np.exp(-logits)) >= threshold
    gold = gold.astype(bool)
    tp, fp, fn = (predicted & gold).sum(0), (predicted & ~gold).sum(0), (~predicted & gold).sum(0)
    micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum())
    present = tp + fp + fn > 0
    macro = np.mean((2 * tp / np.maximum(2 * tp + fp + fn, 1))[present])
    return float(micro), float(macro)


def test_micro_and_macro_f1_are_the_sigmoid_threshold_f1s(tokenizer):
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2, (200, 4))
    gold = rng.random((200, 4)) < np.array([0.5, 0.2, 0.05, 0.0])
    evidence = MICRO_F1.evidence(Readout.LABELS.predict(logits), gold.astype(int), None)
    micro, macro = _numpy_f1(logits, gold)
    assert MICRO_F1.value(evidence) == pytest.approx(micro, abs=1e-12)
    assert MACRO_F1.value(evidence) == pytest.approx(macro, abs=1e-12)
    assert MICRO_F1.details(evidence)["macro_f1"] == pytest.approx(macro, abs=1e-12)
    weights = np.random.default_rng(0).integers(0, 3, (5, 200))
    rows = np.repeat(np.arange(200), weights[2])  # a resample is the metric of its copies
    assert MICRO_F1.resampled(evidence, weights)[2] == pytest.approx(_numpy_f1(logits[rows], gold[rows])[0])
    # through the task: what a model scores on a split, read as label sets, not argmax
    task = load_task(_rows(), labels=NAMES)
    evaluation = task.evaluation(tokenizer, "test", batch_size=8)
    assert isinstance(evaluation, LabelSetEvaluation)
    model = _model()
    outputs = evaluation.outputs(jit_forward(model))
    direct = evaluation.gather(outputs)
    gold = evaluation.encoded.labels
    assert set(np.sum(1 / (1 + np.exp(-direct)) >= 0.5, axis=1)) - {1}  # argmax would differ
    score = evaluation.score(outputs, outputs)
    assert score["value"] == pytest.approx(_numpy_f1(direct, gold)[0], abs=1e-12)
    assert score["agreement"] == 1.0 and score["metric"] == "micro_f1"
    encoded = task.encode(tokenizer, task.split("test"))
    assert task.score(direct, encoded)["value"] == pytest.approx(score["value"])


def test_chance_is_the_best_constant_label_set():
    task = load_task(_rows(200), labels=NAMES)
    gold = np.array([[n in e["labels"] for n in range(3)] for e in task.split("train")], int)
    encoded = sj.tasks.EncodedSplit(np.zeros((len(gold), 4), np.int32), np.ones((len(gold), 4), np.int32),
                                    np.zeros((len(gold), 4), np.int32), gold, label_sets=True)
    chance = chance_level(task.task_type, task.labels, encoded)
    best = max(_numpy_f1(np.where(np.isin(np.arange(3), keep), 1.0, -1.0)[None].repeat(len(gold), 0), gold)[0]
               for keep in ([0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]))
    assert chance.metric == "micro_f1" and chance.value == pytest.approx(best)


# ----------------------------------------------------------------------------- proxy
def test_the_label_kl_is_zero_on_fp32_per_row_and_grows_with_the_change(tokenizer):
    rng = np.random.default_rng(2)
    reference = rng.normal(0, 2, (6, 4))
    assert np.all(LABEL_KL.divergence(reference, reference) == 0.0)
    moved = reference.copy()
    moved[3, 1] += 0.5
    per_row = LABEL_KL.divergence(moved, reference)
    p, q = (1 / (1 + np.exp(-x[3])) for x in (reference, moved))
    kl = np.mean(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)))
    assert per_row.shape == (6,) and np.flatnonzero(per_row).tolist() == [3]
    assert per_row[3] == pytest.approx(kl, rel=1e-9)
    assert LABEL_KL.divergence(reference + 1.0, reference).mean() > LABEL_KL.divergence(
        reference + 0.1, reference).mean() > 0
    task = load_task(_rows(), labels=NAMES)
    evaluation = task.evaluation(tokenizer, "search", batch_size=8)
    outputs = evaluation.outputs(jit_forward(_model()))
    assert evaluation.proxy_kind is LABEL_KL and evaluation.proxy(outputs, outputs) == 0.0
    small, large = ([o + s * np.std(o) for o in outputs] for s in (0.1, 0.5))
    assert 0 < evaluation.proxy(small, outputs) < evaluation.proxy(large, outputs)


def test_the_unlabelled_search_of_a_multi_label_head_measures_the_label_kl():
    rngs = nnx.Rngs(3)
    model = sj.EncoderModel(TINY_CONFIG, make_head("sequence_classification", TINY_CONFIG, num_labels=4,
                                                   problem_type=MULTI, rngs=rngs), rngs=rngs)
    objective = UnlabelledObjective(model, random_batches(2))
    assert objective.proxy_kind is LABEL_KL and objective.proxy(objective.reference) == 0.0
    moved = [r + 0.3 for r in objective.reference]
    direct = np.mean(np.concatenate([LABEL_KL.divergence(m, r)[b["attention_mask"].sum(-1) > 0]
                                     for m, r, b in zip(moved, objective.reference, objective.batches)]))
    assert objective.proxy(moved) == pytest.approx(direct) and direct > 0


# ------------------------------------------------------------------------ head fits
def test_a_multi_label_head_and_a_one_class_task_type_are_refused_both_ways(tokenizer, tmp_path):
    labelled = load_task(_rows(), labels=NAMES)
    classes = load_task([{"text": r["text"], "label": "good" if "good" in r["text"] else "cold"}
                         for r in _rows()], labels=("cold", "good"))
    reads_classes = r"reads classes; the model's head has 3 outputs read as labels \(problem_type " \
                    r"multi_label_classification.*use task type text_multi_label or text_pair_multi_label"
    wrong = dataclasses.replace(classes, labels=NAMES)  # as wide as the model's head
    with pytest.raises(ValueError, match=reads_classes):
        check_head_fits(_model(), wrong)
    with pytest.raises(ValueError, match=r"reads a set of labels per row \(multi-label.*the model's "
                                         r"head has 3 outputs read as classes.*text_classification"):
        check_head_fits(_model(problem_type=None), labelled)
    quantized = sj.quantize(_model(), sj.PrecisionMap.preset("fully_quant", CONFIG.num_layers))
    check_head_fits(quantized, labelled)
    with pytest.raises(ValueError, match="reads classes; the model's head has 3 outputs read as labels"):
        load_task(_rows(), task_type="text_classification", head="sequence_classification",
                  readout=Readout.LABELS, labels=NAMES)
    for entry in (lambda: evaluate(_model(), wrong, tokenizer=tokenizer),
                  lambda: task_objective(_model(), wrong, tokenizer),
                  lambda: run_search(_model(), tokenizer, wrong, out=tmp_path / "s"),
                  lambda: finetune(_model(), wrong, tokenizer, progress=False),
                  lambda: finetune(_model(), dataclasses.replace(
                      labelled, task_type=sj.tasks.TASK_TYPES["text_classification"]),
                      tokenizer, progress=False)):
        with pytest.raises(ValueError, match="the model's head"):
            entry()


# --------------------------------------------------------------------------- serving
def test_the_engine_predicts_label_sets_by_the_sigmoid_threshold(minilm_dir):
    model = _model()
    model.tokenizer = sj.Tokenizer.from_pretrained(minilm_dir)
    texts = [r["text"] for r in _rows(12)]
    engine = sj.compile(model, seq_buckets=(16,), batch_size=4)
    out = engine(texts)
    expected = 1 / (1 + np.exp(-out.logits)) >= 0.5
    assert engine.label_threshold == 0.5
    assert out.labels.shape == (12, 3) and out.labels.dtype == bool
    np.testing.assert_array_equal(out.labels, expected)
    assert out.label_names == [[NAMES[i] for i in np.flatnonzero(row)] for row in expected]
    assert {len(names) for names in out.label_names} - {1}  # not one label per row


# --------------------------------------------------------------------------- threshold
P = np.array([0.4, 0.2, 0.7])  # the sigmoids of NAMES in every row of `_constant_model`
LOGITS = np.log(P / (1 - P))
AT_0_3, AT_0_5 = ["cold", "river"], ["river"]  # what a row predicts at each threshold


def _constant_model():
    """A multi-label model whose every row has the sigmoids `P`: 'cold' (0.4) is predicted at
    a threshold of 0.3, not at 0.5."""
    rngs = nnx.Rngs(0)
    head = make_head("sequence_classification", CONFIG, num_labels=3, rngs=rngs, labels=NAMES,
                     problem_type=MULTI)
    model = sj.EncoderModel(CONFIG, head, rngs=rngs)
    model.head.classifier.kernel[...] = np.zeros_like(model.head.classifier.kernel[...])
    model.head.classifier.bias[...] = LOGITS.astype(np.float32)
    return model


def test_readout_reads_label_sets_at_the_threshold_given():
    other = np.log(np.array([0.9, 0.05, 0.35]) / (1 - np.array([0.9, 0.05, 0.35])))
    logits = np.stack([LOGITS, other])
    np.testing.assert_array_equal(Readout.LABELS.predict(logits), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(Readout.LABELS.predict(logits, 0.3), [[1, 0, 1], [1, 0, 1]])
    np.testing.assert_array_equal(Readout.LABELS.predict(logits, np.float32(0.8)), [[0, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(Readout.CLASSES.predict(logits, 0.3), [2, 0])  # no threshold


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, float("nan"), float("inf"), "0.3", None, True])
def test_a_threshold_outside_0_to_1_is_refused_naming_it(bad):
    for readout in (Readout.LABELS, Readout.CLASSES):
        with pytest.raises(ValueError, match=rf"label threshold {re.escape(repr(bad))} must be a "
                                             "number strictly between 0 and 1"):
            readout.predict(np.stack([LOGITS]), bad)


def test_the_engine_reads_label_sets_at_its_label_threshold():
    model = _constant_model()
    model.tokenizer = _minilm_tokenizer()
    engine = sj.compile(model, seq_buckets=(16,), batch_buckets=(4,), label_threshold=0.3)
    out = engine(["a good day", "a cold river", "night"])
    assert engine.label_threshold == 0.3
    np.testing.assert_allclose(1 / (1 + np.exp(-out.logits)), np.tile(P, (3, 1)), atol=1e-6)
    assert out.label_names == [AT_0_3] * 3
    np.testing.assert_array_equal(out.labels, np.tile([True, False, True], (3, 1)))
    one_class = tiny_classifier(num_labels=3)
    one_class.tokenizer = model.tokenizer
    with CompileCounter() as counter:  # both refused before anything compiles
        with pytest.raises(ValueError, match=r"label threshold 1\.0 must be a number strictly"):
            sj.compile(model, seq_buckets=(16,), batch_buckets=(4,), label_threshold=1.0)
        with pytest.raises(ValueError, match=r"label_threshold=0\.3 is for a multi-label head "
                                             r"\(Readout\.LABELS.*this model's 'sequence_classification' "
                                             r"head is read as classes \(a softmax, one class per row\) \(Readout\.CLASSES\)"):
            sj.compile(one_class, seq_buckets=(16,), batch_buckets=(4,), label_threshold=0.3)
    assert counter.count == 0


def test_a_models_own_threshold_is_saved_and_is_the_default_wherever_it_is_served(
        tmp_path, capsys, minilm_dir):
    model = _constant_model()
    model.head.label_threshold = 0.3  # as a search or fine-tune at --threshold 0.3 leaves it
    folder = save_pretrained(model, tmp_path / "own", tokenizer_dir=minilm_dir)
    assert json.loads((folder / "config.json").read_text())["samp_jax_label_threshold"] == 0.3
    loaded = sj.load(folder)
    assert loaded.label_threshold == 0.3 and sj.load_pretrained(folder).label_threshold == 0.3
    engine = sj.compile(loaded, seq_buckets=(16,), batch_buckets=(4,))
    assert engine.label_threshold == 0.3 and engine(["a cold river"]).label_names == [AT_0_3]
    given = sj.compile(loaded, seq_buckets=(16,), batch_buckets=(4,), label_threshold=0.5)
    assert given(["a cold river"]).label_names == [AT_0_5]  # what is given wins
    quantized = sj.quantize(loaded, sj.PrecisionMap.preset("fp32", CONFIG.num_layers))
    assert sj.load(quantized.save(tmp_path / "q")).label_threshold == 0.3
    data, out = tmp_path / "rows.jsonl", tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(60)))
    assert main_ok(["predict", "--model", str(tmp_path / "q"), "--data", str(data), "--out", str(out),
                    "--json"], capsys)
    assert {tuple(json.loads(line)["labels"]) for line in out.read_text().splitlines()} == {tuple(AT_0_3)}
    assert main(["eval", "--model", str(folder), "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label_threshold"] == 0.3
    plain = save_pretrained(_constant_model(), tmp_path / "plain", tokenizer_dir=minilm_dir)
    assert "samp_jax_label_threshold" not in json.loads((plain / "config.json").read_text())
    assert sj.load(plain).label_threshold is None  # read at LABEL_THRESHOLD
    assert sj.compile(sj.load(plain), seq_buckets=(16,), batch_buckets=(4,)).label_threshold == 0.5


@pytest.mark.parametrize("bad", [0, 1.5, "0.3", [0.3], True])
def test_a_bad_saved_threshold_is_refused_naming_the_file(tmp_path, minilm_dir, bad):
    folder = save_pretrained(_constant_model(), tmp_path / "m", tokenizer_dir=minilm_dir)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"samp_jax_label_threshold": bad}))
    with pytest.raises(sj.ConfigError, match=rf"{re.escape(str(folder / 'config.json'))}: "
                                             rf"samp_jax_label_threshold: label threshold "
                                             rf"{re.escape(repr(bad))} must be a number strictly"):
        sj.load_pretrained(folder)
    one_class = tiny_classifier(num_labels=3)
    with pytest.raises(ValueError, match=r"label_threshold=0\.3 is for a multi-label head"):
        make_head("sequence_classification", TINY_CONFIG, num_labels=3, label_threshold=0.3,
                  rngs=nnx.Rngs(0))
    assert one_class.label_threshold is None


def test_f1_agreement_and_the_search_metric_are_measured_at_the_tasks_threshold(tokenizer):
    default = load_task(_rows(), labels=NAMES)
    task = dataclasses.replace(default, label_threshold=0.3)
    evaluation, at_default = (t.evaluation(tokenizer, "test", batch_size=8) for t in (task, default))
    assert evaluation.threshold == 0.3 and at_default.threshold == 0.5
    constant = [np.tile(LOGITS, (len(b["input_ids"]), 1)) for b in evaluation.batches]
    gold = evaluation.encoded.labels
    rows = np.tile(LOGITS, (len(gold), 1))
    micro, macro = _numpy_f1(rows, gold, 0.3)
    assert micro != pytest.approx(_numpy_f1(rows, gold, 0.5)[0])  # the threshold matters here
    score = evaluation.score(constant)
    assert score["value"] == pytest.approx(micro) and score["macro_f1"] == pytest.approx(macro)
    assert evaluation.metric(constant) == pytest.approx(micro)  # what the search compares
    assert at_default.score(constant)["value"] == pytest.approx(_numpy_f1(rows, gold, 0.5)[0])
    encoded = task.encode(tokenizer, task.split("test"))
    assert task.score(rows, encoded)["value"] == pytest.approx(micro)
    moved = [c.copy() for c in constant]  # 'cold' at 0.6: predicted at 0.3 and 0.5 alike
    for m in moved:
        m[:, 0] = np.log(0.6 / 0.4)
    assert evaluation.score(constant, moved)["agreement"] == 1.0
    assert at_default.score(constant, moved)["agreement"] == 0.0
    assert evaluation.proxy(constant, moved) == at_default.proxy(constant, moved) > 0
    objective = task_objective(_constant_model(), task, tokenizer, max_examples=8)
    assert objective.evaluation.threshold == 0.3
    with pytest.raises(ValueError, match="label threshold 0 must be a number strictly between 0 and 1"):
        dataclasses.replace(task, label_threshold=0)
    classes = load_task([{"text": r["text"], "label": NAMES[i % 3]} for i, r in enumerate(_rows())])
    with pytest.raises(ValueError, match=r"reads no label sets; label_threshold=0\.3 is for the "
                                         r"multi-label task types"):
        dataclasses.replace(classes, label_threshold=0.3)


def test_the_command_line_reads_label_sets_at_the_threshold_given(tmp_path, capsys, minilm_dir):
    folder = save_pretrained(_constant_model(), tmp_path / "constant", tokenizer_dir=minilm_dir)
    data, out = tmp_path / "rows.jsonl", tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(60)))
    code = main(["predict", "--model", str(folder), "--data", str(data), "--out", str(out),
                 "--batch-size", "1", "--threshold", "0.3", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert set(result.pop("versions")) >= {"samp_jax"} and result.pop("created")
    assert result == {"predictions": str(out), "rows": 60, "label_threshold": 0.3,
                      "max_length": 64, "truncated": 0}
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert {tuple(r["labels"]) for r in written} == {tuple(AT_0_3)}
    assert all(r["scores"]["cold"] == pytest.approx(0.4, abs=1e-6) for r in written)
    code = main(["eval", "--model", str(folder), "--data", str(data), "--precision", "fp16",
                 "--threshold", "0.3", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    test = load_task(data, labels=NAMES).split("test")  # the split eval scores (seed 0)
    gold = np.array([[i in e["labels"] for i in range(3)] for e in test], int)
    rows = np.tile(LOGITS, (len(gold), 1))
    assert result["label_threshold"] == 0.3 and result["rows"][0]["examples"] == len(gold)
    assert result["rows"][0]["value"] == pytest.approx(_numpy_f1(rows, gold, 0.3)[0])
    assert result["rows"][0]["value"] != pytest.approx(_numpy_f1(rows, gold, 0.5)[0])


# ------------------------------------------------------------------------- fine-tuning
@pytest.mark.parametrize("gold, problem", [  # one fine-tune in the fast tier, all three in make test
    ("labels", MULTI), pytest.param("label", MULTI, marks=pytest.mark.slow),
    pytest.param("score", "regression", marks=pytest.mark.slow)])
def test_finetuning_lowers_the_loss_and_names_the_problem_type(tokenizer, tmp_path, gold, problem):
    rows = _rows(160)
    if gold == "labels":
        task, model = load_task(rows, labels=NAMES), _model(problem_type=None)
    else:
        value = (lambda r: int("good" in r["labels"])) if gold == "label" else (lambda r: len(r["labels"]) + 0.5)
        task = load_task([{"text": r["text"], gold: value(r)} for r in rows],
                         head="sequence_classification", readout=Readout.SCORE)
        model = _model(num_labels=1, problem_type=None)
    config = FinetuneConfig(learning_rate=2e-3, batch_size=16, epochs=1, min_steps=40, eval_every=20,
                            warmup_fraction=0.1)
    result = finetune(model, task, tokenizer, config, progress=False)
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert losses[-1] < 0.8 * losses[0]
    assert model.head.problem_type is None and result.model.head.problem_type == problem
    saved = save_pretrained(result.model, tmp_path / "tuned")
    assert json.loads((saved / "config.json").read_text())["problem_type"] == problem
    assert sj.load_pretrained(saved).readout is result.model.readout is task.task_type.readout


@pytest.mark.slow
def test_the_command_line_serves_a_multi_label_model_end_to_end(tmp_path, capsys, minilm_dir):
    folder = save_pretrained(_model(), tmp_path / "multi", tokenizer_dir=minilm_dir)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(120)))
    assert main(["eval", "--model", str(folder), "--data", str(data),
                            "--precision", "fully_quant", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task_type"] == "text_multi_label" and result["rows"][0]["metric"] == "micro_f1"
    assert main_ok(["predict", "--model", str(folder), "--data", str(data), "--out",
                    str(tmp_path / "p.jsonl")], capsys)
    first = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert set(first) == {"text", "labels", "scores", "truncated"} and set(first["scores"]) == set(NAMES)
    assert first["labels"] == [n for n in NAMES if first["scores"][n] >= 0.5]
    assert result["label_threshold"] == 0.5  # the default, recorded beside the metric
    assert main_ok(["search", "--model", str(folder), "--data", str(data), "--out", str(tmp_path / "s"),
                    "--threshold", "0.3", "--max-length", "6", "--json"], capsys)
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["metric"] == "micro_f1" and "chosen" in summary["test"]
    assert summary["label_threshold"] == 0.3 and summary["max_length"] == 6
    assert "every label whose sigmoid is at least 0.3" in (tmp_path / "s" / "report.md").read_text()
    searched = sj.load(tmp_path / "s" / "model")
    assert searched.readout is Readout.LABELS
    # the saved model serves as it was scored: rows cut at 6 tokens, label sets read at 0.3
    assert searched.label_threshold == 0.3 and searched.tokenizer.max_length == 6
    served = {}
    for name, options in (("own", []), ("given", ["--threshold", "0.3", "--max-length", "6"])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["predict", "--model", str(tmp_path / "s" / "model"), "--data", str(data),
                     "--out", str(out), "--json", *options]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["label_threshold"] == 0.3 and result["max_length"] == 6
        served[name] = out.read_text()
    assert served["own"] == served["given"]
    tuned = tmp_path / "tuned"
    assert main_ok(["finetune", "--model", str(folder), "--data", str(data), "--out", str(tuned),
                    "--epochs", "1", "--min-steps", "4", "--threshold", "0.3", "--json"], capsys)
    assert json.loads((tuned / "config.json").read_text())["problem_type"] == MULTI
    assert json.loads((tuned / "finetune.json").read_text())["label_threshold"] == 0.3
    assert sj.load(tuned).label_threshold == 0.3  # the threshold its checkpoint was kept at
    one_class = tmp_path / "one.jsonl"
    one_class.write_text("".join(json.dumps({"text": r["text"], "label": NAMES[i % 3]}) + "\n"
                                 for i, r in enumerate(_rows(120))))
    assert main(["finetune", "--model", str(folder), "--data", str(one_class),
                            "--out", str(tmp_path / "no")]) == 1
    assert "reads classes; the model's head has 3 outputs read as labels" in capsys.readouterr().err


def main_ok(argv: list[str], capsys) -> bool:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    return True


@pytest.mark.parametrize("vector", [lambda hot: hot, lambda hot: [float(v) for v in hot],
                                    lambda hot: [bool(v) for v in hot]])
def test_a_multi_hot_column_is_read_as_the_labels_where_it_holds_one(tmp_path, vector):
    """HF's multi-hot encoding ([0, 1, 1] for labels 1 and 2), as BCE training stores it: not
    the ids 0 and 1 (which, for two labels, would name both labels in every row)."""
    rows = _rows(30)
    hot = [[int(name in r["labels"]) for name in NAMES] for r in rows]
    data = tmp_path / "hot.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"], "labels": vector(h)}) + "\n"
                            for r, h in zip(rows, hot)))
    task = load_task(data, labels=NAMES, task_type="text_multi_label")
    gold = {r["text"]: sorted(NAMES.index(n) for n in r["labels"]) for r in rows}
    examples = [e for s in ("test", "search", "calibration") for e in task.split(s)]
    assert examples and all(sorted(e["labels"]) == gold[e["text"]] for e in examples)
    two = [{"text": r["text"], "labels": [1, 0] if i % 2 else [0, 1]} for i, r in enumerate(rows)]
    split = load_task(two, labels=["toxic", "insult"], task_type="text_multi_label").split("test")
    assert all(len(e["labels"]) == 1 for e in split)  # one label each, not both
    with pytest.raises(ValueError, match=r"names label 0 twice .*multi-hot, is read as such only "
                                         r"when every row has one, of the model's width"):
        load_task([dict(r, labels=h) for r, h in zip(rows, hot)] + [{"text": "x", "labels": [0, 0]}],
                  labels=NAMES + ("other",), task_type="text_multi_label")


def test_a_quantized_model_saved_as_measured_keeps_its_threshold_length_and_data(tmp_path):
    from samp_jax.workflows.pipeline import serve_as_measured
    model = _constant_model()
    quantized = sj.quantize(model, sj.PrecisionMap.preset("fp32", CONFIG.num_layers))
    task = dataclasses.replace(load_task(_rows(), labels=NAMES, seed=2), label_threshold=0.3,
                               max_length=12)
    serve_as_measured(quantized, _minilm_tokenizer(), task)
    assert model.label_threshold is None  # the float model is left as it was
    loaded = sj.QuantizedModel.load(quantized.save(tmp_path / "q"))
    assert loaded.label_threshold == 0.3 and loaded.tokenizer.max_length == 12
    assert loaded.info["data"] == {"task": task.name, "source": task.source, "split_seed": 2,
                                   "max_length": 12}
