"""The `samp-jax` console script: Ctrl-C at any moment, even while JAX and the models are still
importing, ends with exit code 130 and one line, never a traceback."""

from __future__ import annotations

import _thread
import sys

from samp_jax.core.host_memory import keep_cpu_buffers  # standard library only: cheap


def main(argv: list[str] | None = None) -> int:
    """Imports the CLI (seconds: JAX, the models) and runs it; see `samp_jax.app.cli.main`.

    Host memory is set up first (`samp_jax.core.host_memory.keep_cpu_buffers`: it must precede
    JAX's CPU backend)."""
    keep_cpu_buffers()
    keep_interrupts()
    try:
        from samp_jax.app import cli
    except KeyboardInterrupt:
        print("samp-jax: interrupted", file=sys.stderr, flush=True)
        return 130
    return cli.main(argv)


def keep_interrupts() -> None:
    """Makes a Ctrl-C that lands inside a callback Python cannot raise from (a garbage
    collector callback such as JAX's `_xla_gc_callback`, a `__del__`) interrupt the command
    anyway. Python prints such an exception as "Exception ignored in ..." and carries on, so
    the command ran to its end. The swallowed KeyboardInterrupt is delivered again by another
    thread (`_thread.interrupt_main`), so that it reaches the main thread after the callback
    has returned (from this thread it would be raised in the hook and swallowed again; should
    it land in a callback once more, this hook sends it again). Any other unraisable exception
    goes to the hook that was in place."""
    previous = sys.unraisablehook
    if getattr(previous, "keeps_interrupts", False):
        return

    def hook(unraisable) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            _thread.start_new_thread(_thread.interrupt_main, ())  # returns without waiting
        else:
            previous(unraisable)

    hook.keeps_interrupts = True
    sys.unraisablehook = hook
