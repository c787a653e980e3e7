"""Interrupted and failed saves: the folder is always the old model, the new model, or a clear
error naming where the old model is; never a mix that loads and computes something else."""

import errno
import os
import random
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from safetensors import SafetensorError

import samp_jax
from samp_jax import PrecisionMap, QuantizedModel, Tokenizer, quantize, save_pretrained
from samp_jax.models.tokenizer import TOKENIZER_FILE
from samp_jax.ptq import quantized, saved
from tests.helpers import GOLDEN, ROOT

HF = GOLDEN / "families" / "bert" / "seqcls"  # a tiny BERT (2 layers) with its own tokenizer
TEXTS = ["hello there", "a second, longer test sentence"]


@pytest.fixture(scope="module")
def models():
    """Two different quantized models of one source, each with the tokenizer."""
    source = samp_jax.load(HF)
    old = quantize(source, PrecisionMap.preset("fully_quant", 2))
    new = quantize(source, PrecisionMap.preset("quant_ffn_only", 2))
    return old, new


def _outputs(q):
    return np.asarray(q(**q.tokenizer(TEXTS)))


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- kill -9
KILLS = 10
PAUSE = 0.02  # the child's slow disk: a save takes ~0.3 s, most of it in writes and renames


def _outcome(folder, expected, previous=("old",)):
    """'old', 'new' or 'interrupted' (then a `previous` model is whole where `load` says: the
    old one during the first save, the new one after it)."""
    try:
        out = _outputs(QuantizedModel.load(folder))
    except FileNotFoundError as e:  # killed between the two renames
        match = re.search(r"a save was interrupted while replacing it .*previous model is whole "
                          r"at (\S+);", str(e))
        assert match, e
        whole = _outputs(QuantizedModel.load(match.group(1)))
        assert any(np.array_equal(whole, expected[name]) for name in previous), \
            f"the model `load` named as whole is not the {' or '.join(previous)} model"
        return "interrupted"
    match = [name for name, value in expected.items() if np.array_equal(out, value)]
    assert match, "the folder loaded and gave neither the old nor the new model's outputs"
    return match[0]


def _line(child, word: str) -> list[str]:
    """The child's next line that starts with `word`, skipping its savers' `saved` lines."""
    while True:
        line = child.stdout.readline().split()
        if line[:1] != ["saved"] or word == "saved":
            assert line[:1] == [word], line
            return line


@pytest.mark.slow
def test_kill_9_during_resave_leaves_the_old_or_the_new_model(models, tmp_path):
    """SIGKILLs a process saving the new model over the old one at `KILLS` seeded points spread
    over a save (stratified fractions of its measured duration; a point past 1x waits for the
    first save to end, however slow the machine, and goes that much into the next save). Each
    time the folder loads exactly the old or the new model, or `load` says a save was
    interrupted and names a previous model, whole; the next save succeeds and leaves no litter."""
    old, new = models
    expected = {"old": _outputs(old), "new": _outputs(new)}
    source = new.save(tmp_path / "source")
    folder = tmp_path / "work" / "model"
    rng = random.Random(14)
    fractions = [1.2 * (i + rng.random()) / KILLS for i in range(KILLS)]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.save_child", str(source), str(tmp_path / "scratch"), str(PAUSE)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"})
    outcomes = []
    try:
        ready = _line(child, "ready")
        duration = float(ready[1])
        for fraction in fractions:
            old.save(folder)  # the old model, whole; this also removes what the last kill left
            assert _listing(folder.parent) == ["model"]
            child.stdin.write(f"{folder}\n")
            child.stdin.flush()
            saver = _line(child, "pid")
            if fraction > 1.0:
                _line(child, "saved")  # the first save has ended: the folder holds the new model
            time.sleep((fraction % 1.0 if fraction > 1.0 else fraction) * duration)
            os.kill(int(saver[1]), signal.SIGKILL)
            assert _line(child, "reaped") == ["reaped", str(int(signal.SIGKILL))]
            # past 1x a first save has ended: a later one replaces the new model
            outcomes.append(_outcome(folder, expected, ("new",) if fraction > 1.0 else ("old",)))
    finally:
        child.kill()
        child.wait()
    old.save(folder)
    assert _listing(folder.parent) == ["model"]
    # the kill points did span a save: some before its renames, some after
    assert "old" in outcomes and "new" in outcomes, list(zip(fractions, outcomes))


