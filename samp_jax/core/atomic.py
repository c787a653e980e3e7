"""Atomic folder writes: a model folder is either the old one or the new one, never a mix.

`atomic_folder(target)` yields a fresh temporary folder `.NAME.tmp-PID-HOST-XXXXXXXX` beside
`target` (same filesystem, so renames are atomic). When the block finishes without an error,
every file and folder in it gets normal permissions (`0666` / `0777` less the umask; some
writers create `0600` files) and is flushed to disk, and then the folder takes `target`'s name:

1. an existing `target` is renamed aside to `.NAME.old-PID-HOST-XXXXXXXX`;
2. the new folder is renamed to `target`;
3. the old folder is deleted.

An error inside the block (or in the steps above) deletes the temporary folder; if step 2
fails, the old folder is renamed back. A crash (even `kill -9`) before step 1 leaves the old
model untouched plus a `.tmp-` folder; a crash after step 2 leaves the new model plus an
`.old-` folder. Neither is a model folder anyone loads by name, and the next save of `target`
removes the leftovers of processes that are no longer running (`PID` in the name says whose
they are, so concurrent saves never delete each other's folders). The name also carries a tag
of the machine and PID namespace that wrote it (`.NAME.tmp-PID-HOST-XXXXXXXX`, `HOST`:
`host_tag`): a PID means nothing to another machine sharing the folder (NFS) or to another
container sharing a volume, so only leftovers of this host and namespace are swept; others
stay, for their own writer (or a person) to remove.

The one remaining window is between steps 1 and 2: for that moment `target` does not exist,
while the old model lies whole under `.NAME.old-...`. A crash there leaves it so.
`interrupted_save(target)` finds that folder; `QuantizedModel.load` then says that a save was
interrupted and where the previous model is, and the next save removes it once the new model is
in place. Concurrent saves of one folder: one wins; another may fail with an error; none mixes.

Replacing `target` replaces the whole folder: files in it that the writer does not write again
are not kept. So only an empty folder, or one `replaceable` accepts (by default
`is_model_folder`: it has `quantization.json` or `config.json`), is replaced; any other
non-empty folder is refused before anything is written (`check_replaceable` runs that check
alone, for a command that wants to refuse before its slow work).

A run that writes several files (a search's report, map and model; a fine-tune's checkpoint
and summary) is one folder: the whole output is written into the temporary folder and
committed by the one rename, so a reader sees the previous run or the new one, never files of
both. `holds_only(names)` is the `replaceable` for such a folder: one that holds nothing but
what the run writes (so a user's own file in it is never deleted).

Symlinks. An output path that is a symlink is written through: the file or folder it points to
is replaced (a dangling link's target is created) and the link stays a link. A link that
cannot be resolved (a loop) is refused.

One file: `atomic_file(target)` (and `write_text_atomic`) writes `.NAME.tmp-PID-HOST-XXXXXXXX` beside
`target` and renames it into place, and removes such files of processes no longer running, as
`atomic_folder` does. `write_cache_text` is for a file that is only a cache: failing to write it
is a warning, and the caller goes on with what it holds in memory.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import secrets
import shutil
import socket
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

TMP_TAG = ".tmp-"
OLD_TAG = ".old-"
MODEL_MARKERS = ("quantization.json", "config.json")


def is_model_folder(folder: str | os.PathLike) -> bool:
    """A folder samp-jax may replace when saving: a quantized model (`quantization.json`) or an
    HF checkpoint (`config.json`)."""
    return any((Path(folder) / name).is_file() for name in MODEL_MARKERS)


def is_quantized_folder(folder: str | os.PathLike) -> bool:
    """A folder a quantized model may replace: an earlier quantized model (`quantization.json`).
    A float checkpoint is not one: its weights are what a quantized copy is made from."""
    return (Path(folder) / MODEL_MARKERS[0]).is_file()


def holds_only(names: Iterable[str], folders: Mapping[str, Callable[[Path], bool]] | None = None
               ) -> Callable[[Path], bool]:
    """A `replaceable` test for a run's output folder: True when every entry of the folder is
    one of `names` (what the run writes) or a leftover of an interrupted atomic write of one
    of them (`.NAME.tmp-...`, `.NAME.old-...`), and an entry that is a folder passes its test
    in `folders` (by name), else is a model folder (`is_model_folder`)."""
    allowed = frozenset(names)
    folders = dict(folders or {})

    def replaceable(folder: Path) -> bool:
        for entry in Path(folder).iterdir():
            name = entry.name
            if name.startswith(".") and (TMP_TAG in name or OLD_TAG in name):
                name = name[1:].split(TMP_TAG if TMP_TAG in name else OLD_TAG, 1)[0]
            elif entry.is_dir() and not folders.get(name, is_model_folder)(entry):
                return False
            if name not in allowed:
                return False
        return True
    return replaceable


def resolve_output(target: str | os.PathLike) -> Path:
    """The absolute path an output is written to: `target`, or, when it is a symlink (even a
    dangling one), the path the link resolves to (written through, the link stays).

    Raises:
      FileExistsError: `target` is a symlink that cannot be resolved (a loop).
      FileNotFoundError: `target` is relative and the working folder was deleted.
    """
    try:
        path = Path(os.path.abspath(target))
    except FileNotFoundError:  # os.getcwd(): the working folder is gone
        raise FileNotFoundError(f"{target}: a relative path, and the working folder no longer "
                                "exists (deleted while the command ran?); expected an absolute "
                                "path, or run from a folder that exists") from None
    if not path.is_symlink():
        return path
    resolved = Path(os.path.realpath(path))
    if resolved.is_symlink():  # realpath stops inside a loop
        raise FileExistsError(f"{target} is a symlink that does not resolve (a loop); "
                              "expected a link to a file or folder, or a plain path")
    return resolved


def committed_path(path: str | os.PathLike) -> Path:
    """The path a file written inside an atomic write's temporary file or folder takes once
    committed (`.NAME.tmp-...` is NAME; a save into a temporary folder's sibling,
    `..NAME.tmp-....tmp-...`, is NAME too); any other path as it is. For messages: a full disk
    is said at the user's path, not at a temporary name."""
    parts = []
    for part in Path(path).parts:
        while part.startswith(".") and TMP_TAG in part[1:]:
            part = part[1:].rsplit(TMP_TAG, 1)[0]
        parts.append(part)
    return Path(*parts)


