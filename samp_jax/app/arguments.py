"""argparse types that refuse a bad number at parse time (exit code 2, the argument named).
Importing this module loads no JAX (the parser's `--help` needs none)."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    return _at_least(text, 1, "must be at least 1")


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    return _at_least(text, 0, "must not be negative")


def _at_least(text: str, lowest: int, message: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"{value} {message}")
    return value


def path_or_name(text: str) -> str:
    """An argparse type: a path or a name that is not empty (an empty one would name the
    current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty; expected a path or a name")
    return text


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def unit_interval(text: str) -> float:
    """An argparse type: a number in [0, 1] (e.g. SmoothQuant's alpha)."""
    value = _finite(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def label_threshold(text: str) -> float:
    """An argparse type: a multi-label decision threshold, strictly between 0 and 1."""
    # imported here: `samp_jax.models` loads JAX, which `--help` does without
    from samp_jax.models.head_kinds import check_label_threshold
    try:
        return check_label_threshold(_finite(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} must be strictly between 0 and 1") from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def column_names(text: str) -> list[str]:
    """An argparse type: column names separated by commas (spaces around each are dropped),
    for `action="extend"`. A blank name (`id,,source`) is left for the command to refuse."""
    return [name.strip() for name in text.split(",")]
