"""`samp_jax.core.atomic`: folders written beside their target and renamed into place."""

import os
import re
import stat

import pytest

from samp_jax.core import atomic
from samp_jax.core.atomic import (atomic_folder, check_replaceable, holds_only, host_tag,
                                  interrupted_save, is_model_folder, owned_prefix, resolve_output,
                                  sweep_dead, write_cache_text, write_text_atomic)

DEAD = 999_999_999  # no such process: leftovers carrying this PID belong to nobody


def _model(folder, text="old"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(text)
    return folder


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_writes_beside_the_target_and_renames_into_place(tmp_path):
    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path
        assert re.fullmatch(rf"\.model\.tmp-{os.getpid()}-{host_tag()}-[0-9a-f]{{8}}", tmp.name)
        (tmp / "config.json").write_text("new")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "file").write_text("nested")
        assert not target.exists()  # nothing at the target until the block succeeds
    assert _listing(tmp_path) == ["model"]
    assert (target / "config.json").read_text() == "new" and (target / "sub" / "file").read_text() == "nested"


def test_creates_missing_parents(tmp_path):
    with atomic_folder(tmp_path / "a" / "b" / "model") as tmp:
        (tmp / "config.json").write_text("new")
    assert (tmp_path / "a" / "b" / "model" / "config.json").is_file()


def test_replaces_a_model_folder_whole(tmp_path):
    target = _model(tmp_path / "model")
    (target / "stale.bin").write_text("from the old save")
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("new")
    assert _listing(target) == ["config.json"] and (target / "config.json").read_text() == "new"
    assert _listing(tmp_path) == ["model"]  # the old folder is gone, no .old- left


def test_an_empty_folder_is_replaced(tmp_path):
    (tmp_path / "model").mkdir()
    with atomic_folder(tmp_path / "model") as tmp:
        (tmp / "x").write_text("new")
    assert _listing(tmp_path / "model") == ["x"]


@pytest.mark.parametrize("marker", ["config.json", "quantization.json"])
def test_is_model_folder(tmp_path, marker):
    assert not is_model_folder(tmp_path)
    (tmp_path / marker).write_text("{}")
    assert is_model_folder(tmp_path)


def test_refuses_a_folder_that_holds_no_model_before_writing(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"mine is a non-empty folder that holds no model; refusing"):
        with atomic_folder(target):
            pytest.fail("the block must not run")
    assert _listing(tmp_path) == ["mine"] and _listing(target) == ["notes.txt"]


def test_refuses_a_file(tmp_path):
    (tmp_path / "model").write_text("a file")
    with pytest.raises(FileExistsError, match="is a file; a model is saved as a folder"):
        with atomic_folder(tmp_path / "model"):
            pytest.fail("the block must not run")
    assert (tmp_path / "model").read_text() == "a file"


