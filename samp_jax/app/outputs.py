"""Arguments of the commands checked before any slow step: output paths and precision names."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from samp_jax.core.atomic import (check_name_room, check_replaceable, is_model_folder,
                                  resolve_output)
from samp_jax.core.errors import SampJaxError
from samp_jax.core.precision import PRESETS


class UsageError(SampJaxError, ValueError):
    """A bad combination of arguments (exit code 2)."""


class StdoutError(SampJaxError, OSError):
    """A write to standard output that failed (a full disk behind `> FILE`, `> /dev/full`),
    said as such: without a file name, a full disk would be blamed on the cache. `written`
    names the outputs the command had already written when its summary failed
    (`summary_after`)."""

    written: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.written:
            return (f"the outputs were written ({'; '.join(self.written)}); only the summary "
                    f"to standard output failed ({self.strerror})")
        return f"could not write the results to standard output ({self.strerror})"


class FileSizeLimitError(SampJaxError, ValueError):
    """An output file larger than the file size limit (`ulimit -f`) lets this process write,
    found before the slow work."""


class ResultsStream:
    """Standard output for the results: its failed writes and flushes (a reader gone aside,
    `BrokenPipeError`, which ends a run quietly) raise `StdoutError`."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        with stdout_errors():
            return self.stream.write(text)

    def flush(self) -> None:
        with stdout_errors():
            self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def silence_stdout() -> None:
    """Points standard output at /dev/null once its reader has gone (`| head`), so that
    nothing is left to fail at exit; a stream without a descriptor (a test's capture) is
    replaced instead."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        sys.stdout = open(os.devnull, "w")


@contextlib.contextmanager
def stdout_errors():
    """Turns an `OSError` of a write to standard output, other than `BrokenPipeError`, into
    `StdoutError`."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise StdoutError(e.errno, e.strerror) from None


@contextlib.contextmanager
def summary_after(*written: str):
    """The block prints the summary of a command whose outputs (`written`: "the predictions
    in p.jsonl") are in place already: renamed into place, they are not taken back when
    standard output then fails (a full disk behind `> FILE`). The summary is flushed here, and
    a failure raises `StdoutError` saying that the outputs were written and only the summary
    failed (exit code 1: a `--json` reader misses the result it reads)."""
    try:
        with stdout_errors():
            yield
            sys.stdout.flush()
    except StdoutError as e:
        e.written = written
        raise


def check_output(path: str | Path, *, what: str, folder: bool, model_folder: bool = False,
                 inputs: tuple = (), replaceable=None) -> Path:
    """Refuses, before any slow step, an output path that is empty, an existing file where a
    folder goes (or the reverse), a device, pipe or socket (it would be replaced by a regular
    file), one of the `inputs`, inside an input folder or holding an input (writing it would
    change or delete that input), unwritable, a symlink loop, or a
    non-empty folder that the output would replace and that `replaceable` refuses
    (`model_folder`: one that holds no model). Every output is written beside its target and
    renamed into place (a symlink: beside what it points to), so that is where the write test
    runs.

    Raises:
      UsageError: an empty path.
      ValueError: any other refusal (one line naming `what` and the path).
    """
    if str(path).strip() == "":
        raise UsageError(f"{what} is empty; give a path")
    path = Path(path)
    try:
        target = resolve_output(path)
    except FileExistsError as e:
        raise ValueError(f"{what} {e}") from None
    if folder and target.exists() and not target.is_dir():
        raise ValueError(f"{what} {path} exists and is not a folder")
    if not folder and target.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file path")
    if not folder and target.exists() and not target.is_file():
        raise ValueError(f"{what} {path} is not a regular file (a device, pipe or socket); the "
                         "output is written beside it and renamed over it: give a file path")
    _check_apart_from_inputs(path, target, inputs, what)
    if model_folder:
        replaceable = is_model_folder
    if replaceable is not None:
        try:
            check_replaceable(path, replaceable=replaceable)
        except FileExistsError as e:
            raise ValueError(f"{what} {e}") from None
    parent = target.parent  # where the temporary copy goes: space and permission needed there
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what} {path}: {parent} is not a folder")
    try:
        check_name_room(target, parent, folder=folder)
    except ValueError as e:
        raise ValueError(f"{what} {e}") from None
    try:  # a real write, not a permission-bit guess: read-only mounts and quotas show up too
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise ValueError(f"{what} {path}: cannot write in {parent} ({e.strerror})") from None
    return path


def _check_apart_from_inputs(path: Path, target: Path, inputs: tuple, what: str) -> None:
    """The output is not an input, not inside an input folder (a predictions file over a
    model's config.json), and does not hold an input (a folder output replaces it whole)."""
    out = target.resolve()
    for source in inputs:
        if source is None or not Path(source).exists():
            continue  # a built-in name such as `minilm` or `snli`
        given = Path(source).resolve()
        if given == out:
            raise ValueError(f"{what} {path} is also an input; writing there would replace it "
                             "(choose another path)")
        if given in out.parents:
            raise ValueError(f"{what} {path} is inside the input {source}; writing there would "
                             "change it (choose a path outside it)")
        if out in given.parents:
            raise ValueError(f"{what} {path} holds the input {source}; writing the output would "
                             "replace it (choose another path)")


def check_precision_items(names: list[str], *, what: str = "--precision") -> None:
    """Each item is a preset name or an existing precision-map file.

    Raises:
      ValueError: naming the item, the presets and that no such file exists.
    """
    for name in names:
        if name not in PRESETS and not Path(name).is_file():
            why = ("is a folder" if Path(name).is_dir() else "not a regular file: a FIFO or a device"
                   if Path(name).exists() else "no such file")
            raise ValueError(f"{what} {name!r} is neither a preset ({', '.join(PRESETS)}) nor a "
                             f"precision-map JSON file ({why})")
