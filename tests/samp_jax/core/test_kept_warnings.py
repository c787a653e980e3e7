"""`kept_warnings`: each warning is shown as ever and kept, once, by the blocks open on the
thread that raised it (a search report keeps what its run warned of)."""

import threading
import warnings

from samp_jax.core.kept_warnings import kept_warnings


def test_a_warning_is_shown_and_kept_once_by_every_open_block(capsys):
    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *rest, **kw: shown.append(str(message))
        with kept_warnings() as outer:
            warnings.warn("too few rows", UserWarning)
            with kept_warnings() as inner:
                warnings.warn("at chance", UserWarning)
                warnings.warn("at chance", UserWarning)  # shown twice, kept once
                warnings.warn("old API", DeprecationWarning)  # not a UserWarning
            warnings.warn("after the inner block", UserWarning)
        warnings.warn("after both", UserWarning)
    assert shown == ["too few rows", "at chance", "at chance", "old API",
                     "after the inner block", "after both"]
    assert outer == ["too few rows", "at chance", "after the inner block"]
    assert inner == ["at chance"]


def test_a_warning_the_filters_do_not_show_is_not_kept():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with kept_warnings() as kept:
            warnings.warn("ignored", UserWarning)
    assert kept == []


def test_another_threads_warning_is_not_kept_here():
    def other():
        warnings.warn("from another thread", UserWarning)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda *args, **kwargs: None
        with kept_warnings() as kept:
            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
            warnings.warn("from this one", UserWarning)
    assert kept == ["from this one"]
