"""tests/small_programs.py: which programs the tests compile at XLA's level 0 (a tiny model's,
not the real MiniLM's), and that this pytest process does so."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import compiler
from jax._src.lib import _jax
from jax._src.lib.mlir import ir

from tests import small_programs
from tests.helpers import tiny_classifier


def _module(function, *args) -> ir.Module:
    return jax.jit(function).lower(*args).compiler_ir()


def _context():
    from jax._src.interpreters import mlir
    return mlir.make_ir_context()


def test_a_program_counts_its_inputs_and_the_constants_it_closes_over():
    inputs = (jnp.ones((4, 8), jnp.float32), jnp.ones((3,), jnp.bfloat16))
    assert small_programs.program_bytes(_module(lambda x, y: (x, y), *inputs)) == 4 * 8 * 4 + 3 * 2
    table = np.arange(16, dtype=np.float32)
    closed = _module(lambda x, y: (x, y, jnp.asarray(table)), *inputs)
    assert small_programs.program_bytes(closed) == 4 * 8 * 4 + 3 * 2 + 16 * 4
    assert small_programs.program_bytes(_module(lambda x: x + 1, jnp.ones((5,), jnp.int8))) == 5 + 1


def test_a_program_of_unknown_size_is_not_small():
    token = ir.Module.parse("func.func public @main(%t: !stablehlo.token) -> !stablehlo.token {\n"
                            "  return %t : !stablehlo.token\n}", context=_context())
    assert small_programs.program_bytes(token) is None
    no_main = ir.Module.parse("func.func public @other(%x: tensor<2xf32>) -> tensor<2xf32> {\n"
                              "  return %x : tensor<2xf32>\n}", context=_context())
    assert small_programs.program_bytes(no_main) is None


def test_a_tiny_models_forward_is_small_and_a_model_of_minilms_size_is_not():
    model = tiny_classifier()
    batch = {"input_ids": jnp.ones((2, 8), jnp.int32), "attention_mask": jnp.ones((2, 8), jnp.int32)}
    tiny = small_programs.program_bytes(_module(lambda b: model(**b), batch))
    assert 1 << 20 < tiny <= small_programs.SMALL_PROGRAM_BYTES  # the 30,522 x 32 embedding
    weights = jnp.zeros((22_000_000,), jnp.float32)  # MiniLM's parameter count, as an input
    large = small_programs.program_bytes(_module(lambda w: w, weights))
    assert large == 88_000_000 > small_programs.SMALL_PROGRAM_BYTES


def test_only_programs_within_the_limit_compile_at_level_0():
    levels = []

    def original(backend, computation, devices, options, *rest):
        levels.append(options.executable_build_options.debug_options.xla_backend_optimization_level)
        return rest

    wrapped = small_programs.level_0_when_small(original, limit=64)
    cpu, gpu = SimpleNamespace(platform="cpu"), SimpleNamespace(platform="gpu")
    for backend, size in ((cpu, 16), (cpu, 17), (gpu, 16)):  # 64 and 68 bytes of float32 input
        options = _jax.CompileOptions()
        options.executable_build_options.debug_options.xla_backend_optimization_level = 3
        assert wrapped(backend, _module(lambda x: x, jnp.ones((size,))), None, options, "more") == ("more",)
    assert levels == [0, 3, 3]  # a GPU's programs keep XLA's level


def test_this_pytest_process_compiles_its_small_programs_at_level_0():
    assert small_programs.install() == small_programs.SMALL_PROGRAM_BYTES  # installed once
    assert compiler.compile_or_get_cached.small_program_bytes == small_programs.SMALL_PROGRAM_BYTES
    assert not hasattr(compiler.compile_or_get_cached.wrapped, "small_program_bytes")
