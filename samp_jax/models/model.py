"""The full model: embeddings → encoder → an optional, replaceable target head.

Heads take the encoder's last hidden state and the attention mask:
- `SequenceClassifier`: dense + activation on the first token, then a classifier, as every
  family's `*ForSequenceClassification`; with pair input it is a cross-encoder.
- `TokenClassifier`: a per-token classifier, as `*ForTokenClassification`.
- `SentenceEmbedder`: sentence-transformers' pooling modes and Normalize; two embeddings
  compared with `cosine_similarity` make a bi-encoder for text matching.
Heads are registered by kind (`register_head`), so saved folders name their head and
`make_head` rebuilds it, custom heads included.
Heads compute in float32 whatever the encoder's dtype. Classification heads may carry their
class names (`labels`), which checkpoints, quantized folders and the engine's outputs keep.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import checkify

from samp_jax.models.config import EncoderConfig
from samp_jax.models.layers import AttentionImpl, Embeddings, Encoder, GemmSite, LayerNorm
from samp_jax.models.tokenizer import Tokenizer
from samp_jax.core.precision import precision_of_dtype

# sentence-transformers clamps the token count at 1e-9, so an all-padding row pools to zeros.
TOKEN_COUNT_FLOOR = 1e-9
NORM_FLOOR = 1e-12  # the smallest norm divided by (L2 normalisation, cosine): zero stays zero
MASKED_MAX = -1e9  # what sentence-transformers' max pooling puts in padded positions
# sentence-transformers' pooling modes (the order its 2-4 folders concatenate them in).
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")
CLASSIFIER_ACTIVATIONS = ("tanh", "gelu", "gelu_tanh", "relu")
# How a sequence head pools the tokens: the first one, or the mean of the real ones (ModernBERT).
CLASSIFIER_POOLING = ("cls", "mean")


class SequenceClassifier(nnx.Module):
    """`dense → activation (→ norm) → classifier` on the first token (or the mean of the real
    tokens). Returns logits `[batch, num_labels]`.

    One module serves every family's sequence head: BERT's pooler + classifier (tanh),
    RoBERTa's / XLM-R's / MPNet's `classifier.dense` + `out_proj` (tanh), ELECTRA's (exact
    GELU), DistilBERT's `pre_classifier` + `classifier` (ReLU) and ModernBERT's `head.dense →
    act → head.norm → classifier` pooled by `classifier_pooling`. With pair input it is a
    cross-encoder for text matching.

    Args:
      config: the encoder's architecture.
      num_labels: number of classes; defaults to `len(labels)`.
      labels: optional class names, one per class in logit order (`labels[i]` names logit
        `i`). Kept as a tuple: a static attribute, so the graphdef stays hashable.
      activation: the hidden activation, one of `CLASSIFIER_ACTIVATIONS`.
      pooling: 'cls' (the first token) or 'mean' (the mean of the real tokens).
      norm: a LayerNorm after the activation (ModernBERT; `config.norm_bias`, `layer_norm_eps`).
      rngs: initialisation randomness.

    The dense layer has a bias unless `config.classifier_bias` is False.
    """

    kind = "sequence_classification"

    def __init__(self, config: EncoderConfig, num_labels: int | None = None, *,
                 labels: Sequence[str] | None = None, activation: str = "tanh",
                 pooling: str = "cls", norm: bool = False, rngs: nnx.Rngs):
        num_labels = _num_labels(num_labels, labels)
        if activation not in CLASSIFIER_ACTIVATIONS:
            raise ValueError(f"{activation=} is not one of {CLASSIFIER_ACTIVATIONS}")
        if pooling not in CLASSIFIER_POOLING:
            raise ValueError(f"{pooling=} is not one of {CLASSIFIER_POOLING}")
        self.pooler = GemmSite(config.hidden_size, config.hidden_size, site="pooler",
                               use_bias=config.classifier_bias, rngs=rngs)
        self.norm = _head_norm(config) if norm else None
        self.classifier = GemmSite(config.hidden_size, num_labels, site="classifier", rngs=rngs)
        self.num_labels = num_labels
        self.labels = check_labels(labels, num_labels)
        self.activation = activation
        self.pooling = pooling

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
        hidden = hidden.astype(jnp.float32)
        if self.pooling == "mean":  # HF divides by the token count unclamped; rows have >= 1
            mask = attention_mask.astype(jnp.float32)[..., None]
            pooled = jnp.sum(hidden * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), TOKEN_COUNT_FLOOR)
        else:
            pooled = hidden[:, 0]
        pooled = self.pooler(pooled, activation=self.activation)
        return self.classifier(pooled if self.norm is None else self.norm(pooled))

    def spec(self) -> dict[str, Any]:
        """What `make_head` needs to rebuild this head (JSON); the pooling and the norm only
        when they differ from the defaults."""
        spec = {"num_labels": self.num_labels, "labels": _list_or_none(self.labels),
                "activation": self.activation}
        if self.pooling != "cls":
            spec["pooling"] = self.pooling
        if self.norm is not None:
            spec["norm"] = True
        return spec


class TokenClassifier(nnx.Module):
    """Per-token classifier, optionally behind `dense → activation (→ norm)` (ModernBERT's
    prediction head). Returns logits `[batch, seq, num_labels]`.

    Args:
      config: the encoder's architecture.
      num_labels: number of classes; defaults to `len(labels)`.
      labels: optional class names in logit order (a static tuple, as `SequenceClassifier`).
      activation: None (the classifier reads the hidden states), or one of
        `CLASSIFIER_ACTIVATIONS` after a `dense` layer (bias per `config.classifier_bias`).
      norm: a LayerNorm after the activation (needs `activation`).
      rngs: initialisation randomness.
    """

    kind = "token_classification"

    def __init__(self, config: EncoderConfig, num_labels: int | None = None, *,
                 labels: Sequence[str] | None = None, activation: str | None = None,
                 norm: bool = False, rngs: nnx.Rngs):
        num_labels = _num_labels(num_labels, labels)
        if activation is not None and activation not in CLASSIFIER_ACTIVATIONS:
            raise ValueError(f"{activation=} is not one of {CLASSIFIER_ACTIVATIONS} or None")
        if norm and activation is None:
            raise ValueError("norm=True needs the dense layer: pass an activation")
        self.dense = None if activation is None else GemmSite(
            config.hidden_size, config.hidden_size, site="pooler", use_bias=config.classifier_bias,
            rngs=rngs)
        self.norm = _head_norm(config) if norm else None
        self.classifier = GemmSite(config.hidden_size, num_labels, site="classifier", rngs=rngs)
        self.num_labels = num_labels
        self.labels = check_labels(labels, num_labels)
        self.activation = activation

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
        hidden = hidden.astype(jnp.float32)
        if self.dense is not None:
            hidden = self.dense(hidden, activation=self.activation)
        return self.classifier(hidden if self.norm is None else self.norm(hidden))

    def spec(self) -> dict[str, Any]:
        """What `make_head` needs to rebuild this head (JSON); the dense transform only when
        the head has one."""
        spec = {"num_labels": self.num_labels, "labels": _list_or_none(self.labels)}
        if self.activation is not None:
            spec["activation"] = self.activation
        if self.norm is not None:
            spec["norm"] = True
        return spec


def _head_norm(config: EncoderConfig) -> LayerNorm:
    """A head's float32 LayerNorm, as the encoder's (`layer_norm_eps`, `norm_bias`)."""
    return LayerNorm(config.hidden_size, eps=config.layer_norm_eps, use_bias=config.norm_bias)


class SentenceEmbedder(nnx.Module):
    """sentence-transformers' Pooling (+ Normalize). Returns `[batch, hidden * len(pooling)]`.

    Args:
      pooling: the modes (`POOLING_MODES`), concatenated in the order given: 'cls' (the first
        real token), 'max' (padding excluded), 'mean', 'mean_sqrt_len' (sum over sqrt(token
        count)), 'weightedmean' (position-weighted mean), 'lasttoken' (the last real token).
        A string is one mode.
      normalize: L2-normalise the result (sentence-transformers' Normalize module).
    """

    kind = "sentence_embedding"

    def __init__(self, pooling: str | Sequence[str] = ("mean",), *, normalize: bool = True):
        modes = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        unknown = [m for m in modes if m not in POOLING_MODES]
        if not modes or unknown or len(set(modes)) != len(modes):
            raise ValueError(f"pooling={pooling!r}: modes must be distinct names from "
                             f"{POOLING_MODES}")
        self.pooling = modes
        self.normalize = bool(normalize)

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
        hidden = hidden.astype(jnp.float32)
        mask = attention_mask.astype(jnp.float32)[..., None]  # [batch, seq, 1]
        count = jnp.maximum(jnp.sum(mask, axis=1), TOKEN_COUNT_FLOOR)
        summed = jnp.sum(hidden * mask, axis=1)
        parts = []
        for mode in self.pooling:
            if mode == "cls":  # the first real token: position 0 unless left-padded
                first = jnp.argmax(mask[..., 0], axis=1)
                parts.append(jnp.take_along_axis(hidden, first[:, None, None], axis=1)[:, 0])
            elif mode == "max":
                parts.append(jnp.max(jnp.where(mask > 0, hidden, MASKED_MAX), axis=1))
            elif mode == "mean":
                parts.append(summed / count)
            elif mode == "mean_sqrt_len":
                parts.append(summed / jnp.sqrt(count))
            elif mode == "weightedmean":
                weights = mask * jnp.arange(1, hidden.shape[1] + 1, dtype=jnp.float32)[None, :, None]
                parts.append(jnp.sum(hidden * weights, axis=1)
                             / jnp.maximum(jnp.sum(weights, axis=1), TOKEN_COUNT_FLOOR))
            else:  # lasttoken: the last position whose mask is 1
                last = jnp.argmax(mask[..., 0] * jnp.arange(1, hidden.shape[1] + 1), axis=1)
                parts.append(jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0])
        pooled = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
        if not self.normalize:
            return pooled
        norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
        return pooled / jnp.maximum(norm, NORM_FLOOR)

    def spec(self) -> dict[str, Any]:
        """What `make_head` needs to rebuild this head (JSON)."""
        return {"pooling": list(self.pooling), "normalize": self.normalize}


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
    """Row-wise cosine similarity of two `[batch, dim]` embedding arrays (bi-encoder score)."""
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    dot = jnp.sum(a * b, axis=-1)
    return dot / jnp.maximum(jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1), NORM_FLOOR)


# ------------------------------------------------------------------------ head registry
HeadBuilder = Callable[..., nnx.Module]
HEADS: dict[str, HeadBuilder] = {}


def register_head(kind: str, build: HeadBuilder, *, replace: bool = False) -> None:
    """Registers a head kind, so `make_head`, `QuantizedModel.load` and `samp_jax.load` can
    build it.

    Args:
      kind: the name; the head's class must carry it as `kind` and have a `spec()` method
        returning the JSON-able keyword arguments that rebuild it.
      build: `build(config, *, rngs, **spec) -> head module`.
      replace: allow replacing a registered kind.
    """
    if not isinstance(kind, str) or not kind or kind == "none":
        raise ValueError(f"head kind must be a non-empty name other than 'none', got {kind!r}")
    if kind in HEADS and not replace:
        raise ValueError(f"head kind {kind!r} is already registered; pass replace=True")
    HEADS[kind] = build


register_head("sequence_classification", SequenceClassifier)
register_head("token_classification", TokenClassifier)
register_head("sentence_embedding", lambda config, *, rngs, **spec: SentenceEmbedder(**spec))
HEAD_KINDS = ("none", "sequence_classification", "token_classification", "sentence_embedding")


def head_kinds() -> tuple[str, ...]:
    """'none' and every registered head kind."""
    return ("none", *HEADS)


def make_head(kind: str, config: EncoderConfig, *, rngs: nnx.Rngs, **spec: Any) -> nnx.Module | None:
    """Builds a head by kind ('none' gives None) from its `spec()` keyword arguments.

    The built-in kinds take: `sequence_classification` num_labels / labels / activation;
    `token_classification` num_labels / labels; `sentence_embedding` pooling / normalize.

    Raises:
      ValueError: an unknown kind, or arguments the head refuses.
    """
    if kind == "none":
        return None
    if kind not in HEADS:
        raise ValueError(f"head {kind=} is not one of {head_kinds()}; register custom heads "
                         "with samp_jax.models.register_head")
    spec = {key: value for key, value in spec.items() if value is not None}
    try:
        return HEADS[kind](config, rngs=rngs, **spec)
    except TypeError as e:
        raise ValueError(f"head {kind!r} does not take {sorted(spec)}: {e}") from None


def head_spec(head: nnx.Module | None) -> dict[str, Any]:
    """`{"kind": ..., "spec": {...}}`: what rebuilds `head` through `make_head`.

    Raises:
      ValueError: the head's kind is not registered or it has no `spec()`, so nothing could
        load it back.
    """
    if head is None:
        return {"kind": "none", "spec": {}}
    kind = getattr(head, "kind", None)
    if kind not in HEADS or not callable(getattr(head, "spec", None)):
        raise ValueError(
            f"head {type(head).__name__} (kind={kind!r}) cannot be saved: give its class a "
            "`kind` name and a `spec()` method, and register it with "
            "samp_jax.models.register_head(kind, build) so it can be loaded back")
    return {"kind": kind, "spec": head.spec()}


class EncoderModel(nnx.Module):
    """Embeddings → encoder → head. With `head=None` it returns the last hidden state.

    Args:
      config: the architecture.
      head: a head module (`SequenceClassifier`, `TokenClassifier`, `SentenceEmbedder`, or any
        module called as `head(hidden, attention_mask)`), or None.
      dtype: compute dtype of embeddings and encoder (float32, float16 or bfloat16).
      param_dtype: storage dtype of the parameters.
      attention_impl: 'xla', 'cudnn' or None (cuDNN flash attention on GPU for 16-bit dtypes).
      tokenizer: the model's tokenizer, or None (`samp_jax.load` attaches the folder's).
      rngs: initialisation randomness.

    Attributes:
      tokenizer: a `Tokenizer` or None. A static attribute: it lives in the graphdef (hashed and
        compared by identity), never in the state, so `nnx.split`/`merge`/`clone`, `quantize`
        and jit keep the same object, and weight files never hold it (`save_pretrained` and
        `QuantizedModel.save` write it as tokenizer files).
    """

    def __init__(self, config: EncoderConfig, head: nnx.Module | None = None, *,
                 dtype=jnp.float32, param_dtype=jnp.float32,
                 attention_impl: AttentionImpl = None, tokenizer: Tokenizer | None = None,
                 rngs: nnx.Rngs):
        precision_of_dtype(dtype)  # raises unless float32, float16 or bfloat16
        self.config = config
        self.embeddings = Embeddings(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.encoder = Encoder(config, dtype=dtype, param_dtype=param_dtype,
                               attention_impl=attention_impl, rngs=rngs)
        self.head = head
        self.dtype = jnp.dtype(dtype)
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a samp_jax.Tokenizer, got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer

    @property
    def head_kind(self) -> str:
        return "none" if self.head is None else getattr(self.head, "kind", type(self.head).__name__)

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The head's class names (`head.labels`), or None."""
        return getattr(self.head, "labels", None)

    def encode(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
               token_type_ids: jax.Array | None = None) -> jax.Array:
        """Returns the last hidden state `[batch, seq, hidden]`.

        Inputs are checked as `__call__` checks them."""
        return self._hidden(*check_inputs(input_ids, attention_mask, token_type_ids,
                                          config=self.config))

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
                 token_type_ids: jax.Array | None = None) -> jax.Array:
        """Returns the head's output, or the last hidden state when there is no head.

        Shapes are always checked. Concrete inputs (a direct call, outside jit) are also
        checked on the host by `check_ids`: ids outside the vocabulary or token types outside
        the type table (which XLA's gather would clamp silently to the last row), a mask that is
        not 0/1, and a row with no real token are refused. Under jit the ids are tracers and
        are not checked: use `checked(model)` (checkify) there, or check with `check_ids`
        before the call.

        Raises:
          ValueError: bad shapes, or (concrete inputs) ids the model cannot embed.
        """
        input_ids, attention_mask, token_type_ids = check_inputs(
            input_ids, attention_mask, token_type_ids, config=self.config)
        hidden = self._hidden(input_ids, attention_mask, token_type_ids)
        return hidden if self.head is None else self.head(hidden, attention_mask)

    def _hidden(self, input_ids, attention_mask, token_type_ids):
        layers = self.encoder.layers
        x, x_q = self.embeddings.with_quantized(input_ids, token_type_ids, layers[0].qkv)
        return self.encoder(x, attention_mask, x_q=x_q)


