"""What a model family is: data that maps an HF checkpoint onto samp-jax's modules.

A `Family` says, for one HF `model_type`:
- how its `config.json` keys map onto `EncoderConfig` fields (`config_keys`), which fields the
  family fixes (`config_fixed`) or derives (`config_derived`), and HF's defaults;
- how its checkpoint keys map onto our parameters: a table of `KeyRule`s (foreign key
  template → our parameter path, with a named `Transform`), for the backbone and per head;
- which foreign keys no samp-jax module uses (pre-training heads, buffers);
- its HF class names, so exported folders load in HF transformers.

`samp_jax.models.checkpoint` is one generic loop over these tables; nothing else in the model
code branches on the family.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from samp_jax.models.activations import HEAD_ACTIVATIONS
from samp_jax.models.errors import ConfigError
from samp_jax.models.head_kinds import NO_HEAD


@dataclasses.dataclass(frozen=True)
class Transform:
    """How foreign tensors become one of our parameters, and back.

    `combine(*foreign) -> ours`; `split(ours) -> tuple of foreign tensors` (its inverse);
    `split_shape(our shape) -> tuple of foreign shapes`: what `split` gives, computed from the
    shape alone (the shapes a checkpoint must hold, known before any array exists: a config
    that asks for huge tables allocates nothing). Without `split_shape`, `split` of a
    zero-strided view gives them.
    """

    combine: Callable[..., np.ndarray]
    split: Callable[[np.ndarray], tuple[np.ndarray, ...]]
    split_shape: Callable[[tuple[int, ...]], tuple[tuple[int, ...], ...]] | None = None

    def source_shapes(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """The shapes of the foreign tensors that make a parameter of `shape`."""
        if self.split_shape is not None:
            return tuple(tuple(part) for part in self.split_shape(tuple(shape)))
        view = np.broadcast_to(np.zeros((), np.float32), shape)  # no memory for any shape
        return tuple(part.shape for part in self.split(view))


TRANSFORMS: dict[str, Transform] = {
    # the same tensor
    "copy": Transform(lambda w: w, lambda w: (w,), lambda s: (s,)),
    # torch Linear weight [out, in] -> our kernel [in, out]
    "linear": Transform(lambda w: w.T, lambda k: (k.T,), lambda s: (s[::-1],)),
    # three Linear weights (query, key, value) -> one fused [in, 3 * out] kernel
    "linear_qkv": Transform(lambda q, k, v: np.concatenate([q.T, k.T, v.T], axis=1),
                            lambda w: tuple(part.T for part in np.split(w, 3, axis=1)),
                            lambda s: ((s[1] // 3, s[0]),) * 3),
    # three biases -> one fused [3 * out] bias
    "concat_qkv": Transform(lambda q, k, v: np.concatenate([q, k, v]),
                            lambda b: tuple(np.split(b, 3)), lambda s: ((s[0] // 3,),) * 3),
}


# HF task classes samp-jax runs no head for (class-name suffix -> what the head does); their
# checkpoints load as an encoder only with `strict=False`.
UNSERVED_HEADS = {"ForQuestionAnswering": "extractive question answering",
                  "ForMultipleChoice": "multiple choice",
                  "ForNextSentencePrediction": "next-sentence prediction"}

def unserved_head_hint(architectures) -> str | None:
    """What to tell about a checkpoint whose `architectures` names an HF head samp-jax does not
    run (`UNSERVED_HEADS`: `BertForQuestionAnswering`, ...), or None."""
    for name in architectures or ():
        for suffix, task in UNSERVED_HEADS.items():
            if isinstance(name, str) and name.endswith(suffix):
                return (f"config.json's architectures names {name}: samp-jax runs no {task} head "
                        "(it runs sequence and token classification heads and sentence "
                        "embeddings); pass strict=False to load the encoder alone")
    return None


def head_activation(hf: Mapping[str, Any], key: str, default: str = "gelu") -> str:
    """The head activation an HF config's `key` names (`default` when absent).

    Raises:
      ConfigError: an activation samp-jax's heads do not run.
    """
    name = hf.get(key)
    name = default if name is None else name
    if name not in HEAD_ACTIVATIONS:
        raise ConfigError(f"{key}={name!r} is not one of {sorted(HEAD_ACTIVATIONS)}")
    return HEAD_ACTIVATIONS[name]


@dataclasses.dataclass(frozen=True)
class KeyRule:
    """One of our parameters (`ours`, a dotted path into the model such as
    `encoder.layers.{i}.qkv.kernel`) filled from foreign keys (`theirs`, in the checkpoint's
    naming without the base-model prefix) by `transform`. `{i}` expands over layers.

    `outside_base`: the foreign key lives outside the HF base model (a head's own module, such
    as `classifier.*`), so exports do not put the base-model prefix in front of it.
    `first_layer`: `{i}` expands from this layer on (ModernBERT's layer 0 has no `attn_norm`).
    """

    ours: str
    theirs: tuple[str, ...]
    transform: str = "copy"
    outside_base: bool = False
    first_layer: int = 0

    def __post_init__(self):
        if isinstance(self.theirs, str):
            object.__setattr__(self, "theirs", (self.theirs,))
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform={self.transform!r} is not one of {sorted(TRANSFORMS)}")


def linear(ours: str, theirs: str, *, outside_base: bool = False) -> tuple[KeyRule, ...]:
    """A Linear layer: `ours.kernel` from `theirs.weight` (transposed), `ours.bias` from
    `theirs.bias`."""
    return (KeyRule(f"{ours}.kernel", f"{theirs}.weight", "linear", outside_base),
            KeyRule(f"{ours}.bias", f"{theirs}.bias", "copy", outside_base))


def layer_norm(ours: str, theirs: str) -> tuple[KeyRule, ...]:
    """A LayerNorm: our `scale`/`bias` from HF's `weight`/`bias`."""
    return (KeyRule(f"{ours}.scale", f"{theirs}.weight"), KeyRule(f"{ours}.bias", f"{theirs}.bias"))


def fused_qkv(ours: str, query: str, key: str, value: str) -> tuple[KeyRule, ...]:
    """Separate query/key/value Linears fused into our one `qkv` GEMM site."""
    names = (query, key, value)
    return (KeyRule(f"{ours}.kernel", tuple(f"{n}.weight" for n in names), "linear_qkv"),
            KeyRule(f"{ours}.bias", tuple(f"{n}.bias" for n in names), "concat_qkv"))


@dataclasses.dataclass(frozen=True)
class HeadLayout:
    """A head kind as one family writes it: the HF class-name suffix, the classifier's hidden
    activation (sequence heads), and its key table.

    Heads whose shape the HF config sets (ModernBERT's) also give:
    - `rules` as a function of the `EncoderConfig` (biases per `classifier_bias`/`norm_bias`);
    - `options(hf_config) -> dict`: the head's `make_head` arguments from the HF config dict
      (pooling, activation, norm), fixed ones included;
    - `to_hf(head_spec) -> dict`: the HF config keys that say the same on export.
    """

    architecture: str
    rules: tuple[KeyRule, ...] | Callable[[Any], tuple[KeyRule, ...]] = ()
    activation: str | None = None
    options: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    to_hf: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None

    def key_rules(self, config) -> tuple[KeyRule, ...]:
        """The key table for a model of `config`."""
        return self.rules(config) if callable(self.rules) else self.rules


@dataclasses.dataclass(frozen=True)
class OneValueOption:
    """An HF config option a family's classes read that samp-jax runs at one value only: a
    file stating another is refused (`<key>=<value> is not supported<why>`).

    Attributes:
      supported: the value samp-jax runs; `default` is what HF reads when the key is absent.
      why: the message's end (`"; only 'absolute' is"`).
      truthiness: compare as booleans (a flag: any false value is the supported False).
    """

    supported: Any
    default: Any
    why: str
    truthiness: bool = False

    def accepts(self, value: Any) -> bool:
        return bool(value) == self.supported if self.truthiness else value == self.supported


# Read by BertModel and the classes built on it (RoBERTa, XLM-R, ELECTRA): relative position
# embeddings in attention, and the decoder's causal mask and cross-attention. MPNet's reads
# `is_decoder` only (its attention mask turns causal); DistilBERT's, DeBERTa's and
# ModernBERT's read none of them, so a file stating them changes nothing there.
BERT_ONE_VALUE_OPTIONS = {
    "position_embedding_type": OneValueOption("absolute", "absolute", "; only 'absolute' is"),
    "is_decoder": OneValueOption(False, False, ": samp-jax runs encoders only", truthiness=True),
    "add_cross_attention": OneValueOption(False, False, ": samp-jax runs encoders only",
                                          truthiness=True),
}


@dataclasses.dataclass(frozen=True)
class Family:
    """One HF `model_type`: config mapping, key maps and class names (see the module doc).

    Attributes:
      model_type: HF `model_type` (`config.json`).
      prefix: the base-model attribute in HF's task classes (`bert` in `bert.encoder...`);
        stripped from foreign keys when present, written by exports with a task head.
      class_prefix: HF class-name prefix (`Bert`, `XLMRoberta`, ...).
      config_keys: `EncoderConfig` field -> HF config key.
      hf_defaults: HF config-class defaults for keys a `config.json` may omit.
      config_fixed: `EncoderConfig` fields the family fixes, whatever the config says.
      config_derived: computes further fields from the HF config dict.
      hf_extra: keys written into exported `config.json` besides the mapped ones.
      config_export: further keys an exported `config.json` gets from the `EncoderConfig`
        (the inverse of what `config_derived` reads, where a mapped key cannot say it).
      one_value_options: HF options the family's classes read that samp-jax runs at one
        value only (`OneValueOption`); keys HF does not read for the family are not checked.
      backbone: the backbone key table (embeddings and layers; `{i}` = layer index).
      heads: head kind -> `HeadLayout`.
      ignored_prefixes: foreign key prefixes to ignore when no module uses them: pre-training
        heads, and a pooler that only some heads use.
      unused_keys: `EncoderConfig -> {key: why}`, weights a checkpoint may hold that the
        family's HF class does not build for that config (ERNIE's task-type table when
        `use_task_id` is false): ignored with a warning naming them and why, as HF's
        `from_pretrained` notes weights not used, where other unread keys are refused.
    """

    model_type: str
    prefix: str
    class_prefix: str
    config_keys: Mapping[str, str]
    backbone: Callable[[Any], tuple[KeyRule, ...]]
    heads: Mapping[str, HeadLayout]
    hf_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    config_fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    config_derived: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda hf: {}
    hf_extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    config_export: Callable[[Any], dict[str, Any]] = lambda config: {}
    one_value_options: Mapping[str, OneValueOption] = dataclasses.field(default_factory=dict)
    ignored_prefixes: tuple[str, ...] = ()
    # HF buffers (not weights) that checkpoints of every family may carry.
    ignored_keys: tuple[str, ...] = ("embeddings.position_ids", "embeddings.token_type_ids")
    unused_keys: Callable[[Any], Mapping[str, str]] = lambda config: {}

    def architecture(self, head_kind: str) -> str:
        """The HF class name for a model with this head (`RobertaForSequenceClassification`)."""
        layout = self.heads.get(head_kind, self.heads[NO_HEAD.name])
        return self.class_prefix + layout.architecture

    def head_kind_of(self, architectures) -> str | None:
        """The head kind an HF `architectures` list names, or None when it names none."""
        base = self.heads[NO_HEAD.name].architecture
        for name in architectures or ():
            for kind, layout in self.heads.items():
                if layout.architecture != base and name.endswith(layout.architecture):
                    return kind
        return None
