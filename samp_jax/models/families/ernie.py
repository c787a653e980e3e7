"""ERNIE 1.0 / 2.0 / 3.0 (`model_type: ernie`): BERT's model, heads and pooler, plus (when the
config sets `use_task_id`, as the ERNIE 3.0 checkpoints do) a task-type embedding table added
to the embeddings before their LayerNorm.

HF's `ErnieEmbeddings` adds `task_type_embeddings(task_type_ids)` and, as its tokenizers
(`BertTokenizer`) send no task-type ids, uses id 0 for every token: samp-jax adds row 0
(`EncoderConfig.task_type_vocab_size`, `Embeddings.task_type`). Without `use_task_id` HF
builds no table and a checkpoint's stored one goes unused (ERNIE 3.0 weights under a config
that drops the option): samp-jax loads it so too, BERT's model, and warns that the table is
not used (`Family.unused_keys`). The rest is transformers
4.57's `modeling_ernie.py`, marked "Copied from" BERT class by class: the same layers, the
`pooler.dense → tanh` pooler under `ErnieForSequenceClassification`'s `classifier`, the same
token classifier, and `ErnieConfig`'s defaults are `BertConfig`'s.
"""

import dataclasses
from typing import Any, Mapping

from samp_jax.models.families.base import KeyRule
from samp_jax.models.families.bert import BERT, bert_layers, embeddings

# ErnieConfig's default table size, used when `use_task_id` is set without it.
TASK_TYPE_VOCAB_SIZE = 3
TASK_TYPE_KEY = "embeddings.task_type_embeddings.weight"  # the table's checkpoint key


def _backbone(config) -> tuple[KeyRule, ...]:
    task = ((KeyRule("embeddings.task_type", TASK_TYPE_KEY),)
            if config.task_type_vocab_size else ())
    return embeddings(config) + task + bert_layers(config)


def _derived(hf: Mapping[str, Any]) -> dict[str, Any]:
    """`task_type_vocab_size` when `use_task_id` is set (HF builds the table only then), else 0."""
    if not hf.get("use_task_id"):
        return {"task_type_vocab_size": 0}
    size = hf.get("task_type_vocab_size")
    return {"task_type_vocab_size": TASK_TYPE_VOCAB_SIZE if size is None else size}


def _unused(config) -> dict[str, str]:
    """The task-type table of a checkpoint whose config sets no `use_task_id`: HF's
    `ErnieEmbeddings` builds no table then, and `from_pretrained` leaves the stored one
    unused (its "weights not used" note); the model is BERT's."""
    if config.task_type_vocab_size:
        return {}
    return {TASK_TYPE_KEY: "config.json's use_task_id is not true, so HF's ErnieModel builds no "
                           "task-type table and adds none to the embeddings"}


def _export(config) -> dict[str, Any]:
    if config.task_type_vocab_size:
        return {"use_task_id": True, "task_type_vocab_size": config.task_type_vocab_size}
    return {"use_task_id": False}


ERNIE = dataclasses.replace(
    BERT,
    model_type="ernie",
    prefix="ernie",
    class_prefix="Ernie",
    config_derived=_derived,
    config_export=_export,
    backbone=_backbone,
    unused_keys=_unused,
)