def check_inputs(input_ids, attention_mask=None, token_type_ids=None, *,
                 config: EncoderConfig | None = None):
    """Checks shapes (static, so it also runs under jit) and fills in default mask and types.

    With `config`, concrete inputs (not tracers) are also checked against it by `check_ids`
    (the model's direct call passes its config).
    """
    concrete = all(_is_concrete(v) for v in (input_ids, attention_mask, token_type_ids))
    input_ids = jnp.asarray(input_ids)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {input_ids.shape}")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"empty batch: input_ids has shape {input_ids.shape}")
    if not jnp.issubdtype(input_ids.dtype, jnp.integer):
        raise ValueError(f"input_ids must be integers, got {input_ids.dtype}")
    if attention_mask is None:
        attention_mask = jnp.ones_like(input_ids)
    if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
    for name, value in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if jnp.shape(value) != input_ids.shape:
            raise ValueError(
                f"{name} has shape {jnp.shape(value)}, expected {input_ids.shape} like input_ids")
    attention_mask, token_type_ids = jnp.asarray(attention_mask), jnp.asarray(token_type_ids)
    if config is not None and concrete:
        check_ids(config, input_ids, attention_mask, token_type_ids)
    return input_ids, attention_mask, token_type_ids


# ------------------------------------------------------------------------ id checks
# XLA's gather clamps an out-of-range index to the last row instead of failing, so an id
# outside the vocabulary (10**6, -1, a larger tokenizer's ids) or a token type outside the type
# table would silently embed the wrong row. `_id_conditions` is the one definition of valid
# model inputs; `check_ids` evaluates it on the host (numpy) and raises, `id_checks` evaluates
# it on traced arrays as `checkify` checks.

