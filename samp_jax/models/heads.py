"""Target heads, declared as data: what each returns (`HeadKind`) and how to rebuild it.

Heads take the encoder's last hidden state and the attention mask:
- `SequenceClassifier`: dense + activation on the first token, then a classifier, as every
  family's `*ForSequenceClassification`; with pair input it is a cross-encoder.
- `TokenClassifier`: a per-token classifier, as `*ForTokenClassification`.
- `SentenceEmbedder`: sentence-transformers' pooling modes, its Dense projections (`DenseLayer`)
  and Normalize; two embeddings compared with `cosine_similarity` make a bi-encoder for text
  matching.
Each head class declares its kind (`kind = HeadKind(name, per_token=..., output=...)`) and its
output width (`output_width(config)`); kinds are registered (`register_head`), so saved folders
name their head, `make_head` rebuilds it, custom heads included, and the serving engine and the
search read what a head returns from its declaration instead of running it.
Heads compute in float32 whatever the encoder's dtype. Classification heads may carry their
class names (`labels`), which checkpoints, quantized folders and the engine's outputs keep.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from samp_jax.models.config import EncoderConfig
from samp_jax.models.cross_encoder import ACTIVATIONS as CROSS_ENCODER_ACTIVATIONS
from samp_jax.models.head_kinds import (
    NO_HEAD,
    SENTENCE_EMBEDDING,
    SEQUENCE_CLASSIFICATION,
    PROBLEM_TYPES,
    TOKEN_CLASSIFICATION,
    HeadKind,
    HeadOutput,
    Readout,
    check_label_threshold,
    check_relevant_class_id,
    unserved_problem_type,
)
from samp_jax.models.activations import HF_HEAD_ACTIVATION
from samp_jax.models.layers import GemmSite, LayerNorm
from samp_jax.core.registry import check_free
from samp_jax.models.similarity import DEFAULT_SIMILARITY, NORM_FLOOR, check_similarity

# sentence-transformers clamps the token count at 1e-9, so an all-padding row pools to zeros.
TOKEN_COUNT_FLOOR = 1e-9
MASKED_MAX = -1e9  # what sentence-transformers' max pooling puts in padded positions
# sentence-transformers' pooling modes (the order its 2-4 folders concatenate them in).
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")
CLASSIFIER_ACTIVATIONS = tuple(HF_HEAD_ACTIVATION)  # every activation a head may run
# The activations of a sentence-transformers Dense projection (torch's Identity, Tanh, ReLU,
# GELU (erf) and Sigmoid).
DENSE_ACTIVATIONS = ("identity", "tanh", "relu", "gelu", "sigmoid")
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
      problem_type: HF's `problem_type` the head is trained for (`PROBLEM_TYPES`), which
        decides how its logits are read (`readout`); None: not set (read as HF's pipelines
        read it: a score for one output, else one class per row). A static attribute, like
        `labels`.
      cross_encoder_activation: for a sentence-transformers CrossEncoder, the activation its
        `predict` applies to the logits (a name of `samp_jax.models.cross_encoder.ACTIVATIONS`),
        which `samp-jax predict` applies too; None: not a CrossEncoder. It changes nothing
        the model computes. A static attribute.
      label_threshold: for a multi-label head (`problem_type` multi_label_classification), the
        sigmoid at which its label sets are read when no threshold is given (the engine's,
        `samp-jax predict`'s and `eval`'s default; the one a search or fine-tune measured);
        None: `LABEL_THRESHOLD`. It changes nothing the model computes. A static attribute.
      relevant_class: for a head of two classes read as a ranking, the class (0 or 1) whose
        probability ranks the rows, as a fine-tune told it trained the head (`samp-jax
        finetune --relevant-class`): the class the commands read by default
        (`Task.relevant_class`); None: not said (class 1). It changes nothing the model
        computes. A static attribute.
      rngs: initialisation randomness.

    The dense layer has a bias unless `config.classifier_bias` is False.
    """

    kind = SEQUENCE_CLASSIFICATION

    def __init__(self, config: EncoderConfig, num_labels: int | None = None, *,
                 labels: Sequence[str] | None = None, activation: str = "tanh",
                 pooling: str = "cls", norm: bool = False, problem_type: str | None = None,
                 cross_encoder_activation: str | None = None,
                 label_threshold: float | None = None, relevant_class: int | None = None,
                 rngs: nnx.Rngs):
        num_labels = _num_labels(num_labels, labels)
        validate_problem_type(problem_type, num_labels)
        if label_threshold is not None:
            label_threshold = check_label_threshold(label_threshold)
            if PROBLEM_TYPES.get(problem_type) is not Readout.LABELS:
                raise ValueError(f"{label_threshold=} is for a multi-label head (problem_type "
                                 f"'multi_label_classification'), not {problem_type=}")
        if relevant_class is not None:
            relevant_class = check_relevant_class_id(relevant_class)
            if num_labels != 2 or PROBLEM_TYPES.get(problem_type, Readout.CLASSES) is not Readout.CLASSES:
                raise ValueError(f"{relevant_class=} names a class of a head of two classes, not "
                                 f"of {num_labels=}, {problem_type=}")
        if cross_encoder_activation is not None and cross_encoder_activation not in CROSS_ENCODER_ACTIVATIONS:
            raise ValueError(f"{cross_encoder_activation=} is not one of "
                             f"{tuple(CROSS_ENCODER_ACTIVATIONS)} or None")
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
        self.problem_type = problem_type
        self.cross_encoder_activation = cross_encoder_activation
        self.label_threshold = label_threshold
        self.relevant_class = relevant_class

    @property
    def readout(self) -> Readout:
        """How the logits are read: one output is a score; else the problem type's reading
        (one class per row when none is set)."""
        if self.num_labels == 1:
            return Readout.SCORE
        return PROBLEM_TYPES.get(self.problem_type, Readout.CLASSES)

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
        """What `make_head` needs to rebuild this head (JSON); the pooling, the norm, the
        problem type, the CrossEncoder activation, the label threshold and the relevant class
        only when they differ from the defaults."""
        spec = {"num_labels": self.num_labels, "labels": _list_or_none(self.labels),
                "activation": self.activation}
        if self.pooling != "cls":
            spec["pooling"] = self.pooling
        if self.norm is not None:
            spec["norm"] = True
        if self.problem_type is not None:
            spec["problem_type"] = self.problem_type
        if self.cross_encoder_activation is not None:
            spec["cross_encoder_activation"] = self.cross_encoder_activation
        if self.label_threshold is not None:
            spec["label_threshold"] = self.label_threshold
        if self.relevant_class is not None:
            spec["relevant_class"] = self.relevant_class
        return spec

    def output_width(self, config: EncoderConfig) -> int:
        return self.num_labels


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

    kind = TOKEN_CLASSIFICATION

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

    def output_width(self, config: EncoderConfig) -> int:
        return self.num_labels

    @property
    def readout(self) -> Readout:
        """One class per token (a softmax)."""
        return Readout.CLASSES


