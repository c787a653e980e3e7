"""Warnings shown as ever, and kept for a report: `kept_warnings`.

A search's report (report.md, summary.json) is what a user reads later, often alone; the
warnings printed while it ran (too few rows for the tolerance, a model at chance, too few
calibration tokens) belong in it. `warnings.catch_warnings(record=True)` would keep them but
not show them, and it swaps process-wide state that a thread's exit can restore out of order.
Here one hook wraps `warnings.showwarning` (whatever shows warnings: the CLI's one-line
printer, Python's own), passes every warning on to it, and adds the message to the lists of
the `kept_warnings` blocks open on the thread that raised it. A warning that the filters do
not show (ignored, or shown once already) is not kept either.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Callable, Iterator

_open = threading.local()  # .blocks: [(category, kept messages, kept_as)] of this thread's open blocks
_install = threading.Lock()


class _Hook:
    """A `warnings.showwarning` that keeps, then shows with the one it replaced."""

    def __init__(self, shown):
        self.shown = shown

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        for wanted, kept, kept_as in getattr(_open, "blocks", ()):
            if issubclass(category, wanted) and (text := kept_as(str(message))) not in kept:
                kept.append(text)
        return self.shown(message, category, filename, lineno, file, line)


def _installed() -> None:
    """Wraps the current `warnings.showwarning` unless it is the hook already."""
    with _install:
        if not isinstance(warnings.showwarning, _Hook):
            warnings.showwarning = _Hook(warnings.showwarning)


@contextlib.contextmanager
def kept_warnings(category: type[Warning] = UserWarning,
                  kept_as: Callable[[str], str] = str) -> Iterator[list[str]]:
    """Within the block, each warning of `category` this thread shows is also added, once, to
    the list it yields (messages in the order first shown), as `kept_as(message)` words it
    (e.g. one line for many of one kind). Blocks nest: an outer block keeps what an inner one
    does.

    A warning the filters do not show is not kept: with Python's default filter, a warning
    shown once from one line of code is not shown (nor kept) again in the same process."""
    _installed()
    kept: list[str] = []
    blocks = _open.__dict__.setdefault("blocks", [])
    entry = (category, kept, kept_as)
    blocks.append(entry)
    try:
        yield kept
    finally:
        del blocks[next(i for i, block in enumerate(blocks) if block is entry)]
