"""The config variations `tools/variant_sweep.py` builds: valid HF configs a real checkpoint of
each family may have, beyond the one tiny config per family in tests/golden.

Pure data (no torch, no samp-jax): a `Variant` names a family, a change to the family's tiny
golden config (`tools/make_golden.py`), the heads to build, how the weights are stored, and for
sentence-transformers folders what their files declare.
"""

from __future__ import annotations

import dataclasses
from typing import Any

FAMILIES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "modernbert",
            "deberta-v2")
HEADS = ("base", "seqcls", "tokcls", "sentence")
# Checkpoints of other HF heads, loaded as a base model: a pre-training checkpoint (masked LM,
# ELECTRA's discriminator) whose backbone samp-jax must read, and a question-answering one.
OTHER_HEADS = ("pretraining", "qa")
# The HF config key of each common option, per family (DistilBERT and ModernBERT rename them).
ACT_KEY = {"distilbert": "activation", "modernbert": "hidden_activation"}
EPS_KEY = {"modernbert": "norm_eps"}
SHAPE_KEYS = {"distilbert": ("dim", "n_heads", "hidden_dim")}
# Families whose position table bounds the input (HF fails past it): the truncation variant.
POSITION_TABLE = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One checkpoint variation of one family.

    Attributes:
      family: HF `model_type`.
      name: short name, unique within the family.
      config: HF config keys set over the family's tiny golden config.
      heads: folders to build, from `HEADS` and `OTHER_HEADS`.
      storage: None (float32 `model.safetensors`), 'bfloat16' / 'float16' (weights saved in
        that dtype), or 'sharded' (several shards and `model.safetensors.index.json`).
      st: for the `sentence` head: `max_seq_length`, `do_lower_case`, `pooling` (a list of
        sentence-transformers modes), `normalize` (False: no Normalize module), `dense` (a
        Dense module after pooling), `default_prompt` (a prompt every text gets),
        `native_save` (the folder as `SentenceTransformer.save` writes it).
      probe_length: find the longest input HF runs (the position table is shorter than the
        tokenizer's limit) and tokenize to that.
    """

    family: str
    name: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    heads: tuple[str, ...] = ("base",)
    storage: str | None = None
    st: dict[str, Any] = dataclasses.field(default_factory=dict)
    probe_length: bool = False

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"


def _common(family: str) -> list[Variant]:
    """What every family gets: the default (all heads), activations, an epsilon, odd shapes,
    label layouts and storage formats."""
    act, eps = ACT_KEY.get(family, "hidden_act"), EPS_KEY.get(family, "layer_norm_eps")
    hidden, heads, inner = SHAPE_KEYS.get(family, ("hidden_size", "num_attention_heads",
                                                   "intermediate_size"))
    out = [Variant(family, "default", heads=HEADS), Variant(family, "other_heads", heads=OTHER_HEADS)]
    out += [Variant(family, f"act_{name}", {act: name}) for name in ("relu", "gelu_new", "silu")]
    if family != "distilbert":  # DistilBERT's LayerNorms use 1e-12 whatever the config says
        out.append(Variant(family, "eps_1e-2", {eps: 1e-2}))
    out.append(Variant(family, "heads5_hidden40_ffn50", {hidden: 40, heads: 5, inner: 50},
                       heads=("base", "seqcls")))
    out.append(Variant(family, "heads6_headdim5", {heads: 6}))
    out.append(Variant(family, "labels1", {"num_labels": 1}, heads=("seqcls",)))
    out.append(Variant(family, "labels2_named_dropout",
                       {"id2label": {0: "no", 1: "yes"}, "label2id": {"no": 0, "yes": 1},
                        **_dropout(family)}, heads=("seqcls", "tokcls")))
    out.append(Variant(family, "labels5_default_names", {"num_labels": 5}, heads=("seqcls", "tokcls")))
    # HF writes no id2label for its default two labels (LABEL_0, LABEL_1)
    out.append(Variant(family, "labels2_default_names", {"num_labels": 2}, heads=("seqcls", "tokcls")))
    out += [Variant(family, f"stored_{storage}", heads=("seqcls",), storage=storage)
            for storage in ("bfloat16", "float16", "sharded")]
    if family in POSITION_TABLE:
        out.append(Variant(family, "max_positions_16", {"max_position_embeddings": 16},
                           heads=("base", "sentence"), probe_length=True))
    return out


def _dropout(family: str) -> dict[str, Any]:
    key = {"distilbert": "seq_classif_dropout", "deberta-v2": "pooler_dropout"}.get(family, "classifier_dropout")
    return {key: 0.3}


def _specific() -> list[Variant]:
    """Options only some families have."""
    v = Variant
    return [
        # BERT: the remaining HF activations, token types, padding id
        *[v("bert", f"act_{name}", {"hidden_act": name})
          for name in ("gelu_pytorch_tanh", "gelu_python", "quick_gelu", "gelu_fast", "gelu_accurate")],
        v("bert", "type_vocab_1", {"type_vocab_size": 1}, heads=("base", "seqcls")),
        v("bert", "type_vocab_3", {"type_vocab_size": 3}),
        v("bert", "pad_3", {"pad_token_id": 3}),
        v("bert", "position_relative_key", {"position_embedding_type": "relative_key"}),
        # RoBERTa / XLM-R: positions counted from another padding id, a second token type
        v("roberta", "pad_0", {"pad_token_id": 0, "max_position_embeddings": 41}),
        v("roberta", "pad_3", {"pad_token_id": 3, "max_position_embeddings": 44}),
        v("roberta", "type_vocab_2", {"type_vocab_size": 2}, heads=("base", "seqcls")),
        v("xlm-roberta", "pad_0", {"pad_token_id": 0, "max_position_embeddings": 41}),
        v("xlm-roberta", "type_vocab_2", {"type_vocab_size": 2}),
        # DistilBERT
        v("distilbert", "sinusoidal", {"sinusoidal_pos_embds": True}, heads=("base", "seqcls")),
        v("distilbert", "pad_3", {"pad_token_id": 3}),
        # ELECTRA: no projection, a wider embedding, token types
        v("electra", "embedding_eq_hidden", {"embedding_size": 30}, heads=("base", "seqcls")),
        v("electra", "embedding_40", {"embedding_size": 40}),
        v("electra", "act_gelu", {"hidden_act": "gelu"}, heads=("base", "seqcls")),
        v("electra", "type_vocab_1", {"type_vocab_size": 1}),
        # MPNet
        v("mpnet", "buckets_64", {"relative_attention_num_buckets": 64}),
        v("mpnet", "buckets_16", {"relative_attention_num_buckets": 16}),
        v("mpnet", "pad_0", {"pad_token_id": 0}),
        *_deberta(), *_modernbert(), *_sentence(),
    ]


def _deberta() -> list[Variant]:
    d = "deberta-v2"
    v = Variant
    return [
        v(d, "buckets_4", {"position_buckets": 4}),
        v(d, "buckets_64", {"position_buckets": 64}),
        v(d, "buckets_4_maxrel_8", {"position_buckets": 4, "max_relative_positions": 8}),
        v(d, "exact_maxrel_8", {"position_buckets": -1, "max_relative_positions": 8}),
        v(d, "exact_maxrel_default", {"position_buckets": -1, "max_relative_positions": -1}),
        v(d, "pos_att_c2p", {"pos_att_type": ["c2p"]}),
        v(d, "pos_att_p2c", {"pos_att_type": ["p2c"]}),
        v(d, "pos_att_none", {"pos_att_type": []}),
        v(d, "pos_att_string", {"pos_att_type": "p2c|c2p"}),
        v(d, "position_biased_input", {"position_biased_input": True}),
        v(d, "norm_rel_none", {"norm_rel_ebd": "none"}),
        v(d, "separate_keys", {"share_att_key": False}, heads=("base", "seqcls")),
        v(d, "separate_keys_c2p", {"share_att_key": False, "pos_att_type": ["c2p"]}),
        v(d, "no_relative", {"relative_attention": False, "position_biased_input": True}),
        v(d, "no_relative_no_terms", {"relative_attention": False, "pos_att_type": None,
                                      "position_biased_input": True}),
        v(d, "no_relative_norm_none", {"relative_attention": False, "norm_rel_ebd": "none",
                                       "position_biased_input": True}),
        v(d, "type_vocab_2", {"type_vocab_size": 2}, heads=("base", "seqcls")),
        v(d, "pad_3", {"pad_token_id": 3}),
        v(d, "pooler_tanh", {"pooler_hidden_act": "tanh"}, heads=("seqcls",)),
        v(d, "conv_kernel_3", {"conv_kernel_size": 3}),
        v(d, "embedding_20", {"embedding_size": 20}),
        v(d, "v2_absolute_16", {"position_biased_input": True, "max_position_embeddings": 16},
          heads=("base", "sentence"), probe_length=True),
        v(d, "v3_max_positions_16", {"max_position_embeddings": 16}, heads=("base", "sentence"),
          probe_length=True),
    ]


def _modernbert() -> list[Variant]:
    m = "modernbert"
    v = Variant
    return [
        v(m, "all_global", {"global_attn_every_n_layers": 1}),
        v(m, "global_every_3_layers4", {"global_attn_every_n_layers": 3, "num_hidden_layers": 4}),
        *[v(m, f"window_{w}", {"local_attention": w}) for w in (2, 4, 6, 7, 128)],
        v(m, "local_theta_none", {"local_rope_theta": None}),
        v(m, "thetas_hf_defaults", {"global_rope_theta": 160000.0, "local_rope_theta": 10000.0}),
        v(m, "deterministic_flash", {"deterministic_flash_attn": True}),
        v(m, "pooling_cls", {"classifier_pooling": "cls"}, heads=("seqcls",)),
        *[v(m, f"head_act_{a}", {"classifier_activation": a}, heads=("seqcls", "tokcls"))
          for a in ("relu", "tanh", "gelu_new", "silu")],
        v(m, "attention_bias", {"attention_bias": True}),
        v(m, "mlp_bias", {"mlp_bias": True}),
        v(m, "norm_bias", {"norm_bias": True}, heads=("base", "seqcls")),
        v(m, "classifier_bias", {"classifier_bias": True}, heads=("seqcls", "tokcls")),
        v(m, "layers_2", {"num_hidden_layers": 2}),
        v(m, "max_positions_16", {"max_position_embeddings": 16}, heads=("base",), probe_length=True),
    ]


def _sentence() -> list[Variant]:
    """sentence-transformers folders that declare more than a pooling mode."""
    out = []
    for family in ("bert", "roberta", "modernbert"):
        s = lambda name, **st: Variant(family, f"st_{name}", heads=("sentence",), st=st)  # noqa: E731
        out += [s("max_seq_12", max_seq_length=12), s("lowercase", do_lower_case=True),
                s("weightedmean", pooling=["weightedmean"]), s("lasttoken", pooling=["lasttoken"]),
                s("cls_mean_max", pooling=["cls", "mean", "max"]), s("no_normalize", normalize=False),
                s("dense", dense=True), s("default_prompt", default_prompt="query: "),
                s("saved_by_sentence_transformers", native_save=True, pooling=["cls"])]
    return out


GRID: tuple[Variant, ...] = tuple(v for family in FAMILIES for v in _common(family)) + tuple(_specific())
assert len({v.key for v in GRID}) == len(GRID), "variant names repeat"
