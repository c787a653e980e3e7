"""Model families, registered by HF `model_type`: each is data (`Family`) that maps a
checkpoint's config and weights onto samp-jax's modules.

Add a family with `register_family(Family(...))`; `EncoderConfig.from_hf_config`,
`load_pretrained` and `save_pretrained` find it by `model_type`. The pieces a family is built
from are exported here: the key-table helpers (`linear`, `layer_norm`, `fused_qkv`, `KeyRule`,
`TRANSFORMS`), the head layouts (`HeadLayout`, `base_heads`, `token_head`), and BERT's tables
its descendants reuse (`BERT_CONFIG_KEYS`, `BERT_DEFAULTS`, `BERT_ONE_VALUE_OPTIONS`,
`embeddings`, `bert_layers`); docs/extending.md shows one.
"""

from samp_jax.models.errors import ConfigError
from samp_jax.models.families.base import (BERT_ONE_VALUE_OPTIONS, TRANSFORMS, Family, HeadLayout,
                                           KeyRule, OneValueOption, Transform, fused_qkv,
                                           head_activation, layer_norm, linear)
from samp_jax.models.families.bert import (BERT, BERT_CONFIG_KEYS, BERT_DEFAULTS, base_heads,
                                           bert_layers, embeddings, token_head)
from samp_jax.models.families.deberta_v2 import DEBERTA_V2
from samp_jax.models.families.distilbert import DISTILBERT
from samp_jax.models.families.electra import ELECTRA
from samp_jax.models.families.ernie import ERNIE
from samp_jax.models.families.modernbert import MODERNBERT
from samp_jax.models.families.mpnet import MPNET
from samp_jax.models.families.roberta import CAMEMBERT, DATA2VEC_TEXT, ROBERTA, XLM_ROBERTA
from samp_jax.models.head_kinds import NO_HEAD
from samp_jax.core.registry import check_free

FAMILIES: dict[str, Family] = {}


class UnsupportedFamilyError(ConfigError):
    """No family is registered for a checkpoint's `model_type`."""


def register_family(family: Family, *, replace: bool = False) -> None:
    """Registers `family` under its `model_type`.

    Raises:
      TypeError: `family` is not a `Family`.
      ValueError: the type is taken and `replace` is False; an empty `model_type`; `heads`
        without the head-less layout (`heads['none']`, the base model's HF class, which loading,
        saving and `architecture` fall back to), or a layout that is no `HeadLayout`.
    """
    if not isinstance(family, Family):
        raise TypeError(f"register_family: expected a samp_jax.models.families.Family, got "
                        f"{type(family).__name__} {family!r:.80}")
    if not isinstance(family.model_type, str) or not family.model_type:
        raise ValueError(f"register_family: model_type={family.model_type!r}; expected the HF "
                         "model_type (config.json), a non-empty str")
    if NO_HEAD.name not in family.heads:
        raise ValueError(f"family {family.model_type!r}: heads {sorted(family.heads)} have no "
                         f"{NO_HEAD.name!r} layout (the base model, e.g. HeadLayout('Model')); "
                         "samp_jax.models.families.bert.base_heads() gives it")
    bad = [kind for kind, layout in family.heads.items() if not isinstance(layout, HeadLayout)]
    if bad:
        raise ValueError(f"family {family.model_type!r}: heads {bad} are not HeadLayouts")
    check_free(FAMILIES, family.model_type, f"model_type={family.model_type!r}", replace=replace)
    FAMILIES[family.model_type] = family


def get_family(model_type: str) -> Family:
    """The family registered for `model_type`.

    Raises:
      UnsupportedFamilyError: none is.
    """
    try:
        return FAMILIES[model_type]
    except (KeyError, TypeError):
        raise UnsupportedFamilyError(
            f"model_type={model_type!r} is not supported; samp-jax imports {tuple(FAMILIES)}. "
            "Another family is registered with samp_jax.models.register_family (for the samp-jax "
            "command, from a plugin: a module named in SAMP_JAX_PLUGINS or a 'samp_jax.plugins' "
            "entry point; docs/extending.md)") from None


for _family in (BERT, ROBERTA, XLM_ROBERTA, DISTILBERT, ELECTRA, MPNET):
    register_family(_family)
register_family(MODERNBERT)
register_family(DEBERTA_V2)
for _family in (CAMEMBERT, DATA2VEC_TEXT, ERNIE):  # other model types of RoBERTa's and BERT's
    register_family(_family)

__all__ = ["BERT", "BERT_CONFIG_KEYS", "BERT_DEFAULTS", "BERT_ONE_VALUE_OPTIONS", "FAMILIES",
           "TRANSFORMS", "Family", "HeadLayout", "KeyRule", "OneValueOption", "Transform",
           "UnsupportedFamilyError", "base_heads", "bert_layers", "embeddings", "fused_qkv",
           "get_family", "head_activation", "layer_norm", "linear", "register_family",
           "token_head"]
