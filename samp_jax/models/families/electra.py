"""ELECTRA (`electra`): BERT's layers behind narrower embeddings and an `embeddings_project`
GEMM (when `embedding_size != hidden_size`), and a `dense → GELU → out_proj` head."""

from samp_jax.models.families.base import BERT_ONE_VALUE_OPTIONS, Family, linear
from samp_jax.models.families.bert import BERT_CONFIG_KEYS, BERT_DEFAULTS, base_heads, bert_layers, embeddings, token_head
from samp_jax.models.families.roberta import classification_head
from samp_jax.models.head_kinds import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION


def _backbone(config):
    project = linear("embeddings.project", "embeddings_project") if config.embedding_size else ()
    return embeddings(config) + project + bert_layers(config)


ELECTRA = Family(
    model_type="electra",
    prefix="electra",
    class_prefix="Electra",
    config_keys=BERT_CONFIG_KEYS | {"embedding_size": "embedding_size"},
    hf_defaults=BERT_DEFAULTS | {"embedding_size": 128},
    hf_extra={"position_embedding_type": "absolute"},
    one_value_options=BERT_ONE_VALUE_OPTIONS,
    backbone=_backbone,
    heads={**base_heads(),
           # ElectraClassificationHead uses exact GELU, whatever hidden_act says.
           SEQUENCE_CLASSIFICATION.name: classification_head("gelu"),
           TOKEN_CLASSIFICATION.name: token_head()},
    # discriminator / generator pre-training heads
    ignored_prefixes=("discriminator_predictions.", "generator_predictions.", "generator_lm_head."),
)
