"""Says why JAX could not start when `JAX_PLATFORMS` names a platform this machine lacks.

JAX 0.11 fails such a start with a bare `AssertionError` (from `xla_bridge.backends()`), at
whatever first touches a device; the CLI would print `error: AssertionError`. `explain`
turns it into one line naming the variable and what to do.
"""

from __future__ import annotations

import os

import jax

PLATFORMS_ENV = "JAX_PLATFORMS"


def explain(error: BaseException) -> str | None:
    """A one-line explanation when `error` is the bare `AssertionError` JAX raises because it
    cannot start the platforms `JAX_PLATFORMS` names, or None (another error, the variable is
    unset, or JAX starts)."""
    wanted = os.environ.get(PLATFORMS_ENV)
    if not wanted or not isinstance(error, AssertionError) or str(error):
        return None  # only JAX's bare assertion; any other error says what it is
    try:
        jax.devices()
        return None
    except Exception as failure:  # noqa: BLE001  whatever JAX raises, it did not start
        cause = (str(failure).splitlines()[0] if str(failure) else
                 "it is not installed here" if isinstance(failure, AssertionError) else
                 type(failure).__name__)
    return (f"JAX could not start the platform {PLATFORMS_ENV}={wanted!r} asks for ({cause}); "
            f"unset {PLATFORMS_ENV} to use the platforms this machine has, or install the "
            "one named (a GPU: pip install -e '.[cuda]')")
