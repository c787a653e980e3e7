"""NaN or Inf model outputs (a precision whose range the activations pass: FP16 overflows above
65,504) are never read as answers. Argmax of NaN is class 0: read as an answer, an all-NaN FP16
variant would score the share of class 0 (on imbalanced data, better than FP32), a search could
return it, and `predict` would write class 0 with a NaN score (not JSON). Such rows make the
metric NaN with a warning naming the variant and the count, the search's drop for them is
infinite (never within tolerance; a NaN FP32 reference is refused), the engine gives them label
-1, and `predict` writes null answers marked `"non_finite": true`, in strict JSON."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

import samp_jax as sj
from calibrate.search.objectives import check_reference_finite
from samp_jax.app import predictions
from samp_jax.app.cli import main
from samp_jax.models import save_pretrained
from samp_jax.tasks.metrics import IGNORE
from samp_jax.tasks.types import EncodedSplit, get_task_type, non_finite_rows, task_score
from tests.helpers import GOLDEN

LABELS = ("neg", "neu", "pos")


def _encoded(labels) -> EncodedSplit:
    labels = np.asarray(labels)
    ids = np.ones((len(labels), 4), np.int32)
    return EncodedSplit(input_ids=ids, attention_mask=np.ones_like(ids),
                        token_type_ids=np.zeros_like(ids), labels=labels)


def test_a_row_of_nan_logits_makes_accuracy_nan_not_class_zero():
    task_type = get_task_type("text_classification")
    logits = np.array([[0.0, 1.0, 0.0], [np.nan, np.nan, np.nan], [1.0, 0.0, 0.0]], np.float32)
    score = task_score(task_type, task_type.metric, LABELS, logits, _encoded([1, 0, 0]))
    assert math.isnan(score["value"]) and score["non_finite_rows"] == 1
    finite = task_score(task_type, task_type.metric, LABELS, logits[[0, 2]], _encoded([1, 0]))
    assert finite["value"] == 1.0 and "non_finite_rows" not in finite


def test_per_token_only_labelled_positions_count():
    logits = np.zeros((2, 3, 2), np.float32)
    logits[0, 2] = np.inf  # an unlabelled position (a later sub-token): not read
    logits[1, 1] = np.nan  # a labelled one
    labels = np.array([[0, 1, IGNORE], [1, 0, IGNORE]])
    assert non_finite_rows(logits, labels) == 1
    assert non_finite_rows(logits) == 2


def test_the_search_refuses_a_nan_reference():
    with pytest.raises(ValueError, match="the FP32 model gives NaN or Inf outputs for 3 of 40 rows"):
        check_reference_finite(3, 40, "reviews")
    check_reference_finite(0, 40, "reviews")


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory):
    """The tiny classifier with its last LayerNorm's scale times 1e6: finite in FP32, past
    FP16's range (its logits overflow to Inf, then NaN)."""
    source = GOLDEN / "families" / "bert" / "seqcls"  # labels neg, neu, pos
    model = sj.load(source)
    norm = model.encoder.layers[-1].ffn_norm
    norm.scale[...] = norm.scale[...] * 1e6
    folder = save_pretrained(model, tmp_path_factory.mktemp("m") / "overflow",
                             tokenizer_dir=source, labels=LABELS)
    data = tmp_path_factory.mktemp("d") / "rows.csv"
    texts = json.loads((source.parent / "texts.json").read_text())["single"]
    words = sorted({w.strip(".,;!?") for t in texts for w in t.split()} - {""})
    rng = np.random.default_rng(0)
    data.write_text("text,label\n" + "".join(
        f"{' '.join(rng.choice(words, 6))},{rng.choice(LABELS)}\n" for _ in range(40)))
    return folder, data


