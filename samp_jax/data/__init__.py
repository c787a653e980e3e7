"""Data sets for fine-tuning, calibration, precision search and evaluation."""

from samp_jax.data.polarity import (POLARITY_LABELS, SNIPPET_COLLECTIONS, TextExample, load_polarity,
                                   load_snippets, polarity_splits)
from samp_jax.data.snli import (
    LABELS,
    PairExample,
    SNLISplits,
    embedding_eval_pairs,
    load_snli_file,
    snli_splits,
    unique_sentences,
)
from samp_jax.data.splits import TaskSplits
from samp_jax.data.wnut16 import (
    ENTITY_TYPES,
    WNUT16_LABELS,
    TaggedSentence,
    align_labels,
    entity_f1,
    load_wnut16,
    tags_to_spans,
    wnut16_splits,
)

__all__ = [
    "LABELS", "PairExample", "SNLISplits", "embedding_eval_pairs", "load_snli_file",
    "snli_splits", "unique_sentences",
    "TaskSplits",
    "POLARITY_LABELS", "SNIPPET_COLLECTIONS", "TextExample", "load_polarity", "load_snippets",
    "polarity_splits",
    "ENTITY_TYPES", "WNUT16_LABELS", "TaggedSentence", "align_labels", "entity_f1", "load_wnut16",
    "tags_to_spans", "wnut16_splits"
]
