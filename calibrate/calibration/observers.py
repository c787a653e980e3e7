"""Jit-compiled observer passes that collect per-site input statistics over real tokens.

Pass 1 gathers, for every (layer, site), the per-input-channel max |x| and the count of
non-finite values. Pass 2 gathers a histogram of |x * input_scale| over `[0, hist_max]`, where
`input_scale` is the site's SmoothQuant multiplier (ones without smoothing). Padding tokens are
excluded: they never change a real output, so they must not move a scale either.

The observer runs on a private copy of the model made inside the traced function, so the
caller's model is never modified.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from pallas_kernels.numerics import to_rank
from samp_jax.core.precision import SITES
from samp_jax.serving.forward import batch_inputs, merged_call

SiteKey = tuple[int, str]


def _install(model, record: Callable[[SiteKey, jax.Array], None]) -> None:
    for index, layer in enumerate(model.encoder.layers):
        for site in SITES:
            getattr(layer, site).observer = functools.partial(record, (index, site))


def _encoder_of(model):
    return getattr(model, "model", model)  # QuantizedModel wraps an EncoderModel


def make_pass(model, reduce: Callable[..., dict]) -> Callable:
    """Compiles `reduce(key, x, token_mask, extra)` over every site input of a forward pass.

    Returns `fn(batch, extra) -> {key: stats}`; `extra` is a pytree passed to `reduce`.
    """
    graphdef, state = nnx.split(_encoder_of(model))

    @jax.jit
    def run(state, input_ids, attention_mask, token_type_ids, extra):
        token_mask = attention_mask.astype(jnp.bool_)[..., None]  # [batch, seq, 1]
        out = {}

        def record(key, x):
            out[key] = reduce(key, x.astype(jnp.float32), token_mask, extra)

        merged_call(graphdef, state, input_ids, attention_mask, token_type_ids,
                    prepare=lambda copy: _install(copy, record), method="encode")
        return out

    def call(batch, extra=None):
        return run(state, *batch_inputs(batch), extra)

    return call


def channel_absmax_reduce(key, x, token_mask, extra):
    """Pass 1: `[in]` max |x| over real tokens, and the number of non-finite real values."""
    real = jnp.where(token_mask, x, 0.0)
    finite = jnp.isfinite(real)
    absmax = jnp.max(jnp.where(finite, jnp.abs(real), 0.0), axis=(0, 1))
    return {"channel_absmax": absmax, "non_finite": jnp.sum(~finite),
            "tokens": jnp.sum(token_mask)}


def histogram_reduce(key, x, token_mask, extra, *, bins: int):
    """Pass 2: histogram of |x * input_scale| over real tokens, `bins` bins over [0, hist_max].
    Counted in int32, exact to 2^31 values a bin per batch (float32 counts stopped at 2^24:
    a 64 x 256 batch of a 3072-wide site whose values crowd one bin lost a third of them)."""
    input_scale, hist_max = extra[key]
    values = jnp.abs(x * to_rank(input_scale, x.ndim))
    index = jnp.clip((values / hist_max * bins).astype(jnp.int32), 0, bins - 1)
    weights = jnp.broadcast_to(token_mask, values.shape).astype(jnp.int32)
    return jnp.zeros((bins,), jnp.int32).at[index.ravel()].add(weights.ravel())
