"""`--max-length`: the tokens every row is cut at, and the one line that says what a cut left out.

Without it, rows are cut at the model's own limit (its tokenizer's `max_length`), the length
`samp-jax predict` serves rows at, so that `eval`, `calibrate`, `search` and `finetune`
measure the rows predict serves; the built-in tasks keep their own length
(`samp_jax.tasks.task.BUILTIN_MAX_LENGTH`). A value above the model's limit is a usage error,
checked as soon as the model's tokenizer is read, before any slow step.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Mapping

from samp_jax.app.outputs import UsageError
from samp_jax.serving.engine import row_limit
from samp_jax.tasks import Task
from samp_jax.tasks.truncation import Truncation, describe_all


def model_limit(tokenizer, model=None) -> int:
    """The most tokens a row of the model may hold: its tokenizer's `max_length` (and, with
    `model`, its position limit when smaller)."""
    return tokenizer.max_length if model is None else row_limit(model.config, tokenizer)


def check_max_length(args, limit: int, what: str = "the model") -> None:
    """Refuses `--max-length` above `limit`, the model's limit (exit 2, both numbers named)."""
    asked = getattr(args, "max_length", None)
    if asked is not None and asked > limit:
        raise UsageError(f"--max-length {asked} exceeds the {limit}-token limit of {what} (its "
                         f"tokenizer's max_length); give at most {limit}, or leave it out to cut "
                         "rows at that limit")


def at_max_length(args, task: Task) -> Task:
    """`task` cutting rows at `--max-length` when given (else at its own `max_length`: the
    model's limit for your data, `BUILTIN_MAX_LENGTH` for a built-in task)."""
    asked = getattr(args, "max_length", None)
    return task if asked is None else dataclasses.replace(task, max_length=asked)


def say_truncation(command: str, truncations: Mapping[str, Truncation | None]) -> None:
    """One line on stderr when a cut left something out of the named splits, e.g.
    "samp-jax eval: warning: 12 of 400 test rows are longer than 256 tokens and were
    truncated"; nothing when no row was cut."""
    line = describe_all(truncations)
    if line:
        print(f"samp-jax {command}: warning: {line}", file=sys.stderr, flush=True)
