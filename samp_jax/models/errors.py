"""Errors of the model layer that several modules raise (kept apart so that the config and the
family registry can both use them without importing each other)."""

from samp_jax.core.errors import SampJaxError


class ConfigError(SampJaxError, ValueError):
    """A checkpoint config asks for something samp-jax does not implement."""


# Keys and wrong shapes a `CheckpointError` quotes; the rest are counted (a config asking for
# 10^5 layers must not print a megabyte of key names).
SHOWN_KEYS = 10


def _listed(keys: list) -> str:
    """The first `SHOWN_KEYS` of `keys`, and how many more there are."""
    more = len(keys) - SHOWN_KEYS
    return f"{keys[:SHOWN_KEYS]}" + (f" and {more} more" if more > 0 else "")


class CheckpointError(SampJaxError, ValueError):
    """A checkpoint cannot be read (`problem`), or does not fit the model: lists the missing,
    unexpected or mis-shaped keys (the first `SHOWN_KEYS` of each, and their counts)."""

    def __init__(self, path, *, missing=(), unexpected=(), mismatched=(), problem: str | None = None,
                 hint: str | None = None):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        if problem is not None:
            super().__init__(f"checkpoint {path} {problem}")
            return
        lines = [f"checkpoint {path} does not match the model:"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): {_listed(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): {_listed(self.unexpected)}")
        for key, got, want in self.mismatched[:SHOWN_KEYS]:
            lines.append(f"  wrong shape: {key} has {got}, expected {want}")
        if len(self.mismatched) > SHOWN_KEYS:
            lines.append(f"  ... and {len(self.mismatched) - SHOWN_KEYS} more keys of the wrong shape")
        if hint:
            lines.append(f"  {hint}")
        super().__init__("\n".join(lines))
