"""Warnings on stderr about figures a command measured that cannot be taken at face value."""

from __future__ import annotations

import sys
from typing import Sequence


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