def _id_conditions(config: EncoderConfig, input_ids, attention_mask, token_type_ids, *, xp,
                   allow_padding_rows: bool) -> list[tuple[str, Any, Any]]:
    """`(message template, values, bad [batch, seq] bool)` per condition, with `xp` numpy or
    jax.numpy. Templates take `row`, `position` and `value` (the first bad position).

    - `attention_mask` holds 0 (padding) and 1 (a real token) only;
    - every row has a real token, unless `allow_padding_rows` (batches filled with
      all-padding rows, as calibration and evaluation batches are);
    - at real positions, `input_ids` lie in `[0, vocab_size)` and, when the model has more than
      one token type, `token_type_ids` in `[0, type_vocab_size)` (with 0 or 1 types the model
      ignores them). Padded positions are never read into a real output and are not checked.
    """
    mask = attention_mask.astype(xp.int32) if attention_mask.dtype == bool else attention_mask
    real = mask == 1
    conditions = [("attention_mask row {row} position {position} is {value}, expected 0 "
                   "(padding) or 1 (a real token)", mask, (mask != 0) & (mask != 1))]
    if not allow_padding_rows:
        empty = ~xp.any(real, axis=1, keepdims=True) & (xp.arange(mask.shape[1]) == 0)[None]
        conditions.append(("attention_mask row {row} has no real token (all padding), expected "
                           "at least one 1 per row: the model's output for such a row is "
                           "meaningless (drop the row)", mask, empty))
    ranges = [("input_ids", input_ids, config.vocab_size, "vocab_size")]
    if config.type_vocab_size > 1:  # with 0 or 1 types the model ignores the ids
        ranges.append(("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size"))
    for name, values, size, field in ranges:
        conditions.append((
            f"{name} row {{row}} position {{position}} is {{value}}, outside the model's range "
            f"[0, {size}) ({field}={size}; for text input: does the tokenizer match the model?)",
            values, real & ((values < 0) | (values >= size))))
    return conditions


