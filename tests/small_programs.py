"""XLA's backend optimization level 0 for the small programs the tests compile.

Most tests run tiny random models (hidden size 32, a few layers) a few times each, so on a CPU
their time is XLA compiling them, not running them, and CI starts from an empty compilation
cache. Level 0 (LLVM's -O0 on the code XLA:CPU emits) compiles such a program in a half to two
thirds of the time and runs it at less than half the speed (a 2-layer fully-INT8 forward on a
2-core CPU: 1.1 s against 1.65 s to compile, 9.5 ms against 4.1 ms a call), a loss of
milliseconds for a program run a few times. Programs of the real MiniLM (about 90 MB of weights), whose running
time counts (fine-tuning steps, searches, the examples), keep XLA's default level (3).

A program is small when the bytes of its inputs and of its constants (the weights of a model
it receives or closes over) are at most `SMALL_PROGRAM_BYTES`. `tests/conftest.py` installs
this in every pytest process and the worker scripts the tests start install it in theirs; the
samp-jax commands the tests start in processes of their own compile at XLA's default level,
as a user's do. `$SAMP_JAX_TEST_SMALL_PROGRAM_BYTES` sets the limit (0: every program at XLA's
default level).
"""

from __future__ import annotations

import os

import numpy as np
from jax._src import compiler
from jax._src.lib.mlir import ir

SMALL_PROGRAM_BYTES = 8 << 20
"""The most bytes of inputs and constants a program may have and compile at level 0 (8 MiB:
a tiny model with MiniLM's 30,522-token vocabulary holds about 2 MB, MiniLM about 90 MB)."""

LIMIT_ENV = "SAMP_JAX_TEST_SMALL_PROGRAM_BYTES"

_BITS = {"i1": 8, "i4": 4, "ui4": 4, "i8": 8, "ui8": 8, "f8E4M3FN": 8, "f8E5M2": 8,
         "i16": 16, "ui16": 16, "bf16": 16, "f16": 16, "i32": 32, "ui32": 32, "f32": 32,
         "i64": 64, "ui64": 64, "f64": 64}


def _tensor_bytes(kind: ir.Type) -> int | None:
    """The bytes of a ranked tensor type of static shape and known element type, else None."""
    try:
        tensor = ir.RankedTensorType(kind)
    except ValueError:
        return None
    bits = _BITS.get(str(tensor.element_type))
    if bits is None or not tensor.has_static_shape:
        return None
    return int(np.prod(tensor.shape, dtype=np.int64)) * bits // 8


def program_bytes(module: ir.Module) -> int | None:
    """The bytes of `module`'s main function's inputs and of all its constants, or None when
    it has no main function or an input or a constant is not a ranked tensor of static shape
    and known element type (a program of unknown size is not small)."""
    inputs = None
    for op in module.body.operations:
        if "sym_name" in op.attributes and ir.StringAttr(op.attributes["sym_name"]).value == "main":
            kinds = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value).inputs
            inputs = [_tensor_bytes(kind) for kind in kinds]
    if inputs is None:
        return None
    constants = []

    def visit(op):
        if op.name == "stablehlo.constant":
            constants.append(_tensor_bytes(op.results[0].type))
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    sizes = inputs + constants
    return None if None in sizes else sum(sizes)


def level_0_when_small(compile_or_get_cached, limit: int):
    """`compile_or_get_cached` (JAX's `jax._src.compiler` function) made to compile each
    program of at most `limit` bytes (`program_bytes`) for the CPU at XLA's backend
    optimization level 0; the level is part of the compile options, so of the persistent
    cache's key. A GPU's programs keep XLA's level: the GPU tests check the kernels as users
    compile them."""

    def compile_small_at_level_0(backend, computation, devices, compile_options, *args, **kwargs):
        size = program_bytes(computation) if getattr(backend, "platform", None) == "cpu" else None
        if size is not None and size <= limit:
            compile_options.executable_build_options.debug_options.xla_backend_optimization_level = 0
        return compile_or_get_cached(backend, computation, devices, compile_options, *args, **kwargs)

    compile_small_at_level_0.small_program_bytes = limit
    compile_small_at_level_0.wrapped = compile_or_get_cached
    return compile_small_at_level_0


def install() -> int:
    """Compile this process's small programs at level 0 (once; later calls change nothing).
    Returns the limit in force (0: none compiles at level 0)."""
    current = compiler.compile_or_get_cached
    if hasattr(current, "small_program_bytes"):
        return current.small_program_bytes
    limit = int(os.environ.get(LIMIT_ENV, SMALL_PROGRAM_BYTES))
    if limit > 0:
        compiler.compile_or_get_cached = level_0_when_small(current, limit)
    return limit
