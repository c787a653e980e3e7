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


def test_a_report_keeps_one_line_for_many_cache_entry_errors_of_one_reason():
    """JAX warns once per program it cannot cache; the terminal shows one line per reason
    (`cache_errors_once`), and so does what a report keeps (`as_kept`)."""
    from samp_jax.serving.xla_cache import as_kept
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda *args, **kwargs: None
        with kept_warnings(kept_as=as_kept) as kept:
            for key in ("jit_a-1f", "jit_b-2e", "jit_c-3d"):
                warnings.warn(f"Error writing persistent compilation cache entry for '{key}': "
                              "OSError: [Errno 28] No space left on device: '/c/x'", UserWarning)
            warnings.warn("too few rows", UserWarning)
    assert len(kept) == 2 and kept[1] == "too few rows"
    assert kept[0].endswith("could not be written (No space left on device); compiling goes on "
                            "without it")