def test_replaceable_decides(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "anything").write_text("x")
    with atomic_folder(target, replaceable=lambda folder: (folder / "anything").is_file()) as tmp:
        (tmp / "new").write_text("y")
    assert _listing(target) == ["new"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_error_in_the_block_removes_the_temporary_folder_and_keeps_the_target(tmp_path, error):
    target = _model(tmp_path / "model")
    with pytest.raises(error):
        with atomic_folder(target) as tmp:
            (tmp / "config.json").write_text("partial")
            raise error("boom")
    assert _listing(tmp_path) == ["model"] and (target / "config.json").read_text() == "old"


def test_a_failed_second_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = _model(tmp_path / "model")
    real_rename = os.rename

    def rename(src, dst):
        if atomic.TMP_TAG in os.path.basename(src):
            raise OSError(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="Input/output error"):
        with atomic_folder(target) as tmp:
            (tmp / "config.json").write_text("new")
    assert _listing(tmp_path) == ["model"] and (target / "config.json").read_text() == "old"


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_permissions_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with atomic_folder(tmp_path / "model") as tmp:
            fd = os.open(tmp / "weights", os.O_CREAT | os.O_WRONLY, 0o600)  # as tempfile / safetensors
            os.close(fd)
            (tmp / "sub").mkdir(mode=0o700)
    finally:
        os.umask(previous)
    target = tmp_path / "model"
    assert stat.S_IMODE((target / "weights").stat().st_mode) == 0o666 & ~umask
    for folder in (target, target / "sub"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask


# ------------------------------------------------------------ leftovers of interrupted saves
def test_a_dead_processs_temporary_folder_is_removed_by_the_next_save(tmp_path):
    target = _model(tmp_path / "model")
    (tmp_path / f".model.tmp-{DEAD}-0badf00d").mkdir()
    (tmp_path / ".model.tmp-0badf00d").mkdir()  # no PID at all: not a live save's either
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("new")
    assert _listing(tmp_path) == ["model"]


def test_a_live_saves_temporary_folder_is_left_alone(tmp_path):
    live = tmp_path / f".model.tmp-{os.getpid()}-00000000"  # another save, still running
    live.mkdir()
    with atomic_folder(tmp_path / "model") as tmp:
        (tmp / "config.json").write_text("new")
    assert _listing(tmp_path) == [live.name, "model"]


def test_a_dead_processs_temporary_file_is_removed_by_the_next_write_of_that_file(tmp_path):
    (tmp_path / "out.jsonl").write_text("old")
    (tmp_path / f".out.jsonl.tmp-{DEAD}-0badf00d").write_text("half a file")  # a killed write
    live = tmp_path / f".out.jsonl.tmp-{os.getpid()}-00000000"  # another write, still running
    live.write_text("being written")
    other = tmp_path / f".other.jsonl.tmp-{DEAD}-0badf00d"  # another file's: not this write's
    other.write_text("half of another file")
    write_text_atomic(tmp_path / "out.jsonl", "new")
    assert _listing(tmp_path) == sorted([other.name, live.name, "out.jsonl"])
    assert (tmp_path / "out.jsonl").read_text() == "new"


def test_leftovers_of_another_machine_or_pid_namespace_are_left_to_their_owner(tmp_path):
    """A PID is only known to its own host and namespace: the same number here says nothing
    of a save by another container sharing the folder (its HOST tag differs)."""
    target = _model(tmp_path / "model")
    other_host = "0" * 8 if host_tag() != "0" * 8 else "1" * 8
    theirs = [tmp_path / f".model.tmp-{DEAD}-{other_host}-0badf00d",
              tmp_path / f".model.old-{DEAD}-{other_host}-0badf00d"]
    ours = tmp_path / f".model.tmp-{DEAD}-{host_tag()}-0badf00d"
    for folder in (*theirs, ours):
        folder.mkdir()
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("new")
    assert _listing(tmp_path) == sorted(["model", *(p.name for p in theirs)])


def test_a_dead_save_into_a_temporary_folder_is_removed_with_it(tmp_path):
    """A fine-tune's run folder is a temporary folder that `save_pretrained` saves into:
    a kill leaves `..NAME.tmp-A.tmp-B` beside `.NAME.tmp-A`, both dead."""
    target = _model(tmp_path / "run")
    outer = f".run.tmp-{DEAD}-{host_tag()}-0badf00d"
    (tmp_path / outer).mkdir()
    (tmp_path / f".{outer}.tmp-{DEAD}-{host_tag()}-1badf00d").mkdir()
    live = tmp_path / f"..run.tmp-{os.getpid()}-{host_tag()}-2.tmp-{os.getpid()}-3"
    live.mkdir()
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("new")
    assert _listing(tmp_path) == sorted([live.name, "run"])


def test_sweep_dead_removes_only_this_hosts_dead_entries_of_the_tag(tmp_path):
    dead = tmp_path / f".fetch-{DEAD}-{host_tag()}-abc"
    alive = tmp_path / f"{owned_prefix('.fetch-')}abc"
    elsewhere = tmp_path / f".fetch-{DEAD}-{'0' * 8 if host_tag() != '0' * 8 else '1' * 8}-abc"
    unrelated = tmp_path / f".other-{DEAD}-{host_tag()}-abc"
    unattributed = tmp_path / ".fetch-q3x_9a"  # tempfile's own name: whose, no one can tell
    for folder in (dead, alive, elsewhere, unrelated, unattributed):
        folder.mkdir()
    sweep_dead(tmp_path, ".fetch-")
    assert _listing(tmp_path) == sorted(p.name for p in (alive, elsewhere, unrelated,
                                                         unattributed))


def test_a_dead_processs_old_folder_is_removed_once_the_new_one_is_in_place(tmp_path):
    target = _model(tmp_path / "model")
    (tmp_path / f".model.old-{DEAD}-0badf00d").mkdir()  # killed after its second rename
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("new")
    assert _listing(tmp_path) == ["model"]


def test_an_interrupted_rename_is_found_and_kept_until_the_next_save_succeeds(tmp_path):
    target = _model(tmp_path / "model")
    assert interrupted_save(target) is None
    aside = tmp_path / f".model.old-{DEAD}-0badf00d"
    os.rename(target, aside)  # killed between the two renames
    assert interrupted_save(target) == aside
    with pytest.raises(RuntimeError):
        with atomic_folder(target):
            raise RuntimeError("this save fails too")
    assert interrupted_save(target) == aside and (aside / "config.json").read_text() == "old"
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("new")
    assert interrupted_save(target) is None
    assert _listing(tmp_path) == ["model"] and (target / "config.json").read_text() == "new"


def test_no_leftover_when_nothing_was_interrupted(tmp_path):
    assert interrupted_save(tmp_path / "never-saved") is None
    (tmp_path / ".other.old-1-00000000").mkdir()  # another folder's leftover
    assert interrupted_save(tmp_path / "model") is None


def test_a_symlinked_target_replaces_the_folder_it_points_to(tmp_path):
    real = _model(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    with atomic_folder(link) as tmp:
        (tmp / "config.json").write_text("new")
    assert link.is_symlink() and (link / "config.json").read_text() == "new"
    assert _listing(tmp_path) == ["link", "real"]


def test_a_relative_target(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with atomic_folder("model") as tmp:
        (tmp / "config.json").write_text("new")
    assert _listing(tmp_path) == ["model"]


# ------------------------------------------------------------------------------ symlinks
def test_a_file_written_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.jsonl"
    target.write_text("old")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    write_text_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"


def test_a_dangling_symlink_is_written_through_to_the_path_it_names(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "sub" / "made.json")
    write_text_atomic(link, "new")
    assert link.is_symlink() and (tmp_path / "sub" / "made.json").read_text() == "new"
    folder_link = tmp_path / "model_link"
    folder_link.symlink_to(tmp_path / "models" / "model")
    with atomic_folder(folder_link) as tmp:
        (tmp / "config.json").write_text("new")
    assert folder_link.is_symlink()
    assert (tmp_path / "models" / "model" / "config.json").read_text() == "new"


def test_a_symlink_loop_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(FileExistsError, match="a symlink that does not resolve"):
        write_text_atomic(tmp_path / "a", "x")
    with pytest.raises(FileExistsError, match="a symlink that does not resolve"):
        with atomic_folder(tmp_path / "a"):
            pass
    assert _listing(tmp_path) == ["a", "b"]


# ---------------------------------------------------------------------- run folders
def test_holds_only_accepts_a_folder_of_the_run_s_own_outputs(tmp_path):
    replaceable = holds_only(("model", "summary.json", "report.md"))
    run = tmp_path / "run"
    _model(run / "model")
    (run / "summary.json").write_text("{}")
    (run / ".report.md.tmp-123-abcdef12").write_text("litter")
    assert replaceable(run)
    (run / "notes.txt").write_text("mine")
    assert not replaceable(run)
    (run / "notes.txt").unlink()
    (run / "model" / "config.json").unlink()  # a folder named model that holds no model
    assert not replaceable(run)


def test_check_replaceable_refuses_what_atomic_folder_would_refuse_and_writes_nothing(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.jpg").write_text("x")
    replaceable = holds_only(("summary.json",))
    with pytest.raises(FileExistsError, match="mine is a non-empty folder that holds files this "
                                              "run does not write"):
        check_replaceable(mine, replaceable=replaceable)
    with pytest.raises(FileExistsError, match="mine is a non-empty folder that holds files"):
        with atomic_folder(mine, replaceable=replaceable):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="file is a file; expected a folder"):
        check_replaceable(tmp_path / "file", replaceable=replaceable)
    assert check_replaceable(tmp_path / "new") == tmp_path / "new"
    assert _listing(tmp_path) == ["file", "mine"] and _listing(mine) == ["photo.jpg"]


def test_a_cache_file_that_cannot_be_written_is_a_warning_naming_it(tmp_path):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    target = tmp_path / "cache" / "latency" / "table.json"
    with pytest.warns(UserWarning, match=f"could not write the latency table {target} to the "
                                         "cache .*; going on without caching it"):
        assert write_cache_text(target, "{}", what="latency table") is False
    assert write_cache_text(tmp_path / "ok" / "table.json", "{}") is True
    assert (tmp_path / "ok" / "table.json").read_text() == "{}"


@pytest.mark.parametrize("previous", [False, True])
def test_a_save_another_process_commits_first_is_said_so(tmp_path, monkeypatch, previous):
    """Two saves of one folder commit at the same moment: the one whose rename finds the
    other's folder in place says so, and the other's model stays whole (the previous model,
    which this save had set aside, goes: it was replaced)."""
    target = _model(tmp_path / "model") if previous else tmp_path / "model"
    rename = os.rename

    def the_other_commits_first(src, dst):
        if str(dst) == str(target) and ".tmp-" in os.path.basename(src):
            theirs = tmp_path / "theirs"
            theirs.mkdir()
            (theirs / "config.json").write_text("theirs")
            rename(theirs, target)
        return rename(src, dst)
    monkeypatch.setattr(atomic.os, "rename", the_other_commits_first)
    with pytest.raises(FileExistsError, match=r"model was saved by another process while this "
                                              r"one was saving it; that save is whole there"):
        with atomic_folder(target) as tmp:
            (tmp / "config.json").write_text("ours")
    assert (target / "config.json").read_text() == "theirs"
    assert _listing(tmp_path) == ["model"]  # ours removed


def test_a_quantized_save_never_replaces_a_float_checkpoint(tmp_path):
    """`QuantizedModel.save` over the folder its float model came from would lose the FP32
    weights and everything else there; an earlier quantized model is replaced as before."""
    from samp_jax.core.atomic import is_quantized_folder
    float_model = _model(tmp_path / "float")  # config.json: an HF checkpoint
    (float_model / "model.safetensors").write_text("fp32 weights")
    with pytest.raises(FileExistsError, match=r"float holds a float model \(config.json and its "
                                              r"weights\), which a quantized model saved there "
                                              "would replace"):
        with atomic_folder(float_model, replaceable=is_quantized_folder):
            pytest.fail("nothing is written")
    assert _listing(float_model) == ["config.json", "model.safetensors"]
    quantized = tmp_path / "int8"
    quantized.mkdir()
    (quantized / "quantization.json").write_text("old")
    with atomic_folder(quantized, replaceable=is_quantized_folder) as tmp:
        (tmp / "quantization.json").write_text("new")
    assert (quantized / "quantization.json").read_text() == "new"


def test_a_relative_output_after_the_working_folder_is_deleted_is_named(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(FileNotFoundError, match=r"^out.jsonl: a relative path, and the working "
                                                r"folder no longer exists"):
        resolve_output("out.jsonl")
    assert resolve_output(tmp_path / "x") == tmp_path / "x"  # an absolute path still resolves
