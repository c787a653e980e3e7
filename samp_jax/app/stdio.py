"""The command line's standard streams: `predict`'s rows from standard input (`--data -`), its
progress lines, keeping stdout for results alone in a distributed run, errors and warnings as
one line, and output that a stream's encoding cannot hold."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from samp_jax.app import predictions
from samp_jax.tasks.files import Columns

STDIN = "-"
"""`--data` of `samp-jax predict` that reads JSON Lines rows from standard input."""


def rows_from_stdin(columns: Columns, head: str, word_spans,
                    keep: tuple[str, ...] = ()) -> list[dict]:
    """The rows of the JSON Lines on standard input, read as a file of them is (with the
    `keep` columns' values)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stdin.jsonl"
        path.write_bytes(sys.stdin.buffer.read())
        try:
            return predictions.read_model_inputs(path, columns, head=head,
                                                 word_spans=word_spans, keep=keep)
        except ValueError as e:
            raise ValueError(str(e).replace(str(path), "standard input")) from None


def predict_progress(done: int, total: int) -> None:
    """`predict`'s progress line on stderr after each chunk."""
    print(f"  predicted {done}/{total} rows", file=sys.stderr, flush=True)


def results_only_on_stdout() -> None:
    """Points file descriptor 1 at stderr and keeps the real stdout for `print`: the collective
    libraries (gloo) write status lines to fd 1, which would mix with `--json` output."""
    sys.stdout.flush()
    results = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = open(results, "w", buffering=1, encoding="utf-8", closefd=True)


def tolerate_unencodable_output() -> None:
    """Writes a character that standard output's or error's encoding cannot hold (a file name
    with an accent under `PYTHONIOENCODING=ascii`) as an escape, instead of failing the
    command after its work is done."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def warning_printer(name: str, *, shown: Callable[[], bool] = lambda: True):
    """A `warnings.showwarning` that prints `NAME: warning: MESSAGE` on one line, while
    `shown()` (a distributed run's other processes say what process 0 says: only it prints)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if shown():  # a progress bar on the terminal steps aside for the line, then redraws
            with tqdm.external_write_mode(file=sys.stderr):
                print(f"{name}: warning: {one_line(str(message))}", file=sys.stderr, flush=True)
    return show


def one_line(message: str) -> str:
    """A message of several lines (a checkpoint's mismatched keys) as the one line an error
    gets: "head:" then "detail; detail"."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    joined = lines[0] if lines else ""
    for previous, line in zip(lines, lines[1:]):
        joined += (" " if previous.endswith(":") else "; ") + line
    return joined
