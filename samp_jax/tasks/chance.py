"""What a classifier scores without having learned anything: always the most frequent class.

A fine-tune that ends at that level has learned nothing, and a tolerance relative to such a
model means nothing; `chance_level` gives the level and the noise of the metric around it on
the rows scored, so that the fine-tune, `eval` and `search` can say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from samp_jax.tasks.types import IGNORE, EncodedSplit, TaskType, classification_score

Z_ONE_SIDED_95 = 1.645


@dataclass(frozen=True)
class ChanceLevel:
    """The metric of always predicting the split's most frequent class.

    Attributes:
      metric: the task metric ('accuracy', 'entity_f1').
      value: its value for the constant prediction.
      label: the most frequent class (or tag) of the split.
      margin: how far above `value` a score must be to count as better: the one-sided 95%
        binomial noise of an accuracy over `examples` rows; 0 for other metrics.
      examples: rows scored.
    """

    metric: str
    value: float
    label: str
    margin: float
    examples: int

    def beaten_by(self, score: float | None) -> bool:
        """Whether `score` is clearly better than always predicting `label`."""
        return score is not None and score > self.value + self.margin

    def describe(self, score: float, what: str) -> str:
        """One line: `what`'s score is no better than the constant prediction."""
        noise = f" + {self.margin:.4f} noise" if self.margin else ""
        return (f"{what} {self.metric} {score:.4f} is no better than always predicting "
                f"{self.label!r} ({self.value:.4f}{noise} on {self.examples} rows)")


def chance_level(task_type: TaskType, labels: Sequence[str] | None,
                 encoded: EncodedSplit) -> ChanceLevel | None:
    """The `ChanceLevel` of a labelled classification split, or None (no classes, no labels)."""
    if not task_type.classifies or labels is None or encoded.labels is None:
        return None
    valid = encoded.labels[encoded.labels != IGNORE]
    if valid.size == 0:
        return None
    majority = int(np.bincount(valid.astype(np.int64), minlength=len(labels)).argmax())
    logits = np.zeros((*encoded.labels.shape, len(labels)), np.float32)
    logits[..., majority] = 1.0
    value = classification_score(task_type, labels, logits, encoded)["value"]
    metric = task_type.metric.name
    margin = 0.0
    if metric == "accuracy":
        margin = Z_ONE_SIDED_95 * math.sqrt(value * (1.0 - value) / len(encoded))
    return ChanceLevel(metric, float(value), labels[majority], margin, len(encoded))
