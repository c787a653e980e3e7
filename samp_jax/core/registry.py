"""What every `register_*` function checks before it adds to its registry (a dict by name):
that the entry is of the registry's type, and that its name is free unless `replace` is given.
Standard library only."""

from __future__ import annotations

from collections.abc import Mapping


def check_kind(value: object, kind: type, where: str) -> None:
    """Raises TypeError naming `where` when `value` is not a `kind`."""
    if not isinstance(value, kind):
        raise TypeError(f"{where}: expected a {kind.__name__}, got {type(value).__name__}")


def check_free(registry: Mapping, name: str, shown: str, *, replace: bool) -> None:
    """Raises ValueError when `name` is in `registry` and `replace` is False; `shown` names the
    entry in the message (e.g. "strategy 'greedy'")."""
    if name in registry and not replace:
        raise ValueError(f"{shown} is already registered; pass replace=True")
