"""`--head KIND`: the head a model folder is read with when its config.json names none (older
and converted checkpoints without `architectures`). Without it such a folder is refused in one
line that says how to choose; with it the folder predicts what HF's task class computes; a
`--head` that `--pooling`, finetune's task or a quantized folder contradicts is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samp_jax import PrecisionMap, load, quantize
from samp_jax.app.cli import main
from tests.faults.cli_files import no_slow_work, one_line_error  # noqa: F401  (a fixture)
from tests.helpers import GOLDEN, without_architectures

BERT = GOLDEN / "families" / "bert"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The golden tiny BERT sequence and token classifiers without `architectures`, and a
    JSON Lines file of the golden texts."""
    root = tmp_path_factory.mktemp("head_option")
    texts = json.loads((BERT / "texts.json").read_text())["single"]
    (root / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return {"seqcls": without_architectures(BERT / "seqcls", root / "seqcls"),
            "tokcls": without_architectures(BERT / "tokcls", root / "tokcls"),
            "data": root / "texts.jsonl", "texts": texts}


@pytest.mark.parametrize("head, fits", [("seqcls", "sequence_classification or token_classification"),
                                        ("tokcls", "token_classification")])
def test_a_folder_without_architectures_is_refused_saying_how_to_choose(folders, head, fits,
                                                                        tmp_path, capsys):
    code = main(["predict", "--model", str(folders[head]), "--data", str(folders["data"]),
                 "--out", str(tmp_path / "p.jsonl")])
    one_line_error(capsys, code, 1, "config.json has no `architectures` to state the head",
                   f"that fit {fits};", "--head ")
    assert not (tmp_path / "p.jsonl").exists()


def test_head_reads_the_sequence_classifier_hf_computes(folders, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    code = main(["predict", "--model", str(folders["seqcls"]), "--data", str(folders["data"]),
                 "--out", str(out), "--head", "sequence_classification"])
    assert code == 0, capsys.readouterr().err
    golden = np.load(BERT / "golden.npz")["single_seq_logits"]
    labels = ("neg", "neu", "pos")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["label"] for row in rows] == [labels[i] for i in golden.argmax(-1)]


def test_head_reads_the_token_classifier(folders, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    code = main(["predict", "--model", str(folders["tokcls"]), "--data", str(folders["data"]),
                 "--out", str(out), "--head", "token_classification", "--json"])
    assert code == 0, capsys.readouterr().err
    assert len(out.read_text().splitlines()) == len(folders["texts"])


def test_head_that_pooling_contradicts_is_a_usage_error(folders, tmp_path, capsys, no_slow_work):
    for command in (["predict", "--out", str(tmp_path / "p.jsonl")], ["eval"],
                    ["search", "--out", str(tmp_path / "s")]):
        code = main([*command, "--model", str(folders["seqcls"]), "--data", str(folders["data"]),
                     "--head", "token_classification", "--pooling", "mean"])
        one_line_error(capsys, code, 2, "--pooling mean embeds with the sentence_embedding head; "
                       "--head token_classification reads another")


def test_head_that_no_normalize_contradicts_is_a_usage_error(folders, tmp_path, capsys,
                                                              no_slow_work):
    code = main(["predict", "--out", str(tmp_path / "p.jsonl"), "--model", str(folders["seqcls"]),
                 "--data", str(folders["data"]), "--head", "token_classification",
                 "--pooling", "mean", "--no-normalize"])
    one_line_error(capsys, code, 2, "--pooling mean and --no-normalize embed with the "
                   "sentence_embedding head; --head token_classification reads another")


def test_an_unknown_head_is_a_usage_error_listing_the_kinds(capsys, no_slow_work):
    with pytest.raises(SystemExit) as info:
        main(["predict", "--model", "m", "--data", "d", "--out", "x.jsonl", "--head", "regression"])
    one_line_error(capsys, info.value.code, 2, "argument --head: invalid choice: 'regression'",
                   "sequence_classification")


def test_head_with_the_packaged_model_is_a_usage_error(capsys, no_slow_work):
    code = main(["eval", "--data", "snli", "--head", "sequence_classification"])
    one_line_error(capsys, code, 2, "--head apply to a --model folder")
    code = main(["eval", "--data", "snli-embed", "--prompt-name", "query"])
    one_line_error(capsys, code, 2, "--prompt-name apply to a --model folder")


def test_standard_input_is_for_predict_only(capsys, no_slow_work):
    code = main(["eval", "--model", "m", "--data", "-"])
    one_line_error(capsys, code, 2, "--data -: standard input is read by predict only")


def test_finetune_refuses_a_head_its_task_does_not_train(folders, tmp_path, capsys, no_slow_work):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f"row {i},{'ab'[i % 2]}\n" for i in range(40)))
    code = main(["finetune", "--model", str(folders["tokcls"]), "--data", str(data),
                 "--out", str(tmp_path / "tuned"), "--head", "token_classification"])
    one_line_error(capsys, code, 2, "finetune trains the head its data needs (sequence_classification, for "
                   "text_classification)",
                   "--head token_classification names another")
    assert not (tmp_path / "tuned").exists()


def test_a_quantized_folder_refuses_head(folders, tmp_path, capsys):
    model = load(folders["seqcls"], head="sequence_classification")
    saved = quantize(model, PrecisionMap.preset("fp16", model.config.num_layers)).save(tmp_path / "q")
    code = main(["predict", "--model", str(saved), "--data", str(folders["data"]),
                 "--out", str(tmp_path / "p.jsonl"), "--head", "sequence_classification"])
    one_line_error(capsys, code, 1, "is a quantized model folder", "['head']",
                   "apply to HF checkpoint folders only")
    code = main(["predict", "--model", str(saved), "--data", str(folders["data"]),
                 "--out", str(tmp_path / "p.jsonl")])
    assert code == 0, capsys.readouterr().err


@pytest.mark.slow
def test_finetune_reads_a_base_without_architectures_with_its_tasks_head(folders, tmp_path,
                                                                         capsys):
    """finetune names its task's head itself, so a base whose config names none needs no
    --head; a --head that agrees with the task is accepted."""
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": folders["texts"][i % 16],
                                        "label": ("neg", "neu", "pos")[i % 3]}) + "\n"
                            for i in range(60)))
    for extra in ([], ["--head", "sequence_classification"]):
        out = tmp_path / f"tuned{len(extra)}"
        code = main(["finetune", "--model", str(folders["seqcls"]), "--data", str(data),
                     "--out", str(out), "--min-steps", "2", "--epochs", "0.1", "--json", *extra])
        assert code == 0, capsys.readouterr().err
        assert load(out).head_kind == "sequence_classification"
