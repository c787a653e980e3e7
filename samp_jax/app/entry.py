"""The `samp-jax` console script: Ctrl-C at any moment, even while JAX and the models are still
importing, ends with exit code 130 and one line, never a traceback."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Imports the CLI (seconds: JAX, the models) and runs it; see `samp_jax.app.cli.main`."""
    try:
        from samp_jax.app import cli
    except KeyboardInterrupt:
        print("samp-jax: interrupted", file=sys.stderr, flush=True)
        return 130
    return cli.main(argv)
