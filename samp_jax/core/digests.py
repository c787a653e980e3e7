"""File digests as samp-jax's manifests record them, `{"sha256": HEX, "bytes": SIZE}`, and the
check of a folder against such a manifest.

A quantized model folder lists its files in `quantization.json` (`samp_jax.ptq.folder` checks
them on the bytes it reads); a cached fine-tuned model lists its own in `finetune.json`
(`samp_jax.training.finetuning.finetuned_model`), so that a damaged or edited cache entry is
found before it is used instead of loading as a silently different model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, Mapping


def bytes_digest(data: bytes) -> dict[str, Any]:
    """`{"sha256", "bytes"}` of `data`, as a manifest records a file."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def file_digest(path: Path) -> dict[str, Any]:
    """`bytes_digest` of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": size}


def _file_names(folder: Path, exclude: Iterable[str]) -> list[str]:
    """The names of the regular files directly in `folder` (no links) but `exclude`, sorted."""
    skipped = frozenset(exclude)
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.is_file() and not p.is_symlink() and p.name not in skipped)


def folder_digests(folder: Path, *, exclude: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """`{name: file_digest}` of every regular file directly in `folder` but `exclude`, by name."""
    return {name: file_digest(Path(folder) / name) for name in _file_names(folder, exclude)}


def _describe(digest: Mapping[str, Any]) -> str:
    return f"{digest.get('bytes')} bytes, sha256 {str(digest.get('sha256'))[:16]}..."


def changed_files(folder: Path, recorded: Any, *, manifest: str, exclude: Iterable[str] = ()
                  ) -> list[str]:
    """How `folder` differs from `recorded` (`folder_digests` as it was written, read from the
    file named `manifest`), one line per file: one missing, one whose size or sha256 differs
    (found vs recorded) or that cannot be read, one not recorded (`exclude` aside). Empty when
    the folder is as recorded; a `recorded` that is not a non-empty `{name: {"sha256",
    "bytes"}}` mapping, or a folder that cannot be listed, is one line saying so."""
    if not isinstance(recorded, dict) or not recorded or not all(
            isinstance(d, dict) and isinstance(d.get("sha256"), str) and isinstance(d.get("bytes"), int)
            for d in recorded.values()):
        return [f"{manifest} lists no files with their sha256 and sizes to check them against"]
    try:
        names = set(_file_names(folder, exclude))
    except OSError as e:
        return [f"{folder}: cannot be listed ({e.strerror or e})"]
    problems = []
    for name, want in sorted(recorded.items()):
        if name not in names:
            problems.append(f"{name}: missing")
            continue
        try:
            got = file_digest(Path(folder) / name)
        except OSError as e:
            problems.append(f"{name}: unreadable ({e.strerror or e})")
            continue
        if got != {"sha256": want["sha256"], "bytes": want["bytes"]}:
            problems.append(f"{name}: {_describe(got)}, recorded {_describe(want)}")
    problems += [f"{name}: not one of the files written there" for name in sorted(names - set(recorded))]
    return problems
