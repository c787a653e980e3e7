"""Numerical references (plain XLA) of the fused LayerNorm/embedding + quantize kernels."""

from __future__ import annotations

import jax.numpy as jnp

from samp_jax.dispatch import quantize_activation
from samp_jax.layers import layer_norm
from samp_jax.precision import SitePrecision


def quantize_rows(y, *, act_scale=None, input_scale=None):
    """INT8 of `y` exactly as an INT8 GEMM site quantizes its input
    (`samp_jax.dispatch.quantize_activation`): per-token dynamic, or static with `act_scale`;
    `input_scale` ([H], SmoothQuant) multiplies first. The scale comes back `[..., 1]`."""
    scheme = "per_token_dynamic" if act_scale is None else "per_tensor_static"
    q, scale = quantize_activation(y, SitePrecision("int8", scheme), act_scale, input_scale)
    return q, jnp.broadcast_to(scale, (*y.shape[:-1], 1))


def layernorm_quant_reference(x, gamma, beta, *, eps: float, residual=None, out_dtype=jnp.float16,
                              act_scale=None, input_scale=None):
    """`y = LayerNorm(x + residual)` in float32, cast to `out_dtype`; then INT8 of that `y`.

    Returns `(y, q, scale)`: `y` for the residual stream, `q` `[..., H]` int8 and `scale`
    `[..., 1]` float32 for the next INT8 GEMM.
    """
    h = x.astype(jnp.float32)
    if residual is not None:
        h = h + residual.astype(jnp.float32)
    y = layer_norm(h, gamma, beta, eps).astype(out_dtype)
    q, scale = quantize_rows(y, act_scale=act_scale, input_scale=input_scale)
    return y, q, scale


def embedding_quant_reference(input_ids, token_type_ids, word, position, token_type, gamma, beta, *,
                              eps: float, out_dtype=jnp.float16, act_scale=None, input_scale=None):
    """Word + position + token-type embeddings, LayerNorm, then INT8, as in `Embeddings`."""
    seq = input_ids.shape[1]
    summed = (word[input_ids].astype(jnp.float32) + position[:seq].astype(jnp.float32)[None]
              + token_type[token_type_ids].astype(jnp.float32))
    return layernorm_quant_reference(summed, gamma, beta, eps=eps, out_dtype=out_dtype,
                                     act_scale=act_scale, input_scale=input_scale)

