"""Strict JSON, both ways. Written: NaN and ±Inf, which Python's `json` writes as the bare
words `NaN` and `Infinity` (not JSON), become `null`. Read: every object remembers the keys it
held more than once (`JsonObject`), which Python's `json` resolves silently to the last value,
so that a reader can refuse them; and JSON that Python's reader cannot take (nested deeper than
its recursion limit, an integer of more digits than `int` converts) raises `BeyondReader`, a
`json.JSONDecodeError`, so that every reader names its file for it as for any bad JSON, rather
than a `RecursionError` or Python's "use sys.set_int_max_str_digits()" naming none."""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from typing import Any

from samp_jax.core.errors import SampJaxError


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


class BeyondReader(SampJaxError, json.JSONDecodeError):
    """JSON that Python's reader cannot take: nested deeper than its recursion limit, or an
    integer of more digits than `int` converts (`sys.get_int_max_str_digits()`, 4300 by
    default). Its message is the problem alone (`JSON nested deeper than Python reads`, `an
    integer of 5001 digits, ...`): a reader puts the file's name (and the row) before it."""

    def __init__(self, problem: str):
        ValueError.__init__(self, problem)
        self.msg, self.doc, self.pos, self.lineno, self.colno = problem, "", 0, 1, 1

    def __reduce__(self):
        return self.__class__, (self.msg,)


def parse(text: str | bytes, **options: Any) -> Any:
    """`json.loads(text, **options)`, raising `BeyondReader` for JSON Python cannot read.

    Raises:
      BeyondReader: nested deeper than Python's recursion limit, or an integer longer than
        `int` converts.
      json.JSONDecodeError: not JSON.
    """
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise BeyondReader("JSON nested deeper than Python reads") from None
    except ValueError as e:
        if isinstance(e, json.JSONDecodeError) or "integer string conversion" not in str(e):
            raise
        digits = re.search(r"has (\d+) digits", str(e))
        raise BeyondReader(
            f"an integer of {digits.group(1) if digits else 'too many'} digits, more than "
            f"Python reads ({sys.get_int_max_str_digits()})") from None


def loads(text: str | bytes) -> Any:
    """`parse`, with every object a `JsonObject` (which knows its repeated keys).

    Raises:
      BeyondReader: JSON Python cannot read (`parse`).
      json.JSONDecodeError: not JSON.
    """
    return parse(text, object_pairs_hook=JsonObject.of)


def repeated_key(value: Any, where: str = "") -> tuple[str, str] | None:
    """`(where, key)` for the first object in `value` (from `loads`), at any depth, that holds
    a key more than once: `where` is its path (`precision_map.rules[0]`; '' for `value`
    itself). None when every object's keys are distinct."""
    # depth first, in document order, without recursion: a value nested as deep as the
    # parser allows must not overflow the stack here
    stack = [(where, value)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, JsonObject) and value.repeated:
            return where, value.repeated[0]
        if isinstance(value, dict):
            items = [(f"{where}.{key}" if where else str(key), v) for key, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(items))
    return None
