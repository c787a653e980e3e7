"""DistilBERT (`distilbert`): its own key and config names, no token types, and a
`pre_classifier → ReLU → classifier` head."""

from samp_jax.models.families.base import Family, HeadLayout, KeyRule, fused_qkv, layer_norm, linear
from samp_jax.models.families.bert import base_heads, token_head
from samp_jax.models.head_kinds import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION


def _backbone(config) -> tuple[KeyRule, ...]:
    ours, theirs = "encoder.layers.{i}", "transformer.layer.{i}"
    attention = f"{theirs}.attention"
    return ((KeyRule("embeddings.word", "embeddings.word_embeddings.weight"),
             KeyRule("embeddings.position", "embeddings.position_embeddings.weight"))
            + layer_norm("embeddings.norm", "embeddings.LayerNorm")
            + fused_qkv(f"{ours}.qkv", f"{attention}.q_lin", f"{attention}.k_lin", f"{attention}.v_lin")
            + linear(f"{ours}.attn_out", f"{attention}.out_lin")
            + layer_norm(f"{ours}.attn_norm", f"{theirs}.sa_layer_norm")
            + linear(f"{ours}.ffn_in", f"{theirs}.ffn.lin1")
            + linear(f"{ours}.ffn_out", f"{theirs}.ffn.lin2")
            + layer_norm(f"{ours}.ffn_norm", f"{theirs}.output_layer_norm"))


DISTILBERT = Family(
    model_type="distilbert",
    prefix="distilbert",
    class_prefix="DistilBert",
    config_keys={
        "vocab_size": "vocab_size",
        "hidden_size": "dim",
        "num_layers": "n_layers",
        "num_heads": "n_heads",
        "intermediate_size": "hidden_dim",
        "max_position_embeddings": "max_position_embeddings",
        "hidden_act": "activation",
        "pad_token_id": "pad_token_id",
    },
    hf_defaults={"vocab_size": 30522, "dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072,
                 "max_position_embeddings": 512, "activation": "gelu", "pad_token_id": 0},
    # DistilBERT's LayerNorms are nn.LayerNorm(eps=1e-12) whatever the config; no token types.
    config_fixed={"layer_norm_eps": 1e-12, "type_vocab_size": 0},
    # the position table is stored in the checkpoint either way; exports mark it learned
    hf_extra={"sinusoidal_pos_embds": False},
    backbone=_backbone,
    heads={
        **base_heads(),
        SEQUENCE_CLASSIFICATION.name: HeadLayout(
            "ForSequenceClassification",
            linear("head.pooler", "pre_classifier", outside_base=True)
            + linear("head.classifier", "classifier", outside_base=True),
            activation="relu"),
        TOKEN_CLASSIFICATION.name: token_head(),
    },
    ignored_prefixes=("vocab_transform.", "vocab_layer_norm.", "vocab_projector."),  # MLM head
)
