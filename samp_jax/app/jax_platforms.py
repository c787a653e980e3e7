"""Says why JAX could not start when `JAX_PLATFORMS` names a platform this machine lacks.

JAX 0.11 fails such a start with a bare `AssertionError` (from `xla_bridge.backends()`), at
whatever first touches a device; the CLI would print `error: AssertionError`. Under `python -O`
(`PYTHONOPTIMIZE`) that assert is stripped and JAX goes on with no backend, failing later with
an `AttributeError` on `None` (`'NoneType' object has no attribute 'process_index'`). `explain`
turns either into one line naming the variable and what to do, once it has seen that JAX
has no device (`jax.devices()` fails): it never relies on the assert.
"""

from __future__ import annotations

import os

import jax

PLATFORMS_ENV = "JAX_PLATFORMS"


def explain(error: BaseException) -> str | None:
    """A one-line explanation when `error` is what JAX raises because it cannot start the
    platforms `JAX_PLATFORMS` names (its bare `AssertionError`, or under `python -O` the
    `AttributeError` of its missing backend), or None (another error, the variable is unset, or
    JAX starts)."""
    wanted = os.environ.get(PLATFORMS_ENV)
    bare_assert = isinstance(error, AssertionError) and not str(error)
    if not wanted or not (bare_assert or isinstance(error, AttributeError)):
        return None  # any other error says what it is
    try:
        if jax.devices():
            return None
        failure: Exception | None = None
    except Exception as e:  # noqa: BLE001  whatever JAX raises, it did not start
        failure = e
    # a bare assert, or (-O) an attribute of the backend JAX left None
    cause = ("it is not installed here" if failure is None
             or isinstance(failure, (AssertionError, AttributeError))
             else str(failure).splitlines()[0] if str(failure) else type(failure).__name__)
    return (f"JAX could not start the platform {PLATFORMS_ENV}={wanted!r} asks for ({cause}); "
            f"unset {PLATFORMS_ENV} to use the platforms this machine has, or install the "
            "one named (a GPU: pip install -e '.[cuda]')")
