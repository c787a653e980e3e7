"""A module imported when first used, not when the module naming it is: JAX's Mosaic GPU Pallas
API (`jax.experimental.pallas.mosaic_gpu`) takes most of a second to import, which every
process that imports samp-jax would pay, on a CPU too, although only a Hopper kernel (or its
interpret mode) ever reads it."""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands for the module `name`: the first attribute read imports it (through the import
    system's own locks, so threads may race to it), and each read after that is a lookup in
    `sys.modules`."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        return getattr(self.module(), attribute)

    def module(self) -> ModuleType:
        """The module itself, imported now if it is not yet."""
        return importlib.import_module(self._name)

    def __repr__(self) -> str:
        return f"LazyModule({self._name!r})"


def mosaic_gpu() -> LazyModule:
    """`jax.experimental.pallas.mosaic_gpu`, imported when first used."""
    return LazyModule("jax.experimental.pallas.mosaic_gpu")
