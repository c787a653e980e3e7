"""Fault injection for what a user hands the command line: outputs that would land inside an
input or on a device, outputs named for another format, a split given twice, empty paths, a
tolerance the demo cannot use, model folders whose config names no supported family or does
not fit its weights, a precision map file that is not JSON. Each ends with one error line
naming the argument or file, before any slow step, and changes nothing."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import samp_jax as sj
from samp_jax.app import cli, demo, predictions
from samp_jax.app.cli import main
from samp_jax.core.atomic import atomic_file
from tests.faults.cli_files import write_model_and_reviews


@pytest.fixture(scope="module")
def files(tmp_path_factory, minilm_dir):
    return write_model_and_reviews(tmp_path_factory.mktemp("input_faults"), minilm_dir, rows=40)


@pytest.fixture
def no_slow_work(monkeypatch):
    """Fails the test if the command gets as far as loading a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command loaded a model before checking its arguments")
    for module in (cli, demo):
        monkeypatch.setattr(module, "builtin_model", refuse)
    monkeypatch.setattr(cli, "load", refuse)


def _one_line_error(capsys, code: int, expected_code: int, *needles: str) -> str:
    captured = capsys.readouterr()
    assert code == expected_code, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0] == captured.err.splitlines()[-1], captured.err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------ output paths
def test_an_output_inside_the_model_folder_is_refused(files, capsys, no_slow_work):
    model = files / "model"
    before = _snapshot(model)
    for out in (model / "config.json", model / "predictions.jsonl"):
        code = main(["predict", "--model", str(model), "--data", str(files / "data.csv"),
                     "--out", str(out)])
        _one_line_error(capsys, code, 1, f"--out {out} is inside the input {model}")
    code = main(["calibrate", "--model", str(model), "--data", str(files / "data.csv"),
                 "--out", str(model / "quantized")])
    _one_line_error(capsys, code, 1, "is inside the input", "choose a path outside it")
    assert _snapshot(model) == before


def test_an_output_folder_holding_an_input_is_refused(files, tmp_path, capsys, no_slow_work):
    parent = tmp_path / "runs"
    shutil.copytree(files / "model", parent / "model")
    shutil.copyfile(files / "model" / "config.json", parent / "config.json")  # looks replaceable
    code = main(["calibrate", "--model", str(parent / "model"), "--data",
                 str(files / "data.csv"), "--out", str(parent)])
    _one_line_error(capsys, code, 1, f"--out {parent} holds the input {parent / 'model'}")
    assert (parent / "model" / "model.safetensors").is_file()


def test_a_pipe_as_predict_out_is_refused_and_kept(files, tmp_path, capsys, no_slow_work):
    pipe = tmp_path / "predictions.jsonl"
    os.mkfifo(pipe)
    code = main(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(pipe)])
    _one_line_error(capsys, code, 1, f"--out {pipe} is not a regular file")
    with pytest.raises(FileExistsError, match="is not a regular file"):
        with atomic_file(pipe) as tmp:
            tmp.write_text("{}\n")
    assert not pipe.is_file() and pipe.exists()  # still the pipe, not replaced by a file


@pytest.mark.parametrize("name", ["predictions.csv", "predictions.TSV", "predictions.parquet"])
def test_predict_out_named_for_another_format_is_refused(files, tmp_path, capsys, name,
                                                         no_slow_work):
    code = main(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(tmp_path / name)])
    _one_line_error(capsys, code, 1, "predictions are JSON Lines", "'.jsonl'")
    assert not (tmp_path / name).exists()


