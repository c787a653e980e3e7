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


_ATTENTION_TYPES = ("full_attention", "sliding_attention")  # HF's `layer_types` values


def _rope_thetas(hf: Mapping[str, Any]) -> tuple[float, float | None]:
    """`(global, local)` RoPE bases. transformers 4.57 writes `global_rope_theta` (alias
    `rope_theta`) and `local_rope_theta` (None: the global one) and refuses `rope_scaling`;
    transformers 5 writes `rope_parameters`, a dict per attention type, whose `rope_theta`
    comes first (`global_rope_theta` and `local_rope_theta` fill an entry without one, as
    transformers 5 reads them; it reads no `rope_theta` alias)."""
    scaling = hf.get("rope_scaling")
    if scaling and (scaling.get("rope_type", scaling.get("type")) or "default") != "default":
        raise ConfigError(f"rope_scaling={scaling!r} is not supported; only default RoPE is")
    local = hf.get("local_rope_theta", DEFAULTS["local_rope_theta"])
    parameters = hf.get("rope_parameters")
    if parameters is None:
        theta = hf.get("global_rope_theta", hf.get("rope_theta")) or DEFAULTS["global_rope_theta"]
        return float(theta), local
    theta = hf.get("global_rope_theta") or DEFAULTS["global_rope_theta"]
    if not isinstance(parameters, Mapping) or not set(parameters) <= set(_ATTENTION_TYPES):
        raise ConfigError(f"rope_parameters={parameters!r} is not supported: samp-jax reads a "
                          f"dict with {list(_ATTENTION_TYPES)} entries, as transformers 5 writes "
                          "ModernBERT's")
    found = {}
    for kind, fallback in zip(_ATTENTION_TYPES, (theta, local)):
        entry = parameters.get(kind) or {}
        if (not isinstance(entry, Mapping) or not set(entry) <= {"rope_type", "type", "rope_theta"}
                or (entry.get("rope_type", entry.get("type")) or "default") != "default"):
            raise ConfigError(f"rope_parameters[{kind!r}]={entry!r} is not supported; only "
                              "default RoPE ('rope_type': 'default' and a 'rope_theta') is")
        found[kind] = entry.get("rope_theta", fallback)
        if kind == "full_attention" or found[kind] is not None:  # a local None: the global base
            if isinstance(found[kind], bool) or not isinstance(found[kind], (int, float)):
                raise ConfigError(f"rope_parameters[{kind!r}]['rope_theta']={found[kind]!r} "
                                  "must be a positive number")
    return found["full_attention"], found["sliding_attention"]


def _attention_pattern(hf: Mapping[str, Any]) -> dict[str, Any]:
    """Which layers attend globally: transformers 5's `layer_types` (one entry per layer) when
    the file has it, else `global_attn_every_n_layers` (the config's field). A `layer_types`
    that is such a pattern becomes its `global_attn_every_n_layers`, so that a model saved
    again loads in transformers 4.57 too; any other is kept per layer, its
    `global_attn_every_n_layers` 1 (a saved copy writes it as None, which 4.57 refuses rather
    than run another pattern). Local layers need a `local_attention` window: at 0, HF runs
    them attending to each token alone, where samp-jax reads 0 as no window (refused)."""
    types = hf.get("layer_types")
    if types is None:
        every = hf.get("global_attn_every_n_layers", DEFAULTS["global_attn_every_n_layers"])
        layers = hf.get("num_hidden_layers", DEFAULTS["num_hidden_layers"])
        if isinstance(every, int) and isinstance(layers, int) and 1 < every and 1 < layers:
            _check_window(hf)
        return {}
    if not isinstance(types, (list, tuple)):
        raise ConfigError(f"layer_types={types!r} must be a list of each layer's attention")
    types = tuple(types)
    if len(types) != hf.get("num_hidden_layers", DEFAULTS["num_hidden_layers"]):
        return {"layer_types": types}  # refused with the layer count by EncoderConfig
    if "sliding_attention" in types:
        _check_window(hf)
    for every in range(1, len(types) + 1):
        if types == tuple(_ATTENTION_TYPES[bool(i % every)] for i in range(len(types))):
            return {"global_attn_every_n_layers": every, "layer_types": None}
    return {"layer_types": types, "global_attn_every_n_layers": 1}


def _check_window(hf: Mapping[str, Any]) -> None:
    window = hf.get("local_attention", DEFAULTS["local_attention"])
    if window == 0:
        raise ConfigError("local_attention=0 with local (sliding-window) layers is not supported: "
                          "HF runs those layers attending to each token alone; give a window, "
                          "or make every layer global")


def _derived(hf: Mapping[str, Any]) -> dict[str, Any]:
    """The RoPE bases (`local_rotary_theta` None means the global one) and the layers'
    attention pattern, from either version's keys; rope scaling is refused."""
    theta, local = _rope_thetas(hf)
    return ({"rotary_theta": float(theta), "local_rotary_theta": float(theta if local is None else local)}
            | _attention_pattern(hf))


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