def check_ids(config: EncoderConfig, input_ids, attention_mask=None, token_type_ids=None, *,
              allow_padding_rows: bool = False, source: str | None = None) -> None:
    """Checks concrete model inputs on the host against the model's `config`.

    The one id check: the model's direct call, `samp_jax.compile`'s engine, `calibrate` and
    `evaluate` all use it (see `_id_conditions` for what is checked). Under jit use `id_checks`
    or `checked(model)` instead.

    Args:
      config: the model's `EncoderConfig` (`vocab_size`, `type_vocab_size`).
      input_ids, attention_mask, token_type_ids: `[batch, seq]` integer arrays (numpy or
        concrete jax); a missing mask means all real, missing types mean all 0.
      allow_padding_rows: accept rows with no real token (batch padding).
      source: prefixed to the message, e.g. 'calibration batch 3'.

    Raises:
      ValueError: naming the tensor, the first bad row and position, the value found and the
        range expected.
    """
    input_ids = np.asarray(input_ids)
    attention_mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask)
    token_type_ids = np.zeros_like(input_ids) if token_type_ids is None else np.asarray(token_type_ids)
    for template, values, bad in _id_conditions(config, input_ids, attention_mask, token_type_ids,
                                                xp=np, allow_padding_rows=allow_padding_rows):
        if bad.any():
            row, position = (int(i) for i in np.argwhere(bad)[0])
            message = template.format(row=row, position=position, value=values[row, position].item())
            count = int(bad.sum())
            if count > 1 and "position" in template:
                message += f" ({count} such positions)"
            raise ValueError(message if source is None else f"{source}: {message}")


