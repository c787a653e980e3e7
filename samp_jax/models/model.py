"""The full model: embeddings → encoder → an optional, replaceable target head.

Heads take the encoder's last hidden state and the attention mask:
- `SequenceClassifier`: pooler (dense + tanh on [CLS]) and a classifier, as HF
  `BertForSequenceClassification`; with pair input it is a cross-encoder for text matching.
- `TokenClassifier`: a per-token classifier, as HF `BertForTokenClassification`.
- `SentenceEmbedder`: masked mean pooling and L2 normalisation, as sentence-transformers; two
  embeddings compared with `cosine_similarity` make a bi-encoder for text matching.
Heads compute in float32 whatever the encoder's dtype. Classification heads may carry their
class names (`labels`), which checkpoints, quantized folders and the engine's outputs keep.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from samp_jax.models.config import EncoderConfig
from samp_jax.models.layers import AttentionImpl, Embeddings, Encoder, GemmSite
from samp_jax.models.tokenizer import Tokenizer
from samp_jax.quant.precision import precision_of_dtype

HEAD_KINDS = ("none", "sequence_classification", "token_classification", "sentence_embedding")
# sentence-transformers clamps the token count at 1e-9, so an all-padding row pools to zeros.
TOKEN_COUNT_FLOOR = 1e-9
NORM_FLOOR = 1e-12  # the smallest norm divided by (L2 normalisation, cosine): zero stays zero


class SequenceClassifier(nnx.Module):
    """Pooler + classifier on the [CLS] token. Returns logits `[batch, num_labels]`.

    Args:
      config: the encoder's architecture.
      num_labels: number of classes.
      labels: optional class names, one per class in logit order (`labels[i]` names logit
        `i`). Kept as a tuple: a static attribute, so the graphdef stays hashable.
      rngs: initialisation randomness.
    """

    kind = "sequence_classification"

    def __init__(self, config: EncoderConfig, num_labels: int, *,
                 labels: Sequence[str] | None = None, rngs: nnx.Rngs):
        _check_num_labels(num_labels)
        self.pooler = GemmSite(config.hidden_size, config.hidden_size, site="pooler", rngs=rngs)
        self.classifier = GemmSite(config.hidden_size, num_labels, site="classifier", rngs=rngs)
        self.num_labels = num_labels
        self.labels = check_labels(labels, num_labels)

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
        pooled = self.pooler(hidden[:, 0].astype(jnp.float32), activation="tanh")
        return self.classifier(pooled)


class TokenClassifier(nnx.Module):
    """Per-token classifier. Returns logits `[batch, seq, num_labels]`.

    Args:
      config: the encoder's architecture.
      num_labels: number of classes.
      labels: optional class names in logit order (a static tuple, as `SequenceClassifier`).
      rngs: initialisation randomness.
    """

    kind = "token_classification"

    def __init__(self, config: EncoderConfig, num_labels: int, *,
                 labels: Sequence[str] | None = None, rngs: nnx.Rngs):
        _check_num_labels(num_labels)
        self.classifier = GemmSite(config.hidden_size, num_labels, site="classifier", rngs=rngs)
        self.num_labels = num_labels
        self.labels = check_labels(labels, num_labels)

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
        return self.classifier(hidden.astype(jnp.float32))


class SentenceEmbedder(nnx.Module):
    """Masked mean pooling, then (by default) L2 normalisation. Returns `[batch, hidden]`."""

    kind = "sentence_embedding"

    def __init__(self, *, normalize: bool = True):
        self.normalize = normalize

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
        mask = attention_mask.astype(jnp.float32)[..., None]  # [batch, seq, 1]
        summed = jnp.sum(hidden.astype(jnp.float32) * mask, axis=1)
        pooled = summed / jnp.maximum(jnp.sum(mask, axis=1), TOKEN_COUNT_FLOOR)
        if not self.normalize:
            return pooled
        norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
        return pooled / jnp.maximum(norm, NORM_FLOOR)


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
    """Row-wise cosine similarity of two `[batch, dim]` embedding arrays (bi-encoder score)."""
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    dot = jnp.sum(a * b, axis=-1)
    return dot / jnp.maximum(jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1), NORM_FLOOR)


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
        x, x_q = self.embeddings.with_quantized(input_ids, token_type_ids,
                                                layers[0].qkv if len(layers) else None)
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


def make_head(kind: str, config: EncoderConfig, *, num_labels: int | None = None,
              labels: Sequence[str] | None = None, normalize: bool = True,
              rngs: nnx.Rngs) -> nnx.Module | None:
    """Builds a head by name: one of `HEAD_KINDS`.

    Args:
      kind: the head kind.
      config: the encoder's architecture.
      num_labels: classifier width (classification heads); defaults to `len(labels)`.
      labels: class names (classification heads), in logit order.
      normalize: L2-normalise the pooled embedding ('sentence_embedding').
      rngs: initialisation randomness.
    """
    if kind == "none":
        return None
    if kind == "sentence_embedding":
        return SentenceEmbedder(normalize=normalize)
    if kind in ("sequence_classification", "token_classification"):
        if num_labels is None and labels is not None:
            num_labels = len(labels)
        if num_labels is None:
            raise ValueError(f"head {kind!r} needs num_labels")
        cls = SequenceClassifier if kind == "sequence_classification" else TokenClassifier
        return cls(config, num_labels, labels=labels, rngs=rngs)
    raise ValueError(f"head {kind=} is not one of {HEAD_KINDS}")


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


def _check_num_labels(num_labels: int) -> None:
    if not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"{num_labels=} must be a positive integer")
