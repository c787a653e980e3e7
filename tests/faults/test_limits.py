"""Fault injection for resources that are missing or run out while a command runs: standard
streams started closed, a standard output that fills up after the outputs were written, a
full disk and the file size limit (`ulimit -f`), a full compilation cache, an input file
edited between `predict`'s two passes, a benchmark stopped midway. Every case ends in one
line on stderr (or none, where stderr is closed), a correct result or the previous outputs
kept, and says which."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import types

import pytest

from samp_jax.app import cli
from samp_jax.app.cli import main
from tests.faults.cli_files import no_slow_work, write_model_and_reviews  # noqa: F401
from tests.faults.cli_files import one_line_error
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def files(tmp_path_factory, minilm_dir):
    return write_model_and_reviews(tmp_path_factory.mktemp("limits"), minilm_dir, rows=40)


def _run_closed(args, tmp_path, closed: int, env=None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m samp_jax.app ARGS` (as the `samp-jax` script starts) with file descriptor
    `closed` closed, as `2>&-` leaves it."""
    env = os.environ | {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)} | (env or {})
    return subprocess.run(_closing(closed, "-m", "samp_jax.app", *args), cwd=tmp_path, env=env,
                          timeout=300, **kwargs)


def _closing(fd: int, *args: str) -> list[str]:
    """The command line of Python with ARGS, started by the shell with `fd` closed."""
    return ["sh", "-c", f'exec "$@" {fd}>&-', "sh", sys.executable, *args]


# ------------------------------------------------------------ standard streams started closed
def test_a_closed_stderr_leaves_stdout_and_the_output_file_to_the_results(files, tmp_path):
    """With fd 2 closed, Python's `sys.stderr` is None (`print(file=None)` writes to stdout)
    and the next file opened takes fd 2, so XLA's C-level log lines (at INFO here) land in it:
    the predictions file. The CLI opens fd 2 on /dev/null first."""
    common = ["predict", "--model", str(files / "model"), "--data", str(files / "data.csv")]
    run = _run_closed([*common, "--out", "-"], tmp_path, 2, capture_output=False,
                      stdout=subprocess.PIPE, text=True)
    assert run.returncode == 0
    lines = run.stdout.splitlines()  # the predictions alone, not "wrote 40 predictions ..."
    assert len(lines) == 40 and all(json.loads(line)["label"] for line in lines), run.stdout[-300:]
    out = tmp_path / "p.jsonl"
    run = _run_closed([*common, "--out", str(out)], tmp_path, 2, stdout=subprocess.DEVNULL,
                      env={"TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_MAX_VLOG_LEVEL": "1"})
    assert run.returncode == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 40 and all(line.startswith('{"text"') for line in lines), lines[:3]


def test_a_closed_stdin_for_data_from_it_is_one_usage_line(files, tmp_path, capsys,
                                                            monkeypatch, no_slow_work):
    monkeypatch.setattr(sys, "stdin", None)  # as Python starts with `<&-`
    code = main(["predict", "--model", str(files / "model"), "--data", "-",
                 "--out", str(tmp_path / "p.jsonl")])
    one_line_error(capsys, code, 2, "--data - reads the rows from standard input, which is "
                                    "closed (<&-)")
    assert list(tmp_path.iterdir()) == []


def test_the_console_script_opens_closed_standard_streams_on_dev_null(tmp_path):
    """Each of fds 0, 1, 2 started closed is /dev/null before anything opens a file (the next
    `open` gets fd 3 or above), `sys.stdin/stdout/stderr` are streams on them, and the closed
    ones are remembered: a closed stdin refuses `--data -` (exit 2) as a closed stdout refuses
    `--out -`."""
    script = ("import json, os, sys\n"
              "from samp_jax.app import entry\n"
              "closed = entry.open_standard_streams()\n"
              "fd = os.open(os.devnull, os.O_RDONLY)\n"
              "json.dump([sorted(closed), fd, [getattr(sys, n) is None for n in "
              "entry.STANDARD_STREAMS], [os.path.realpath(f'/proc/self/fd/{n}') for n in "
              "(0, 1, 2)]], open('seen', 'w'))\n")
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    for closed, name in enumerate(("stdin", "stdout", "stderr")):
        run = subprocess.run(_closing(closed, "-c", script), cwd=tmp_path, env=env, timeout=60,
                             capture_output=True)
        assert run.returncode == 0, run.stderr
        names, fd, none, paths = json.loads((tmp_path / "seen").read_text())
        assert (names, fd, none, paths[closed]) == ([name], 3, [False] * 3, os.devnull)
    run = _run_closed(["predict", "--model", "m", "--data", "-", "--out", "p.jsonl"], tmp_path,
                      0, capture_output=True, text=True)
    assert run.returncode == 2 and "standard input, which is closed (<&-)" in run.stderr