def test_a_batch_larger_than_the_rows_is_not_compiled(files, monkeypatch):
    seen = {}

    def compile_engine(model, *, batch_size, **kwargs):
        seen["batch_size"] = batch_size
        raise StopIteration  # the compiled shape is all this test needs
    monkeypatch.setattr(predictions, "compile_engine", compile_engine)
    model = sj.load(files / "model")
    rows = [{"text": "good movie"}] * 3
    with pytest.raises(StopIteration):
        predictions.records(model, rows, batch_size=100_000_000)
    assert seen["batch_size"] == 3


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("items, message", [
    (["test={data}", "test={data}"], "--split-file gives the test split twice"),
    (["train={data}", "dev={data}", "validation={data}"], "--split-file gives the dev split twice"),
    (["test="], "--split-file 'test=' gives no path; expected SPLIT=PATH"),
])
def test_split_files_given_twice_or_without_a_path_are_usage_errors(files, capsys, items, message,
                                                                    no_slow_work):
    argv = [arg for item in items for arg in ("--split-file", item.format(data=files / "data.csv"))]
    code = main(["eval", "--model", "minilm", *argv])
    _one_line_error(capsys, code, 2, message)


@pytest.mark.parametrize("argument", ["--model", "--data"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_model_or_data_path_is_a_usage_error(capsys, argument, value):
    argv = {"--model": "minilm", "--data": "snli-embed", argument: value}
    with pytest.raises(SystemExit) as info:
        main(["eval", *[x for pair in argv.items() for x in pair]])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argument}" in err and f"{value!r} is empty" in err
    assert "Traceback" not in err


def test_the_demo_checks_its_tolerance_before_anything_else(tmp_path, capsys, monkeypatch,
                                                            no_slow_work):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["demo", "--tolerance", "60%"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --tolerance: '60%': tolerance=0.6 would allow losing half" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------- model files
def _edited_copy(files, tmp_path, **changes):
    folder = tmp_path / "edited"
    shutil.copytree(files / "model", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


def test_weights_that_do_not_fit_the_config_are_one_line(files, tmp_path, capsys):
    folder = _edited_copy(files, tmp_path, id2label={"0": "a", "1": "b", "2": "c"},
                          label2id={"a": 0, "b": 1, "c": 2})
    code = main(["eval", "--model", str(folder), "--data", str(files / "data.csv")])
    _one_line_error(capsys, code, 1, f"checkpoint {folder / 'model.safetensors'} does not match "
                    "the model: wrong shape: classifier.weight has (2, 32), expected (3, 32); "
                    "wrong shape: classifier.bias")


@pytest.mark.parametrize("model_type", ["gpt2", None])
def test_an_unsupported_model_type_names_the_config_file(files, tmp_path, capsys, model_type):
    folder = _edited_copy(files, tmp_path, model_type=model_type)
    code = main(["eval", "--model", str(folder), "--data", str(files / "data.csv")])
    _one_line_error(capsys, code, 1, f"{folder / 'config.json'}: model_type={model_type!r} is "
                    "not supported")


@pytest.mark.parametrize("content, rest", [
    (b"text,label\n", ""), (b"\x89PNG\r\n\x1a\n\xff", ""), (b"[1, 2]", ""),
    (b'{"num_layers": 2, "rules": [{"sites": 3}]}', ""),
    (b'{"num_layers": 6, "rules": [{"precision": "int8", "precision": "fp32"}]}',
     "rule 0: key 'precision' appears more than once"),
    (b'{"num_layers": 6, "rules": [{"precision": "int8", "activation": ["static"]}]}',
     "rule 0: activation=['static'] is a list, expected a string"),
], ids=["csv", "binary", "a list", "sites a number", "a key twice", "activation a list"])
def test_a_precision_map_file_that_is_not_a_map_is_named(files, tmp_path, capsys, content, rest):
    path = tmp_path / "map.json"
    path.write_bytes(content)
    code = main(["eval", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--precision", f"fp16,{path}"])
    _one_line_error(capsys, code, 1, f"{path}: {rest}")


def test_a_warning_is_one_line_without_source_code(files, tmp_path, capsys):
    code = main(["calibrate", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(tmp_path / "q"), "--max-batches", "1", "--json"])
    err = capsys.readouterr().err
    assert code == 0, err
    warned = [line for line in err.splitlines() if "calibration saw only" in line]
    assert len(warned) == 1 and warned[0].startswith("samp-jax calibrate: warning: "), err
    assert "UserWarning" not in err and "calibrate(model" not in err
