"""Whole-run outputs: a command that writes several files (`search`: the model, the map, the
summary, the report and the plot; `finetune`: the checkpoint and its summary) commits them
together with one rename. A run that dies or fails half-way leaves the previous run's folder
exactly as it was, never a folder that mixes two runs; an output folder holding files the run
does not write is refused before any work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

import samp_jax as sj
from calibrate import SearchConfig
from calibrate.search import report
from samp_jax.app import cli
from samp_jax.app.cli import main
from samp_jax.models import save_pretrained
from samp_jax.workflows import pipeline
from tests.faults.search_child import search_into, setup
from tests.helpers import ROOT, tiny_classifier


def _snapshot(folder) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes), hidden ones included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _litter(parent, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != name)


@pytest.fixture(scope="module")
def tiny():
    return setup()


@pytest.fixture(scope="module")
def first_search(tiny, tmp_path_factory):
    """A search into a folder that holds the litter of an interrupted write of its report."""
    out = tmp_path_factory.mktemp("runs") / "search"
    out.mkdir()
    (out / ".report.md.tmp-999999999-00000000").write_text("litter of an interrupted write")
    run = search_into(out, ("fp32", "int8-dynamic"), "first", *tiny)
    return out, run


def test_a_search_replaces_its_folder_whole(first_search):
    out, run = first_search
    assert sorted(p.name for p in out.iterdir()) == ["latency_table.json", "model", "pareto",
                                                     "pareto.png", "precision_map.json",
                                                     "report.md", "summary.json"]
    assert run.summary["quantized_model"] == "model" and run.summary["out"] == str(out)
    assert sj.PrecisionMap.from_json(out / "precision_map.json") == \
        sj.QuantizedModel.load(out / "model").precision_map
    assert _litter(out.parent, "search") == []


def test_a_moved_search_folder_finds_its_own_files_by_its_summary(first_search, tmp_path):
    """The files inside the folder are recorded relative to it (they were absolute paths of
    the place the search ran in)."""
    out, run = first_search
    moved = shutil.copytree(out, tmp_path / "moved")
    summary = json.loads((moved / "summary.json").read_text())
    assert (summary["quantized_model"], summary["latency_table"]) == ("model", "latency_table.json")
    assert sj.QuantizedModel.load(moved / summary["quantized_model"]).precision_map == \
        run.result.precision_map
    assert (moved / summary["latency_table"]).read_text() == (out / "latency_table.json").read_text()


def test_a_search_given_the_table_it_wrote_repeats_itself_and_a_table_decides_the_map(
        tiny, first_search, tmp_path):
    from calibrate.search.config import SearchConfig
    from calibrate.search.latency import LatencyTable
    out, run = first_search
    table = LatencyTable.from_json((out / "latency_table.json").read_text())
    assert table.source == "measured" and run.summary["latency_table"] == "latency_table.json"
    config = SearchConfig(options=("fp32", "int8-dynamic"), tolerance=0.05, progress=False, target="cpu")
    again = pipeline.run_search(*tiny, config, out=tmp_path / "again", compare_presets=False,
                                latency_table=table)
    assert again.result.precision_map == run.result.precision_map
    assert (tmp_path / "again" / "latency_table.json").read_text() == table.to_json()
    assert again.result.latency_table == table  # priced with it, not measured again


def test_a_latency_table_that_is_no_table_is_refused_in_one_line_before_the_model(tmp_path, capsys):
    bad = tmp_path / "table.json"
    bad.write_text('{"device": "cpu"}')
    code = main(["search", "--model", str(tmp_path / "no_model"), "--data", "snli",
                 "--latency-table", str(bad), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"--latency-table {bad}: not a readable latency table" in err


@pytest.mark.parametrize("extra, message", [
    (["--latency-table", "table.json"], "--measure-latency-again and --latency-table: give one"),
    (["--target", "h100"], "--measure-latency-again: --target h100 is not this machine"),
])
def test_measuring_again_what_is_not_measured_is_refused_before_the_model(
        tmp_path, capsys, extra, message):
    code = main(["search", "--model", str(tmp_path / "no_model"), "--data", "snli",
                 "--measure-latency-again", *extra, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err.strip().splitlines()[-1] and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_search_that_fails_between_its_files_leaves_the_previous_run(tiny, first_search,
                                                                       monkeypatch):
    out, _ = first_search
    before = _snapshot(out)
    assert {"model/quantization.json", "precision_map.json", "summary.json", "report.md",
            "pareto.png"} <= set(before)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(report, "plot_pareto", fail)  # after the model, map and summary
    with pytest.raises(OSError, match="No space left"):
        search_into(out, ("fp32", "int8-static"), "second", *tiny)
    assert _snapshot(out) == before
    assert _litter(out.parent, "search") == []  # the half-built run is removed


def test_a_search_refuses_an_out_folder_with_other_files_before_any_work(tiny, tmp_path,
                                                                         monkeypatch, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    monkeypatch.setattr(pipeline, "plan_search", lambda *a, **k: pytest.fail("slow work"))
    with pytest.raises(FileExistsError, match="holds files this run does not write"):
        search_into(out, ("fp32", "int8-dynamic"), "x", *tiny)
    monkeypatch.setattr(cli, "load", lambda *a, **k: pytest.fail("loaded a model first"))
    code = main(["search", "--model", "m", "--data", "snli", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "--out" in err and "holds files this run does not write" in err, err
    assert (out / "notes.txt").read_text() == "the user's own file"


@pytest.mark.slow
def test_kill_9_between_the_files_of_a_search_leaves_the_previous_run(tmp_path):
    """A process searches into OUT to the end, then again with other options, and is killed
    (SIGKILL) after the second run's model, map and summary are written, before its report:
    OUT is byte for byte the first run, and the next run cleans the half-built folder."""
    out = tmp_path / "search"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.search_child", str(out)], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"})
    try:
        assert child.stdout.readline().strip() == "first"
        first = _snapshot(out)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(timeout=600) == -signal.SIGKILL
    finally:
        child.kill()
    assert _snapshot(out) == first
    assert b"first" in first["report.md"] and b"first" in first["summary.json"]
    assert [name.startswith(".search.tmp-") for name in _litter(tmp_path, "search")] == [True]


# ------------------------------------------------------------------------------ finetune
@pytest.fixture
def finetune_files(tmp_path, minilm_dir):
    model = tiny_classifier()
    save_pretrained(model, tmp_path / "base", tokenizer_dir=minilm_dir)
    rng = np.random.default_rng(1)
    words = "good bad movie plot day night fine awful".split()
    (tmp_path / "data.csv").write_text("text,label\n" + "".join(
        f"{' '.join(rng.choice(words, 6))},{('neg', 'pos')[i % 2]}\n" for i in range(40)))
    return tmp_path


def _fake_finetune(scale: float):
    """`finetune` without the training: the model with its classifier scaled by `scale`."""
    def finetune(model, task, tokenizer, config, progress=True, on_encoded=None):
        kernel = model.head.classifier.kernel
        kernel.value = kernel.value * scale
        return types.SimpleNamespace(model=model, dev_metric=0.5, steps=1, seconds=0.0,
                                     learned=True, chance=None, truncation={}, dev_examples=4,
                                     history=[{"step": 1, "dev": 0.5}], evaluations=1)
    return finetune


def test_a_finetune_that_fails_before_its_summary_leaves_the_previous_run(finetune_files,
                                                                          monkeypatch, capsys):
    root = finetune_files
    argv = ["finetune", "--model", str(root / "base"), "--data", str(root / "data.csv"),
            "--out", str(root / "out")]
    monkeypatch.setattr(cli, "finetune", _fake_finetune(2.0))
    assert main(argv) == 0, capsys.readouterr().err
    before = _snapshot(root / "out")
    assert {"config.json", "model.safetensors", "finetune.json"} <= set(before)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cli, "finetune", _fake_finetune(3.0))
    monkeypatch.setattr(cli, "strict_json", types.SimpleNamespace(dumps=no_space))  # the summary
    assert main(argv) == 1
    assert "No space left" in capsys.readouterr().err
    assert _snapshot(root / "out") == before


def test_a_search_output_may_hold_its_pareto_maps_but_nothing_else_there(tmp_path):
    from samp_jax.workflows.pipeline import is_search_output
    out = tmp_path / "search"
    (out / "pareto").mkdir(parents=True)
    (out / "report.md").write_text("report")
    for name in ("01.json", "02.json", ".03.json.tmp-99-ab"):
        (out / "pareto" / name).write_text("{}")
    assert is_search_output(out)
    (out / "pareto" / "notes.txt").write_text("the user's own file")
    assert not is_search_output(out)


def test_a_search_report_keeps_the_warnings_its_run_showed(tiny, tmp_path, recwarn):
    """What `run_search` warned of (here, a calibration split of a few tokens) is in its
    summary's `warnings` and heads report.md, with what the caller warned of first; it was
    shown as well (pytest's `recwarn` saw it)."""
    config = SearchConfig(tolerance=0.05, target="cpu", options=("fp32", "int8-dynamic"),
                          progress=False)
    run = pipeline.run_search(*tiny, config, out=tmp_path / "s", compare_presets=False,
                              warnings_before=["read from a file named twice"])
    kept = run.summary["warnings"]
    assert kept[0] == "read from a file named twice" and len(kept) == len(set(kept)) > 1
    # the test split's own caveat, said after the search (a random model: at chance there)
    assert any(w.startswith("the FP32 model's test accuracy") for w in kept), kept
    assert any(str(w.message) == kept[1] for w in recwarn)
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["warnings"] == kept
    report = (tmp_path / "s" / "report.md").read_text()
    assert "## Warnings\n\n- read from a file named twice\n" in report
