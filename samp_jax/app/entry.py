"""The `samp-jax` console script: Ctrl-C at any moment, even while JAX and the models are still
importing, ends with exit code 130 and one line, never a traceback; SIGTERM (what `timeout`,
`docker stop`, systemd and Slurm send) likewise, with exit code 143. Either unwinds the run, so
that every atomic write removes its temporary file or folder."""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
import traceback

from samp_jax.app.plugins import PluginError  # standard library only


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM while `catch_terminations` is on. A kind of
    KeyboardInterrupt: whatever stops cleanly on a Ctrl-C stops so on a SIGTERM too."""


def main(argv: list[str] | None = None) -> int:
    """Imports the CLI (seconds: JAX, the models) and runs it; see `samp_jax.app.cli.main`.

    Host memory is set up first (`samp_jax.core.host_memory.keep_cpu_buffers`: it must precede
    JAX's CPU backend). The arguments are parsed before the CLI is imported, by the parser
    alone, which loads no JAX: `--help`, a subcommand's `--help` and a usage error (exit code
    2) are answered at once; arguments that parse are parsed again by the CLI. Before all of
    it, a standard stream started closed is opened on /dev/null (`open_standard_streams`)."""
    open_standard_streams()
    keep_interrupts()
    previous = catch_terminations()
    try:
        try:
            with interrupts_deferred():
                from samp_jax.core.host_memory import keep_cpu_buffers  # ctypes: not cheap
                keep_cpu_buffers()
                from samp_jax.app import parser
                parser.build_parser().parse_args(parser.joined_negative_percents(
                    sys.argv[1:] if argv is None else argv))  # exits for --help, bad usage
                from samp_jax.app import cli
        except KeyboardInterrupt as e:
            terminated = isinstance(e, Terminated)
            print(f"samp-jax: {'terminated' if terminated else 'interrupted'}", file=sys.stderr,
                  flush=True)
            return 143 if terminated else 130
        except PluginError as e:  # a module your SAMP_JAX_PLUGINS or entry point names
            return plugin_failed(e, sys.argv[1:] if argv is None else argv)
        except (MemoryError, ImportError, OSError) as e:  # e.g. under `ulimit -v`: a library
            # that cannot map its code or allocate while importing; one line, not a traceback
            if "--debug" in (sys.argv[1:] if argv is None else argv):
                traceback.print_exc()
            print(f"samp-jax: error: could not load its libraries (JAX, tokenizers): "
                  f"{_one_line(e)}; {_load_hint(e)}", file=sys.stderr, flush=True)
            return 1
        return cli.main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


STANDARD_STREAMS = ("stdin", "stdout", "stderr")
"""The `sys` names of file descriptors 0, 1 and 2, in that order."""

_CLOSED_AT_START: set[str] = set()


def open_standard_streams() -> frozenset[str]:
    """Opens on /dev/null each of file descriptors 0, 1 and 2 that the command was started
    with closed (`2>&-`), as daemons do, and gives `sys.stdin`, `sys.stdout` and `sys.stderr`
    (None then) a stream on it. Otherwise the next file opened takes the free descriptor: the
    C libraries' log lines (XLA's) written to descriptor 2 land in that file (a predictions
    file), and Python's `print(file=sys.stderr)` with `sys.stderr` None writes to stdout. A
    closed stderr is thus silence; a closed stdout or stdin is refused by a command that
    writes its results or reads its rows there (`closed_at_start`). Returns the names of the
    streams so opened (those of every call in this process)."""
    for fd, name in enumerate(STANDARD_STREAMS):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
            _CLOSED_AT_START.add(name)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8",
                                    errors="backslashreplace", closefd=False,
                                    buffering=1 if fd == 2 else -1))
    return frozenset(_CLOSED_AT_START)


def closed_at_start(name: str) -> bool:
    """Whether the standard stream `name` ('stdin', 'stdout', 'stderr') was closed when the
    command started (`open_standard_streams` opened it on /dev/null), or is None (a caller of
    `samp_jax.app.cli.main` whose Python started so)."""
    return name in _CLOSED_AT_START or getattr(sys, name) is None


def plugin_failed(error: PluginError, argv: list[str], name: str = "samp-jax") -> int:
    """One line naming the plugin and its error (its traceback first with `--debug`); exit
    code 1."""
    if "--debug" in argv:
        traceback.print_exception(error.__cause__ or error)
    print(f"{name}: error: {error}", file=sys.stderr, flush=True)
    return 1


# What an allocation or a mapping that failed says on the host: the loader's (a library's code
# under `ulimit -v`), the OS's (errno 12, through Rust or C++ libraries), C++'s
HOST_OUT_OF_MEMORY = ("failed to map segment", "Cannot allocate memory", "std::bad_alloc")


def out_of_host_memory(error: BaseException) -> bool:
    """Whether `error` is the host running out of memory (`HOST_OUT_OF_MEMORY`)."""
    return isinstance(error, MemoryError) or any(m in str(error) for m in HOST_OUT_OF_MEMORY)


def _load_hint(error: BaseException) -> str:
    """What to do about an import that failed: a missing package is a broken installation; an
    allocation or a mapping that failed (`ulimit -v`) is memory."""
    reinstall = "reinstall samp-jax's dependencies (pip install -e .)"
    if isinstance(error, ModuleNotFoundError):
        return f"the installation is incomplete: {reinstall}"
    if out_of_host_memory(error):
        return "out of memory: a memory limit (ulimit -v) needs to allow about 1 GB"
    return (f"out of memory (ulimit -v needs to allow about 1 GB), or a broken installation: "
            f"{reinstall}")


def _one_line(error: BaseException) -> str:
    """An import error as one line: its type and message, whitespace collapsed."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[:400] if text else type(error).__name__