def check_replaceable(target: str | os.PathLike, *,
                      replaceable: Callable[[Path], bool] = is_model_folder) -> Path:
    """Raises FileExistsError unless `atomic_folder(target, replaceable=...)` may write
    `target`: it does not exist, or is an empty folder, or a folder `replaceable` accepts.
    Writes nothing. Returns the resolved target (`resolve_output`)."""
    resolved = resolve_output(target)
    models = replaceable in (is_model_folder, is_quantized_folder)
    if resolved.exists() and not resolved.is_dir():
        raise FileExistsError(f"{target} is a file; " + ("a model is saved as a folder" if models
                                                          else "expected a folder"))
    if resolved.is_dir() and any(resolved.iterdir()) and not replaceable(resolved):
        if replaceable is is_quantized_folder and is_model_folder(resolved):
            raise FileExistsError(f"{target} holds a float model (config.json and its weights), "
                                  "which a quantized model saved there would replace; refusing "
                                  "(choose an empty or new folder)")
        what = "holds no model" if models else "holds files this run does not write"
        raise FileExistsError(f"{target} is a non-empty folder that {what}; refusing to replace "
                              "it (choose an empty or new folder)")
    return resolved


def _siblings(target: Path, tag: str) -> list[Path]:
    """`target`'s leftover folders of kind `tag`, oldest name first."""
    prefix = f".{target.name}{tag}"
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix))


@functools.cache
def host_tag() -> str:
    """Eight hex digits naming this machine and PID namespace (its host name, boot id and
    `/proc/self/ns/pid`, where they can be read): PIDs compare only within one."""
    def read(what: Callable[[], str]) -> str:
        try:
            return what()
        except OSError:
            return ""
    parts = [socket.gethostname(),
             read(lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip()),
             read(lambda: os.readlink("/proc/self/ns/pid"))]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def _token() -> str:
    """The part of a leftover's name after its tag: `PID-HOST-XXXXXXXX`."""
    return f"{os.getpid()}-{host_tag()}-{secrets.token_hex(4)}"


# The most bytes a temporary name adds to a target's name: `.NAME.tmp-PID-HOST-XXXXXXXX` (a
# PID of at most 7 digits: Linux's largest pid_max is 4,194,304). A folder's, twice over: a
# save into a temporary folder's sibling (`..NAME.tmp-....tmp-...`, a fine-tune's run folder).
TEMPORARY_NAME_EXTRA = len(f".{TMP_TAG}{'9' * 7}-{'f' * 8}-{'f' * 8}")


