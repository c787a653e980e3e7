"""Errors of the model layer that several modules raise (kept apart so that the config and the
family registry can both use them without importing each other)."""


class ConfigError(ValueError):
    """A checkpoint config asks for something samp-jax does not implement."""