@contextlib.contextmanager
def interrupts_deferred():
    """Defers Ctrl-C and SIGTERM while the block runs (importing JAX and the models), then
    raises the first that came (`KeyboardInterrupt`, `Terminated`) once it is done. Raised
    inside the import, an interrupt lands in code a C extension is running (an extension being
    set up turns it into an ImportError with a traceback, or aborts in C). A second signal
    during the block ends the process at once, with the same one line and exit code: nothing
    has been written yet. Outside the main thread nothing is deferred."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def record(signum, frame) -> None:
        if came:  # asked again: leave now
            print(f"samp-jax: {_ENDINGS[came[0]][0]}", file=sys.stderr, flush=True)
            os._exit(_ENDINGS[came[0]][1])
        came.append(signum)

    previous = {signum: signal.getsignal(signum) for signum in _ENDINGS}
    deferred = [signum for signum, handler in previous.items() if handler is not signal.SIG_IGN]
    for signum in deferred:
        signal.signal(signum, record)
    try:
        yield
    finally:
        for signum in deferred:
            signal.signal(signum, previous[signum])
    if came:
        raise Terminated(f"signal {came[0]}") if came[0] == signal.SIGTERM else KeyboardInterrupt


_ENDINGS = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 143)}


def _terminate(signum, frame) -> None:
    raise Terminated(f"signal {signum}")


def catch_terminations():
    """Makes SIGTERM raise `Terminated` in the main thread, as Ctrl-C raises KeyboardInterrupt.
    Returns the handler it replaced, or None when it changed nothing: SIGTERM is ignored (as
    a parent may leave it; Python leaves an ignored SIGINT so too) or this is not the main
    thread."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        return None
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        return None
    return previous


def keep_interrupts() -> None:
    """Makes a Ctrl-C (or a SIGTERM, `Terminated`) that lands inside a callback Python cannot
    raise from (a garbage collector callback such as JAX's `_xla_gc_callback`, a `__del__`)
    interrupt the command anyway. Python prints such an exception as "Exception ignored in ..."
    and carries on, so the command ran to its end. The swallowed interrupt is delivered again by
    another thread (`_thread.interrupt_main` with its signal), so that it reaches the main
    thread after the callback has returned (from this thread it would be raised in the hook and
    swallowed again; should it land in a callback once more, this hook sends it again). At
    interpreter shutdown no thread can start and the command is ending anyway: nothing is sent.
    Any other unraisable exception goes to the hook that was in place."""
    previous = sys.unraisablehook
    if getattr(previous, "keeps_interrupts", False):
        return

    def hook(unraisable) -> None:
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            try:
                previous(unraisable)
            except MemoryError:  # printing it needs memory there is none of (`ulimit -v`)
                pass
            return
        if sys.is_finalizing():
            return
        signum = signal.SIGTERM if issubclass(unraisable.exc_type, Terminated) else signal.SIGINT
        try:
            _thread.start_new_thread(_thread.interrupt_main, (signum,))  # returns at once
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            pass

    hook.keeps_interrupts = True
    sys.unraisablehook = hook
