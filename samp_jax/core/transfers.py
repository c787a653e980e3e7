"""The library's own host <-> device copies under a user's JAX transfer guard.

JAX's transfer guard (`JAX_TRANSFER_GUARD=disallow`, `jax.transfer_guard("disallow")`) refuses
implicit copies between host and device and lets explicit ones (`jax.device_put`,
`jax.device_get`) through. It is there to catch copies a program did not mean to make. Setting
a model up means copying it to the device: eager JAX makes many small implicit copies on the way
(`jnp.zeros` puts its fill value; safetensors' reader puts each tensor). `samp_jax.load`,
`quantize` and `compile` are such set-up steps, meant to copy, and run under
`own_transfers`; an engine call, the serving hot path, copies its inputs and outputs
explicitly instead, so a guard still watches everything else the program does.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import jax

F = TypeVar("F", bound=Callable)


def own_transfers(fn: F) -> F:
    """`fn` (a set-up step: load, quantize, compile) run with JAX's transfer guard at 'allow'
    in every direction: its copies to and from the device are the step's purpose, not a
    program's accident, whatever guard the caller set. The caller's guard is back on return."""

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        with jax.transfer_guard("allow"):
            return fn(*args, **kwargs)

    return guarded  # type: ignore[return-value]
