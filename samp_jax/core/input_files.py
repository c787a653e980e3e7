"""Reading the files of a model folder without trusting what they are.

A name in a model folder may be a link to anything: `/dev/zero` (which reads forever), a FIFO
(whose `open` waits for a writer that never comes), a folder. `Path.is_file()` calls all of
these absent, so a `config.json` linked to `/dev/zero` was reported missing and a
`tokenizer_config.json` linked to it silently ignored. Here:

- `check_regular(path)`: True for a regular file (links followed), False when no such name is
  there, `NotRegularFileError` naming what else is there, and `BrokenLinkError` for a symbolic
  link whose target is absent (a folder copied as links whose targets stayed behind, an HF
  cache's snapshot without its blobs), naming the link and its target, not calling it absent.
- `open_regular` / `read_bytes` / `read_text`: open without waiting (`O_NONBLOCK`: a FIFO's
  `open` returns at once), refuse what `fstat` says is not a regular file (the name may have
  changed since it was checked), and read at most `limit + 1` bytes when a limit is known (a
  manifest's recorded size: a longer file is a mismatch, found without reading it all).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from samp_jax.core.errors import SampJaxError

_CHUNK = 1 << 24  # read in pieces: a huge recorded size allocates nothing up front


class NotRegularFileError(SampJaxError, ValueError):
    """A name that should be a file is a FIFO, a device, a socket, a folder or a link loop."""


class BrokenLinkError(SampJaxError, FileNotFoundError):
    """A name that should be a file is a symbolic link whose target does not exist."""


def broken_link(path: str | os.PathLike, *, dir_fd: int | None = None) -> BrokenLinkError | None:
    """The error for `path` (relative to `dir_fd` when given) when it is a symbolic link whose
    target does not exist, naming the link and its target; None for anything else."""
    try:
        if not stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode):
            return None
        target = os.readlink(path, dir_fd=dir_fd)
    except OSError:  # no such name
        return None
    try:
        os.stat(path, dir_fd=dir_fd)
        return None  # it leads somewhere (created meanwhile)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError:  # unreadable, or a loop: not a missing target
        return None
    return BrokenLinkError(f"{path} is a symbolic link to {target}, which does not exist (a copy "
                           "that kept the link but not the file it points to?); expected a file, "
                           "or a link to one: copy the files themselves (cp -L)")


def kind_of(mode: int) -> str:
    """What a non-regular file is, for a message (`a character device, as /dev/zero is`)."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device, as /dev/zero is"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def not_regular(path, mode: int, expected: str = "a file, or a link to one") -> NotRegularFileError:
    """The error for `path`, found to be of `mode` (`os.stat`'s), where `expected` is wanted."""
    return NotRegularFileError(f"{path} is {kind_of(mode)}, not a regular file; expected {expected}")


def check_regular(path: str | os.PathLike) -> bool:
    """Whether a regular file is at `path` (following links).

    Returns False when no such name is there.

    Raises:
      NotRegularFileError: something else is there (a FIFO, a device such as `/dev/zero`, a
        socket, a folder), or a link loops.
      BrokenLinkError: a symbolic link whose target does not exist.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        error = broken_link(path)
        if error is not None:
            raise error from None
        return False
    except OSError as e:  # ELOOP: a link to itself
        raise NotRegularFileError(f"{path} cannot be opened ({e.strerror}); expected a "
                                  "regular file") from None
    if not stat.S_ISREG(mode):
        raise not_regular(path, mode)
    return True


def open_regular(path: str | os.PathLike, *, dir_fd: int | None = None) -> int:
    """A read-only descriptor on the regular file `path` (relative to `dir_fd` when given).

    Raises:
      FileNotFoundError: nothing is there (`BrokenLinkError`: a link whose target is absent).
      NotRegularFileError: something other than a regular file is there.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ENOENT:
            error = broken_link(path, dir_fd=dir_fd)
            if error is not None:
                raise error from None
        if e.errno != errno.ELOOP:
            raise
        raise NotRegularFileError(f"{path} cannot be opened ({e.strerror}); expected a "
                                  "regular file") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise not_regular(path, mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_fd(fd: int, limit: int | None = None) -> bytes:
    """All bytes of `fd` (closed after), or at most `limit + 1` of them: one more than `limit`
    says the file is longer."""
    chunks, left = [], None if limit is None else limit + 1
    with os.fdopen(fd, "rb", buffering=0) as f:
        while left is None or left > 0:
            chunk = f.read(_CHUNK if left is None else min(left, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            if left is not None:
                left -= len(chunk)
    return b"".join(chunks)


def read_bytes(path: str | os.PathLike, *, limit: int | None = None) -> bytes:
    """The bytes of the regular file `path` (`read_fd`'s limit).

    Raises:
      FileNotFoundError: nothing is there.
      NotRegularFileError: something other than a regular file is there.
    """
    return read_fd(open_regular(path), limit)


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The text of the regular file `path`, its line ends read as `Path.read_text` reads them
    (universal newlines: `\\r\\n` and `\\r` become `\\n`).

    Raises:
      FileNotFoundError: nothing is there.
      NotRegularFileError: something other than a regular file is there.
      UnicodeDecodeError: not `encoding` text.
    """
    return read_bytes(Path(path)).decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
