"""Fault injection for the command line: bad numbers, empty and dangerous output paths,
unwritable and full disks, damaged model files, Ctrl-C and SIGTERM, an output stream that
cannot hold a character. Every case ends with one line on stderr and exit code 1 (2 for
usage, 130 for Ctrl-C, 143 for SIGTERM), before any slow step where the fault is in the
arguments, never with a traceback, and never touches what it must not."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from samp_jax.app import cli
from samp_jax.app.cli import main
from samp_jax.app.outputs import check_output
from tests.faults.cli_files import no_slow_work, write_model_and_reviews  # noqa: F401
from tests.faults.cli_files import one_line_error as _one_line_error
from tests.helpers import ROOT

UNWRITABLE = "/proc/1/samp-jax-out"  # no one, root included, can create files there


@pytest.fixture(scope="module")
def files(tmp_path_factory, minilm_dir):
    return write_model_and_reviews(tmp_path_factory.mktemp("cli_faults"), minilm_dir, rows=60)


# ------------------------------------------------------------------- numbers and lists
BAD_NUMBERS = [
    (["calibrate", "--max-batches", "-1"], "--max-batches"),
    (["calibrate", "--max-batches", "0"], "--max-batches"),
    (["calibrate", "--max-examples", "0"], "--max-examples"),
    (["calibrate", "--smoothing", "1.5"], "--smoothing"),
    (["calibrate", "--smoothing", "nan"], "--smoothing"),
    (["eval", "--max-examples", "-3"], "--max-examples"),
    (["eval", "--max-examples", "ten"], "--max-examples"),
    (["eval", "--smoothing", "-0.1"], "--smoothing"),
    (["eval", "--seed", "-1"], "--seed"),
    (["search", "--tolerance", "nan"], "--tolerance"),
    (["search", "--tolerance", "inf%"], "--tolerance"),
    (["search", "--latency-target", "nan"], "--latency-target"),
    (["search", "--latency-target", "-2"], "--latency-target"),
    (["search", "--max-search-examples", "0"], "--max-search-examples"),
    (["search", "--calibration-examples", "0"], "--calibration-examples"),
    (["finetune", "--out", "x", "--epochs", "0"], "--epochs"),
    (["finetune", "--out", "x", "--learning-rate", "-1e-5"], "--learning-rate"),
    (["finetune", "--out", "x", "--batch-size", "0"], "--batch-size"),
    (["finetune", "--out", "x", "--eval-every", "0"], "--eval-every"),
    (["predict", "--out", "x", "--batch-size", "-8"], "--batch-size"),
    (["eval", "--batch-size", "0"], "--batch-size"),
    (["calibrate", "--batch-size", "2.5"], "--batch-size"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--inner", "-1"], "--inner"),
    (["eval", "--num-processes", "0"], "--num-processes"),
    (["eval", "--process-id", "-1"], "--process-id"),
]


@pytest.mark.parametrize("args, argument", BAD_NUMBERS, ids=[" ".join(a) for a, _ in BAD_NUMBERS])
def test_bad_numbers_are_usage_errors_naming_the_argument(args, argument, capsys, no_slow_work):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argument}" in err and "Traceback" not in err


@pytest.mark.parametrize("option", [["--label-column", "gold"], ["--tags-column", "ner"],
                                    ["--score-column", "s"], ["--task-type", "text_classification"],
                                    ["--split-file", "test=t.csv"], ["--seed", "3"]])
def test_predict_refuses_options_it_would_not_use(option, capsys, no_slow_work):
    """predict reads only a model's inputs: gold columns, a task type, splits or a seed would be
    silently ignored, so they are usage errors."""
    with pytest.raises(SystemExit) as info:
        main(["predict", "--model", "m", "--data", "d.csv", "--out", "p.jsonl", *option])
    _one_line_error(capsys, info.value.code, 2, f"unrecognized arguments: {option[0]}")


@pytest.mark.parametrize("precision", ["", " ", ",", "fp16,,fp8", "fp16, ,fp8", "fp16,"])
def test_empty_precision_items_are_refused(precision, capsys, no_slow_work):
    code = main(["eval", "--model", "minilm", "--data", "snli-embed", "--precision", precision])
    _one_line_error(capsys, code, 2, "--precision")


@pytest.mark.parametrize("command", [["eval", "--precision", "fp16,int4"],
                                     ["calibrate", "--precision", "int4", "--out", "q"]])
def test_an_unknown_precision_is_refused_before_the_model_loads(command, tmp_path, capsys,
                                                                no_slow_work, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main([command[0], "--model", "minilm", "--data", "snli-embed", *command[1:]])
    _one_line_error(capsys, code, 1, "--precision 'int4' is neither a preset (fp32, fp16",
                    "nor a precision-map JSON file (no such file)")


@pytest.mark.parametrize("args, message", [
    (["--process-id", "1"], "--process-id needs --coordinator"),
    (["--num-processes", "2"], "--num-processes needs --coordinator"),
    (["--coordinator", "localhost"], "is not HOST:PORT"),
    (["--coordinator", "127.0.0.1:99999", "--num-processes", "2", "--process-id", "0"], "port"),
    (["--coordinator", "127.0.0.1:7777"], "needs --num-processes and --process-id"),
    (["--coordinator", "127.0.0.1:7777", "--num-processes", "2", "--process-id", "2"],
     "--process-id=2 must be in [0, 2)"),
])
def test_bad_distributed_options_are_usage_errors(args, message, capsys, no_slow_work):
    code = main(["eval", "--model", "minilm", "--data", "snli-embed", *args])
    _one_line_error(capsys, code, 2, message)


def test_a_tolerance_with_a_latency_target_is_a_usage_error(capsys, no_slow_work, tmp_path):
    code = main(["search", "--model", "minilm", "--data", "snli-embed", "--tolerance", "1%",
                 "--latency-target", "5", "--out", str(tmp_path / "s")])
    _one_line_error(capsys, code, 2, "--tolerance and --latency-target choose the map two ways")


def test_a_negative_percentage_is_read_as_the_option_value(capsys, no_slow_work, tmp_path):
    """argparse reads '-1%' as an option ("expected one argument"); samp-jax reads it as the
    value and says what is wrong with it."""
    with pytest.raises(SystemExit) as info:
        main(["search", "--model", "minilm", "--data", "snli-embed", "--tolerance", "-1%",
              "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "tolerance=-0.01 must be a finite number >= 0" in err
    assert "expected one argument" not in err and not (tmp_path / "s").exists()


def test_a_usage_error_found_after_parsing_shows_the_command_usage(capsys, no_slow_work, tmp_path):
    code = main(["search", "--model", "minilm", "--data", "snli-embed", "--options", "fp32,fp8",
                 "--target", "cpu", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("usage: samp-jax search ")
    assert "{eval,calibrate" not in err and "option 'fp8' is not offered on target 'cpu'" in err


THRESHOLD_COMMANDS = [["predict", "--out", "p.jsonl"], ["eval"], ["search"]]
BAD_THRESHOLDS = [("0", "0 must be strictly between 0 and 1"),
                  ("1", "1 must be strictly between 0 and 1"),
                  ("-0.1", "-0.1 must be strictly between 0 and 1"),
                  ("nan", "'nan' is not a finite number"), ("abc", "'abc' is not a number")]


@pytest.mark.parametrize("command", THRESHOLD_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("value, message", BAD_THRESHOLDS, ids=[v for v, _ in BAD_THRESHOLDS])
def test_a_threshold_outside_0_to_1_is_a_usage_error(command, value, message, capsys,
                                                     no_slow_work):
    with pytest.raises(SystemExit) as info:
        main([*command, "--model", "m", "--data", "d", "--threshold", value])
    _one_line_error(capsys, info.value.code, 2, f"argument --threshold: {message}")


def test_a_threshold_for_a_model_that_is_not_multi_label_is_refused_before_any_work(
        files, tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the command began its slow work with a threshold it cannot use")
    monkeypatch.setattr(cli.predictions, "write", refuse)
    monkeypatch.setattr(cli, "make_evaluator", refuse)
    monkeypatch.setattr(cli, "run_search", refuse)
    outs = {"predict": ["--out", str(tmp_path / "p.jsonl")], "search": ["--out", str(tmp_path / "s")]}
    for command in ("predict", "eval", "search"):
        code = main([command, "--model", str(files / "model"), "--data", str(files / "data.csv"),
                     *outs.get(command, []), "--threshold", "0.3"])
        _one_line_error(capsys, code, 2, "--threshold 0.3 is for a multi-label model",
                        "the sequence_classification head of", "is read as classes")


def test_finetune_refuses_a_threshold_for_data_that_is_not_multi_label(files, tmp_path, capsys,
                                                                       no_slow_work):
    code = main(["finetune", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(tmp_path / "tuned"), "--threshold", "0.3"])
    _one_line_error(capsys, code, 2, "--threshold 0.3 is for a multi-label task",
                    "is text_classification")
    assert not (tmp_path / "tuned").exists()


def test_a_threshold_with_a_built_in_task_is_refused_before_its_model_loads(capsys, no_slow_work):
    code = main(["eval", "--data", "snli", "--threshold", "0.3"])
    _one_line_error(capsys, code, 2, "--threshold is for a multi-label model",
                    "the built-in snli task is not multi-label")


# ------------------------------------------------------------------------ output paths
def test_empty_out_is_a_usage_error_for_every_command(capsys, no_slow_work):
    for command in (["calibrate"], ["search"], ["predict", "--model", "m", "--data", "d"],
                    ["finetune", "--model", "minilm", "--data", "snli"]):
        code = main([*command, "--out", ""])
        _one_line_error(capsys, code, 2, "--out is empty")


def test_out_that_is_an_existing_file_is_refused_before_any_work(tmp_path, capsys, no_slow_work):
    existing = tmp_path / "taken"
    existing.write_text("keep me")
    for command in (["calibrate"], ["search"], ["finetune", "--model", "minilm"]):
        code = main([*command, "--data", "snli-embed", "--out", str(existing)])
        _one_line_error(capsys, code, 1, str(existing), "not a folder")
    code = main(["predict", "--model", "m", "--data", "d", "--out", str(tmp_path)])
    _one_line_error(capsys, code, 1, "is a folder")
    assert existing.read_text() == "keep me"


def test_a_folder_that_holds_no_model_is_never_replaced(tmp_path, capsys, no_slow_work):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"\xff\xd8")
    code = main(["calibrate", "--data", "snli-embed", "--out", str(photos)])
    _one_line_error(capsys, code, 1, str(photos), "holds no model")
    (photos / "model").mkdir()  # search writes its model to OUT/model
    (photos / "model" / "notes.txt").write_text("mine")
    code = main(["search", "--data", "snli-embed", "--out", str(photos)])
    _one_line_error(capsys, code, 1, "holds files this run does not write")
    assert sorted(p.name for p in photos.rglob("*")) == ["cat.jpg", "model", "notes.txt"]


def test_out_equal_to_the_input_model_is_refused(files, capsys, no_slow_work):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (files / "model").iterdir())
    for command in ("calibrate", "finetune"):
        code = main([command, "--model", str(files / "model"), "--data", str(files / "data.csv"),
                     "--out", str(files / "model")])
        _one_line_error(capsys, code, 1, "is also an input")
    code = main(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(files / "data.csv")])
    _one_line_error(capsys, code, 1, "is also an input")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (files / "model").iterdir()) == before


def test_predict_out_through_a_symlink_writes_the_file_it_points_to(files, tmp_path, capsys):
    real = tmp_path / "kept" / "predictions.jsonl"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(real)
    code = main(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(link)])
    assert code == 0, capsys.readouterr().err
    assert link.is_symlink() and os.readlink(link) == str(real)
    lines = real.read_text().splitlines()
    assert len(lines) == 60 and all(line.startswith("{") for line in lines)


def test_predict_builds_the_tokenizer_of_a_folder_with_only_vocab_txt(files, tmp_path, capsys):
    """A 2019-style folder (vocab.txt, no tokenizer.json) predicts as the folder with one."""
    slow = tmp_path / "slow"
    shutil.copytree(files / "model", slow, ignore=shutil.ignore_patterns("tokenizer.json"))
    outputs = []
    for model in (files / "model", slow):
        out = tmp_path / f"{model.name}.jsonl"
        code = main(["predict", "--model", str(model), "--data", str(files / "data.csv"),
                     "--out", str(out)])
        assert code == 0, capsys.readouterr().err
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 60


def test_a_symlink_loop_as_out_is_refused_before_any_work(tmp_path, capsys, no_slow_work):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for command in (["calibrate", "--data", "snli-embed"], ["search", "--data", "snli-embed"],
                    ["predict", "--model", "m", "--data", "d"]):
        code = main([*command, "--out", str(tmp_path / "a")])
        _one_line_error(capsys, code, 1, "--out", "symlink that does not resolve")


def test_predict_takes_the_packaged_model_by_name(files, tmp_path, monkeypatch, capsys):
    loaded = []

    def load(path, **options):
        loaded.append(path)
        raise ValueError("stop here")
    monkeypatch.setattr(cli, "load", load)
    code = main(["predict", "--model", "minilm", "--data", str(files / "data.csv"),
                 "--out", str(tmp_path / "p.jsonl")])
    _one_line_error(capsys, code, 1, "stop here")
    assert loaded == [cli.minilm_path()]


@pytest.mark.parametrize("make_out, message", [
    (lambda tmp: tmp, "is a folder"),
    (lambda tmp: tmp / "taken" / "results.json", "taken is not a folder"),
    (lambda tmp: tmp / "results.png" / "x.json", "results.png is not a folder"),
])
def test_bench_out_is_checked_before_the_benchmark(tmp_path, capsys, monkeypatch, make_out,
                                                   message):
    (tmp_path / "taken").write_text("a file")
    (tmp_path / "results.png").write_text("a file")
    monkeypatch.setattr(cli.bench, "run", lambda *a, **k: pytest.fail("benchmarked first"))
    code = main(["bench", "--quick", "--out", str(make_out(tmp_path))])
    err = _one_line_error(capsys, code, 1, "--out", message)
    assert "Errno" not in err


def test_demo_checks_its_output_folder_before_the_model_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo_out").mkdir()
    (tmp_path / "demo_out" / "notes.txt").write_text("mine")
    monkeypatch.setattr(cli.demo, "builtin_model", lambda *a, **k: pytest.fail("loaded a model"))
    code = main(["demo"])
    _one_line_error(capsys, code, 1, "demo_out is a non-empty folder that holds files this run "
                                     "does not write")
    assert (tmp_path / "demo_out" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["calibrate", "search", "predict"])
def test_unwritable_out_is_refused_before_any_work(command, capsys, no_slow_work):
    extra = ["--model", "m", "--data", "d"] if command == "predict" else ["--data", "snli-embed"]
    out = UNWRITABLE + (".jsonl" if command == "predict" else "")
    code = main([command, *extra, "--out", out])
    _one_line_error(capsys, code, 1, "cannot write in /proc/1")


@pytest.mark.parametrize("command, length, most", [
    ("calibrate", 200, 193), ("search", 200, 193), ("finetune", 200, 193), ("predict", 230, 224)])
def test_an_out_name_with_no_room_for_its_temporary_names_is_refused_before_any_work(
        command, length, most, tmp_path, capsys, no_slow_work):
    """A legal name that the temporary copy beside it (31 bytes longer for a file, twice that
    for a folder) would take past the file system's 255 bytes, only after the work; the most
    that fits is accepted."""
    extra = ["--model", "m", "--data", "d"] if command == "predict" else ["--data", "snli-embed"]
    folder = command != "predict"
    long = tmp_path / ("s" * length)
    code = main([command, *extra, "--out", str(long)])
    _one_line_error(capsys, code, 1, f"its name is {length} bytes",
                    f"give a name of at most {most} bytes")
    assert list(tmp_path.iterdir()) == []
    check_output(tmp_path / ("s" * most), what="--out", folder=folder)


def test_a_full_disk_after_the_search_is_one_line(files, tmp_path, capsys, monkeypatch):
    def full_disk(*args, out, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "model" / "model.safetensors"))
    monkeypatch.setattr(cli, "run_search", full_disk)
    code = main(["search", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(tmp_path / "o")])
    _one_line_error(capsys, code, 1, "No space left on device", "model.safetensors")


def _calibrate_with_a_failing_save(files, out, monkeypatch, error: Exception) -> int:
    """`samp-jax calibrate --out out`, whose safetensors write raises `error`."""
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr("samp_jax.ptq.saved.save_file", fail)
    return main(["calibrate", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--precision", "quant_ffn_only", "--out", str(out)])


def test_a_full_disk_while_saving_the_calibrated_model_leaves_nothing(files, tmp_path, capsys,
                                                                      monkeypatch):
    out = tmp_path / "q"
    code = _calibrate_with_a_failing_save(files, out, monkeypatch,
                                          OSError(errno.ENOSPC, "No space left on device"))
    # the error names no file: the line says where the command writes
    _one_line_error(capsys, code, 1, f"No space left on device while writing (--out {out}, the "
                                     "cache ", "free space there and run again")
    assert list(tmp_path.iterdir()) == []  # no half-written folder, no temporary litter


def test_a_file_size_limit_with_no_temporary_folder_left_is_one_line(files, tmp_path, capsys,
                                                                     monkeypatch):
    """`ulimit -f` (EFBIG), on a machine whose full disk leaves no usable temporary folder
    (`tempfile.gettempdir` raises): still one line, naming where the command writes."""
    def no_temporary_folder():
        raise FileNotFoundError(errno.ENOENT, "No usable temporary directory found")
    monkeypatch.setattr(cli.tempfile, "gettempdir", no_temporary_folder)
    out = tmp_path / "q"
    code = _calibrate_with_a_failing_save(files, out, monkeypatch,
                                          OSError(errno.EFBIG, "File too large"))
    _one_line_error(capsys, code, 1, f"File too large while writing (--out {out}, the cache ",
                    "): raise the file size limit (ulimit -f) or write smaller files")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError(
    "RESOURCE_EXHAUSTED: Out of memory allocating 46881792 bytes.")])
def test_running_out_of_memory_is_said_as_such(files, tmp_path, capsys, monkeypatch, error):
    def out_of_memory(*args, **kwargs):
        raise error
    monkeypatch.setattr(cli.predictions, "write", out_of_memory)
    code = main(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(tmp_path / "p.jsonl")])
    _one_line_error(capsys, code, 1, f"out of memory ({str(error) or 'MemoryError'}): pass a "
                    "smaller --batch-size, free memory, or raise the limit (ulimit -v, a "
                    "container's)")


def test_a_cpu_kernel_that_failed_is_said_to_be_memory_where_xla_said_so(files, tmp_path, capsys,
                                                                         monkeypatch):
    """XLA:CPU's kernels fail with no more than this when an allocation was refused (its own
    `allocate of ... failed` lines go to stderr before it)."""
    def failed(*args, **kwargs):
        raise RuntimeError("INTERNAL: YNNPACK operation failed: error")
    monkeypatch.setattr(cli.predictions, "write", failed)
    code = main(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(tmp_path / "p.jsonl")])
    _one_line_error(capsys, code, 1, "XLA's CPU runtime failed (INTERNAL: YNNPACK operation "
                    "failed: error); where the lines above say that an allocate failed, it ran "
                    "out of memory: pass a smaller --batch-size, a smaller --max-length, or free "
                    "memory")


def test_an_import_that_fails_is_one_line(monkeypatch, capsys):
    """A library that cannot load (out of memory under `ulimit -v`: "failed to map segment"):
    one line and exit 1, not a traceback."""
    from samp_jax import app
    from samp_jax.app import entry
    monkeypatch.delattr(app, "cli")
    monkeypatch.setitem(sys.modules, "samp_jax.app.cli", None)  # its import raises ImportError
    assert entry.main(["demo"]) == 1  # arguments that parse (`--help` needs no import)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("samp-jax: error: could not load its libraries (JAX, tokenizers): "
                          "ModuleNotFoundError: import of samp_jax.app.cli halted")
    assert err.endswith("; the installation is incomplete: reinstall samp-jax's dependencies "
                        "(pip install -e .)\n")


def test_safetensors_full_disk_while_saving_the_calibrated_model_names_the_file(
        files, tmp_path, capsys, monkeypatch):
    """safetensors' own error for a full disk (no OSError, no file named in it): one line that
    says the disk is full and names the file in --out; nothing left behind."""
    from safetensors import SafetensorError
    out = tmp_path / "q"
    code = _calibrate_with_a_failing_save(files, out, monkeypatch, SafetensorError(
        "Error while serializing: I/O error: No space left on device (os error 28)"))
    _one_line_error(capsys, code, 1, "No space left on device", str(out / "model.safetensors"))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ damaged model files
def test_a_truncated_safetensors_file_is_named(files, tmp_path, capsys):
    import shutil
    damaged = shutil.copytree(files / "model", tmp_path / "damaged")
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    code = main(["eval", "--model", str(damaged), "--data", str(files / "data.csv")])
    _one_line_error(capsys, code, 1, str(weights), "safetensors")


def test_debug_shows_the_traceback(tmp_path, capsys):
    code = main(["--debug", "eval", "--model", str(tmp_path / "missing"), "--data", "snli-embed"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err


def test_a_bug_says_it_is_one_in_its_one_line(tmp_path, capsys, monkeypatch):
    """A NameError in samp-jax's own code is not blamed on the input: the line says it is
    an internal error and how to get the traceback."""
    import samp_jax.app.cli as cli

    def broken(args):
        return undefined_name  # noqa: F821  the planted bug
    monkeypatch.setitem(cli.COMMANDS, "eval", broken)
    code = main(["eval", "--model", str(tmp_path / "m"), "--data", "snli-embed"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert ("samp-jax eval: error: NameError: name 'undefined_name' is not defined (an internal "
            "error of samp-jax, not of your input: --debug shows the traceback to report)") in err


# ---------------------------------------------------------------------- Ctrl-C, SIGTERM
def _start(args, tmp_path, program=("-m", "samp_jax.app")):
    env = os.environ | {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    # A terminal's Ctrl-C reaches a process whose SIGINT is at its default. A test runner's
    # worker (pytest-xdist) or a background shell job may ignore SIGINT, and an ignored signal
    # stays ignored across exec, so the child restores the default first.
    return subprocess.Popen([sys.executable, *program, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_signals)


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_mid_run_exits_130_without_a_traceback(files, tmp_path):
    run = _start(["eval", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                  "--precision", "fp16,fp8,bf16,fully_quant,quant_ffn_only,fp16,fp8"], tmp_path)
    seen = []
    for line in run.stderr:
        seen.append(line)
        if "done:" in line:  # in the slow part: variants are being evaluated
            break
    run.send_signal(signal.SIGINT)
    out, rest = run.communicate(timeout=60)
    err = "".join(seen) + rest
    assert run.returncode == 130, err
    assert "samp-jax eval: interrupted" in err and "Traceback" not in err


@pytest.mark.parametrize("exception", ["KeyboardInterrupt", "Terminated"])
def test_ctrl_c_swallowed_by_a_callback_still_interrupts(exception):
    # Python cannot raise from a gc callback or `__del__`: it prints "Exception ignored in"
    # and carries on. A Ctrl-C landing there (JAX's `_xla_gc_callback` once took one, and the
    # command ran to its end) must still interrupt the command; a SIGTERM likewise, as itself.
    script = f"""
