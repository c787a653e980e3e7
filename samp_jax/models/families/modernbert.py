"""ModernBERT (`modernbert`): pre-LN layers with rotary positions (a global and a local base),
sliding-window attention in all but every `global_attn_every_n_layers`-th layer, a fused `Wqkv`,
a gated GELU FFN (`Wi` is `[hidden, 2 * intermediate]`: the `ffn_in` site twice as wide), no
biases by default (`attention_bias`, `mlp_bias`, `norm_bias`, `classifier_bias`), a final norm,
and heads `head.dense → act → head.norm → classifier` pooled by `classifier_pooling`.

Checkpoint keys: `model.` is the base-model prefix of HF's task classes; `head.*` and
`classifier.*` sit outside it. The masked-LM checkpoints HF publishes carry `head.*` too (their
prediction head, the same module), so a classifier started from one keeps that transform, as
in HF, and only `classifier.*` is new.
"""

from typing import Any, Mapping

from samp_jax.models.errors import ConfigError
from samp_jax.models.activations import HF_HEAD_ACTIVATION
from samp_jax.models.families.base import Family, HeadLayout, KeyRule, head_activation
from samp_jax.models.families.bert import base_heads
from samp_jax.models.head_kinds import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION

DEFAULTS = {  # ModernBertConfig's defaults (transformers 4.57)
    "vocab_size": 50368, "hidden_size": 768, "intermediate_size": 1152, "num_hidden_layers": 22,
    "num_attention_heads": 12, "hidden_activation": "gelu", "max_position_embeddings": 8192,
    "norm_eps": 1e-5, "norm_bias": False, "pad_token_id": 50283, "global_rope_theta": 160000.0,
    "attention_bias": False, "global_attn_every_n_layers": 3, "local_attention": 128,
    "local_rope_theta": 10000.0, "mlp_bias": False, "classifier_bias": False,
}


def _linear(ours: str, theirs: str, bias: bool, *, outside_base: bool = False) -> tuple[KeyRule, ...]:
    rules = (KeyRule(f"{ours}.kernel", f"{theirs}.weight", "linear", outside_base),)
    return rules + ((KeyRule(f"{ours}.bias", f"{theirs}.bias", "copy", outside_base),) if bias else ())


def _norm(ours: str, theirs: str, bias: bool, *, first_layer: int = 0,
          outside_base: bool = False) -> tuple[KeyRule, ...]:
    rules = (KeyRule(f"{ours}.scale", f"{theirs}.weight", "copy", outside_base, first_layer),)
    if bias:
        rules += (KeyRule(f"{ours}.bias", f"{theirs}.bias", "copy", outside_base, first_layer),)
    return rules


def _backbone(config) -> tuple[KeyRule, ...]:
    ours, theirs = "encoder.layers.{i}", "layers.{i}"
    attention, mlp, norm = config.attention_bias, config.mlp_bias, config.norm_bias
    return ((KeyRule("embeddings.word", "embeddings.tok_embeddings.weight"),)
            + _norm("embeddings.norm", "embeddings.norm", norm)
            # layer 0 has no attn_norm (HF: nn.Identity): the embedding norm precedes it
            + _norm(f"{ours}.attn_norm", f"{theirs}.attn_norm", norm, first_layer=1)
            + _linear(f"{ours}.qkv", f"{theirs}.attn.Wqkv", attention)  # already fused [Q|K|V]
            + _linear(f"{ours}.attn_out", f"{theirs}.attn.Wo", attention)
            + _norm(f"{ours}.ffn_norm", f"{theirs}.mlp_norm", norm)
            + _linear(f"{ours}.ffn_in", f"{theirs}.mlp.Wi", mlp)  # [input | gate]
            + _linear(f"{ours}.ffn_out", f"{theirs}.mlp.Wo", mlp)
            + _norm("encoder.final_norm", "final_norm", norm))


def _head_rules(dense: str):
    def rules(config) -> tuple[KeyRule, ...]:
        return (_linear(f"head.{dense}", "head.dense", config.classifier_bias, outside_base=True)
                + _norm("head.norm", "head.norm", config.norm_bias, outside_base=True)
                + _linear("head.classifier", "classifier", True, outside_base=True))
    return rules


def _head_activation(hf: Mapping[str, Any]) -> str:
    return head_activation(hf, "classifier_activation")


def _sequence_options(hf: Mapping[str, Any]) -> dict[str, Any]:
    pooling = hf.get("classifier_pooling", "cls")
    if pooling not in ("cls", "mean"):
        raise ConfigError(f"classifier_pooling={pooling!r} is not one of ('cls', 'mean')")
    return {"activation": _head_activation(hf), "pooling": pooling, "norm": True}


def _derived(hf: Mapping[str, Any]) -> dict[str, Any]:
    """The RoPE bases (`local_rope_theta` None means the global one; `rope_theta` is HF's alias
    of `global_rope_theta`); rope scaling is refused."""
    scaling = hf.get("rope_scaling")
    if scaling and (scaling.get("rope_type", scaling.get("type")) or "default") != "default":
        raise ConfigError(f"rope_scaling={scaling!r} is not supported; only default RoPE is")
    theta = hf.get("global_rope_theta", hf.get("rope_theta")) or DEFAULTS["global_rope_theta"]
    local = hf.get("local_rope_theta", DEFAULTS["local_rope_theta"])
    return {"rotary_theta": float(theta), "local_rotary_theta": float(theta if local is None else local)}


MODERNBERT = Family(
    model_type="modernbert",
    prefix="model",
    class_prefix="ModernBert",
    config_keys={
        "vocab_size": "vocab_size",
        "hidden_size": "hidden_size",
        "num_layers": "num_hidden_layers",
        "num_heads": "num_attention_heads",
        "intermediate_size": "intermediate_size",
        "max_position_embeddings": "max_position_embeddings",
        "layer_norm_eps": "norm_eps",
        "hidden_act": "hidden_activation",
        "pad_token_id": "pad_token_id",
        "rotary_theta": "global_rope_theta",
        "local_rotary_theta": "local_rope_theta",
        "local_attention": "local_attention",
        "global_attn_every_n_layers": "global_attn_every_n_layers",
        "attention_bias": "attention_bias",
        "mlp_bias": "mlp_bias",
        "norm_bias": "norm_bias",
        "classifier_bias": "classifier_bias",
    },
    hf_defaults=DEFAULTS,
    config_fixed={"type_vocab_size": 0, "norm_first": True, "gated_ffn": True},
    config_derived=_derived,
    backbone=_backbone,
    heads={
        **base_heads(),
        SEQUENCE_CLASSIFICATION.name: HeadLayout(
            "ForSequenceClassification", _head_rules("pooler"), options=_sequence_options,
            to_hf=lambda spec: {"classifier_pooling": spec.get("pooling", "cls"),
                                "classifier_activation": HF_HEAD_ACTIVATION[spec["activation"]]}),
        TOKEN_CLASSIFICATION.name: HeadLayout(
            "ForTokenClassification", _head_rules("dense"),
            options=lambda hf: {"activation": _head_activation(hf), "norm": True},
            to_hf=lambda spec: {"classifier_activation": HF_HEAD_ACTIVATION[spec["activation"]]}),
    },
    # the masked-LM decoder; the prediction head (`head.*`) when no head of ours uses it
    ignored_prefixes=("decoder.", "head."),
)
