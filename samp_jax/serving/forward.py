"""The one forward wrapper: a model split once into a static graph and its state, merged and
called inside a compiled function (jit, shard_map, AOT, the search's candidate program, the
calibration observers, the training step all go through `merged_call`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from samp_jax.models.model import padded_batch

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def merged_call(graphdef, state, *inputs, prepare: Callable[[nnx.Module], None] | None = None,
                method: str | None = None):
    """`nnx.merge(graphdef, state)`, then `prepare(model)` if given, then the model (or its
    `method`) on `inputs`: the three input arrays `(input_ids, attention_mask,
    token_type_ids)`, or what `method` takes (e.g. `EncoderModel.from_layer`'s hidden states,
    mask and start). Pure in `state`: call it inside `jax.jit`.

    The inputs are a padded batch (`models.model.padded_batch`): with jit off, or in
    `JAX_DEBUG_NANS`'s eager rerun, the model's host check lets the batch's all-padding rows
    through, as the compiled call does; the real rows are checked where the batch is cut.

    `state` is one `nnx.State`, or a tuple of them (e.g. trainable parameters and the rest).
    """
    model = nnx.merge(graphdef, *state) if isinstance(state, tuple) else nnx.merge(graphdef, state)
    if prepare is not None:
        prepare(model)
    fn = model if method is None else getattr(model, method)
    with padded_batch():
        return fn(*inputs)


def batch_inputs(batch) -> tuple:
    """`(input_ids, attention_mask, token_type_ids)` of a batch dict. A batch without
    `attention_mask` or `token_type_ids` gets the defaults a direct model call uses (all ones:
    no padding; all zeros: one segment).

    Raises:
      ValueError: `batch` is not a dict with `input_ids`.
    """
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        found = f"keys {sorted(batch)}" if isinstance(batch, Mapping) else \
            f"a {type(batch).__name__}"
        raise ValueError(f"a batch must be a dict with 'input_ids' (and optionally "
                         f"'attention_mask', 'token_type_ids'); got {found}")
    input_ids = batch["input_ids"]
    mask, types = batch.get("attention_mask"), batch.get("token_type_ids")
    return (input_ids, jnp.ones_like(input_ids) if mask is None else mask,
            jnp.zeros_like(input_ids) if types is None else types)


def jit_forward(model) -> Callable[[dict], jax.Array]:
    """Splits `model` once and returns a jitted `batch -> output` function.

    One compilation per distinct input shape; the model's static structure (its precision
    map included) is part of the compiled function.
    """
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, *inputs: merged_call(graphdef, state, *inputs))
    return lambda batch: forward(state, *batch_inputs(batch))