def id_checks(config: EncoderConfig, input_ids, attention_mask, token_type_ids, *,
              allow_padding_rows: bool = False) -> None:
    """`check_ids` on traced arrays, as `jax.experimental.checkify` checks.

    Call it inside a function transformed by `checkify.checkify` (then jitted as you like); the
    error it returns names the first bad position, e.g. `err, out =
    jax.jit(checkify.checkify(f))(...); err.throw()`. `checked(model)` does all of this.
    """
    for template, values, bad in _id_conditions(config, input_ids, attention_mask, token_type_ids,
                                                xp=jnp, allow_padding_rows=allow_padding_rows):
        first = jnp.argmax(bad.ravel())
        row, position = first // bad.shape[1], first % bad.shape[1]
        checkify.check(~jnp.any(bad), template, row=row, position=position,
                       value=values.ravel()[first])


def checked(model, *, method: str | None = None) -> Callable[..., jax.Array]:
    """`model(...)` (or `model.<method>(...)`) compiled with its ids checked inside the program.

    Inside jit the ids are tracers and the direct call cannot check them on the host; this
    wraps the call in `jax.experimental.checkify` with `id_checks`, so a bad id raises
    (`checkify.JaxRuntimeError`, naming the tensor, row, position and value) instead of being
    clamped. The model's state is an argument of the compiled program (snapshot taken now).

    Args:
      model: an `EncoderModel` or `QuantizedModel` (anything with `.config` called as
        `model(input_ids, attention_mask, token_type_ids)`).
      method: e.g. 'encode'; None calls the model.

    Returns:
      `fn(input_ids, attention_mask=None, token_type_ids=None) -> output`, jitted (one
      compilation per input shape).
    """
    graphdef, state = nnx.split(model)
    config = model.config

    def call(state, input_ids, attention_mask, token_type_ids):
        input_ids, attention_mask, token_type_ids = check_inputs(
            input_ids, attention_mask, token_type_ids)
        id_checks(config, input_ids, attention_mask, token_type_ids)
        merged = nnx.merge(graphdef, state)
        fn = merged if method is None else getattr(merged, method)
        return fn(input_ids, attention_mask, token_type_ids)

    compiled = jax.jit(checkify.checkify(call))

    def run(input_ids, attention_mask=None, token_type_ids=None):
        error, out = compiled(state, input_ids, attention_mask, token_type_ids)
        error.throw()
        return out

    return run


