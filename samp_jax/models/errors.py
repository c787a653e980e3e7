"""Errors of the model layer that several modules raise (kept apart so that the config and the
family registry can both use them without importing each other)."""


class ConfigError(ValueError):
    """A checkpoint config asks for something samp-jax does not implement."""


class CheckpointError(ValueError):
    """A checkpoint cannot be read (`problem`), or does not fit the model: lists every missing,
    unexpected or mis-shaped key."""

    def __init__(self, path, *, missing=(), unexpected=(), mismatched=(), problem: str | None = None,
                 hint: str | None = None):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        if problem is not None:
            super().__init__(f"checkpoint {path} {problem}")
            return
        lines = [f"checkpoint {path} does not match the model:"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): {self.missing}")
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): {self.unexpected}")
        for key, got, want in self.mismatched:
            lines.append(f"  wrong shape: {key} has {got}, expected {want}")
        if hint:
            lines.append(f"  {hint}")
        super().__init__("\n".join(lines))
