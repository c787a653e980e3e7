"""Flax NNX building blocks of a BERT-family encoder: embeddings, GEMM sites, attention, layers.

Every matrix multiply inside an encoder layer is a named `GemmSite` (`qkv`, `attn_out`,
`ffn_in`, `ffn_out`), the unit whose precision a precision map switches. A site owns its
epilogue (bias, optional GELU, optional residual add), so a fused kernel can take the site over
whole. LayerNorm and softmax always run in float32 whatever the compute dtype.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pallas_kernels.numerics import layer_norm
from samp_jax.models.config import (INIT_STD, RELATIVE_BUCKETS, RELATIVE_MAX_DISTANCE,
                                     EncoderConfig)
from samp_jax.models.gated_ffn import gated_activation
from samp_jax.models import int8_attention
from samp_jax.models.local_attention import band_mask, blockwise_local_attention, use_blockwise
from samp_jax.models.rotary import apply_rotary, rotary_tables
from samp_jax.models.relative_attention import DisentangledPositions, RelativeTerms, by_pair
from samp_jax.ops.dispatch import Activation, gemm, report_matmul
from samp_jax.ops.fused import fused_op
from samp_jax.ops.handoff import int8_handoff
from samp_jax.core.precision import (SITES, AttentionPrecision, PrecisionMapError,
                                     SitePrecision, precision_of_dtype)
from samp_jax.core.primitives import QArray

AttentionImpl = Literal["xla", "cudnn"] | None


class LayerNorm(nnx.Module):
    """LayerNorm with float32 statistics; the output is cast to the compute dtype.
    `use_bias=False` (ModernBERT's `norm_bias`) leaves out the bias: `bias` is None."""

    def __init__(self, size: int, *, eps: float, dtype=jnp.float32, param_dtype=jnp.float32,
                 use_bias: bool = True):
        self.scale = nnx.Param(jnp.ones((size,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((size,), param_dtype)) if use_bias else None
        self.eps = eps
        self.dtype = dtype

    def _bias(self) -> jax.Array:
        """The bias, or zeros without one (the fused kernel takes a bias either way)."""
        return jnp.zeros_like(self.scale[...]) if self.bias is None else self.bias[...]

    def __call__(self, x: jax.Array) -> jax.Array:
        return layer_norm(x, self.scale[...], self._bias(), self.eps).astype(self.dtype)

    def with_quantized(self, x: jax.Array, consumer) -> tuple[jax.Array, QArray | None]:
        """LayerNorm, plus `consumer`'s INT8 input from the same pass (ZeroQuant-HERO's
        LN+quant fusion) when `consumer` is an INT8 site and the fused kernel is available;
        otherwise `(LayerNorm(x), None)` and the consumer quantizes for itself."""
        spec = int8_handoff(consumer, via="layernorm_quant")
        if spec is None:
            return self(x), None
        y, q, scale = fused_op("layernorm_quant")(
            x, self.scale[...], self._bias(), eps=self.eps, out_dtype=self.dtype,
            act_scale=spec.act_scale, input_scale=spec.input_scale)
        return y, QArray(q, scale, "int8")


class GemmSite(nnx.Module):
    """`y = act(x @ kernel + bias) + residual`: one GEMM with its epilogue.

    The kernel is stored `[in_features, out_features]`. This float version computes in
    `dtype` with float32 accumulation; quantized sites replace it with the same interface.
    `use_bias=False` (ModernBERT) leaves out the bias: `bias` is None.
    """

    def __init__(self, in_features: int, out_features: int, *, site: str, dtype=jnp.float32,
                 param_dtype=jnp.float32, use_bias: bool = True, rngs: nnx.Rngs):
        self.kernel = nnx.Param(  # [in, out]
            INIT_STD * jax.random.truncated_normal(
                rngs.params(), -2.0, 2.0, (in_features, out_features), param_dtype))
        self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else None  # [out]
        self.site = site
        self.dtype = dtype

    @property
    def shape(self) -> tuple[int, int]:
        """(in_features, out_features)."""
        return tuple(self.kernel.shape)

    @property
    def precision(self) -> SitePrecision:
        return SitePrecision(precision_of_dtype(self.dtype))

    # Calibration sets this on a private copy of the model to observe the site's input.
    observer = None

    def dense_weight(self) -> tuple[jax.Array, jax.Array]:
        """`(kernel [in, out], bias [out])` in float32 (what quantized sites dequantize to)."""
        return self.kernel[...].astype(jnp.float32), self.bias[...].astype(jnp.float32)

    def __call__(self, x: jax.Array, *, activation: Activation = None,
                 residual: jax.Array | None = None) -> jax.Array:
        if self.observer is not None:
            self.observer(x)
        return gemm(x, self.kernel[...], precision=self.precision,
                    bias=None if self.bias is None else self.bias[...],
                    activation=activation, residual=residual, out_dtype=self.dtype, site=self.site)


def position_ids(input_ids: jax.Array, padding_idx: int | None) -> jax.Array:
    """Position ids `[batch, seq]`: `0 .. seq-1` when `padding_idx` is None; else RoBERTa's
    `padding_idx + 1, ...` counted over the tokens that are not `padding_idx`, with padding
    tokens at `padding_idx` (HF `create_position_ids_from_input_ids`)."""
    if padding_idx is None:
        return jnp.broadcast_to(jnp.arange(input_ids.shape[1], dtype=jnp.int32), input_ids.shape)
    real = (input_ids != padding_idx).astype(jnp.int32)
    return jnp.cumsum(real, axis=1, dtype=jnp.int32) * real + padding_idx


class Embeddings(nnx.Module):
    """Word + position (+ token-type) embeddings, LayerNorm, and (ELECTRA) a projection GEMM.

    What differs by family is read from the config: positions counted from a padding index
    (`position_padding_idx`), no token-type table (`type_vocab_size == 0`) or one type whose
    ids are ignored (`== 1`), ERNIE's task-type table whose row 0 is added to every token (HF's
    default task-type id; `task_type_vocab_size`), and narrower tables followed by `project`, a
    `GemmSite` named `embed_proj` (`embedding_size`). Rotary models (`rotary_theta`) have no
    position table (`position` is None): positions enter the attention instead.
    """

    def __init__(self, config: EncoderConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        width = config.embedding_width

        def table(rows):
            return nnx.Param(INIT_STD * jax.random.truncated_normal(
                rngs.params(), -2.0, 2.0, (rows, width), param_dtype))
        self.word = table(config.vocab_size)  # [vocab, width]
        # [max_pos, width]; None for rotary positions (ModernBERT) or no absolute positions
        # (DeBERTa-v3, position_biased_input=False)
        self.position = (table(config.max_position_embeddings)
                         if config.rotary_theta is None and config.position_biased_input else None)
        self.token_type = table(config.type_vocab_size) if config.type_vocab_size else None
        # [task_types, width]: ERNIE's task-type table (`use_task_id`); row 0 joins every token
        self.task_type = table(config.task_type_vocab_size) if config.task_type_vocab_size else None
        self.norm = LayerNorm(width, eps=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype,
                              use_bias=config.norm_bias)
        self.project = (GemmSite(width, config.hidden_size, site="embed_proj", dtype=dtype,
                                 param_dtype=param_dtype, rngs=rngs)
                        if config.embedding_size else None)
        self.max_length = config.position_limit  # None: no position table, no limit
        self.max_positions = config.max_position_embeddings
        self.padding_idx = config.position_padding_idx

    def _inputs(self, input_ids, token_type_ids):
        """Position ids and the token types to add (None: no token-type term)."""
        seq_len = input_ids.shape[1]
        if self.max_length is not None and seq_len > self.max_length:
            raise ValueError(f"sequence length {seq_len} exceeds the model's maximum of "
                             f"{self.max_length} tokens (max_position_embeddings="
                             f"{self.max_positions})")
        positions = None if self.position is None else position_ids(input_ids, self.padding_idx)
        if self.token_type is None:
            types = None
        elif self.token_type.shape[0] == 1:  # one type: HF's tokenizers send none, row 0 it is
            types = jnp.zeros_like(input_ids)
        else:
            types = token_type_ids
        return positions, types

    def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array) -> jax.Array:
        return self.with_quantized(input_ids, token_type_ids, None)[0]  # [batch, seq, hidden]

    def with_quantized(self, input_ids: jax.Array, token_type_ids: jax.Array,
                       consumer) -> tuple[jax.Array, QArray | None]:
        """The embeddings plus `consumer`'s INT8 input, from one fused gather + LayerNorm +
        quantize kernel (SAMP's embedding fusion) when `consumer` is an INT8 site and the kernel
        is available; otherwise `(self(...), None)`. With a projection, the fused kernel feeds
        the projection instead, and the projection's output is returned unquantized."""
        positions, types = self._inputs(input_ids, token_type_ids)
        target = consumer if self.project is None else self.project
        if self.position is None:  # the fused gather kernel adds a position row; LN+quant fuses
            y, x_q = self.norm.with_quantized(self._summed(input_ids, None, types), target)
            return (y, x_q) if self.project is None else (self.project(y if x_q is None else x_q), None)
        spec = None if target is None else int8_handoff(target, via="embedding_quant")
        norm = self.norm
        token_table = None if types is None else self.token_type[...]
        if spec is None:
            y, x_q = norm(self._summed(input_ids, positions, types)), None
        else:
            y, q, scale = fused_op("embedding_quant")(
                input_ids, positions, types, self.word[...], self._position_table(), token_table,
                norm.scale[...], norm.bias[...], eps=norm.eps, out_dtype=norm.dtype,
                act_scale=spec.act_scale, input_scale=spec.input_scale)
            x_q = QArray(q, scale, "int8")
        if self.project is None:
            return y, x_q
        return self.project(y if x_q is None else x_q), None

    def _position_table(self) -> jax.Array:
        """The position table the fused gather kernel adds, with the task-type row (ERNIE) that
        joins every token folded into each position: in float32, as the unfused path sums the
        rows (`_summed`), so the fold rounds nothing the unfused path does not (the kernel reads
        every table into float32)."""
        if self.task_type is None:
            return self.position[...]
        return self.position[...].astype(jnp.float32) + self.task_type[...][0].astype(jnp.float32)

    def _summed(self, input_ids, positions, types) -> jax.Array:
        """Word (+ position) (+ token type) (+ task type row 0) rows, summed in float32."""
        summed = self.word[...][input_ids].astype(jnp.float32)
        if positions is not None:
            summed = summed + self.position[...][positions].astype(jnp.float32)
        if types is not None:
            summed = summed + self.token_type[...][types].astype(jnp.float32)
        if self.task_type is not None:
            summed = summed + self.task_type[...][0].astype(jnp.float32)
        return summed


def resolve_attention_impl(implementation: AttentionImpl, dtype) -> str:
    """`cudnn` (flash attention) on GPU for 16-bit dtypes, else `xla`, unless one is named."""
    if implementation is not None:
        if implementation not in ("xla", "cudnn"):
            raise ValueError(f"{implementation=} is not one of ('xla', 'cudnn', None)")
        return implementation
    on_gpu = jax.default_backend() == "gpu"
    return "cudnn" if on_gpu and jnp.dtype(dtype) in (jnp.float16, jnp.bfloat16) else "xla"


def attention(q: jax.Array, k: jax.Array, v: jax.Array, attention_mask: jax.Array, *,
              bias: jax.Array | None = None, scale: float | None = None,
              implementation: AttentionImpl = None, window: int = 0,
              precision: AttentionPrecision | None = None, label: str | None = None) -> jax.Array:
    """Bidirectional multi-head attention over `[batch, seq, heads, head_dim]` tensors.

    `attention_mask` is `[batch, seq]`, 1 for real tokens and 0 for padding. `bias` (MPNet's
    relative position bias, `[1, heads, seq, seq]`, or DeBERTa's relative terms, `[batch, heads,
    seq, seq]`, float32) is added to the scaled scores; `scale` (default `1 / sqrt(head_dim)`)
    scales `q k^T`. cuDNN
    takes the per-row key lengths, so it assumes right padding (what `samp_jax.Tokenizer`
    produces); the XLA path takes the mask itself and accepts any pattern. Automatic choice
    keeps a biased attention on XLA.

    `window > 0` makes it local (sliding-window) attention: a query sees the keys within
    `window // 2` positions (`samp_jax.models.local_attention`). On XLA a long sequence runs in
    query blocks (no `[seq, seq]` logits); a short one masks a band built from iotas.
    Automatic choice keeps local attention on XLA; cuDNN named explicitly gets the window as
    `local_window_size`.

    `precision` (a precision map's `attn_scores` / `attn_context` of the layer; None or unset:
    both in the dtype of `q`, as always) runs the scores and the context at their own
    precision: a float precision casts the operands of that product to it; `int8` runs it as
    an INT8 x INT8 -> INT32 product (`samp_jax.models.int8_attention`), on XLA (automatic
    choice keeps an INT8 attention off cuDNN, which cannot run it), blockwise local attention
    included. The output has the dtype of `q` either way. With a `precision` set, each product is
    recorded (`samp_jax.ops.record_executions`) as `"<label>.attn_scores"` and
    `"<label>.attn_context"`, with its precision and what ran it.

    Raises:
      PrecisionMapError: INT8 attention, or scores and context at two float precisions, with
        `implementation='cudnn'`.
    """
    dtype = q.dtype
    int8 = (False, False)
    if precision is not None and precision.is_set:
        if precision.is_quantized and implementation == "cudnn":
            raise PrecisionMapError(
                f"attention: the precision map puts {precision} here, which only the XLA path "
                "runs; implementation='cudnn' (attention_impl) cannot take INT8 operands; use "
                "attention_impl=None or 'xla', or a float precision for these sites")
        int8 = tuple(p is not None and p.is_quantized for p in (precision.scores, precision.context))
        q, k = (_cast_to(t, precision.scores) for t in (q, k))
        v = _cast_to(v, precision.context)
        if any(int8) and implementation is None:
            implementation = "xla"
        elif q.dtype != v.dtype:  # cuDNN takes q, k and v of one dtype
            if implementation == "cudnn":
                raise PrecisionMapError(
                    f"attention: the precision map puts {precision} here, products of two "
                    f"dtypes ({q.dtype.name} and {v.dtype.name}), which only the XLA path runs; "
                    "implementation='cudnn' (attention_impl) takes one; use attention_impl=None "
                    "or 'xla', or one precision for both sites")
            implementation = "xla"
    if (bias is not None or window) and implementation is None:
        implementation = "xla"
    impl = resolve_attention_impl(implementation, q.dtype)
    if precision is not None and precision.is_set:
        keys, head_dim = k.shape[1], q.shape[-1]
        for name, p, t, depth, width in (("attn_scores", precision.scores, q, head_dim, keys),
                                         ("attn_context", precision.context, v, keys, head_dim)):
            named = str(p) if p is not None else precision_of_dtype(t.dtype)
            report_matmul(None if label is None else f"{label}.{name}", named, depth, width, impl)
    if impl == "cudnn":
        lengths = jnp.sum(attention_mask, axis=-1, dtype=jnp.int32)
        return jax.nn.dot_product_attention(
            q, k, v, bias=None if bias is None else bias.astype(q.dtype), scale=scale,
            query_seq_lengths=lengths, key_value_seq_lengths=lengths, implementation="cudnn",
            local_window_size=(window // 2, window // 2) if window else None).astype(dtype)
    if jax.default_backend() == "cpu":
        # XLA:CPU has no f16 x f16 -> f32 dot, which the logits need.
        q, k, v = (t.astype(jnp.float32) if t.dtype == jnp.float16 else t for t in (q, k, v))
    mask = attention_mask.astype(jnp.bool_)
    if window and bias is None and scale is None and use_blockwise(q.shape[1], window):
        return blockwise_local_attention(q, k, v, mask, window=window, int8_scores=int8[0],
                                         int8_context=int8[1]).astype(dtype)
    key_mask = mask
    if window:  # [batch, 1, queries, keys]: the padding mask within the band
        mask = mask[:, None, None, :] & band_mask(q.shape[1], window)[None, None]
    return xla_attention(q, k, v, mask, bias=bias, scale=scale, int8_scores=int8[0],
                         int8_context=int8[1], key_mask=key_mask).astype(dtype)


def _cast_to(t: jax.Array, precision: SitePrecision | None) -> jax.Array:
    """`t` in a float precision's dtype; as it is for INT8 (quantized in the product) or None."""
    if precision is None or precision.is_quantized:
        return t
    return t.astype(precision.float_dtype)


def xla_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
                  bias: jax.Array | None = None, scale: float | None = None,
                  int8_scores: bool = False, int8_context: bool = False,
                  key_mask: jax.Array | None = None) -> jax.Array:
    """`softmax(q k^T / sqrt(head_dim) + bias, masked) v` in plain XLA, over `[batch, seq,
    heads, head_dim]` tensors with a `[batch, keys]` bool `mask` (or `[batch, 1, queries,
    keys]`, e.g. a local-attention band).

    Logits, softmax and the accumulation are float32. It works head-major (`[batch, heads,
    seq, head_dim]`, so both products are plain batched GEMMs without strided operands) and
    normalises after the second product (dividing `[..., head_dim]` instead of the `[..., keys]`
    probabilities), the flash-attention order. On a CPU it is faster than
    `jax.nn.dot_product_attention(implementation="xla")` (`tools/studies/float_ops_ms.py` times
    both), with the same result to float32 rounding. A query whose keys are all masked attends
    uniformly, as there. (With an INT8 context, `samp_jax.models.int8_attention`, such a query's
    context is 0 instead: V is zeroed on masked keys. Only padding queries have no key: a real
    token sees itself. `tests/samp_jax/models/test_int8_attention.py` pins both.)

    The scores product runs in the dtype of `q` and `k`, the context product in that of `v`,
    or in INT8 (`int8_scores`, `int8_context`: `samp_jax.models.int8_attention`, the bias and
    softmax still float32; V's per-channel scale is taken over the real keys of `key_mask`,
    `[batch, keys]`, default `mask` when it is `[batch, keys]`).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))  # [batch, heads, seq, head_dim]
    if int8_scores:
        logits = int8_attention.int8_scores(q, k, scale=scale)
    else:
        full = q.dtype == jnp.float32
        precision = jax.lax.Precision.HIGHEST if full else None
        # In float32 the scale goes on q (a pass XLA fuses into the transpose) rather than on
        # the [batch, heads, seq, keys] logits: XLA:CPU shared one materialised [b, h, t, s]
        # tensor of the scale across the layers, and every layer read it. Half-precision q
        # keeps the float32 multiply of the logits, so the scale adds no rounding.
        if full:
            q = q * scale
        logits = jnp.einsum("bnth,bnsh->bnts", q, k, precision=precision,
                            preferred_element_type=jnp.float32)
        if not full:
            logits = logits * scale
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    # Masking by adding a [batch, 1, 1, keys] bias, not by selecting on the logits: XLA:CPU then
    # fuses the softmax with the second product (a select on [batch, heads, seq, keys] kept
    # them apart and was slower). Masked logits become about float32 min, so they get no
    # weight, and a query whose keys are all masked still attends uniformly.
    if key_mask is None and mask.ndim == 2:
        key_mask = mask
    mask = mask[:, None, None, :] if mask.ndim == 2 else mask
    logits = logits + jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min)
    unnormalised = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    if int8_context:
        context = int8_attention.int8_context(unnormalised, v, key_mask)
    else:
        total = jnp.sum(unnormalised, axis=-1, keepdims=True)  # [batch, heads, seq, 1], >= 1
        precision = jax.lax.Precision.HIGHEST if v.dtype == jnp.float32 else None
        context = jnp.einsum("bnts,bnsh->bnth", unnormalised.astype(v.dtype), v, precision=precision,
                             preferred_element_type=jnp.float32) / total
    return jnp.swapaxes(context, 1, 2)  # [batch, seq, heads, head_dim] float32


def relative_position_bucket(seq_len: int) -> np.ndarray:
    """MPNet's bucket of each offset `key - query`, `[2 seq - 1]` int32, entry `m` for the
    offset `m - (seq - 1)` (the layout `by_pair` reads): T5-style, 32 buckets (16 per
    direction, exact up to 8, logarithmic up to distance 128), as HF
    `MPNetEncoder.relative_position_bucket` computes it. Static: a function of length only."""
    relative = np.arange(1 - seq_len, seq_len)  # key - query
    n = -relative
    half = RELATIVE_BUCKETS // 2
    bucket = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    # where n < max_exact the exact bucket is used; max(n, 1) keeps log finite there
    large = max_exact + (np.log(np.maximum(n, 1).astype(np.float32) / max_exact)
                         / math.log(RELATIVE_MAX_DISTANCE / max_exact)
                         * (half - max_exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return (bucket + np.where(n < max_exact, n, large)).astype(np.int32)


class EncoderLayer(nnx.Module):
    """An encoder layer with the four GEMM sites `qkv`, `attn_out`, `ffn_in`, `ffn_out`, and
    the two attention matmuls at `attention_precision` (None: the compute dtype).

    A search's candidate program (`calibrate.search.candidates`) gives a layer several
    `attention_branches` and, while tracing, a traced `attention_choice` that picks one of them
    per call (`lax.switch`); with no choice set the layer runs `attention_precision`.

    BERT's post-LN order by default; what else a family needs is read from the config and
    composed from the same pieces: pre-LN order (`norm_first`, ModernBERT; layer 0 then has
    no `attn_norm`), rotary positions (`rotary_theta`), sliding-window attention in local
    layers (`local_attention`), a gated `ffn_in` twice as wide (`gated_ffn`), and GEMMs or
    LayerNorms without biases (`attention_bias`, `mlp_bias`, `norm_bias`).

    Args:
      index: the layer's position in the stack (picks local or global attention, its RoPE
        base, and whether a pre-LN layer has an `attn_norm`).
    """

    def __init__(self, config: EncoderConfig, *, index: int = 0, dtype=jnp.float32,
                 param_dtype=jnp.float32, attention_impl: AttentionImpl = None, rngs: nnx.Rngs):
        hidden, shapes = config.hidden_size, config.site_shapes
        site = lambda name, bias: GemmSite(  # noqa: E731
            *shapes[name], site=name, dtype=dtype, param_dtype=param_dtype, use_bias=bias, rngs=rngs)
        self.qkv = site("qkv", config.attention_bias)  # fused [Q | K | V]
        self.attn_out = site("attn_out", config.attention_bias)
        self.ffn_in = site("ffn_in", config.mlp_bias)  # gated: [input | gate], each as wide
        self.ffn_out = site("ffn_out", config.mlp_bias)
        norm = lambda: LayerNorm(hidden, eps=config.layer_norm_eps, dtype=dtype,  # noqa: E731
                                 param_dtype=param_dtype, use_bias=config.norm_bias)
        self.attn_norm = None if config.norm_first and index == 0 else norm()
        self.ffn_norm = norm()
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.activation = config.activation
        self.attention_impl = attention_impl
        self.norm_first = config.norm_first
        self.gated = config.gated_ffn
        self.window = config.local_attention if config.is_local_layer(index) else 0
        # None: the default 1 / sqrt(head_dim); DeBERTa's relative terms widen the denominator
        factor = config.score_scale_factor
        self.scale = None if factor == 1 else 1.0 / math.sqrt(config.head_dim * factor)
        self.rotary_theta = config.layer_rotary_theta(index)
        # The precision map's `attn_scores` / `attn_context` of this layer (`quantize` sets
        # it); None: attention in the compute dtype.
        self.attention_precision: AttentionPrecision | None = None
        self.attention_label: str | None = None  # names its products in execution records
        # precisions a traced `attention_choice` picks from (the search's candidate program)
        self.attention_branches: tuple[AttentionPrecision | None, ...] = ()

    attention_choice = None  # a traced int32 scalar, set on a private copy while tracing

    def sites(self) -> dict[str, GemmSite]:
        return {name: getattr(self, name) for name in SITES}

    def __call__(self, x: jax.Array, attention_mask: jax.Array, *,
                 attention_bias: jax.Array | None = None,
                 relative: RelativeTerms | None = None) -> jax.Array:
        return self.forward(x, attention_mask, attention_bias=attention_bias,
                            relative=relative)[0]  # [batch, seq, hidden]

    def forward(self, x: jax.Array, attention_mask: jax.Array, *, x_q: QArray | None = None,
                next_site=None, attention_bias: jax.Array | None = None,
                relative: RelativeTerms | None = None) -> tuple[jax.Array, QArray | None]:
        """The layer, with INT8 hand-offs where the fused kernels are available.

        `x_q` is `x` already quantized for `qkv` (by the previous LayerNorm+quant). The
        LayerNorms quantize for their INT8 consumers (`ffn_in`, and in post-LN order
        `next_site`, the next layer's `qkv`) in the same pass; an INT8 `ffn_in` feeding a
        static-INT8 `ffn_out` writes INT8 straight from its epilogue (not when gated).
        `relative` (DeBERTa) adds the disentangled relative terms to the scores and their
        scale. Returns `(output, output quantized for next_site or None)`.
        """
        if self.norm_first:
            return self._pre_norm_forward(x, attention_mask, x_q, attention_bias, relative), None
        context = self._attend(x if x_q is None else x_q, x.shape, attention_mask, attention_bias,
                               relative)
        x, ffn_in_q = self.attn_norm.with_quantized(self.attn_out(context, residual=x), self.ffn_in)
        inner = self._ffn_inner(x if ffn_in_q is None else ffn_in_q)
        return self.ffn_norm.with_quantized(self.ffn_out(inner, residual=x), next_site)

    def _pre_norm_forward(self, x, attention_mask, x_q, attention_bias, relative=None) -> jax.Array:
        """`x + attn(norm(x))`, then `+ ffn(norm(.))`; layer 0 attends to `x` itself (`x_q`,
        the embeddings' output quantized for `qkv`, applies only there)."""
        if self.attn_norm is None:
            h, h_q = x, x_q
        else:
            h, h_q = self.attn_norm.with_quantized(x, self.qkv)
        context = self._attend(h if h_q is None else h_q, x.shape, attention_mask, attention_bias,
                               relative)
        x = self.attn_out(context, residual=x)
        h, h_q = self.ffn_norm.with_quantized(x, self.ffn_in)
        return self.ffn_out(self._ffn_inner(h if h_q is None else h_q), residual=x)

    def _attend(self, qkv_input, shape, attention_mask, attention_bias, relative=None) -> jax.Array:
        """`qkv`, rotary positions when the layer has them, DeBERTa's relative terms when given,
        then (local) attention: the context `[batch, seq, hidden]`."""
        batch, seq, hidden = shape
        qkv = self.qkv(qkv_input).reshape(batch, seq, 3, self.num_heads, self.head_dim)
        q, k = qkv[:, :, 0], qkv[:, :, 1]
        if self.rotary_theta is not None:
            cos, sin = rotary_tables(seq, self.head_dim, self.rotary_theta)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        scale = self.scale
        if relative is not None:
            attention_bias = relative.bias(q, k)
        run = lambda precision, q, k, v, bias: attention(  # noqa: E731
            q, k, v, attention_mask, bias=bias, scale=scale, implementation=self.attention_impl,
            window=self.window, precision=precision, label=self.attention_label)
        if self.attention_choice is None:
            context = run(self.attention_precision, q, k, qkv[:, :, 2], attention_bias)
        else:
            context = jax.lax.switch(self.attention_choice, [
                lambda q, k, v, bias, p=p: run(p, q, k, v, bias) for p in self.attention_branches],
                q, k, qkv[:, :, 2], attention_bias)
        return context.reshape(batch, seq, hidden)

    def _ffn_inner(self, ffn_in_input):
        """`ffn_in` with its activation: what `ffn_out` reads (INT8 from the epilogue when the
        hand-off applies; the gated product of `gated_activation` when gated)."""
        if self.gated:  # the gate is applied after the GEMM (`samp_jax.models.gated_ffn.UNFUSED`)
            return gated_activation(self.ffn_in(ffn_in_input), self.activation)
        chain = int8_handoff(self.ffn_out, via="epilogue", producer=self.ffn_in)
        if chain is None:
            return self.ffn_in(ffn_in_input, activation=self.activation)
        # INT8 out of ffn_in's epilogue, at ffn_out's static input scale
        return QArray(self.ffn_in(ffn_in_input, activation=self.activation,
                                  out_dtype=jnp.int8, out_scale=chain.act_scale),
                      jnp.asarray(chain.act_scale, jnp.float32), "int8")


class Encoder(nnx.Module):
    """A stack of `EncoderLayer`s, with MPNet's relative position bias table (`relative_bias`,
    `[buckets, heads]`, shared by every layer) when the config has one, DeBERTa's
    disentangled relative positions (`relative`, a `DisentangledPositions`), and a final
    LayerNorm (`final_norm`) after pre-LN layers (`norm_first`)."""

    def __init__(self, config: EncoderConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 attention_impl: AttentionImpl = None, rngs: nnx.Rngs):
        self.layers = nnx.List([
            EncoderLayer(config, index=index, dtype=dtype, param_dtype=param_dtype,
                         attention_impl=attention_impl, rngs=rngs)
            for index in range(config.num_layers)])
        buckets = config.relative_attention_num_buckets
        self.relative_bias = nnx.Param(INIT_STD * jax.random.truncated_normal(
            rngs.params(), -2.0, 2.0, (buckets, config.num_heads), jnp.float32)) if buckets else None
        self.final_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps, dtype=dtype,
                                    param_dtype=param_dtype, use_bias=config.norm_bias) \
            if config.norm_first else None
        self.relative = DisentangledPositions(
            config, rngs=rngs,
            layer_norm=lambda size: LayerNorm(size, eps=config.layer_norm_eps, param_dtype=param_dtype),
            gemm_site=lambda name, n_in, n_out: GemmSite(n_in, n_out, site=name, param_dtype=param_dtype,
                                                         rngs=rngs),
        ) if config.disentangled_attention else None

    def attention_bias(self, seq_len: int) -> jax.Array | None:
        """The relative position bias `[1, heads, seq, seq]` float32, or None."""
        if self.relative_bias is None:
            return None
        per_offset = self.relative_bias[...].astype(jnp.float32)[relative_position_bucket(seq_len)].T
        rows = jnp.broadcast_to(per_offset[:, None], (per_offset.shape[0], seq_len, 2 * seq_len - 1))
        return by_pair(rows)[None]  # [1, heads, seq, seq]

    def __call__(self, x: jax.Array, attention_mask: jax.Array, *,
                 x_q: QArray | None = None) -> jax.Array:
        """`x_q`: the first layer's INT8 `qkv` input, if the embeddings produced it."""
        layers = list(self.layers)
        shared = self._shared(x.shape[1])
        for i in range(len(layers)):
            next_site = layers[i + 1].qkv if i + 1 < len(layers) else None
            x, x_q = self._layer(i, x, attention_mask, shared, x_q=x_q, next_site=next_site)
        return x if self.final_norm is None else self.final_norm(x)

    # ---- starting mid-stack: a layer's input is all it takes from the layers before it (MPNet's
    # bias and DeBERTa's relative table are shared and recomputed; rotary tables, local windows
    # and DeBERTa's per-layer terms are computed inside the layer that runs)

    def layer_inputs(self, x: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """Each layer's input hidden states `[num_layers, batch, seq, hidden]`, `x` (the
        embeddings' output) first: what `from_layer` starts from.

        The layers run as `__call__` runs them, without INT8 hand-offs (`x_q`, `next_site`:
        each INT8 site quantizes its own input), so for a model whose sites take float input
        (a float model; the search's switchable sites) these are the very tensors `__call__`
        computes. The last layer does not run (its output is no layer's input).
        """
        shared = self._shared(x.shape[1])
        inputs = [x]
        for i in range(len(self.layers) - 1):
            inputs.append(self._layer(i, inputs[-1], attention_mask, shared)[0])
        return jnp.stack(inputs)

    def from_layer(self, x: jax.Array, attention_mask: jax.Array, start) -> jax.Array:
        """The encoder's output with `x` as layer `start`'s input (`layer_inputs()[start]`,
        `0 <= start < num_layers`): layers `0 .. start - 1` do not run; the rest run as in
        `layer_inputs`, then the final LayerNorm.

        `start` may be traced, so one program serves every start: each layer but the last runs
        under `lax.cond(index >= start)`, of which XLA executes only the taken branch (under
        `vmap` the cond becomes a select and every layer runs). The last layer always runs, and
        runs outside a cond so that its LayerNorm fuses into what reads it (a head's pooling) as
        in `__call__`: computed inside a cond and read outside, XLA:CPU rounded the pooled sum
        differently in the last bit.
        """
        shared = self._shared(x.shape[1])
        last = len(self.layers) - 1
        for i in range(last):
            x = jax.lax.cond(i >= start,
                             lambda x, i=i: self._layer(i, x, attention_mask, shared)[0],
                             lambda x: x, x)
        x = self._layer(last, x, attention_mask, shared)[0]
        return x if self.final_norm is None else self.final_norm(x)

    def _shared(self, seq_len: int) -> tuple[jax.Array | None, jax.Array | None]:
        """What every layer reads beside its input: `(attention_bias(seq_len), DeBERTa's
        relative table or None)`."""
        return self.attention_bias(seq_len), None if self.relative is None else self.relative.table()

    def _layer(self, i: int, x: jax.Array, attention_mask: jax.Array, shared, *,
               x_q: QArray | None = None, next_site=None) -> tuple[jax.Array, QArray | None]:
        """Layer `i`'s `forward`, with its relative terms (DeBERTa) from the shared table."""
        bias, table = shared
        layer = self.layers[i]
        relative = None if table is None else self.relative.terms(i, layer.qkv, table)
        return layer.forward(x, attention_mask, x_q=x_q, next_site=next_site,
                             attention_bias=bias, relative=relative)