# ------------------------------------------------------------ an input edited between passes
def test_a_data_file_edited_in_place_while_predicted_is_refused_and_out_kept(
        files, tmp_path, capsys, monkeypatch):
    """predict reads a file twice (checked, then predicted a chunk at a time); an edit in place
    during the second pass (same size, same rows) gave rows of both versions, exit 0."""
    from samp_jax.app import predictions
    data = tmp_path / "data.csv"
    data.write_bytes((files / "data.csv").read_bytes())
    out = tmp_path / "p.jsonl"
    out.write_text("the previous run's\n")
    chunks = predictions.chunks

    def edit_after_the_first_chunk(*args, **kwargs):
        for number, chunk in enumerate(chunks(*args, **kwargs)):
            if number == 0:
                with data.open("r+b") as f:
                    f.write(data.read_bytes().replace(b"good", b"fine"))
                status = os.stat(data)
                os.utime(data, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000))
            yield chunk
    monkeypatch.setattr(predictions, "CHUNK_ROWS", 10)
    monkeypatch.setattr(predictions, "chunks", edit_after_the_first_chunk)
    code = main(["predict", "--model", str(files / "model"), "--data", str(data),
                 "--out", str(out)])
    one_line_error(capsys, code, 1, f"{data} changed while samp-jax was reading it")
    assert out.read_text() == "the previous run's\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "p.jsonl"]


# ------------------------------------------------------------ a full stdout after the outputs
class _FullStdout(io.StringIO):
    """Standard output on a full disk (`> /dev/full`): every write and flush fails."""

    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _no_training(model, task, tokenizer, config, progress=True, on_encoded=None):
    return types.SimpleNamespace(model=model, dev_metric=0.5, steps=1, seconds=0.0, learned=True,
                                 chance=None, truncation={}, dev_examples=4)


def _search_written(model, tokenizer, task, config, *, out, **kwargs):
    out.mkdir()
    (out / "summary.json").write_text("{}")
    return types.SimpleNamespace(summary={"truncation": {}}, test=None)


@pytest.mark.parametrize("command, out_name, written", [
    (["predict"], "p.jsonl", "the predictions in"),
    (["calibrate", "--precision", "quant_ffn_only"], "q", "the quantized model in"),
    (["finetune", "--json"], "ft", "the fine-tuned model in"),
    (["search", "--json"], "s", "the search's outputs in")],
    ids=["predict", "calibrate", "finetune", "search"])
