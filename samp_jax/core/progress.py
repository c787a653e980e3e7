"""Progress bars that belong where they are drawn: on a terminal or in a notebook, not in a log."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(progress: bool | None, **options) -> tqdm:
    """A tqdm bar (`tqdm.auto`: a widget in a notebook) with `options` (`total`, `desc`, ...).

    Args:
      progress: None (the library's default) draws it where standard error is a terminal or
        in a notebook, and not where it is a file or a pipe (a log, CI), whose every redraw
        would be a line of its own; True always draws it; False never does.
    """
    return tqdm(disable=None if progress is None else not progress, **options)
