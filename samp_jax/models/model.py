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
from flax import nnx

from samp_jax.models.config import EncoderConfig
from samp_jax.models.layers import AttentionImpl, Embeddings, Encoder, GemmSite
from samp_jax.models.tokenizer import Tokenizer
from samp_jax.quant.precision import precision_of_dtype

# sentence-transformers clamps the token count at 1e-9, so an all-padding row pools to zeros.
TOKEN_COUNT_FLOOR = 1e-9
NORM_FLOOR = 1e-12  # the smallest norm divided by (L2 normalisation, cosine): zero stays zero
MASKED_MAX = -1e9  # what sentence-transformers' max pooling puts in padded positions
# sentence-transformers' pooling modes (the order its 2-4 folders concatenate them in).
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")
CLASSIFIER_ACTIVATIONS = ("tanh", "gelu", "gelu_tanh", "relu")


class SequenceClassifier(nnx.Module):
    """`dense → activation → classifier` on the first token. Returns logits `[batch, num_labels]`.

    One module serves every family's sequence head: BERT's pooler + classifier (tanh),
    RoBERTa's / XLM-R's / MPNet's `classifier.dense` + `out_proj` (tanh), ELECTRA's (exact
    GELU) and DistilBERT's `pre_classifier` + `classifier` (ReLU). With pair input it is a
    cross-encoder for text matching.

    Args:
      config: the encoder's architecture.
      num_labels: number of classes; defaults to `len(labels)`.
      labels: optional class names, one per class in logit order (`labels[i]` names logit
        `i`). Kept as a tuple: a static attribute, so the graphdef stays hashable.
      activation: the hidden activation, one of `CLASSIFIER_ACTIVATIONS`.
      rngs: initialisation randomness.
    """

    kind = "sequence_classification"

    def __init__(self, config: EncoderConfig, num_labels: int | None = None, *,
                 labels: Sequence[str] | None = None, activation: str = "tanh", rngs: nnx.Rngs):
        num_labels = _num_labels(num_labels, labels)
        if activation not in CLASSIFIER_ACTIVATIONS:
            raise ValueError(f"{activation=} is not one of {CLASSIFIER_ACTIVATIONS}")
        self.pooler = GemmSite(config.hidden_size, config.hidden_size, site="pooler", rngs=rngs)
        self.classifier = GemmSite(config.hidden_size, num_labels, site="classifier", rngs=rngs)
        self.num_labels = num_labels
        self.labels = check_labels(labels, num_labels)
        self.activation = activation

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
        pooled = self.pooler(hidden[:, 0].astype(jnp.float32), activation=self.activation)
        return self.classifier(pooled)

    def spec(self) -> dict[str, Any]:
        """What `make_head` needs to rebuild this head (JSON)."""
        return {"num_labels": self.num_labels, "labels": _list_or_none(self.labels),
                "activation": self.activation}


class TokenClassifier(nnx.Module):
    """Per-token classifier. Returns logits `[batch, seq, num_labels]`.

    Args:
      config: the encoder's architecture.
      num_labels: number of classes; defaults to `len(labels)`.
      labels: optional class names in logit order (a static tuple, as `SequenceClassifier`).
      rngs: initialisation randomness.
    """

    kind = "token_classification"

    def __init__(self, config: EncoderConfig, num_labels: int | None = None, *,
                 labels: Sequence[str] | None = None, rngs: nnx.Rngs):
        num_labels = _num_labels(num_labels, labels)
        self.classifier = GemmSite(config.hidden_size, num_labels, site="classifier", rngs=rngs)
        self.num_labels = num_labels
        self.labels = check_labels(labels, num_labels)

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
        return self.classifier(hidden.astype(jnp.float32))

    def spec(self) -> dict[str, Any]:
        """What `make_head` needs to rebuild this head (JSON)."""
        return {"num_labels": self.num_labels, "labels": _list_or_none(self.labels)}


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
        """Returns the last hidden state `[batch, seq, hidden]`."""
        return self._hidden(*check_inputs(input_ids, attention_mask, token_type_ids))

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
                 token_type_ids: jax.Array | None = None) -> jax.Array:
        """Returns the head's output, or the last hidden state when there is no head."""
        input_ids, attention_mask, token_type_ids = check_inputs(
            input_ids, attention_mask, token_type_ids)
        hidden = self._hidden(input_ids, attention_mask, token_type_ids)
        return hidden if self.head is None else self.head(hidden, attention_mask)

    def _hidden(self, input_ids, attention_mask, token_type_ids):
        layers = self.encoder.layers
        x, x_q = self.embeddings.with_quantized(input_ids, token_type_ids, layers[0].qkv)
        return self.encoder(x, attention_mask, x_q=x_q)


def check_inputs(input_ids, attention_mask=None, token_type_ids=None):
    """Checks shapes (static, so it also runs under jit) and fills in default mask and types."""
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
    return input_ids, jnp.asarray(attention_mask), jnp.asarray(token_type_ids)


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
