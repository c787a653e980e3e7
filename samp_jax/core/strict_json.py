"""Strict JSON, both ways. Written: NaN and ±Inf, which Python's `json` writes as the bare
words `NaN` and `Infinity` (not JSON), become `null`. Read: every object remembers the keys it
held more than once (`JsonObject`), which Python's `json` resolves silently to the last value,
so that a reader can refuse them."""

from __future__ import annotations

import json
import math
from collections import Counter
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


class JsonObject(dict):
    """A parsed JSON object that remembers the keys it held more than once (`json` keeps the
    last value of a repeated key and says nothing)."""

    repeated: tuple[str, ...] = ()

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> "JsonObject":
        obj = cls(pairs)
        if len(obj) < len(pairs):
            counts = Counter(key for key, _ in pairs)
            obj.repeated = tuple(key for key, n in counts.items() if n > 1)
        return obj


def loads(text: str | bytes) -> Any:
    """`json.loads`, with every object a `JsonObject` (which knows its repeated keys).

    Raises:
      json.JSONDecodeError: not JSON.
    """
    return json.loads(text, object_pairs_hook=JsonObject.of)


def repeated_key(value: Any, where: str = "") -> tuple[str, str] | None:
    """`(where, key)` for the first object in `value` (from `loads`), at any depth, that holds
    a key more than once: `where` is its path (`precision_map.rules[0]`; '' for `value`
    itself). None when every object's keys are distinct."""
    if isinstance(value, JsonObject) and value.repeated:
        return where, value.repeated[0]
    if isinstance(value, dict):
        items = ((f"{where}.{key}" if where else str(key), v) for key, v in value.items())
    elif isinstance(value, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    return next((found for path, v in items if (found := repeated_key(v, path))), None)