def check_name_room(target: str | os.PathLike, parent: str | os.PathLike, *,
                    folder: bool) -> None:
    """Refuses a target whose name leaves no room, under the file system's longest name (in
    `parent`, where the temporary copies go), for the temporary names written beside it
    (`TEMPORARY_NAME_EXTRA` bytes more for a file, twice that for a `folder`): the save would
    fail only once its work is done.

    Raises:
      ValueError: naming the target, its length and the most it may have.
    """
    name = os.fsencode(Path(target).name)
    extra = TEMPORARY_NAME_EXTRA * (2 if folder else 1)
    try:
        longest = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    if len(name) + extra > longest:
        raise ValueError(f"{target}: its name is {len(name)} bytes, and samp-jax writes it beside "
                         f"it under a name up to {extra} bytes longer, then renames it; this file "
                         f"system takes names of up to {longest} bytes: give a name of at most "
                         f"{longest - extra} bytes")


def _owner(leftover: Path, tag: str) -> tuple[str, str | None] | None:
    """`(PID, HOST)` from a leftover's name after its last `tag` (HOST None in the older
    `PID-XXXXXXXX` form), or None when it names no PID."""
    fields = leftover.name.rsplit(tag, 1)[-1].split("-")
    if not fields[0].isdigit():
        return None
    return fields[0], fields[1] if len(fields) >= 3 else None


def _owner_alive(leftover: Path, tag: str) -> bool:
    """Whether the process that made `leftover` (PID in its name) may still be running: it
    is, or it ran on another machine or in another PID namespace (`host_tag`), where this
    process cannot tell."""
    owner = _owner(leftover, tag)
    if owner is None:
        return False  # not a name this module makes
    pid, host = owner
    if host is not None and host != host_tag():
        return True  # another machine's or container's process: leave it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (PermissionError): leave it
    return True


def _sweep(target: Path, tag: str) -> None:
    """Removes `target`'s leftovers of kind `tag` whose process is no longer running; with
    `TMP_TAG`, those of a save into one of `target`'s temporary folders too (a fine-tune's
    run folder, into which `save_pretrained` saves: `..NAME.tmp-....tmp-...`)."""
    stale = _siblings(target, tag)
    if tag == TMP_TAG:  # `..NAME.tmp-...`: the siblings of `.NAME.tmp-...` of kind tmp
        stale += _siblings(target.with_name(f".{target.name}{TMP_TAG}"), "")
    for leftover in stale:
        if not _owner_alive(leftover, tag):
            _remove(leftover)


def owned_prefix(tag: str) -> str:
    """The start of a temporary name that `sweep_dead` can tell the owner of:
    `TAGPID-HOST-` (`host_tag`)."""
    return f"{tag}{os.getpid()}-{host_tag()}-"


def sweep_dead(folder: Path, tag: str) -> None:
    """Removes the entries of `folder` named `owned_prefix(tag)...` by processes of this host
    and PID namespace that are no longer running (a temporary folder `kill -9` left)."""
    if folder.is_dir():
        for leftover in folder.iterdir():
            owner = _owner(leftover, tag) if leftover.name.startswith(tag) else None
            # a name without PID and HOST has no owner to ask about: left
            if owner is not None and owner[1] is not None and not _owner_alive(leftover, tag):
                _remove(leftover)


def _remove(path: Path) -> None:
    """Removes a leftover; one this process may not remove (another user's, in a shared
    folder) is left, as the write it sweeps for does not need it gone."""
    if path.is_symlink() or path.is_file():
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    else:
        shutil.rmtree(path, ignore_errors=True)


def interrupted_save(target: str | os.PathLike) -> Path | None:
    """When `target` does not exist but a save that was replacing it left the previous folder
    aside (`.NAME.old-...`: interrupted between its two renames, or in them right now): that
    folder. Else None.

    A symlink to a model folder: `atomic_folder` replaces the folder it points to, so an
    interrupted save leaves the link dangling and the previous model beside that folder."""
    target = Path(target)
    if target.exists():
        return None
    if target.is_symlink():  # dangling: look beside the folder it names
        try:
            target = target.resolve()
        except (OSError, RuntimeError):  # a link loop
            return None
        if target.exists() or target.is_symlink():
            return None
    old = _siblings(target, OLD_TAG)
    return old[-1] if old else None


