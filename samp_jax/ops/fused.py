"""Registry of fused memory-bound ops around the INT8 GEMMs (`layernorm_quant`,
`embedding_quant`).

The model uses a fused op only where one is registered and can run now (on a GPU, when
lowering for one, or in interpret mode); otherwise it runs the plain XLA ops and each INT8
site quantizes its own input, which gives the same numbers (`pallas_kernels.numerics`).
"""

from __future__ import annotations

from typing import Callable

FUSED_OPS = ("layernorm_quant", "embedding_quant")
_FUSED: dict[str, tuple[Callable, Callable[[], bool]]] = {}


def register_fused_op(name: str, fn: Callable, *, available: Callable[[], bool]) -> None:
    """Registers a fused op; `available()` says whether it can run now."""
    if name not in FUSED_OPS:
        raise ValueError(f"fused op {name=} is not one of {FUSED_OPS}")
    _FUSED[name] = (fn, available)


def registered_fused_ops() -> dict[str, Callable]:
    """Each registered fused op's function, by name (available now or not)."""
    return {name: fn for name, (fn, _) in _FUSED.items()}


def fused_op(name: str) -> Callable | None:
    """The registered fused op `name` if it is available now, else None (use plain XLA)."""
    entry = _FUSED.get(name)
    return entry[0] if entry is not None and entry[1]() else None


def any_available() -> bool:
    """Whether some fused kernel can run now: the condition for handing INT8 from one kernel
    to the next (a GEMM epilogue requantizing for the next GEMM included)."""
    return any(available() for _, available in _FUSED.values())
