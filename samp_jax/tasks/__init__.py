"""Labelled tasks (SNLI, polarity, WNUT-16): splits, encoding, prediction and metrics."""

from samp_jax.tasks.metrics import roc_auc
from samp_jax.tasks.task import (
    IGNORE,
    TASKS,
    EncodedSplit,
    Task,
    evaluate,
    gather_rows,
    get_task,
    predict,
    split_examples,
)

__all__ = ["IGNORE", "TASKS", "EncodedSplit", "Task", "evaluate", "gather_rows", "get_task",
           "predict", "roc_auc", "split_examples"]
