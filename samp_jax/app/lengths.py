"""`--max-length`: the tokens every row is cut at, and the one line that says what a cut left out.

Without it, rows are cut at the model's own limit (its tokenizer's `max_length`), the length
`samp-jax predict` serves rows at, so that `eval`, `calibrate`, `search` and `finetune`
measure the rows predict serves; the built-in tasks keep their own length
(`samp_jax.tasks.task.BUILTIN_MAX_LENGTH`). A value above the tokenizer's `max_length` is
taken up to the model's position table (a model without one, DeBERTa-v3 or ModernBERT, takes
any length, as HF runs it), and a model the command saves serves at it; above the position
table it is a usage error, checked as soon as the model is read, before any slow step. The
quantized model `search` and `calibrate` save serves at the length their rows were cut at,
shorter ones included (`samp_jax.workflows.pipeline.serve_as_measured`).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Mapping

from samp_jax.app.outputs import UsageError
from samp_jax.core import host_memory
from samp_jax.tasks import Task
from samp_jax.tasks.truncation import Truncation, describe_all


def check_max_length(args, limit: int, what: str = "the model") -> None:
    """Refuses `--max-length` above `limit` (exit 2, both numbers named)."""
    asked = getattr(args, "max_length", None)
    if asked is not None and asked > limit:
        raise UsageError(f"--max-length {asked} exceeds the {limit}-token limit of {what} (its "
                         f"position table); give at most {limit}, or leave it out to cut rows "
                         "at the model's own length")


def fit_max_length(args, model, tokenizer, what: str = "the model"):
    """The tokenizer rows are cut with: `tokenizer`, or, for a `--max-length` above its own
    `max_length` (the length the model was saved to serve at), a copy that takes
    `--max-length` tokens, attached to `model` as `model.tokenizer` so that what the command
    saves serves at that length too.

    Raises:
      UsageError: `--max-length` above the model's position table (`config.position_limit`;
        a model without one, DeBERTa-v3 or ModernBERT, takes any length).
    """
    asked = getattr(args, "max_length", None)
    positions = model.config.position_limit
    if asked is not None and positions is not None:
        check_max_length(args, positions, what)
    if asked is not None:  # a row cut to its special tokens (and prompt) alone reads no text
        needed = int(tokenizer.lengths([""])[0])
        if asked <= needed:
            raise UsageError(f"--max-length {asked} leaves no room for text: each row of "
                             f"{what} takes {needed} tokens before its text (special tokens"
                             f"{' and the prompt' if tokenizer.prompt else ''}); give more")
    host_memory.fit_to_row_length(tokenizer.max_length if asked is None else asked)
    if asked is None or asked <= tokenizer.max_length:
        return tokenizer
    tokenizer = tokenizer.with_max_length(asked)
    model.tokenizer = tokenizer
    return tokenizer


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
