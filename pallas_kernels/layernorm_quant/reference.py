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


def embedding_quant_reference(input_ids, position_ids, token_type_ids, word, position, token_type,
                              gamma, beta, *, eps: float, out_dtype=jnp.float16, act_scale=None,
                              input_scale=None):
    """Word + position (+ token-type) embeddings, LayerNorm, then INT8, as in `Embeddings`.

    `position_ids` `[B, S]` index `position` (BERT: `0..S-1`; RoBERTa/MPNet: counted from
    `padding_idx + 1`, padding at `padding_idx`). `token_type_ids` and `token_type` are both
    given or both None (DistilBERT, MPNet: no token-type term).
    """
    _check_token_types(token_type_ids, token_type)
    summed = word[input_ids].astype(jnp.float32) + position[position_ids].astype(jnp.float32)
    if token_type is not None:
        summed = summed + token_type[token_type_ids].astype(jnp.float32)
    return layernorm_quant_reference(summed, gamma, beta, eps=eps, out_dtype=out_dtype,
                                     act_scale=act_scale, input_scale=input_scale)


def _check_token_types(token_type_ids, token_type):
    """Both or neither: a token-type table needs ids, and ids need a table."""
    if token_type_ids is None and token_type is not None:
        raise ValueError("token_type_ids is None but token_type is given: pass both or neither")
    if token_type is None and token_type_ids is not None:
        raise ValueError("token_type is None but token_type_ids is given: pass both or neither")
