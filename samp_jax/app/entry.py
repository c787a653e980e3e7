"""The `samp-jax` console script: Ctrl-C at any moment, even while JAX and the models are still
importing, ends with exit code 130 and one line, never a traceback."""

from __future__ import annotations

import sys

from samp_jax.host_memory import keep_cpu_buffers  # standard library only: cheap


def main(argv: list[str] | None = None) -> int:
    """Imports the CLI (seconds: JAX, the models) and runs it; see `samp_jax.app.cli.main`.

    Host memory is set up first (`samp_jax.host_memory.keep_cpu_buffers`: it must precede
    JAX's CPU backend)."""
    keep_cpu_buffers()
    try:
        from samp_jax.app import cli
    except KeyboardInterrupt:
        print("samp-jax: interrupted", file=sys.stderr, flush=True)
        return 130
    return cli.main(argv)
