"""DeBERTa-v2 and DeBERTa-v3 (`model_type: deberta-v2`): BERT's post-LN layers with
disentangled attention (`samp_jax.models.relative_attention`), a relative-position table
shared by every layer, no absolute positions in v3 (`position_biased_input: false`), and
`ContextPooler` (`pooler.dense → GELU`) + `classifier` sequence heads.

The sequence head's activation is `pooler_hidden_act` (GELU by default; any head activation
samp-jax runs). Refused with a clear error rather than run wrongly: the convolution branch of the
first layer (`conv_kernel_size > 0`, DeBERTa-v2-xlarge/xxlarge), a narrower embedding with its
bias-less `embed_proj` (`embedding_size != hidden_size`), a `pooler_hidden_size` other than
`hidden_size`, and an `attention_head_size` that is not `hidden_size / num_attention_heads`.
"""

from typing import Any, Mapping

from samp_jax.models.errors import ConfigError
from samp_jax.models.activations import HF_HEAD_ACTIVATION
from samp_jax.models.families.base import (
    Family,
    HeadLayout,
    KeyRule,
    fused_qkv,
    head_activation,
    layer_norm,
    linear,
)
from samp_jax.models.families.bert import BERT_CONFIG_KEYS, base_heads, token_head


def _layers(config) -> tuple[KeyRule, ...]:
    ours, theirs = "encoder.layers.{i}", "encoder.layer.{i}"
    attention = f"{theirs}.attention.self"
    rules = (fused_qkv(f"{ours}.qkv", f"{attention}.query_proj", f"{attention}.key_proj",
                       f"{attention}.value_proj")
             + linear(f"{ours}.attn_out", f"{theirs}.attention.output.dense")
             + layer_norm(f"{ours}.attn_norm", f"{theirs}.attention.output.LayerNorm")
             + linear(f"{ours}.ffn_in", f"{theirs}.intermediate.dense")
             + linear(f"{ours}.ffn_out", f"{theirs}.output.dense")
             + layer_norm(f"{ours}.ffn_norm", f"{theirs}.output.LayerNorm"))
    if config.disentangled_attention and not config.share_att_key:
        if "c2p" in config.pos_att_type:
            rules += linear("encoder.relative.key_proj.{i}", f"{attention}.pos_key_proj")
        if "p2c" in config.pos_att_type:
            rules += linear("encoder.relative.query_proj.{i}", f"{attention}.pos_query_proj")
    return rules


def _backbone(config) -> tuple[KeyRule, ...]:
    rules = (KeyRule("embeddings.word", "embeddings.word_embeddings.weight"),)
    if config.position_biased_input:
        rules += (KeyRule("embeddings.position", "embeddings.position_embeddings.weight"),)
    if config.type_vocab_size:
        rules += (KeyRule("embeddings.token_type", "embeddings.token_type_embeddings.weight"),)
    rules += layer_norm("embeddings.norm", "embeddings.LayerNorm")
    if config.disentangled_attention:
        rules += (KeyRule("encoder.relative.embeddings", "encoder.rel_embeddings.weight"),)
        if config.norm_rel_ebd == "layer_norm":
            rules += layer_norm("encoder.relative.norm", "encoder.LayerNorm")
    return rules + _layers(config)


def _pos_att_type(value: Any) -> tuple[str, ...]:
    """HF accepts `"p2c|c2p"` (older configs) or a list; None means no relative terms."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.lower().split("|") if part.strip())
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise ConfigError(f"pos_att_type={value!r} must be a list such as ['p2c', 'c2p'] or 'p2c|c2p'")


def _refusals(hf: Mapping[str, Any]) -> list[tuple[str, Any, bool, str]]:
    """`(key, value, refused, why)` for each option samp-jax does not run."""
    hidden = hf.get("hidden_size")
    heads = hf.get("num_attention_heads")

    def get(key, default):
        value = hf.get(key)
        return default if value is None else value

    head_size = get("attention_head_size", None)
    return [
        ("conv_kernel_size", get("conv_kernel_size", 0), get("conv_kernel_size", 0) != 0,
         "the convolution branch (DeBERTa-v2-xlarge/xxlarge's ConvLayer) is not supported"),
        ("embedding_size", get("embedding_size", hidden), get("embedding_size", hidden) != hidden,
         f"a narrower embedding with a bias-less embed_proj is not supported (hidden_size={hidden})"),
        ("pooler_hidden_size", get("pooler_hidden_size", hidden),
         get("pooler_hidden_size", hidden) != hidden, f"expected hidden_size={hidden}"),
        ("attention_head_size", head_size,
         head_size is not None and isinstance(heads, int) and head_size * heads != hidden,
         f"expected hidden_size / num_attention_heads = {hidden} / {heads}"),
    ]


def _derived(hf: Mapping[str, Any]) -> dict[str, Any]:
    """DeBERTa's options, normalised; raises for the ones samp-jax refuses (see the module doc)."""
    for key, value, refused, why in _refusals(hf):
        if refused:
            raise ConfigError(f"deberta-v2 {key}={value!r}: {why}")
    norm = [part.strip() for part in str(hf.get("norm_rel_ebd") or "none").lower().split("|")]
    return {"pos_att_type": _pos_att_type(hf.get("pos_att_type")),
            "norm_rel_ebd": "layer_norm" if "layer_norm" in norm else "none"}


DEBERTA_V2 = Family(
    model_type="deberta-v2",
    prefix="deberta",
    class_prefix="DebertaV2",
    config_keys=BERT_CONFIG_KEYS | {
        "position_biased_input": "position_biased_input",
        "disentangled_attention": "relative_attention",
        "pos_att_type": "pos_att_type",
        "position_buckets": "position_buckets",
        "max_relative_positions": "max_relative_positions",
        "share_att_key": "share_att_key",
        "norm_rel_ebd": "norm_rel_ebd",
    },
    # DebertaV2Config's defaults (and DisentangledSelfAttention's getattr defaults)
    hf_defaults={"max_position_embeddings": 512, "type_vocab_size": 0, "layer_norm_eps": 1e-7,
                 "hidden_act": "gelu", "pad_token_id": 0, "position_biased_input": True,
                 "relative_attention": False, "pos_att_type": None, "position_buckets": -1,
                 "max_relative_positions": -1, "share_att_key": False, "norm_rel_ebd": "none"},
    config_derived=_derived,
    hf_extra={"pooler_hidden_act": "gelu", "pooler_dropout": 0, "conv_kernel_size": 0},
    backbone=_backbone,
    heads={
        **base_heads(),
        # DebertaV2ForSequenceClassification: ContextPooler (dense + `pooler_hidden_act` on the
        # first token), then `classifier`; both live beside the base model.
        "sequence_classification": HeadLayout(
            "ForSequenceClassification",
            linear("head.pooler", "pooler.dense", outside_base=True)
            + linear("head.classifier", "classifier", outside_base=True),
            options=lambda hf: {"activation": head_activation(hf, "pooler_hidden_act")},
            to_hf=lambda spec: {"pooler_hidden_act": HF_HEAD_ACTIVATION[spec["activation"]]}),
        "token_classification": token_head(),
    },
    # pre-training heads; v3 checkpoints also carry an unused absolute position table, and HF
    # builds the relative table's LayerNorm (`norm_rel_ebd`) even without relative attention
    ignored_prefixes=("lm_predictions.", "cls.", "mask_predictions.",
                      "embeddings.position_embeddings.", "encoder.LayerNorm."),
)