def _is_concrete(value) -> bool:
    """Whether `value` can be read on the host now (None, numpy, or a non-traced jax array)."""
    if isinstance(value, jax.core.Tracer):
        return False
    return getattr(value, "is_fully_addressable", True)


def check_labels(labels: Sequence[str] | None, num_labels: int) -> tuple[str, ...] | None:
    """Class names as a tuple (hashable: heads keep them as static attributes), or None.

    Raises:
      ValueError: not one distinct, non-empty string per class.
    """
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a sequence of class names, got {labels!r:.80}")
    labels = tuple(labels)
    if len(labels) != num_labels:
        raise ValueError(f"{len(labels)} labels {labels!r:.80} for a head with {num_labels=}")
    bad = [name for name in labels if not isinstance(name, str) or not name]
    if bad:
        raise ValueError(f"labels must be non-empty strings, got {bad[0]!r} in {labels!r:.80}")
    if len(set(labels)) != len(labels):
        repeated = sorted({name for name in labels if labels.count(name) > 1})
        raise ValueError(f"labels must be distinct; {repeated} appear more than once")
    return labels


def _num_labels(num_labels: int | None, labels: Sequence[str] | None) -> int:
    if num_labels is None and labels is not None and not isinstance(labels, str):
        num_labels = len(labels)
    if num_labels is None:
        raise ValueError("a classification head needs num_labels or labels")
    if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 1:
        raise ValueError(f"{num_labels=} must be a positive integer")
    return num_labels


def _list_or_none(labels):
    return None if labels is None else list(labels)
