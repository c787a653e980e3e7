"""Data sets for fine-tuning, calibration, precision search and evaluation."""

from samp_jax.data.snli import (LABELS, PairExample, SNLISplits, embedding_eval_pairs,
                                load_snli_file, snli_splits, unique_sentences)

__all__ = [
    "LABELS", "PairExample", "SNLISplits", "embedding_eval_pairs", "load_snli_file",
    "snli_splits", "unique_sentences",
]