import sys
import time
from samp_jax.app.entry import Terminated, catch_terminations, keep_interrupts
keep_interrupts()
catch_terminations()
class Dies:
    def __del__(self):
        raise {exception}
try:
    Dies()
    deadline = time.monotonic() + 10  # the command goes on working
    while time.monotonic() < deadline:
        time.sleep(0.01)
except {exception}:
    print("interrupted")
    sys.exit(130)
print("ran on")
"""
    # As in `_start`: an inherited ignored SIGINT (a background job) would make Python ignore
    # the re-delivered interrupt too.
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, preexec_fn=_default_signals)
    assert run.returncode == 130 and run.stdout.strip() == "interrupted", (run.stdout, run.stderr)
    assert "Exception ignored" not in run.stderr


def test_ctrl_c_in_a_callback_at_interpreter_shutdown_prints_no_traceback():
    # A Ctrl-C swallowed by a `__del__` that runs while the interpreter shuts down (as one of
    # many in quick succession may): no thread can start then, and the command is ending anyway.
    script = """
from samp_jax.app.entry import keep_interrupts
keep_interrupts()
class Dies:
    def __del__(self):
        raise KeyboardInterrupt
kept = Dies()  # collected at interpreter shutdown
print("ran")
"""
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ran", (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr


# `python -m samp_jax.app ARGS`, except that each chunk of predictions, once written, says so on
# stderr and then waits: the signal lands while predict holds its temporary output file open.
_WAIT_AFTER_EACH_CHUNK = """
import runpy
import sys
import time