# ------------------------------------------------------------------- errors mid-save
class DiskFull(OSError):
    pass


def _raise(*args, **kwargs):
    raise DiskFull(28, "No space left on device")


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


WRITERS = {  # where a save fails: each writer in turn, and the two renames
    "weights": ("samp_jax.ptq.saved.save_file", _raise, DiskFull),
    "tokenizer": ("samp_jax.models.tokenizer.Tokenizer.save", _raise, DiskFull),
    "manifest hashing": ("samp_jax.ptq.saved.file_digest", _raise, DiskFull),
    "Ctrl-C in the weights": ("samp_jax.ptq.saved.save_file", _interrupt, KeyboardInterrupt),
    "fsync": ("samp_jax.core.atomic._fsync", _raise, DiskFull),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_an_error_mid_save_keeps_the_old_model_and_leaves_no_litter(models, tmp_path, monkeypatch, writer):
    old, new = models
    folder = old.save(tmp_path / "model")
    target, fail, error = WRITERS[writer]
    monkeypatch.setattr(target, fail)
    with pytest.raises(error):
        new.save(folder)
    monkeypatch.undo()
    assert _listing(tmp_path) == ["model"]
    np.testing.assert_array_equal(_outputs(samp_jax.load(folder)), _outputs(old))


@pytest.mark.parametrize("which", ["first (old model aside)", "second (new model in)"])
def test_a_failed_rename_keeps_the_old_model(models, tmp_path, monkeypatch, which):
    old, new = models
    folder = old.save(tmp_path / "model")
    real_rename = os.rename

    def rename(src, dst):
        moving_new_in = ".tmp-" in os.path.basename(src)
        if moving_new_in == which.startswith("second"):
            raise DiskFull(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(DiskFull):
        new.save(folder)
    monkeypatch.undo()
    assert _listing(tmp_path) == ["model"]  # the old model was renamed back
    np.testing.assert_array_equal(_outputs(samp_jax.load(folder)), _outputs(old))


def test_an_error_mid_save_pretrained_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model = samp_jax.load(HF)
    folder = save_pretrained(model, tmp_path / "hf")
    before = {name: (folder / name).read_bytes() for name in _listing(folder)}
    monkeypatch.setattr(Tokenizer, "save", _raise)  # after the weights and config.json
    with pytest.raises(DiskFull):
        save_pretrained(model, folder, labels=("x", "y", "z"))
    monkeypatch.undo()
    assert _listing(tmp_path) == ["hf"]
    assert {name: (folder / name).read_bytes() for name in _listing(folder)} == before


# ------------------------------------------- safetensors' own error for a full disk
SAFETENSORS_ERRORS = {  # what safetensors raises, word for word, and the errno it stands for
    "full disk": ("Error while serializing: I/O error: No space left on device (os error 28)",
                  errno.ENOSPC),
    "file-size limit": ("Error while serializing: I/O error: File too large (os error 27)",
                        errno.EFBIG),
}


def _safetensors_error(message):
    def save_file(*args, **kwargs):
        raise SafetensorError(message)
    return save_file


@pytest.mark.parametrize("case", SAFETENSORS_ERRORS)
@pytest.mark.parametrize("save", ["QuantizedModel.save", "save_pretrained"])
def test_a_full_disk_in_safetensors_is_an_os_error_naming_the_file(models, tmp_path, monkeypatch,
                                                                   case, save):
    """safetensors' `SafetensorError` is no OSError and names no file: the save raises the
    OSError it stands for (errno set, the file named) and keeps the old model, no litter."""
    old, _ = models
    message, code = SAFETENSORS_ERRORS[case]
    if save == "save_pretrained":
        model = samp_jax.load(HF)
        folder = save_pretrained(model, tmp_path / "model")
        write, module = (lambda: save_pretrained(model, folder, labels=("x", "y", "z"))), "checkpoint"
        weights = folder / "model.safetensors"
    else:
        folder = old.save(tmp_path / "model")
        write, module = (lambda: old.save(folder)), "saved"
        weights = folder / saved.WEIGHTS_FILE
    before = {name: (folder / name).read_bytes() for name in _listing(folder)}
    target = "samp_jax.models.checkpoint" if module == "checkpoint" else "samp_jax.ptq.saved"
    monkeypatch.setattr(f"{target}.save_file", _safetensors_error(message))
    with pytest.raises(OSError) as raised:
        write()
    monkeypatch.undo()
    assert raised.value.errno == code and raised.value.filename == str(weights)
    assert str(weights) in str(raised.value) and os.strerror(code) in str(raised.value)
    assert raised.value.__suppress_context__  # raised from None: one error, not two
    assert _listing(tmp_path) == ["model"]
    assert {name: (folder / name).read_bytes() for name in _listing(folder)} == before


def test_a_safetensors_error_without_an_os_error_still_names_the_file(models, tmp_path,
                                                                      monkeypatch):
    old, _ = models
    monkeypatch.setattr("samp_jax.ptq.saved.save_file",
                        _safetensors_error("Error while serializing: I/O error: something odd"))
    with pytest.raises(OSError, match=r"could not write .*model.*something odd") as raised:
        old.save(tmp_path / "model")
    assert raised.value.errno is None
    monkeypatch.setattr("samp_jax.ptq.saved.save_file",
                        _safetensors_error("Error while serializing: bad tensor"))
    with pytest.raises(ValueError, match=r"could not write .*model.*bad tensor"):
        old.save(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


_FSIZE_CHILD = """
import resource, sys
import samp_jax
model = samp_jax.load(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    samp_jax.save_pretrained(model, sys.argv[2])
except OSError as e:
    print(type(e).__name__, e.errno, e.filename)
"""


@pytest.mark.slow
def test_a_real_file_size_limit_while_saving_is_efbig_naming_the_file(tmp_path):
    """`ulimit -f` below the weights' size (81 kB; Python ignores SIGXFSZ): a real EFBIG."""
    out = tmp_path / "hf"
    child = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(HF), str(out)],
                           capture_output=True, text=True, cwd=ROOT, timeout=300,
                           env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["OSError", str(errno.EFBIG), str(out / "model.safetensors")]
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# ------------------------------------------------------------- a load racing a save
def test_a_save_between_reading_the_sidecar_and_the_weights_gives_the_model_read(
        models, tmp_path, monkeypatch):
    """Another process replaces the folder (a whole save) after `load` has read the sidecar:
    the model loaded is the one whose sidecar was read, never its sidecar with the other's
    weights (which failed as a "damaged" file, "stored as uint16, expected float16")."""
    old, new = models
    folder = old.save(tmp_path / "model")
    real = quantized._skeleton

    def save_meanwhile(*args, **kwargs):
        new.save(folder)  # renames the folder being read aside, then deletes it
        return real(*args, **kwargs)
    monkeypatch.setattr(quantized, "_skeleton", save_meanwhile)
    np.testing.assert_array_equal(_outputs(QuantizedModel.load(folder)), _outputs(old))
    monkeypatch.undo()
    np.testing.assert_array_equal(_outputs(QuantizedModel.load(folder)), _outputs(new))


def test_a_folder_deleted_before_its_weights_are_read_is_a_clear_error(models, tmp_path,
                                                                       monkeypatch):
    old, new = models
    folder = old.save(tmp_path / "model")
    real = saved.read_file

    def read_file(directory, fd, name, *limit):
        if name == "model.safetensors":
            new.save(folder)  # the folder open for reading is renamed aside and deleted
        return real(directory, fd, name, *limit)
    monkeypatch.setattr(saved, "read_file", read_file)
    with pytest.raises(FileNotFoundError, match=r"model was replaced while it was being read "
                                                r"\(a save into it at the same time\?\); load it again"):
        QuantizedModel.load(folder)


def test_a_folder_being_deleted_file_by_file_is_a_clear_error(models, tmp_path, monkeypatch):
    """The save's clean-up removes the replaced folder one file at a time: a load holding that
    folder open meets a listed file that is gone while the folder itself still exists."""
    old, new = models
    folder = old.save(tmp_path / "model")
    real = saved.read_file

    def read_file(directory, fd, name, *limit):
        if name == "model.safetensors":
            aside = tmp_path / "aside"
            folder.rename(aside)  # the folder being read is renamed aside, a new one takes its name
            new.save(folder)
            (aside / name).unlink()  # and the old one is half deleted
        return real(directory, fd, name, *limit)
    monkeypatch.setattr(saved, "read_file", read_file)
    with pytest.raises(FileNotFoundError, match=r"model was replaced while it was being read"):
        QuantizedModel.load(folder)


def test_loads_racing_saves_give_one_model_or_a_clear_error(models, tmp_path):
    """A thread saves the two models into one folder in turn while loads run: each load gives
    the old or the new model's outputs, or says the folder was replaced (or is between the
    renames of a save); never an error about a damaged file."""
    old, new = models
    expected = [_outputs(old), _outputs(new)]
    folder = old.save(tmp_path / "model")
    stop = threading.Event()

    def saver():
        turn = 0
        while not stop.is_set():
            (new if turn % 2 == 0 else old).save(folder)
            turn += 1
    thread = threading.Thread(target=saver)
    thread.start()
    outcomes = []
    try:
        for _ in range(25):
            try:
                out = _outputs(QuantizedModel.load(folder))
            except FileNotFoundError as e:
                assert re.search(r"replaced while it was being read|a save was interrupted|"
                                 r"has no quantization\.json", str(e)), e
                outcomes.append("replaced")
                continue
            match = [i for i, value in enumerate(expected) if np.array_equal(out, value)]
            assert match, "a load gave neither model's outputs"
            outcomes.append(("old", "new")[match[0]])
    finally:
        stop.set()
        thread.join()
    assert {"old", "new"} & set(outcomes), outcomes


# ------------------------------------------------------------------------ permissions
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_saved_files_follow_the_umask(models, tmp_path, umask):
    previous = os.umask(umask)
    try:
        quantized = models[0].save(tmp_path / "q")
        hf = save_pretrained(samp_jax.load(HF), tmp_path / "hf")
    finally:
        os.umask(previous)
    for folder in (quantized, hf):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask, folder
        for path in folder.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, (path, oct(path.stat().st_mode))


# ------------------------------------------------------------------ what is replaced
@pytest.mark.parametrize("content", ["a user's file", "a user's folder"])
@pytest.mark.parametrize("save", ["QuantizedModel.save", "save_pretrained"])
def test_a_folder_that_holds_no_model_is_never_replaced(models, tmp_path, content, save):
    target = tmp_path / "mine"
    if content == "a user's file":
        target.write_text("notes")
        match = "is a file; a model is saved as a folder"
    else:
        target.mkdir()
        (target / "notes.txt").write_text("keep me")
        match = "is a non-empty folder that holds no model; refusing to replace it"
    with pytest.raises(FileExistsError, match=match):
        if save == "save_pretrained":
            save_pretrained(samp_jax.load(HF), target)
        else:
            models[0].save(target)
    assert _listing(tmp_path) == ["mine"]
    assert (target.read_text() if target.is_file() else (target / "notes.txt").read_text()) in ("notes", "keep me")


def test_saving_over_a_model_replaces_the_whole_folder(models, tmp_path):
    old, new = models
    folder = old.save(tmp_path / "q")
    (folder / "README.md").write_text("not written by save")
    new.save(folder)
    assert "README.md" not in _listing(folder) and TOKENIZER_FILE in _listing(folder)
    np.testing.assert_array_equal(_outputs(QuantizedModel.load(folder)), _outputs(new))
    hf = save_pretrained(samp_jax.load(HF), tmp_path / "hf")
    before = _listing(hf)
    with pytest.raises(FileExistsError, match="holds a float model"):
        models[0].save(hf)  # a float checkpoint, perhaps the quantized model's source: kept
    assert _listing(hf) == before and not (hf / "quantization.json").exists()


# ------------------------------------------------------------- the rename window
def test_a_save_interrupted_between_its_renames_is_named_by_load(models, tmp_path):
    old, new = models
    folder = old.save(tmp_path / "model")
    aside = tmp_path / ".model.old-999999999-deadbeef"  # as a kill between the two renames
    os.rename(folder, aside)
    for loader in (QuantizedModel.load, samp_jax.load):
        with pytest.raises(FileNotFoundError):
            loader(folder)
    with pytest.raises(FileNotFoundError, match=r"a save was interrupted while replacing it .* the previous "
                       rf"model is whole at {re.escape(str(aside))}"):
        QuantizedModel.load(folder)
    np.testing.assert_array_equal(_outputs(QuantizedModel.load(aside)), _outputs(old))
    new.save(folder)  # the next save puts the new model in place, then removes the old one
    assert _listing(tmp_path) == ["model"]
    np.testing.assert_array_equal(_outputs(QuantizedModel.load(folder)), _outputs(new))


def test_leftovers_of_interrupted_saves_are_never_loaded_as_the_model(models, tmp_path):
    old, new = models
    folder = old.save(tmp_path / "model")
    partial = tmp_path / ".model.tmp-999999999-0badf00d"  # a dead process's half-written save
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    np.testing.assert_array_equal(_outputs(QuantizedModel.load(folder)), _outputs(old))
    new.save(folder)
    assert _listing(tmp_path) == ["model"]


@pytest.mark.parametrize("loader", ["samp_jax.load", "load_pretrained", "QuantizedModel.load"])
def test_every_loader_names_the_model_an_interrupted_save_left_aside(loader, tmp_path):
    folder = save_pretrained(samp_jax.load(HF), tmp_path / "hf")
    aside = tmp_path / ".hf.old-999999999-deadbeef"
    os.rename(folder, aside)  # as a kill between a re-save's two renames
    load = {"samp_jax.load": samp_jax.load, "QuantizedModel.load": QuantizedModel.load,
            "load_pretrained": samp_jax.load_pretrained}[loader]
    with pytest.raises(FileNotFoundError, match=rf"a save was interrupted .* whole at {re.escape(str(aside))}"):
        load(folder)
    assert samp_jax.load(aside).head_kind  # the previous model itself is intact


LOADERS = {"samp_jax.load": samp_jax.load, "load_pretrained": samp_jax.load_pretrained,
           "QuantizedModel.load": QuantizedModel.load}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_every_loader_names_the_leftover_when_the_model_folder_is_a_symlink(loader, tmp_path):
    """A save through a symlink replaces the folder it points to, so a kill between the two
    renames leaves the link dangling and the previous model beside the real folder: the
    loaders used to call the link "not a folder"; they name the leftover now."""
    real = save_pretrained(samp_jax.load(HF), tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    aside = tmp_path / ".real.old-999999999-deadbeef"  # what atomic_folder(link) sets aside
    os.rename(real, aside)
    with pytest.raises(FileNotFoundError, match=rf"^{re.escape(str(link))} does not exist: a save was "
                       rf"interrupted .* whole at {re.escape(str(aside))}; rename it back"):
        LOADERS[loader](link)
    os.rename(aside, real)  # renamed back, the link loads again
    assert samp_jax.load(link).head_kind


def test_samp_jax_load_names_the_leftover_of_a_quantized_model(models, tmp_path, monkeypatch):
    """`samp_jax.load` of a quantized folder (given as a relative str) names the leftover, and
    the message is the one `QuantizedModel.load` gives (one helper, one text)."""
    old, _ = models
    folder = old.save(tmp_path / "model")
    os.rename(folder, tmp_path / ".model.old-999999999-deadbeef")
    monkeypatch.chdir(tmp_path)
    messages = []
    for loader in (samp_jax.load, QuantizedModel.load):
        with pytest.raises(FileNotFoundError, match=r"^model does not exist: a save was interrupted .* "
                           r"whole at \.model\.old-999999999-deadbeef; rename it back") as caught:
            loader("model")
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    np.testing.assert_array_equal(_outputs(samp_jax.load(".model.old-999999999-deadbeef")), _outputs(old))


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_missing_folder_is_not_called_an_interrupted_save(loader, tmp_path):
    """Only a `.NAME.old-` leftover of the same name makes a missing folder an interrupted save:
    another folder's leftover or a dangling link to nothing gives the ordinary error."""
    (tmp_path / ".other.old-999999999-deadbeef").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "gone", target_is_directory=True)
    for missing in (tmp_path / "model", tmp_path / "dangling"):
        with pytest.raises(FileNotFoundError) as caught:
            LOADERS[loader](missing)
        assert "interrupted" not in str(caught.value) and str(missing) in str(caught.value)


def test_a_stale_leftover_beside_a_present_model_does_not_stop_loading(models, tmp_path):
    old, new = models
    folder = new.save(tmp_path / "model")
    old.save(tmp_path / "elsewhere").rename(tmp_path / ".model.old-999999999-deadbeef")
    for loader in (samp_jax.load, QuantizedModel.load):
        np.testing.assert_array_equal(_outputs(loader(folder)), _outputs(new))
