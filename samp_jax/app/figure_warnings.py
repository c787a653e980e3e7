"""Warnings on stderr about figures a command measured that cannot be taken at face value."""

from __future__ import annotations

import sys
import warnings
from typing import Sequence

from samp_jax.tasks.chance import NO_SKILL, at_chance, below_no_skill, undefined_metric


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


def warn_if_undefined(command: str, evaluator, fp32_score) -> None:
    """A warning when the FP32 model's test metric is undefined (NaN) though its outputs are
    finite (a score metric of a model that scores every row alike): every change is NaN."""
    why = undefined_metric(evaluator.metric, fp32_score, "the FP32 model's test")
    if why is not None:
        print(f"samp-jax {command}: warning: {why} (ROC-AUC and Spearman are, for a model "
              "that gives every row the same score); every change relative to it is NaN",
              file=sys.stderr, flush=True)


def warn_if_at_chance(command: str, evaluator, fp32_score) -> None:
    """A warning when the FP32 model's test metric is no better than always predicting the most
    frequent class: a tolerance or change relative to it then means nothing; or when a ranking
    metric is below what a model that learned nothing scores (`below_no_skill`)."""
    below = below_no_skill(evaluator.metric, fp32_score, "the FP32 model's test")
    if below is not None:
        print(f"samp-jax {command}: warning: {below}", file=sys.stderr, flush=True)
    verdict = at_chance(evaluator.evaluation, fp32_score, "the FP32 model's test")
    if verdict is not None:
        print(f"samp-jax {command}: warning: {verdict}: a change relative to it means nothing "
              "(is the model trained for this data?)", file=sys.stderr, flush=True)


def warn_if_trained_below_no_skill(metric: str | None, dev_value: float) -> None:
    """A `UserWarning` when a fine-tune's best dev score of a ranking metric is below what a
    model that learned nothing scores (Spearman below 0, ROC-AUC below 0.5), as `eval` and
    `search` say of such a model."""
    no_skill = NO_SKILL.get(metric)
    if no_skill is not None and dev_value < no_skill.value:
        warnings.warn(f"the fine-tuned model's dev {metric} {dev_value:.4f} is below "
                      f"{no_skill.value:g} ({no_skill.meaning}): it ranks the dev rows worse "
                      "than a model that learned nothing (train longer: --min-steps, --epochs; "
                      "or check the gold)", UserWarning, stacklevel=2)


COARSE_UNIT = 0.01
"""A test split on which one row (or query) moves the metric by more than this is said to be
coarse: its figures, and their changes relative to FP32, move in steps past 1%."""


def warn_if_coarse(command: str, evaluator, examples: int, units: str = "rows") -> None:
    """A warning when the test split is so small that one of its `units` moves the metric by
    more than `COARSE_UNIT` (about 1/`examples`): the figures beside it are that coarse."""
    if evaluator.metric is None or not examples or 1.0 / examples <= COARSE_UNIT:
        return
    print(f"samp-jax {command}: warning: the test split has {examples} {units}: one of them "
          f"moves {evaluator.metric} by about {1.0 / examples:.3g}, so the figures below, and "
          "their changes relative to FP32, move in steps that large (give more rows)",
          file=sys.stderr, flush=True)
