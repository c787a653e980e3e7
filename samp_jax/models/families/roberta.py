"""RoBERTa (`roberta`) and its copies under other model types: XLM-RoBERTa (`xlm-roberta`),
CamemBERT (`camembert`) and data2vec-text (`data2vec-text`). BERT's layers, with position ids
counted from the padding index, one token type, and a `dense → tanh → out_proj` classification
head.

HF's `Camembert*` and `Data2VecText*` classes are RoBERTa's code under other names (transformers
4.57's `modeling_camembert.py` is marked "Copied from" RoBERTa class by class; data2vec-text's
embeddings are RoBERTa's, its layers BERT's, eager attention only), with the same config
defaults; data2vec-text keeps its base model under `data2vec_text.`, the others under
`roberta.`. Only the tokenizers differ: CamemBERT's is SentencePiece (`CamembertTokenizer`),
data2vec-text's is RoBERTa's byte-level BPE.
"""

from samp_jax.models.families.base import BERT_ONE_VALUE_OPTIONS, Family, HeadLayout, linear
from samp_jax.models.families.bert import BERT_CONFIG_KEYS, BERT_DEFAULTS, base_heads, bert_layers, embeddings, token_head
from samp_jax.models.head_kinds import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION


def classification_head(activation: str) -> HeadLayout:
    """`RobertaClassificationHead` and its copies: `classifier.dense`, the activation,
    `classifier.out_proj`, on the first token."""
    return HeadLayout("ForSequenceClassification",
                      linear("head.pooler", "classifier.dense", outside_base=True)
                      + linear("head.classifier", "classifier.out_proj", outside_base=True),
                      activation=activation)


def _roberta(model_type: str, class_prefix: str, prefix: str = "roberta") -> Family:
    return Family(
        model_type=model_type,
        prefix=prefix,
        class_prefix=class_prefix,
        config_keys=BERT_CONFIG_KEYS,
        hf_defaults=BERT_DEFAULTS | {"pad_token_id": 1},
        # RobertaEmbeddings: positions padding_idx + 1, ... for tokens, padding_idx for padding.
        config_derived=lambda hf: {"position_padding_idx": hf.get("pad_token_id", 1)},
        hf_extra={"position_embedding_type": "absolute"},
        one_value_options=BERT_ONE_VALUE_OPTIONS,
        backbone=lambda config: embeddings(config) + bert_layers(config),
        heads={**base_heads(), SEQUENCE_CLASSIFICATION.name: classification_head("tanh"),
               TOKEN_CLASSIFICATION.name: token_head()},
        ignored_prefixes=("lm_head.", "pooler."),
    )


ROBERTA = _roberta("roberta", "Roberta")
XLM_ROBERTA = _roberta("xlm-roberta", "XLMRoberta")
CAMEMBERT = _roberta("camembert", "Camembert")
DATA2VEC_TEXT = _roberta("data2vec-text", "Data2VecText", prefix="data2vec_text")
