"""Warnings on stderr about figures a command measured that cannot be taken at face value."""

from __future__ import annotations

import math
import sys
from typing import Sequence

from samp_jax.tasks.chance import below_no_skill, chance_level


def warn_non_finite(command: str, rows: Sequence[dict], split: str) -> None:
    """One warning per variant whose outputs held NaN or Inf (`non_finite_rows`): its metric
    is NaN, since no answer is read from such outputs."""
    for row in rows:
        count = row.get("non_finite_rows")
        if count:
            metric = row.get("metric") or "metric"
            print(f"samp-jax {command}: warning: {row['variant']} gives NaN or Inf outputs for "
                  f"{count} of {row['examples']} {split} rows (values past the range of its "
                  f"precision, e.g. above FP16's 65,504, or NaN inputs); its {metric} is NaN",
                  file=sys.stderr, flush=True)


def warn_if_at_chance(command: str, evaluator, fp32_score) -> None:
    """A warning when the FP32 model's test metric is no better than always predicting the most
    frequent class: a tolerance or change relative to it then means nothing; or when a ranking
    metric is below what a model that learned nothing scores (`below_no_skill`)."""
    below = below_no_skill(evaluator.metric, fp32_score, "the FP32 model's test")
    if below is not None:
        print(f"samp-jax {command}: warning: {below}", file=sys.stderr, flush=True)
    evaluation = evaluator.evaluation
    encoded = getattr(evaluation, "encoded", None)  # classification only
    if encoded is None or fp32_score is None or not math.isfinite(fp32_score):
        return
    chance = chance_level(evaluation.task_type, evaluation.labels, encoded)
    if chance is not None and not chance.beaten_by(fp32_score):
        verdict = chance.describe(fp32_score, "the FP32 model's test")
        print(f"samp-jax {command}: warning: {verdict}: a change relative to it means nothing "
              "(is the model trained for this data?)", file=sys.stderr, flush=True)
