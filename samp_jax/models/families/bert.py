"""BERT (`model_type: bert`), and the pieces its descendants reuse."""

from samp_jax.models.families.base import BERT_ONE_VALUE_OPTIONS, Family, HeadLayout, KeyRule, fused_qkv, layer_norm, linear
from samp_jax.models.head_kinds import NO_HEAD, SENTENCE_EMBEDDING, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION

# EncoderConfig field -> HF key, shared by BERT, RoBERTa, XLM-R, ELECTRA and MPNet.
BERT_CONFIG_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "layer_norm_eps": "layer_norm_eps",
    "hidden_act": "hidden_act",
    "pad_token_id": "pad_token_id",
}
BERT_DEFAULTS = {"max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
                 "hidden_act": "gelu", "pad_token_id": 0}


def embeddings(config) -> tuple[KeyRule, ...]:
    """Word, position and (when the model has them) token-type tables, then the LayerNorm."""
    rules = (KeyRule("embeddings.word", "embeddings.word_embeddings.weight"),
             KeyRule("embeddings.position", "embeddings.position_embeddings.weight"))
    if config.type_vocab_size:
        rules += (KeyRule("embeddings.token_type", "embeddings.token_type_embeddings.weight"),)
    return rules + layer_norm("embeddings.norm", "embeddings.LayerNorm")


def bert_layers(config) -> tuple[KeyRule, ...]:
    """`encoder.layer.{i}` in BERT's naming (also RoBERTa's, XLM-R's and ELECTRA's)."""
    ours, theirs = "encoder.layers.{i}", "encoder.layer.{i}"
    attention = f"{theirs}.attention.self"
    return (fused_qkv(f"{ours}.qkv", f"{attention}.query", f"{attention}.key", f"{attention}.value")
            + linear(f"{ours}.attn_out", f"{theirs}.attention.output.dense")
            + layer_norm(f"{ours}.attn_norm", f"{theirs}.attention.output.LayerNorm")
            + linear(f"{ours}.ffn_in", f"{theirs}.intermediate.dense")
            + linear(f"{ours}.ffn_out", f"{theirs}.output.dense")
            + layer_norm(f"{ours}.ffn_norm", f"{theirs}.output.LayerNorm"))


def token_head() -> HeadLayout:
    """`*ForTokenClassification`: one Linear named `classifier` (every family)."""
    return HeadLayout("ForTokenClassification", linear("head.classifier", "classifier", outside_base=True))


def base_heads() -> dict[str, HeadLayout]:
    """The headless and sentence-embedding layouts (the HF base model class)."""
    return {NO_HEAD.name: HeadLayout("Model"), SENTENCE_EMBEDDING.name: HeadLayout("Model")}


BERT = Family(
    model_type="bert",
    prefix="bert",
    class_prefix="Bert",
    config_keys=BERT_CONFIG_KEYS,
    hf_defaults=BERT_DEFAULTS,
    hf_extra={"position_embedding_type": "absolute"},
    one_value_options=BERT_ONE_VALUE_OPTIONS,
    backbone=lambda config: embeddings(config) + bert_layers(config),
    heads={
        **base_heads(),
        # BertForSequenceClassification: the base model's pooler (dense + tanh on [CLS]).
        SEQUENCE_CLASSIFICATION.name: HeadLayout(
            "ForSequenceClassification",
            linear("head.pooler", "pooler.dense")
            + linear("head.classifier", "classifier", outside_base=True),
            activation="tanh"),
        TOKEN_CLASSIFICATION.name: token_head(),
    },
    ignored_prefixes=("cls.", "pooler."),  # pre-training heads; the pooler unless a head uses it
)