def test_eval_reports_nan_and_warns_for_a_variant_that_overflows(overflowing, capsys):
    folder, data = overflowing
    code = main(["eval", "--model", str(folder), "--split-file", f"test={data}",
                 "--precision", "fp16", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = json.loads(out)["rows"]  # strict JSON: NaN is written as null
    assert rows[0]["value"] is not None and "non_finite_rows" not in rows[0]
    assert rows[1]["variant"] == "fp16" and rows[1]["value"] is None
    assert rows[1]["non_finite_rows"] == rows[1]["examples"] == 40
    assert "samp-jax eval: warning: fp16 gives NaN or Inf outputs for 40 of 40 test rows" in err
    assert set(json.loads(out)["versions"]) == {"samp_jax", "jax", "jaxlib", "flax"}


def test_predict_writes_nothing_when_every_row_overflows(overflowing, tmp_path, capsys):
    """A file of null answers only would pass for a result in a pipeline that checks the exit
    code: every row non-finite is an error, and `--out` is left as it was."""
    folder, data = overflowing
    quantized = sj.quantize(sj.load(folder), sj.PrecisionMap.preset("fp16", 2), dtype=jnp.float16)
    quantized.save(tmp_path / "fp16")
    out = tmp_path / "p.jsonl"
    out.write_text("yesterday's predictions\n")
    code = main(["predict", "--model", str(tmp_path / "fp16"), "--data", str(data),
                 "--out", str(out), "--json"])
    stdout, err = capsys.readouterr()
    assert code == 1 and stdout == ""
    assert "every one of the 40 rows gave NaN or Inf outputs" in err and str(out) in err
    assert out.read_text() == "yesterday's predictions\n"
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["p.jsonl"]  # no temporary


def _chunks_with(non_finite: list[int]):
    """A `predictions.chunks` stand-in: chunk i holds 2 rows, `non_finite[i]` of them null."""
    def chunks(model, rows, **options):
        for i, bad in enumerate(non_finite):
            lines = [{"label": None, "non_finite": True}] * bad + [{"label": "pos"}] * (2 - bad)
            yield predictions.Chunk(data="".join(json.dumps(x) + "\n" for x in lines).encode(),
                                    truncated=0, non_finite=bad, done=2 * (i + 1))
    return chunks


@pytest.mark.parametrize("non_finite, refused", [([0, 1], False), ([2, 1], False), ([2, 2], True)])
def test_predictions_are_refused_only_when_every_row_is_non_finite(monkeypatch, tmp_path,
                                                                   non_finite, refused):
    monkeypatch.setattr(predictions, "chunks", _chunks_with(non_finite))
    monkeypatch.setattr(predictions, "serving_limit", lambda model, max_length=None: 8)
    out = tmp_path / "p.jsonl"
    rows = [{"text": "x"}] * 4
    if refused:
        with pytest.raises(predictions.NoFiniteOutputs, match="every one of the 4 rows"):
            predictions.write(None, rows, out)
        assert not out.exists() and not list(tmp_path.iterdir())
    else:
        written = predictions.write(None, rows, out)
        assert written.non_finite == sum(non_finite) and len(out.read_text().splitlines()) == 4


def test_the_engine_reads_no_label_from_nan_logits(overflowing):
    """Through `samp_jax.compile` too: a row of NaN logits has label -1 and name None, and
    `non_finite` marks it."""
    folder, _ = overflowing
    quantized = sj.quantize(sj.load(folder), sj.PrecisionMap.preset("fp16", 2), dtype=jnp.float16)
    engine = sj.compile(quantized, seq_buckets=(16,), batch_buckets=(2,))
    out = engine(["A cat sleeps.", "Nobody is outside."])
    assert out.non_finite.tolist() == [True, True]
    assert out.labels.tolist() == [-1, -1] and out.label_names == [None, None]
    finite = sj.compile(sj.load(folder), seq_buckets=(16,), batch_buckets=(2,))
    out = finite(["A cat sleeps.", "Nobody is outside."])
    assert out.non_finite.tolist() == [False, False] and all(n in LABELS for n in out.label_names)


def test_embedding_pairs_count_a_pair_once_whichever_text_is_nan():
    from samp_jax.tasks.evaluation import EmbeddingEvaluation
    from samp_jax.tasks.metrics import get_metric

    tokenizer = sj.Tokenizer.from_pretrained(GOLDEN / "families" / "bert" / "base")
    examples = [{"text": "a cat", "text_pair": "a dog", "label": 1},
                {"text": "a dog", "text_pair": "the sun", "label": 0},
                {"text": "the sun", "text_pair": "a cat", "label": 1}]
    evaluation = EmbeddingEvaluation(tokenizer, examples, metric=get_metric("roc_auc"))
    outputs = [np.ones((len(rows), 4), np.float32) for rows in evaluation._rows]
    index = evaluation.texts.index("a dog")
    for rows, out in zip(evaluation._rows, outputs):
        out[np.flatnonzero(np.asarray(rows) == index)] = np.nan
    assert evaluation.non_finite(outputs) == 2  # the two pairs holding "a dog"
    score = evaluation.score(outputs)
    assert math.isnan(score["value"]) and score["non_finite_rows"] == 2 <= score["examples"]


@pytest.mark.slow
def test_a_search_whose_tolerance_no_map_meets_exits_3_with_its_outputs(overflowing, tmp_path,
                                                                         capsys, monkeypatch):
    """On a GPU target every candidate of the overflowing model is FP16 or narrower, so none
    meets the tolerance: the outputs are written to look at, the exit code says it failed, and
    the summary names them: `out` as given, the files inside it relative to it."""
    folder, data = overflowing
    monkeypatch.chdir(tmp_path)
    code = main(["search", "--model", str(folder), "--data", str(data), "--target", "h100",
                 "--options", "fp16,int8-dynamic", "--tolerance", "5%", "--out", "s", "--json"])
    stdout, err = capsys.readouterr()
    assert code == 3, err
    assert "; fp16 is kept, as the options name it" in err  # no move to BF16: it was named
    summary = json.loads(stdout)
    assert summary["tolerance_met"] is False and summary["test_within_tolerance"] is False
    assert summary["default_option"] == "fp16" and summary["float_overflows"][0]["float_option"] == "fp16"
    last = err.rstrip().splitlines()[-1]
    assert last.startswith(
        "samp-jax search: error: no map meets the tolerance (5% relative) on the search split")
    assert "; fp16 overflowed on 8 of 8 search rows;" in last
    assert summary["out"] == "s" and summary["quantized_model"] == "model"  # as given; inside it
    assert (tmp_path / "s" / "model" / "quantization.json").is_file()
    assert summary["versions"]["samp_jax"] == sj.__version__ and summary["created"].endswith("Z")


@pytest.mark.slow
def test_a_search_moves_on_to_bf16_when_the_model_overflows_fp16(overflowing, tmp_path, capsys):
    """Without a float option named, a GPU target's search that finds the all-FP16 map
    overflowing runs again with BF16 sites and BF16 between sites (FP32's range): the map,
    its model, latency table, summary and report say so, and the model answers."""
    folder, data = overflowing
    out = tmp_path / "s"
    code = main(["search", "--model", str(folder), "--data", str(data), "--target", "h100",
                 "--options", "int8-dynamic", "--tolerance", "0.45", "--tolerance-mode",
                 "absolute", "--out", str(out), "--json"])  # wide: the search split has 8 rows
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert ("warning: the model overflows fp16: with every site and the values between sites "
            "in fp16, 8 of 8 search rows give NaN or Inf outputs") in err
    assert "the search runs with bf16 sites and bf16 between sites instead" in err
    summary = json.loads(stdout)
    assert (summary["default_option"], summary["compute_dtype"], summary["options"]) == (
        "bf16", "bfloat16", ["bf16", "int8-dynamic"])
    assert summary["float_overflows"] == [{"float_option": "fp16", "non_finite_rows": 8, "rows": 8}]
    assert summary["tolerance_met"] is True and summary["test_within_tolerance"] is True
    assert json.loads((out / "precision_map.json").read_text())["compute_dtype"] == "bfloat16"
    table = json.loads((out / "latency_table.json").read_text())["site_ms"]
    assert "ffn_in/bf16" in table and "ffn_in/fp16" not in table
    assert "the search moved on to bf16" in (out / "report.md").read_text()
    assert json.loads((out / "model" / "quantization.json").read_text())["dtype"] == "bfloat16"
    assert main(["predict", "--model", str(out / "model"), "--data", str(data),
                 "--out", str(tmp_path / "p.jsonl")]) == 0  # it refuses a file of NaN answers
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and not any(r.get("non_finite") for r in rows)


@pytest.mark.parametrize("met, code", [(False, 3), (True, 0), (None, 0)])
def test_the_search_exit_code_follows_the_tolerance_verdict(overflowing, tmp_path, capsys,
                                                            monkeypatch, met, code):
    """3 when no map met the tolerance; 0 when one did or a latency target chose (None)."""
    import types

    from samp_jax.app import cli

    folder, data = overflowing
    summary = {"tolerance_met": met, "tolerance": 0.01, "tolerance_mode": "relative",
               "tolerance_checks": [], "out": str(tmp_path / "s"), "truncation": {}, "test": {}}
    monkeypatch.setattr(cli, "run_search",
                        lambda *args, **kwargs: types.SimpleNamespace(summary=summary, test=None))
    assert main(["search", "--model", str(folder), "--data", str(data), "--out",
                 str(tmp_path / "s"), "--json"]) == code
    err = capsys.readouterr().err
    assert ("no map meets the tolerance (1% relative)" in err) is (met is False)
