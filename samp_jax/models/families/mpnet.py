"""MPNet (`mpnet`): a relative position bias (bucketed, shared by all layers) added to the
attention scores, RoBERTa-style positions from padding index 1, no token types, and a
`dense → tanh → out_proj` head."""

from samp_jax.models.families.base import BERT_ONE_VALUE_OPTIONS, Family, KeyRule, fused_qkv, layer_norm, linear
from samp_jax.models.families.bert import BERT_CONFIG_KEYS, BERT_DEFAULTS, base_heads, token_head
from samp_jax.models.families.roberta import classification_head
from samp_jax.models.head_kinds import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION


def _backbone(config):
    ours, theirs = "encoder.layers.{i}", "encoder.layer.{i}"
    attention = f"{theirs}.attention"
    return ((KeyRule("embeddings.word", "embeddings.word_embeddings.weight"),
             KeyRule("embeddings.position", "embeddings.position_embeddings.weight"))
            + layer_norm("embeddings.norm", "embeddings.LayerNorm")
            + (KeyRule("encoder.relative_bias", "encoder.relative_attention_bias.weight"),)
            + fused_qkv(f"{ours}.qkv", f"{attention}.attn.q", f"{attention}.attn.k", f"{attention}.attn.v")
            + linear(f"{ours}.attn_out", f"{attention}.attn.o")
            + layer_norm(f"{ours}.attn_norm", f"{attention}.LayerNorm")
            + linear(f"{ours}.ffn_in", f"{theirs}.intermediate.dense")
            + linear(f"{ours}.ffn_out", f"{theirs}.output.dense")
            + layer_norm(f"{ours}.ffn_norm", f"{theirs}.output.LayerNorm"))


MPNET = Family(
    model_type="mpnet",
    prefix="mpnet",
    class_prefix="MPNet",
    config_keys={key: value for key, value in BERT_CONFIG_KEYS.items() if key != "type_vocab_size"}
    | {"relative_attention_num_buckets": "relative_attention_num_buckets"},
    hf_defaults=BERT_DEFAULTS | {"pad_token_id": 1, "layer_norm_eps": 1e-12,
                                 "relative_attention_num_buckets": 32, "max_position_embeddings": 512},
    # MPNetEmbeddings hard-codes padding_idx = 1 for its positions; it has no token types.
    config_fixed={"type_vocab_size": 0, "position_padding_idx": 1},
    # MPNetModel's extended attention mask (transformers 4.57) is causal for a decoder
    one_value_options={"is_decoder": BERT_ONE_VALUE_OPTIONS["is_decoder"]},
    backbone=_backbone,
    heads={**base_heads(), SEQUENCE_CLASSIFICATION.name: classification_head("tanh"),
           TOKEN_CLASSIFICATION.name: token_head()},
    ignored_prefixes=("lm_head.", "pooler."),
)
