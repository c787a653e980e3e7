"""Residual add + LayerNorm + INT8 quantize in one pass (Pallas, Triton lowering), and the
same fused with the embedding gather (SAMP's embedding fusion).

One program per token row: it loads the row once (masked to the next power of two, so any
hidden size works), adds the residual, computes float32 mean and variance, normalizes, writes
the 16-bit output the residual stream needs, and quantizes that same rounded output to INT8
with a per-token absmax scale (or a static one), as ZeroQuant-HERO's LN+quant fusion does.
The embedding kernel gathers the rows the caller's ids name (word, position and, for encoders
that have one, token type: models without a token-type table run a variant without it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels import epilogue as ep
from pallas_kernels.layernorm_quant.reference import _check_token_types
from pallas_kernels.numerics import INV_INT8_MAX, SCALE_EPS, check_scale

LAYERNORM_KERNEL_NAME = "samp_layernorm_quant"
EMBEDDING_KERNEL_NAME = "samp_embedding_quant"


def _normalize_and_quantize(h, mask, hidden, gamma, beta, eps, out_dtype, input_scale, act_scale):
    """Row math shared by both kernels; `h` is float32 `[block]` with zeros past `hidden`."""
    mean = jnp.sum(h) / hidden
    centered = jnp.where(mask, h - mean, 0.0)
    var = jnp.sum(centered * centered) / hidden
    y = (centered * jax.lax.rsqrt(var + eps) * gamma + beta).astype(out_dtype)
    yq = y.astype(jnp.float32)  # quantize the rounded output, exactly what the GEMM would see
    if input_scale is not None:
        yq = yq * input_scale
    # A row with a NaN or Inf gets zeros and a NaN scale, as `numerics.quantize_rows`: the
    # GEMM's epilogue multiplies by the scale, so that row's output is NaN, never a number.
    # (a float max, not jnp.all: Triton lowers no boolean reductions)
    finite = jnp.max(jnp.where(mask & ~(jnp.abs(yq) < jnp.inf), 1.0, 0.0)) == 0.0
    yq = jnp.where(finite, yq, 0.0)
    if act_scale is None:
        scale = jnp.maximum(jnp.max(jnp.where(mask, jnp.abs(yq), 0.0)) * INV_INT8_MAX, SCALE_EPS)
    else:
        scale = act_scale
    return y, ep.requantize(yq, scale, has_round=False), jnp.where(finite, scale, jnp.nan)


def _check(gamma, beta, hidden, input_scale, act_scale):
    """Shapes, and a concrete static `act_scale` finite and positive (`numerics.check_scale`),
    as the reference checks it: a zero scale would give finite rows of +-127 and a NaN/Inf one
    poison every row, where the reference raises."""
    if gamma.shape != (hidden,) or beta.shape != (hidden,):
        raise ValueError(f"gamma and beta must be [{hidden}], got {gamma.shape} and {beta.shape}")
    if input_scale is not None and input_scale.shape != (hidden,):
        raise ValueError(f"input_scale must be [{hidden}], got {input_scale.shape}")
    if act_scale is not None and jnp.shape(act_scale) not in ((), (1,)):
        raise ValueError(f"act_scale must be a scalar, got shape {jnp.shape(act_scale)}")
    check_scale(act_scale, "act_scale")


def _optional_vectors(hidden, input_scale, act_scale):
    specs, operands = [], []
    if input_scale is not None:
        specs.append(pl.BlockSpec((hidden,), lambda i: (0,)))
        operands.append(input_scale.astype(jnp.float32))
    if act_scale is not None:
        specs.append(pl.BlockSpec((1,), lambda i: (0,)))
        operands.append(jnp.reshape(jnp.asarray(act_scale, jnp.float32), (1,)))
    return specs, operands


def _out_shapes_and_specs(rows, hidden, out_dtype):
    shapes = (jax.ShapeDtypeStruct((rows, hidden), out_dtype),
              jax.ShapeDtypeStruct((rows, hidden), jnp.int8),
              jax.ShapeDtypeStruct((rows, 1), jnp.float32))
    specs = (pl.BlockSpec((None, hidden), lambda i: (i, 0)),
             pl.BlockSpec((None, hidden), lambda i: (i, 0)),
             pl.BlockSpec((None, 1), lambda i: (i, 0)))
    return shapes, specs


def _compiler_params(block, interpret):
    return None if interpret else pltriton.CompilerParams(num_warps=min(max(block // 256, 1), 8))


def _finish_row(h, cols, hidden, g_ref, b_ref, is_ref, as_ref, out_refs, *, eps, out_dtype):
    """Normalizes and quantizes one loaded row `h` and stores `(y, q, scale)`."""
    mask = cols < hidden
    load = lambda ref: pltriton.load(ref.at[cols], mask=mask, other=0.0)  # noqa: E731
    y, q, scale = _normalize_and_quantize(
        h, mask, hidden, load(g_ref), load(b_ref), eps, out_dtype,
        None if is_ref is None else load(is_ref), None if as_ref is None else as_ref[0])
    y_ref, q_ref, s_ref = out_refs
    pltriton.store(y_ref.at[cols], y, mask=mask)
    pltriton.store(q_ref.at[cols], q, mask=mask)
    s_ref[...] = jnp.full((1,), scale, jnp.float32)


def _launch(kernel, rows, hidden, out_dtype, in_specs, operands, *, name, interpret):
    """One program per row; returns `(y, q, scale)` as `[rows, ...]` arrays."""
    shapes, out_specs = _out_shapes_and_specs(rows, hidden, out_dtype)
    return pl.pallas_call(
        kernel, out_shape=shapes, grid=(rows,), in_specs=in_specs, out_specs=out_specs,
        compiler_params=_compiler_params(pl.next_power_of_2(hidden), interpret),
        interpret=interpret, name=name)(*operands)


def layernorm_quant(x, gamma, beta, *, eps: float, residual=None, out_dtype=jnp.float16,
                    act_scale=None, input_scale=None, interpret: bool = False):
    """Fused `LayerNorm(x + residual)` → (16-bit output, INT8, per-row scale).

    Args:
      x: `[..., H]`; residual: same shape or None. gamma, beta: `[H]`.
      act_scale: a static scale (scalar) or None for per-token dynamic quantization.
      input_scale: `[H]` SmoothQuant multiplier applied before quantizing, or None.
    Returns:
      `(y [..., H] out_dtype, q [..., H] int8, scale [..., 1] float32)`; matches
      `layernorm_quant_reference` within float32 reduction-order rounding. A row whose input
      or LayerNorm output holds NaN/Inf gets zeros and a NaN scale (static scales too).
    Raises:
      ValueError: inconsistent shapes, or a concrete `act_scale` that is not finite and
        positive (as the reference).
    """
    *lead, hidden = x.shape
    _check(gamma, beta, hidden, input_scale, act_scale)
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual {residual.shape} does not match x {x.shape}")
    rows = 1
    for d in lead:
        rows *= d
    block = pl.next_power_of_2(hidden)
    has_residual = residual is not None
    specs = [pl.BlockSpec((None, hidden), lambda i: (i, 0))]
    operands = [x.reshape(rows, hidden)]
    if has_residual:
        specs.append(pl.BlockSpec((None, hidden), lambda i: (i, 0)))
        operands.append(residual.reshape(rows, hidden))
    specs += [pl.BlockSpec((hidden,), lambda i: (0,))] * 2
    operands += [gamma.astype(jnp.float32), beta.astype(jnp.float32)]
    extra_specs, extra = _optional_vectors(hidden, input_scale, act_scale)

    def kernel(*refs):
        x_ref, *rest = refs
        r_ref = rest.pop(0) if has_residual else None
        g_ref, b_ref = rest.pop(0), rest.pop(0)
        is_ref = rest.pop(0) if input_scale is not None else None
        as_ref = rest.pop(0) if act_scale is not None else None
        y_ref, q_ref, s_ref = rest
        cols = jnp.arange(block)
        mask = cols < hidden
        h = pltriton.load(x_ref.at[cols], mask=mask, other=0.0).astype(jnp.float32)
        if r_ref is not None:
            h = h + pltriton.load(r_ref.at[cols], mask=mask, other=0.0).astype(jnp.float32)
        _finish_row(h, cols, hidden, g_ref, b_ref, is_ref, as_ref, (y_ref, q_ref, s_ref),
                    eps=eps, out_dtype=out_dtype)

    y, q, s = _launch(kernel, rows, hidden, out_dtype, specs + extra_specs, operands + extra,
                      name=LAYERNORM_KERNEL_NAME, interpret=interpret)
    return y.reshape(*lead, hidden), q.reshape(*lead, hidden), s.reshape(*lead, 1)


def embedding_quant(input_ids, position_ids, token_type_ids, word, position, token_type, gamma,
                    beta, *, eps: float, out_dtype=jnp.float16, act_scale=None, input_scale=None,
                    interpret: bool = False):
    """Fused gather of word, position and (optionally) token-type embeddings + LayerNorm + INT8.

    Args:
      input_ids: `[B, S]` int. position_ids: `[B, S]` int ids into `position` (BERT:
        `0..S-1`; RoBERTa/MPNet: from `padding_idx + 1`, padded tokens at `padding_idx`).
      token_type_ids: `[B, S]` int, or None together with `token_type` (DistilBERT, MPNet):
        then a kernel variant without the token-type operand runs (no row is gathered).
      word `[V, H]`, position `[P, H]`, token_type `[T, H]` or None. Out-of-range ids
        (including position ids >= P) are the caller's to reject (the model checks).
      act_scale, input_scale: as `layernorm_quant`.
    Returns:
      `(y [B, S, H], q [B, S, H] int8, scale [B, S, 1])` as `embedding_quant_reference`.
    Raises:
      ValueError: exactly one of `token_type_ids`/`token_type` is None, inconsistent shapes,
        or a concrete `act_scale` that is not finite and positive (as the reference).
    """
    _check_token_types(token_type_ids, token_type)
    has_types = token_type is not None
    batch, seq = input_ids.shape
    hidden = word.shape[1]
    _check(gamma, beta, hidden, input_scale, act_scale)
    if position_ids.shape != input_ids.shape:
        raise ValueError(f"position_ids {position_ids.shape} != input_ids {input_ids.shape}")
    if has_types and token_type_ids.shape != input_ids.shape:
        raise ValueError(f"token_type_ids {token_type_ids.shape} != input_ids {input_ids.shape}")
    if position.shape[1] != hidden or (has_types and token_type.shape[1] != hidden):
        raise ValueError("word, position and token-type tables must share the hidden size")
    rows = batch * seq
    block = pl.next_power_of_2(hidden)
    columns = [input_ids, position_ids] + ([token_type_ids] if has_types else [])
    ids = jnp.stack([c.reshape(rows).astype(jnp.int32) for c in columns], axis=1)
    tables = [word, position] + ([token_type] if has_types else [])
    full = lambda a: pl.BlockSpec(a.shape, lambda i: (0,) * a.ndim)  # noqa: E731  whole table
    operands = [ids, *tables, gamma.astype(jnp.float32), beta.astype(jnp.float32)]
    specs = [pl.BlockSpec((None, len(columns)), lambda i: (i, 0))] + [full(a) for a in operands[1:]]
    extra_specs, extra = _optional_vectors(hidden, input_scale, act_scale)

    def kernel(ids_ref, *refs):
        table_refs, rest = refs[:len(tables)], list(refs[len(tables):])
        g_ref, b_ref = rest.pop(0), rest.pop(0)
        is_ref = rest.pop(0) if input_scale is not None else None
        as_ref = rest.pop(0) if act_scale is not None else None
        y_ref, q_ref, s_ref = rest
        cols = jnp.arange(block)
        mask = cols < hidden
        load = lambda ref, row: pltriton.load(ref.at[row, cols], mask=mask, other=0.0)  # noqa: E731
        h = load(table_refs[0], ids_ref[0]).astype(jnp.float32)  # word
        for j in range(1, len(tables)):  # position, then token type when there is one
            h = h + load(table_refs[j], ids_ref[j]).astype(jnp.float32)
        _finish_row(h, cols, hidden, g_ref, b_ref, is_ref, as_ref, (y_ref, q_ref, s_ref),
                    eps=eps, out_dtype=out_dtype)

    y, q, s = _launch(kernel, rows, hidden, out_dtype, specs + extra_specs, operands + extra,
                      name=EMBEDDING_KERNEL_NAME, interpret=interpret)
    return (y.reshape(batch, seq, hidden), q.reshape(batch, seq, hidden), s.reshape(batch, seq, 1))