def _head_norm(config: EncoderConfig) -> LayerNorm:
    """A head's float32 LayerNorm, as the encoder's (`layer_norm_eps`, `norm_bias`)."""
    return LayerNorm(config.hidden_size, eps=config.layer_norm_eps, use_bias=config.norm_bias)


@dataclasses.dataclass(frozen=True)
class DenseLayer:
    """One sentence-transformers Dense projection: `activation(x @ W + b)`, `[.., in] → [.., out]`.

    Attributes:
      in_features: the width it reads (the pooled width, or the previous projection's output).
      out_features: the width it writes.
      bias: whether it adds a bias.
      activation: one of `DENSE_ACTIVATIONS` (sentence-transformers' default is tanh).
    """

    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "tanh"

    def __post_init__(self):
        for name in ("in_features", "out_features"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Dense {name}={value!r} must be a positive integer")
        if not isinstance(self.bias, bool):
            raise ValueError(f"Dense bias={self.bias!r} must be true or false")
        if self.activation not in DENSE_ACTIVATIONS:
            raise ValueError(f"Dense activation={self.activation!r} is not one of {DENSE_ACTIVATIONS}")

    @classmethod
    def of(cls, layer: "DenseLayer | dict[str, Any]") -> "DenseLayer":
        """`layer` itself, or the layer its `spec()` dict describes."""
        if isinstance(layer, DenseLayer):
            return layer
        if not isinstance(layer, dict):
            raise ValueError(f"a Dense layer must be a DenseLayer or its spec dict, got {layer!r:.80}")
        return cls(**layer)

    def spec(self) -> dict[str, Any]:
        """The layer as JSON (what `DenseLayer.of` reads back)."""
        return dataclasses.asdict(self)


class SentenceEmbedder(nnx.Module):
    """sentence-transformers' Pooling (→ Dense ...) (→ Normalize), in that order. Returns
    `[batch, width]`: `hidden * len(pooling)`, or the last Dense layer's `out_features`.

    Args:
      pooling: the modes (`POOLING_MODES`), concatenated in the order given: 'cls' (the first
        real token), 'max' (padding excluded), 'mean', 'mean_sqrt_len' (sum over sqrt(token
        count)), 'weightedmean' (position-weighted mean), 'lasttoken' (the last real token).
        A string is one mode.
      normalize: L2-normalise the result (sentence-transformers' Normalize module).
      dense: the Dense projections after pooling, in order (`DenseLayer`s or their `spec()`
        dicts); each reads the previous one's width. Float32 `GemmSite`s named `dense`: like
        the other heads' layers they are not precision-map sites.
      rngs: initialisation randomness; needed only with `dense`.
      similarity: how two of its embeddings are compared (`samp_jax.models.similarity`:
        sentence-transformers' `similarity_fn_name`, 'cosine' unless the folder says 'dot',
        'euclidean' or 'manhattan'): the pair score an evaluation ranks.
    """

    kind = SENTENCE_EMBEDDING

    def __init__(self, pooling: str | Sequence[str] = ("mean",), *, normalize: bool = True,
                 dense: Sequence[DenseLayer | dict[str, Any]] = (), rngs: nnx.Rngs | None = None,
                 similarity: str = DEFAULT_SIMILARITY):
        modes = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        unknown = [m for m in modes if m not in POOLING_MODES]
        if not modes or unknown or len(set(modes)) != len(modes):
            raise ValueError(f"pooling={pooling!r}: modes must be distinct names from "
                             f"{POOLING_MODES}")
        layers = tuple(DenseLayer.of(layer) for layer in dense)
        for index, (before, layer) in enumerate(zip(layers, layers[1:]), start=1):
            if layer.in_features != before.out_features:
                raise ValueError(f"Dense layer {index} has in_features={layer.in_features}, expected "
                                 f"{before.out_features} (layer {index - 1}'s out_features)")
        if layers and rngs is None:
            raise ValueError("a SentenceEmbedder with Dense layers needs rngs= to initialise them")
        self.pooling = modes
        self.normalize = bool(normalize)
        self.similarity = check_similarity(similarity)
        self.dense_layers = layers
        self.dense = nnx.List([GemmSite(layer.in_features, layer.out_features, site="dense",
                                        use_bias=layer.bias, rngs=rngs) for layer in layers])

    def __call__(self, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
        pooled = self.pool(hidden, attention_mask)
        for layer, site in zip(self.dense_layers, self.dense):
            pooled = _dense(site, layer.activation, pooled)
        if not self.normalize:
            return pooled
        norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
        return pooled / jnp.maximum(norm, NORM_FLOOR)

    def pool(self, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """The pooling modes alone, concatenated: `[batch, hidden * len(pooling)]` in float32."""
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
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)

    def spec(self) -> dict[str, Any]:
        """What `make_head` needs to rebuild this head (JSON); the Dense layers only when it
        has some."""
        spec = {"pooling": list(self.pooling), "normalize": self.normalize}
        if self.dense_layers:
            spec["dense"] = [layer.spec() for layer in self.dense_layers]
        if self.similarity != DEFAULT_SIMILARITY:
            spec["similarity"] = self.similarity
        return spec

    def pooled_width(self, config: EncoderConfig) -> int:
        """The width pooling gives (what the first Dense layer reads)."""
        return config.hidden_size * len(self.pooling)

    def output_width(self, config: EncoderConfig) -> int:
        return self.dense_layers[-1].out_features if self.dense_layers else self.pooled_width(config)


def _dense(site: GemmSite, activation: str, x: jax.Array) -> jax.Array:
    """One Dense projection in float32; sigmoid, which the GEMM epilogue does not have, after it."""
    epilogue = {"identity": None, "sigmoid": None}.get(activation, activation)
    y = site(x, activation=epilogue)
    return jax.nn.sigmoid(y) if activation == "sigmoid" else y


def _sentence_embedder(config: EncoderConfig, *, rngs: nnx.Rngs, **spec) -> SentenceEmbedder:
    """`make_head`'s builder: a `SentenceEmbedder` whose first Dense layer reads the pooled width."""
    head = SentenceEmbedder(**spec, rngs=rngs)
    if head.dense_layers and head.dense_layers[0].in_features != head.pooled_width(config):
        raise ValueError(f"Dense layer 0 has in_features={head.dense_layers[0].in_features}, "
                         f"expected {head.pooled_width(config)} (hidden_size {config.hidden_size} × "
                         f"{len(head.pooling)} pooling modes {list(head.pooling)})")
    return head


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
    """Row-wise cosine similarity of two `[batch, dim]` embedding arrays (bi-encoder score)."""
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    dot = jnp.sum(a * b, axis=-1)
    return dot / jnp.maximum(jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1), NORM_FLOOR)


# ------------------------------------------------------------------------ head registry
HeadBuilder = Callable[..., nnx.Module]


@dataclasses.dataclass(frozen=True)
class RegisteredHead:
    """A registered head kind: its declaration and how to build it."""

    kind: HeadKind
    build: HeadBuilder


HEADS: dict[str, RegisteredHead] = {}


def register_head(kind: HeadKind | str, build: HeadBuilder, *, per_token: bool | None = None,
                  output: HeadOutput = HeadOutput.OTHER, replace: bool = False) -> HeadKind:
    """Registers a head kind, so `make_head`, `QuantizedModel.load` and `samp_jax.load` can
    build it, and the engine and the search know what it returns.

    Args:
      kind: its `HeadKind` declaration, or its name with `per_token` (and `output`) given.
        The head's class must carry it (or its name) as `kind` and have a `spec()` method
        returning the JSON-able keyword arguments that rebuild it.
      build: `build(config, *, rngs, **spec) -> head module`.
      per_token: with a name: whether the output follows the sequence axis.
      output: with a name: what the output holds.
      replace: allow replacing a registered kind.

    Returns:
      The registered `HeadKind`.
    """
    if isinstance(kind, str):
        if per_token is None:
            raise ValueError(f"register_head({kind!r}, ...) needs per_token=True (the output follows "
                             "the sequence axis) or False (one row per sequence), or a HeadKind")
        kind = HeadKind(kind, per_token=per_token, output=output)
    elif not isinstance(kind, HeadKind):
        raise TypeError(f"kind must be a HeadKind or a name, got {kind!r}")
    if kind.name == NO_HEAD.name:
        raise ValueError(f"head kind must be a name other than {NO_HEAD.name!r}")
    check_free(HEADS, kind.name, f"head kind {kind.name!r}", replace=replace)
    HEADS[kind.name] = RegisteredHead(kind, build)
    return kind


register_head(SEQUENCE_CLASSIFICATION, SequenceClassifier)
register_head(TOKEN_CLASSIFICATION, TokenClassifier)
register_head(SENTENCE_EMBEDDING, _sentence_embedder)
HEAD_KINDS = tuple(k.name for k in (NO_HEAD, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION,
                                    SENTENCE_EMBEDDING))


def head_kinds() -> tuple[str, ...]:
    """'none' and every registered head kind."""
    return (NO_HEAD.name, *HEADS)


def get_head_kind(name: str) -> HeadKind:
    """The declaration of head kind `name` ('none' or a registered kind).

    Raises:
      ValueError: an unknown kind.
    """
    if name == NO_HEAD.name:
        return NO_HEAD
    if name not in HEADS:
        raise ValueError(f"head kind {name!r} is not one of {head_kinds()}; register custom heads "
                         "with samp_jax.models.register_head")
    return HEADS[name].kind


def declared_kind(head: nnx.Module | None) -> HeadKind | None:
    """What `head` declares: its class's `kind` (a `HeadKind`, or the name of a registered
    one); `NO_HEAD` for None; None when it declares nothing known."""
    if head is None:
        return NO_HEAD
    kind = getattr(head, "kind", None)
    if isinstance(kind, HeadKind):
        return kind
    if isinstance(kind, str) and kind in HEADS:
        return HEADS[kind].kind
    return None


def make_head(kind: str, config: EncoderConfig, *, rngs: nnx.Rngs, **spec: Any) -> nnx.Module | None:
    """Builds a head by kind ('none' gives None) from its `spec()` keyword arguments.

    The built-in kinds take: `sequence_classification` num_labels / labels / activation;
    `token_classification` num_labels / labels; `sentence_embedding` pooling / normalize / dense /
    similarity.

    Raises:
      ValueError: an unknown kind, or arguments the head refuses.
    """
    if kind == NO_HEAD.name:
        return None
    if kind not in HEADS:
        raise ValueError(f"head {kind=} is not one of {head_kinds()}; register custom heads "
                         "with samp_jax.models.register_head")
    spec = {key: value for key, value in spec.items() if value is not None}
    try:
        return HEADS[kind].build(config, rngs=rngs, **spec)
    except TypeError as e:
        raise ValueError(f"head {kind!r} does not take {sorted(spec)}: {e}") from None


def head_spec(head: nnx.Module | None) -> dict[str, Any]:
    """`{"kind": ..., "spec": {...}}`: what rebuilds `head` through `make_head`.

    Raises:
      ValueError: the head's kind is not registered or it has no `spec()`, so nothing could
        load it back.
    """
    if head is None:
        return {"kind": NO_HEAD.name, "spec": {}}
    kind = kind_name(head)
    if kind not in HEADS or not callable(getattr(head, "spec", None)):
        raise ValueError(
            f"head {type(head).__name__} (kind={kind!r}) cannot be saved: give its class a "
            "`kind` (a HeadKind) and a `spec()` method, and register it with "
            "samp_jax.models.register_head(kind, build) so it can be loaded back")
    return {"kind": kind, "spec": head.spec()}


def kind_name(head: nnx.Module) -> str:
    """The head's kind name: its `kind` (a `HeadKind` or a name), else its class name."""
    kind = getattr(head, "kind", None)
    if isinstance(kind, HeadKind):
        return kind.name
    return kind if isinstance(kind, str) else type(head).__name__



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


def validate_problem_type(problem_type: str | None, num_labels: int) -> None:
    """Raises ValueError for a problem type a sequence head of `num_labels` outputs cannot be
    read by: an unknown one, or a regression of several outputs."""
    why = unserved_problem_type(problem_type, num_labels)
    if why is not None:
        raise ValueError(why)


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