def test_a_full_stdout_after_the_outputs_were_written_says_they_were(
        files, tmp_path, capsys, monkeypatch, command, out_name, written):
    """The outputs are renamed into place before the summary goes to stdout (a trained model
    is not thrown away for a summary line): the one line says they were written and only the
    summary failed, not "could not write the results", which read as if nothing was."""
    monkeypatch.setattr(cli, "finetune", _no_training)
    monkeypatch.setattr(cli, "run_search", _search_written)
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    out = tmp_path / out_name
    code = main([*command, "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(out)])
    err = one_line_error(capsys, code, 1, f"the outputs were written ({written} {out}); only "
                                          "the summary to standard output failed (No space "
                                          "left on device)")
    assert "could not write the results" not in err
    assert out.exists()


# ------------------------------------------------------------ a benchmark stopped midway
def _bench_rows(stop_after: int | None):
    """`bench.run` that emits a timed row per shape, stopping with a Ctrl-C after
    `stop_after` rows."""
    def run(*, models, shapes, sink, **kwargs):
        document = {"device": "cpu", "rows": []}
        for batch, seq in shapes:
            if len(document["rows"]) == stop_after:
                raise KeyboardInterrupt
            document["rows"].append({"model": models[0], "batch": batch, "seq": seq,
                                     "contender": "samp_fp16", "median_ms": 1.0,
                                     "sequences_per_s": batch * 1e3})
            sink(document)
        return document
    return run


def test_a_bench_stopped_midway_says_it_is_partial_and_leaves_no_plot_of_another_run(
        tmp_path, capsys, monkeypatch):
    """Each finished row reaches --out at once, so a run stopped midway replaced a complete
    result with a partial one that did not say so, beside the previous run's plot."""
    out, figure = tmp_path / "e2e.json", tmp_path / "e2e.png"
    argv = ["bench", "--models", "tiny", "--shapes", "1x32,2x32,4x32", "--contenders",
            "samp_fp16", "--json", "--out", str(out)]
    monkeypatch.setattr(cli.bench, "run", _bench_rows(None))
    assert main(argv) == 0
    first = json.loads(out.read_text())
    assert (first["complete"], first["rows_done"], first["rows_planned"]) == (True, 3, 3)
    assert figure.is_file() and json.loads(capsys.readouterr().out) == first
    monkeypatch.setattr(cli.bench, "run", _bench_rows(2))
    assert main(argv) == 130
    partial = json.loads(out.read_text())
    assert (partial["complete"], partial["rows_done"], partial["rows_planned"]) == (False, 2, 3)
    assert set(partial["versions"]) >= {"samp_jax", "jax"} and partial["created"]
    assert partial["command"].startswith("samp-jax bench")
    assert not figure.exists()  # the plot was the first run's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e2e.json"]


# ------------------------------------------------------------ a full disk, the file size limit
def _copy_on_a_full_disk(source, target, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(source), None, str(target))


def _safetensors_too_large(*args, **kwargs):
    from safetensors import SafetensorError
    raise SafetensorError("Error while serializing: I/O error: File too large (os error 27)")


@pytest.mark.parametrize("command, fault, said", [
    ("finetune", ("samp_jax.models.checkpoint.shutil.copyfile", _copy_on_a_full_disk),
     "No space left on device while writing {out}/tokenizer.json (--out {out}): free "
     "space there and run again"),
    ("finetune", ("samp_jax.models.checkpoint.save_file", _safetensors_too_large),
     "File too large while writing {out}/model.safetensors (--out {out}): raise the file size "
     "limit (ulimit -f) or write smaller files"),
    ("calibrate", ("samp_jax.ptq.saved.save_file", _safetensors_too_large),
     "File too large while writing {out}/model.safetensors (--out {out}): raise the file size "
     "limit (ulimit -f) or write smaller files")], ids=["finetune-copy", "finetune-weights",
                                                       "calibrate-weights"])
def test_a_full_disk_or_file_size_limit_names_the_out_path_not_a_temporary_one(
        files, tmp_path, capsys, monkeypatch, command, fault, said):
    """finetune and calibrate printed Python's `[Errno 28] No space left on device: 'a' ->
    '.../..out.tmp-...tmp-.../tokenizer_config.json'` where predict and search said what to
    do: the one message, at the file's committed path, naming the one place that filled."""
    monkeypatch.setattr(cli, "finetune", _no_training)
    monkeypatch.setattr(*fault)
    out = tmp_path / "out"
    extra = ["--precision", "quant_ffn_only"] if command == "calibrate" else []
    code = main([command, "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 *extra, "--out", str(out)])
    err = one_line_error(capsys, code, 1, said.format(out=out))
    assert ".tmp-" not in err and "Errno" not in err and "the cache" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_full_cache_is_named_alone(files, tmp_path, capsys, monkeypatch):
    from samp_jax.core.assets import cache_dir
    entry = cache_dir() / "xla" / ".entry.tmp-1-2-3"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(entry))
    monkeypatch.setattr(cli.predictions, "write", full)
    code = main(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(tmp_path / "p.jsonl")])
    err = one_line_error(capsys, code, 1, f"No space left on device while writing "
                                          f"{cache_dir() / 'xla' / 'entry'} (the cache "
                                          f"{cache_dir()}): free space there and run again")
    assert "--out" not in err and "temporary folder" not in err


def _slow_work(*args, **kwargs):
    raise AssertionError("the slow work started before the file size limit was checked")


@pytest.mark.parametrize("command, slow, file", [
    (["predict"], "predictions.write", "{out} (the predictions; their texts alone)"),
    (["calibrate", "--precision", "fully_quant", "--activation", "static"], "calibrate",
     "{out}/model.safetensors (the quantized model's weights)"),
    (["finetune"], "finetune", "{out}/model.safetensors (the fine-tuned model's weights)")],
    ids=["predict", "calibrate", "finetune"])
def test_a_file_size_limit_below_the_output_is_refused_before_the_slow_work(
        files, tmp_path, capsys, monkeypatch, file_size_limit, command, slow, file):
    """`ulimit -f 1`: finetune trained, then lost its training to EFBIG; the weights' size
    (the parameters' bytes; calibrate: of the quantized model) and the predictions' (at least
    their texts) are known before the work, and checked as a fetch of an asset is."""
    monkeypatch.setattr(f"samp_jax.app.cli.{slow}", _slow_work)
    out = tmp_path / "out"
    with file_size_limit(1024):
        code = main([*command, "--model", str(files / "model"), "--data",
                     str(files / "data.csv"), "--out", str(out)])
    err = one_line_error(capsys, code, 1, file.format(out=out) + " takes at least ",
                         " bytes, and no file over 1,024 bytes may be written (`ulimit -f` 1); "
                         "raise the limit to well above `ulimit -f ", "`, the file's least size "
                         "(or `ulimit -f unlimited`; bash counts KiB, POSIX sh 512-byte blocks: "
                         "twice the number)")
    assert "Errno" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("precision", ["fully_quant", "quant_ffn_only", "fp8"])
def test_the_size_checked_is_at_most_the_file_written(files, tmp_path, capsys, precision):
    """The sizes checked are the fewest bytes the files take (a limit that lets the file be
    written is never refused), and close to them (the weights file is its parameters and a
    header)."""
    import samp_jax as sj
    from samp_jax.core.precision import PrecisionMap
    out = tmp_path / "q"
    assert main(["calibrate", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--precision", precision, "--activation", "static", "--out", str(out)]) == 0
    model = sj.load(files / "model")
    pmap = PrecisionMap.preset(precision, model.config.num_layers,
                               activation="per_tensor_static")
    written = (out / "model.safetensors").stat().st_size
    assert written / 2 < cli._quantized_bytes(model, pmap) <= written
    predicted = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(out), "--data", str(files / "data.csv"),
                 "--out", str(predicted)]) == 0
    rows = cli.predictions.read_model_inputs(files / "data.csv", cli.Columns(),
                                             head=model.head_kind)
    assert predicted.stat().st_size / 10 < cli._text_bytes(rows) < predicted.stat().st_size


# ------------------------------------------------------------ a full compilation cache
def test_a_full_compilation_cache_is_one_warning_in_the_cli(files, tmp_path, capsys,
                                                            monkeypatch):
    """JAX's warning for each cache entry it could not write or read (one per executable, on
    a cache out of inodes): one line naming the folder and the reason; the other warnings are
    shown as ever."""
    import warnings
    import jax
    real = cli.predictions.write

    def compile_with_a_full_cache(*args, **kwargs):
        for name in ("jit_stage", "jit_forward", "jit_stage"):
            warnings.warn(f"Error writing persistent compilation cache entry for '{name}': "
                          "OSError: [Errno 28] No space left on device: '/c/xla/"
                          f"{name}-0123-cache'")
        warnings.warn("Error reading persistent compilation cache entry for 'jit_stage': "
                      "OSError: [Errno 28] No space left on device: '/c/xla/jit_stage-4-atime'")
        return real(*args, **kwargs)
    monkeypatch.setattr(cli.predictions, "write", compile_with_a_full_cache)
    assert main(["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
                 "--out", str(tmp_path / "p.jsonl")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert lines == [f"samp-jax predict: warning: the compilation cache at "
                     f"{jax.config.jax_compilation_cache_dir} could not be written (No space "
                     "left on device); compiling goes on without it"]