from samp_jax.app import predictions

chunks = predictions.chunks

def chunks_then_wait(*args, **kwargs):
    for chunk in chunks(*args, **kwargs):
        yield chunk
        print("predicting", file=sys.stderr, flush=True)
        time.sleep(60)

predictions.chunks = chunks_then_wait
sys.argv = ["samp-jax", *sys.argv[1:]]
runpy.run_module("samp_jax.app", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_sigterm_while_predicting_unwinds_removes_the_temporary_file_and_exits_143(files, tmp_path):
    out = tmp_path / "predictions.jsonl"
    out.write_text("the previous run's\n")
    run = _start(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                  "--out", str(out)], tmp_path, program=("-c", _WAIT_AFTER_EACH_CHUNK))
    seen = []
    for line in run.stderr:
        seen.append(line)
        if line == "predicting\n":
            break
    assert [p.name for p in tmp_path.glob(".predictions.jsonl.tmp-*")], "".join(seen)
    run.send_signal(signal.SIGTERM)
    _, rest = run.communicate(timeout=60)
    err = "".join(seen) + rest
    assert run.returncode == 143, err
    assert "samp-jax predict: terminated" in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl"]  # no temporary
    assert out.read_text() == "the previous run's\n"


# `python -m samp_jax.app ARGS`, except that the import of JAX (the first heavy import, which
# the CLI starts after it has set itself up) says so on stdout and then waits (SECONDS) for
# the signals: they land inside that import on any machine, however loaded, with no sleep to
# tune. Once the wait is over it says so and the import goes on.
_WAIT_IN_THE_IMPORT_OF_JAX = """
import importlib.abc
import runpy
import sys
import time

class WaitInTheImportOfJax(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "jax":
            sys.meta_path.remove(self)
            print("importing jax", flush=True)
            time.sleep(SECONDS)
            print("imported", flush=True)
        return None

sys.meta_path.insert(0, WaitInTheImportOfJax())
sys.argv = ["samp-jax", *sys.argv[1:]]
runpy.run_module("samp_jax.app", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
@pytest.mark.slow
def test_a_signal_while_importing_ends_the_run_once_the_import_is_done(tmp_path, signum, code,
                                                                       said):
    """Raised inside the import of JAX's C extensions, an interrupt became an ImportError with a
    traceback, or a C abort: it is deferred to the end of the import, then ends the run."""
    run = _start(["eval", "--model", "minilm", "--data", "snli-embed"], tmp_path,
                 program=("-c", _WAIT_IN_THE_IMPORT_OF_JAX.replace("SECONDS", "1.0")))
    assert run.stdout.readline() == "importing jax\n"  # the CLI is importing JAX and the models
    run.send_signal(signum)
    out, err = run.communicate(timeout=120)
    assert out == "imported\n"  # the import went on to its end
    assert run.returncode == code, err
    assert f"samp-jax: {said}" in err and "Traceback" not in err


def test_a_second_ctrl_c_while_importing_ends_the_run_at_once(tmp_path):
    run = _start(["eval", "--model", "minilm", "--data", "snli-embed"], tmp_path,
                 program=("-c", _WAIT_IN_THE_IMPORT_OF_JAX.replace("SECONDS", "60")))
    assert run.stdout.readline() == "importing jax\n"
    run.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert run.poll() is None  # the first waits for the import
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 130 and out == "", err
    assert "samp-jax: interrupted" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_name_stdout_cannot_encode_does_not_lose_the_results(files, tmp_path):
    """Under PYTHONIOENCODING=ascii a data file named with an accent is escaped in the
    results, not an error after the evaluation."""
    data = tmp_path / "données.csv"
    data.write_bytes((files / "data.csv").read_bytes())
    env = os.environ | {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
                        "PYTHONIOENCODING": "ascii"}
    run = subprocess.run([sys.executable, "-m", "samp_jax.app", "eval", "--model",
                          str(files / "model"), "--data", str(data), "--precision", "fp32"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "donn\\xe9es" in run.stdout and "accuracy" in run.stdout


def test_predict_warns_of_rows_with_nothing_to_read(files, tmp_path, capsys):
    data = tmp_path / "rows.csv"
    data.write_text("text\na fine film\n\"\"\n   \nthe plot is dull\n", encoding="utf-8")
    out = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(files / "model"), "--data", str(data),
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"samp-jax predict: warning: 2 of 4 rows of {data} have an empty or blank text "
            "(rows 2, 3); their predictions are the model's answer to what input there is") in err
    assert len(out.read_text().splitlines()) == 4  # every row still answered, in order
    data.write_text("text\na fine film\nthe plot is dull\n", encoding="utf-8")
    assert main(["predict", "--model", str(files / "model"), "--data", str(data),
                 "--out", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_calibrate_refuses_an_out_that_holds_a_float_checkpoint_before_any_work(
        files, tmp_path, capsys, no_slow_work):
    import shutil
    other = shutil.copytree(files / "model", tmp_path / "another_float_model")
    code = main(["calibrate", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--precision", "quant_ffn_only", "--out", str(other)])
    _one_line_error(capsys, code, 1, f"--out {other} holds a float model")
    assert (other / "config.json").is_file() and not (other / "quantization.json").exists()


class _FailingStdout(io.StringIO):
    """Standard output whose writes fail as `error` (a full disk behind `> FILE`, a reader
    gone aside)."""

    def __init__(self, error: OSError):
        super().__init__()
        self.error = error

    def write(self, text):
        raise self.error

    def flush(self):
        raise self.error


def test_a_full_standard_output_is_named_not_the_cache(files, monkeypatch, capsys):
    full = _FailingStdout(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    monkeypatch.setattr(sys, "stdout", full)
    code = main(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", "-"])
    err = _one_line_error(capsys, code, 1, "could not write the results to standard output "
                                           "(No space left on device)")
    assert "cache" not in err
    assert sys.stdout is full  # as the caller had it


def test_a_reader_gone_ends_a_command_quietly_with_141(files, monkeypatch, capsys):
    """`samp-jax eval --json | head`: as a killed pipe ends other tools, without a word."""
    monkeypatch.setattr(sys, "stdout", _FailingStdout(BrokenPipeError(errno.EPIPE, "Broken pipe")))
    code = main(["eval", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--precision", "fp32", "--json"])
    assert code == 141
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize("args", [["eval", "--json"], ["eval"], ["predict", "--out", "-"],
                                  ["predict", "--out", "p.jsonl", "--json"]])
def test_a_closed_standard_output_is_refused_when_the_results_go_there(
        files, monkeypatch, capsys, no_slow_work, tmp_path, args):
    monkeypatch.setattr(sys, "stdout", None)  # as Python starts with `>&-`
    monkeypatch.chdir(tmp_path)
    code = main([*args, "--model", str(files / "model"), "--data", str(files / "data.csv")])
    _one_line_error(capsys, code, 2, "standard output is closed (>&-)")


def test_predict_to_a_file_runs_with_standard_output_closed(files, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "stdout", None)
    out = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 60


@pytest.mark.parametrize("extra", [["--batch-size", "8"], ["--max-examples", "10"]])
def test_calibrate_refuses_test_split_options_without_eval(extra, capsys, no_slow_work, tmp_path):
    code = main(["calibrate", "--model", "minilm", "--data", "snli-embed", *extra,
                 "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert code == 2 and f"{extra[0]} set how --eval scores the test split" in err
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("family, warned", [("xlm-roberta", [2, 3]), ("bert", [3])])
def test_predict_warns_of_a_taggers_sentences_without_spaces(family, warned, tmp_path, capsys):
    """SentencePiece splits a plain text at spaces only: a Chinese or Thai sentence is one word
    with one tag, said in a warning naming the rows. BERT's normalizer puts each Han character
    apart (no warning for Chinese), not Thai characters."""
    from tests.helpers import GOLDEN
    data = tmp_path / "rows.jsonl"
    texts = ["Paris is big", "我爱北京天安门广场", "กรุงเทพมหานครเป็นเมืองหลวง", "東京 大阪"]
    data.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts),
                    encoding="utf-8")
    out = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(GOLDEN / "families" / family / "tokcls"),
                 "--data", str(data), "--out", str(out)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    said = (f"samp-jax predict: warning: {len(warned)} of 4 rows of {data} have a word of 6 or "
            "more characters of a script written without spaces (Chinese, Japanese, Thai, ...; "
            f"rows {', '.join(map(str, warned))})")
    assert said in err and "--tokens-column" in err
    assert len(out.read_text().splitlines()) == 4
