"""JSON that strict readers accept: NaN and ±Inf, which Python's `json` writes as the bare words
`NaN` and `Infinity` (not JSON), become `null`."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """`value` with every float that is NaN or ±Inf, at any depth of dicts, lists and tuples,
    replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """`json.dumps` of `finite_or_none(value)`, refusing anything else that is not JSON."""
    return json.dumps(finite_or_none(value), allow_nan=False, **options)
