"""Progress bars are drawn on a terminal, not written into a log, and a warning printed while
one is drawn gets a line of its own."""

import io

import pytest

from samp_jax.app.stdio import warning_printer
from samp_jax.core.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream, progress, drawn", [
    (Terminal, None, True), (io.StringIO, None, False),  # a log or a pipe: no bar
    (io.StringIO, True, True), (Terminal, False, False)])  # asked for: as asked
def test_a_bar_is_drawn_by_default_only_on_a_terminal(stream, progress, drawn):
    out = stream()
    bar = progress_bar(progress, total=4, desc="search", file=out)
    bar.update(2)
    bar.close()
    assert ("search:  50%" in out.getvalue()) is drawn


def test_a_warning_during_a_bar_on_a_terminal_is_a_line_of_its_own(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    bar = progress_bar(None, total=3, desc="fine-tune")
    bar.update(1)
    warning_printer("samp-jax")(UserWarning("the split is small"), UserWarning, "f.py", 1)
    bar.update(1)
    bar.close()
    out = terminal.getvalue()
    # the bar is cleared first (a carriage return), then the line, then the bar is redrawn
    assert "\rsamp-jax: warning: the split is small\n" in out
    assert out.rindex("fine-tune:  67%") > out.index("warning")


def test_search_and_finetune_default_to_a_bar_on_a_terminal_only():
    import inspect

    from calibrate.search.config import SearchConfig
    from samp_jax.training.finetuning import finetune

    assert SearchConfig().progress is None
    assert inspect.signature(finetune).parameters["progress"].default is None
