"""Atomic folder writes: a model folder is either the old one or the new one, never a mix.

`atomic_folder(target)` yields a fresh temporary folder beside `target` (same filesystem);
when the block finishes, its files are flushed to disk and the folder takes `target`'s name:
an existing `target` is first renamed aside to `.NAME.old-XXXX`, the new folder is renamed
in, and the old one is deleted. A crash (even `kill -9`) before the first rename leaves the
old model untouched plus a `.NAME.tmp-XXXX` folder, which the next save removes and which
nothing loads. The one remaining window is between the two renames: `target` is briefly
absent while the old model sits whole under `.NAME.old-XXXX`; `interrupted_save` finds it so
that loading can say so, and the next save removes it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

TMP_TAG = ".tmp-"
OLD_TAG = ".old-"


def _siblings(target: Path, tag: str) -> list[Path]:
    prefix = f".{target.name}{tag}"
    if not target.parent.is_dir():
        return []
    return [p for p in target.parent.iterdir() if p.name.startswith(prefix)]


def interrupted_save(target: str | os.PathLike) -> Path | None:
    """The previous model left aside by a save interrupted between its two renames, when
    `target` itself is missing; else None."""
    target = Path(target)
    if target.exists():
        return None
    old = _siblings(target, OLD_TAG)
    return old[0] if old else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, *, replaceable=lambda folder: True) -> Iterator[Path]:
    """Yields a temporary folder to write into; on success it replaces `target` in one rename.

    Args:
      target: the folder to create or replace.
      replaceable: called with an existing, non-empty `target`; False refuses to replace it
        (a user's unrelated folder is never deleted).

    Raises:
      FileExistsError: `target` is a file, or a non-empty folder `replaceable` refuses; raised
        before anything is written.
    """
    target = Path(target)
    if target.is_file():
        raise FileExistsError(f"{target} is a file; a model is saved as a folder")
    if target.is_dir() and any(target.iterdir()) and not replaceable(target):
        raise FileExistsError(f"{target} is a non-empty folder that holds no model; refusing to "
                              "replace it (choose an empty or new folder)")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in _siblings(target, TMP_TAG) + (_siblings(target, OLD_TAG) if target.exists() else []):
        shutil.rmtree(stale, ignore_errors=True)  # litter of interrupted saves
    token = secrets.token_hex(4)
    tmp = target.parent / f".{target.name}{TMP_TAG}{token}"
    tmp.mkdir()
    try:
        yield tmp
        umask = _umask()
        for path in [tmp, *tmp.rglob("*")]:
            # normal permissions whatever the writers chose (safetensors writes 0600)
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
            if path.is_file():
                _fsync(path)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}{OLD_TAG}{token}"
            os.rename(target, old)
        else:  # an earlier save interrupted between its renames: its old copy goes now
            for stale in _siblings(target, OLD_TAG):
                shutil.rmtree(stale, ignore_errors=True)
        os.rename(tmp, target)
        _fsync(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
