"""The package version (one place; `samp_jax.__version__` re-exports it), and the record of
what computed a result that the command line's JSON outputs and saved models carry."""

from __future__ import annotations

import datetime

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """The versions a result was computed with: samp-jax, JAX, jaxlib and Flax."""
    import flax  # here, not at the top: `import samp_jax` stays cheap
    import jax
    import jaxlib

    return {"samp_jax": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "flax": flax.__version__}


def run_record() -> dict:
    """What a command's JSON result records of its run: `versions()` and `created`, the UTC
    time it was written (ISO 8601, to the second)."""
    created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {"versions": versions(), "created": created.isoformat().replace("+00:00", "Z")}
