"""Numerical references (plain XLA) of the fused LayerNorm/embedding + quantize kernels."""

from __future__ import annotations

import jax.numpy as jnp

from pallas_kernels.numerics import layer_norm, quantize_rows


def layernorm_quant_reference(x, gamma, beta, *, eps: float, residual=None, out_dtype=jnp.float16,
                              act_scale=None, input_scale=None):
    """`y = LayerNorm(x + residual)` in float32, cast to `out_dtype`; then INT8 of that `y`.

    Returns `(y, q, scale)`: `y` for the residual stream, `q` `[..., H]` int8 and `scale`
    `[..., 1]` float32 for the next INT8 GEMM (`numerics.quantize_rows`).
    """
    h = x.astype(jnp.float32)
    if residual is not None:
        h = h + residual.astype(jnp.float32)
    y = layer_norm(h, gamma, beta, eps).astype(out_dtype)
    q, scale = quantize_rows(y, act_scale=act_scale, input_scale=input_scale)
    return y, q, jnp.broadcast_to(scale, (*y.shape[:-1], 1))


def embedding_quant_reference(input_ids, token_type_ids, word, position, token_type, gamma, beta, *,
                              eps: float, out_dtype=jnp.float16, act_scale=None, input_scale=None):
    """Word + position + token-type embeddings, LayerNorm, then INT8, as in `Embeddings`."""
    seq = input_ids.shape[1]
    summed = (word[input_ids].astype(jnp.float32) + position[:seq].astype(jnp.float32)[None]
              + token_type[token_type_ids].astype(jnp.float32))
    return layernorm_quant_reference(summed, gamma, beta, eps=eps, out_dtype=out_dtype,
                                     act_scale=act_scale, input_scale=input_scale)