def check_not_interrupted(target: str | os.PathLike) -> None:
    """Raises FileNotFoundError naming the previous model's folder when `target` is missing
    because a save replacing it was interrupted (`interrupted_save`); else does nothing."""
    leftover = interrupted_save(target)
    if leftover is not None:
        raise FileNotFoundError(f"{target} does not exist: a save was interrupted while "
                                f"replacing it (or is replacing it right now), and the previous "
                                f"model is whole at {leftover}; rename it back or save again")


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


def _finish(folder: Path) -> None:
    """Normal permissions (umask applied) and everything flushed to disk, deepest first."""
    umask = _umask()
    for path in sorted([folder, *folder.rglob("*")], key=lambda p: len(p.parts), reverse=True):
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
        _fsync(path)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, *,
                  replaceable: Callable[[Path], bool] = is_model_folder) -> Iterator[Path]:
    """Yields a temporary folder to write into; on success it replaces `target` by rename.

    See the module docstring for the protocol and its one remaining window.

    Args:
      target: the folder to create or replace. A symlink: the folder it points to is
        replaced (or created, for a dangling link); the link stays.
      replaceable: called with an existing, non-empty `target`; False refuses to replace it
        (a user's unrelated folder is never deleted). Default: `is_model_folder`.

    Raises:
      FileExistsError: `target` is a file, a non-empty folder `replaceable` refuses, or a
        symlink loop; raised before anything is written.
    """
    # a real name to put siblings beside, even for "." (through a symlink: its target)
    target = check_replaceable(target, replaceable=replaceable)
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep(target, TMP_TAG)  # litter of interrupted saves
    token = _token()
    tmp = target.parent / f".{target.name}{TMP_TAG}{token}"
    tmp.mkdir()
    try:
        yield tmp
        _finish(tmp)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}{OLD_TAG}{token}"
            os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException as e:
            if old is not None and not target.exists():
                os.rename(old, target)  # put the previous model back
            if isinstance(e, OSError) and e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                if old is not None:  # the previous model: the other save replaced it
                    _remove(old)
                raise FileExistsError(
                    f"{target} was saved by another process while this one was saving it; "
                    "that save is whole there, and this one's was discarded (one folder, one "
                    "writer at a time)") from None
            raise
    except BaseException:
        _remove(tmp)
        raise
    _fsync(target.parent)  # both renames on disk before the old copy goes
    if old is not None:
        _remove(old)
    _sweep(target, OLD_TAG)  # earlier interrupted saves' previous models


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `target` to write one file to; when the block finishes
    without an error the file gets normal permissions, is flushed, and replaces `target` in one
    rename. On an error (or a crash) `target` is untouched; the temporary file is removed
    (after a crash, a `.NAME.tmp-PID-...` file stays, which nothing reads, until the next
    write of `target` removes those of processes no longer running). A symlink is
    written through: the file it points to is replaced (or created) and the link stays.

    Raises:
      IsADirectoryError: `target` is a folder (before anything is written).
      FileExistsError: `target` is a symlink loop, or a device, pipe or socket (the rename
        would replace it, e.g. `/dev/null`, with a regular file).
    """
    given = target
    target = resolve_output(target)
    if target.is_dir():
        raise IsADirectoryError(f"{given} is a folder; expected a file path")
    if target.exists() and not target.is_file():
        raise FileExistsError(f"{given} is not a regular file (a device, pipe or socket); "
                              "expected a file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep(target, TMP_TAG)  # litter of interrupted writes (a crash, a kill -9)
    tmp = target.parent / f".{target.name}{TMP_TAG}{_token()}"
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `target` atomically (`atomic_file`)."""
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_cache_text(target: str | os.PathLike, text: str, *, what: str = "cache entry") -> bool:
    """`write_text_atomic` for a file that is only a cache: when it cannot be written (a
    read-only or full disk, no permission) a warning names the path and the OS error, and
    False is returned; the caller goes on with what it holds in memory. True once written."""
    try:
        write_text_atomic(target, text)
    except OSError as e:
        warn_not_cached(what, target, e)
        return False
    return True


def warn_not_cached(what: str, target: str | os.PathLike, error: OSError) -> None:
    """The warning of a cache entry that could not be written: what, where, and the OS error."""
    reason = error.strerror or str(error) or type(error).__name__
    warnings.warn(f"could not write the {what} {target} to the cache ({reason}); going on "
                  "without caching it")
