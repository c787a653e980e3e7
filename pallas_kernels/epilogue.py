"""Epilogue math shared by the Pallas kernels, written with primitives every backend lowers.

This is the kernel-side twin of `pallas_kernels.numerics` (the XLA reference the kernels are
tested against): the same conventions, spelled with what the Pallas GPU lowerings support.

The Triton lowering has neither `erf`/`erfc` (which `jax.nn.gelu(approximate=False)` uses) nor
`round`, so the kernels use the rational `erf` approximation XLA itself uses for float32
(equal to the float64 GELU to float32 rounding: tests/pallas_kernels/test_numerics.py) and
a floor-based round-half-to-even that matches `jnp.round` exactly.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from pallas_kernels.numerics import (ACTIVATION_FUNCTIONS, ACTIVATIONS, INT8_MAX, QUICK_GELU_SLOPE,
                                     divide_by_scale)

# XLA's float32 erf (xla/hlo/builder/lib/math.cc, ErfImpl32): x * P(x^2) / Q(x^2) on a clamp.
_ERF_ALPHA = (0.00022905065861350646, 0.0034082910107109506, 0.050955695062380861,
              0.18520832239976145, 1.128379143519084)
_ERF_BETA = (-1.1791602954361697e-7, 0.000023547966471313185, 0.0010179625278914885,
             0.014070470171167667, 0.11098505178285362, 0.49746925110067538, 1.0)
_ERF_CLAMP = 3.7439211627767994  # erfinv(1 - 2^-23): beyond it erf(x) rounds to +-1


def _polynomial(x, coefficients):
    result = jnp.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        result = result * x + c
    return result


def erf(x):
    """float32 erf from mul/add/div/min/max only (every Pallas GPU lowering has them)."""
    x = jnp.minimum(jnp.maximum(x, -_ERF_CLAMP), _ERF_CLAMP)
    x2 = x * x
    return x * _polynomial(x2, _ERF_ALPHA) / _polynomial(x2, _ERF_BETA)


def _gelu(y):
    return 0.5 * y * (1.0 + erf(y * (1.0 / math.sqrt(2.0))))


def _gelu_tanh(y):
    inner = math.sqrt(2.0 / math.pi) * (y + 0.044715 * y * y * y)
    return 0.5 * y * (1.0 + jnp.tanh(inner))


def _silu(y):
    return y / (1.0 + jnp.exp(-y))  # y sigmoid(y), from exp and a division


# The kernels' twin of `numerics.ACTIVATION_FUNCTIONS`, name for name.
KERNEL_ACTIVATIONS = {
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "quick_gelu": lambda y: y / (1.0 + jnp.exp(-QUICK_GELU_SLOPE * y)),
    "silu": _silu,
    "tanh": jnp.tanh,
    "relu": lambda y: jnp.maximum(y, 0.0),
}
assert set(KERNEL_ACTIVATIONS) == set(ACTIVATION_FUNCTIONS), "every activation needs both"


def activation(y, name: str | None):
    """The epilogue activation, as `numerics.apply_activation`: `KERNEL_ACTIVATIONS[name]`
    (exact GELU through the rational `erf`), or none for None."""
    if name is None:
        return y
    if name not in KERNEL_ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not one of {ACTIVATIONS}")
    return KERNEL_ACTIVATIONS[name](y)


def round_half_even(x):
    """`jnp.round` (ties to even) from floor: the Triton lowering has no round primitive."""
    floor = jnp.floor(x)
    frac = x - floor
    odd = floor - 2.0 * jnp.floor(floor * 0.5)  # 1.0 where floor is odd
    up = (frac > 0.5) | ((frac == 0.5) & (odd == 1.0))
    return jnp.where(up, floor + 1.0, floor)


def requantize(y, out_scale: float, *, has_round: bool = True, rounded_to=jnp.float32):
    """INT8 requantization, symmetric to +-127, as `numerics.requantize` (NaN becomes 0 there
    and here: casting NaN to an integer is undefined).

    Args:
      y: float32 values. out_scale: the static scale (array or scalar).
      has_round: whether the lowering has a round primitive (Triton has not).
      rounded_to: the float dtype `y` is rounded to first (the dtype the next site reads when
        no kernel hands it INT8: so the hand-off gives that site's own numbers).
    """
    if jnp.dtype(rounded_to) != jnp.float32:
        y = y.astype(rounded_to).astype(jnp.float32)
    scaled = divide_by_scale(y, out_scale)  # as the reference, so ties round identically
    scaled = jnp.where(scaled == scaled, scaled, 0.0)  # NaN -> 0, as `numerics.round_clip_int8`
    rounded = jnp.round(scaled) if has_round else round_half_even(scaled)
    return jnp.minimum(jnp.maximum(rounded, -INT8_MAX), INT8_MAX).astype(jnp.int8)
