"""Interrupted and failed saves: the folder is always the old model, the new model, or a clear
error; never a mix that loads and computes something else."""

import os
import random
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from samp_jax import QuantizedModel
from samp_jax.atomic import atomic_folder
from tests.faults.save_child import model
from tests.helpers import ROOT, random_batches

BATCH = random_batches(1, vocab=64)[0]


def _outputs(q):
    return np.asarray(q(**BATCH))


@pytest.mark.slow
def test_kill_9_during_resave_leaves_the_old_or_the_new_model(tmp_path):
    folder = tmp_path / "model"
    old, new = model(1), model(2)
    old.save(folder)
    expected = {"old": _outputs(old), "new": _outputs(new)}
    rng = random.Random(0)
    outcomes = []
    for attempt in range(4):
        child = subprocess.Popen([sys.executable, "-m", "tests.faults.save_child", str(folder), "2"],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"})
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))  # somewhere inside one of the back-to-back saves
        child.send_signal(signal.SIGKILL)
        child.wait()
        try:
            out = _outputs(QuantizedModel.load(folder))
        except (FileNotFoundError, ValueError) as e:  # a clear error is allowed, never a mix
            assert "interrupted" in str(e) or "manifest" in str(e), e
            outcomes.append("error")
            old.save(folder)  # a later save always succeeds
            continue
        match = [name for name, value in expected.items() if np.array_equal(out, value)]
        assert match, "the folder loaded and gave neither the old nor the new model's outputs"
        outcomes.append(match[0])
    litter = [p.name for p in tmp_path.iterdir() if p.name != "model"]
    old.save(folder)  # and cleans what the kills left
    assert [p.name for p in tmp_path.iterdir()] == ["model"], litter
    assert outcomes  # every kill point gave one of the allowed outcomes


def test_an_error_mid_save_keeps_the_old_model_and_leaves_no_litter(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    old = model(1)
    old.save(folder)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("samp_jax.quant.quantized.save_file", broken)
    with pytest.raises(OSError, match="No space left"):
        model(2).save(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    np.testing.assert_array_equal(_outputs(QuantizedModel.load(folder)), _outputs(old))


def test_saved_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        folder = model(1).save(tmp_path / "model")
    finally:
        os.umask(previous)
    for path in [folder, *folder.iterdir()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044, (path.name, oct(mode))  # readable by group and others


@pytest.mark.parametrize("content", ["a user's file", "a user's folder"])
def test_a_folder_that_holds_no_model_is_never_replaced(tmp_path, content):
    target = tmp_path / "mine"
    if content == "a user's file":
        target.write_text("notes")
        match = "is a file"
    else:
        target.mkdir()
        (target / "notes.txt").write_text("keep me")
        match = "holds no model; refusing to replace it"
    with pytest.raises(FileExistsError, match=match):
        model(1).save(target)
    assert target.exists() and not list(tmp_path.glob(".mine*"))


def test_a_save_interrupted_between_its_renames_is_named_by_load(tmp_path):
    folder = model(1).save(tmp_path / "model")
    os.rename(folder, tmp_path / ".model.old-deadbeef")  # as a kill between the two renames
    with pytest.raises(FileNotFoundError, match=r"a save was interrupted .* previous model is whole at"):
        QuantizedModel.load(folder)
    model(2).save(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_folder_removes_its_temporary_folder_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "x") as tmp:
            (tmp / "f").write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
