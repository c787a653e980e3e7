"""The Pallas INT8 GEMM in interpret mode (CPU): exact accumulator, epilogues, dispatch.

On a GPU the same tests run the Triton lowering: set INTERPRET = False (see the GPU twin).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pallas_kernels
from pallas_kernels.int8_matmul import KERNEL_NAME, Config, heuristic, int8_matmul, int8_matmul_reference
from samp_jax import gemm
from samp_jax.quant import quantize_weight_int8

INTERPRET = True


def _operands(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.integers(-127, 128, size=(m, k)), jnp.int8)
    w = jnp.asarray(rng.integers(-127, 128, size=(k, n)), jnp.int8)
    xs = jnp.asarray(rng.uniform(1e-3, 2e-2, size=(m, 1)), jnp.float32)
    ws = jnp.asarray(rng.uniform(1e-3, 2e-2, size=(n,)), jnp.float32)
    return x, w, xs, ws


@pytest.mark.parametrize("m, k, n", [(1, 384, 128), (7, 768, 256), (16, 1536, 128), (130, 384, 384),
                                     (33, 3072, 128)])
def test_int32_accumulator_is_exact(m, k, n):
    x, w, xs, ws = _operands(m, k, n)
    acc = int8_matmul(x, w, xs, ws, out_dtype=jnp.int32, interpret=INTERPRET)
    expected = np.asarray(x, np.int64) @ np.asarray(w, np.int64)
    np.testing.assert_array_equal(np.asarray(acc), expected)


@pytest.mark.parametrize("activation", [None, "gelu"])
@pytest.mark.parametrize("out_dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_epilogue_matches_reference(activation, out_dtype):
    m, k, n = 70, 384, 256
    x, w, xs, ws = _operands(m, k, n, seed=1)
    rng = np.random.default_rng(2)
    bias = jnp.asarray(rng.normal(size=(n,)), jnp.float32)
    residual = jnp.asarray(rng.normal(size=(m, n)), out_dtype)
    kwargs = dict(bias=bias, activation=activation, residual=residual, out_dtype=out_dtype)
    out = int8_matmul(x, w, xs, ws, interpret=INTERPRET, **kwargs)
    ref = int8_matmul_reference(x, w, xs, ws, **kwargs)
    assert out.dtype == out_dtype and out.shape == (m, n)
    tol = {jnp.float16: 1e-2, jnp.bfloat16: 6e-2, jnp.float32: 1e-5}[out_dtype]
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32), rtol=tol, atol=tol)


def test_int8_requantized_output():
    x, w, xs, ws = _operands(40, 768, 128, seed=3)
    out = int8_matmul(x, w, xs, ws, activation="gelu", out_dtype=jnp.int8, out_scale=0.05, interpret=INTERPRET)
    ref = int8_matmul_reference(x, w, xs, ws, activation="gelu", out_dtype=jnp.int8, out_scale=0.05)
    assert out.dtype == jnp.int8
    assert np.abs(np.asarray(out, np.int32) - np.asarray(ref, np.int32)).max() <= 1


def test_random_shapes_and_scales():
    rng = np.random.default_rng(7)
    for trial in range(6):
        m = int(rng.integers(1, 200))
        k = int(rng.choice([384, 768, 1536]))
        n = int(rng.choice([128, 256, 384]))
        x, w, xs, ws = _operands(m, k, n, seed=100 + trial)
        xs = xs * float(rng.uniform(0.1, 10))
        config = Config(block_m=int(rng.choice([16, 32, 64])), block_n=128, block_k=int(rng.choice([64, 128])))
        acc = int8_matmul(x, w, xs, ws, out_dtype=jnp.int32, config=config, interpret=INTERPRET)
        np.testing.assert_array_equal(np.asarray(acc), np.asarray(x, np.int64) @ np.asarray(w, np.int64))
        out = int8_matmul(x, w, xs, ws, out_dtype=jnp.float32, config=config, interpret=INTERPRET)
        ref = int8_matmul_reference(x, w, xs, ws, out_dtype=jnp.float32)
        np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_unsupported_shapes_and_bad_inputs():
    x, w, xs, ws = _operands(8, 384, 100)
    with pytest.raises(NotImplementedError, match="n=100"):
        int8_matmul(x, w, xs, ws, interpret=INTERPRET)
    with pytest.raises(ValueError, match="must be int8"):
        int8_matmul(x.astype(jnp.float16), w, xs, ws, interpret=INTERPRET)
    with pytest.raises(ValueError, match="scales must be"):
        int8_matmul(x, w, xs[:4], ws, interpret=INTERPRET)
    with pytest.raises(ValueError, match="out_scale is required"):
        int8_matmul(x, w, xs, ws, out_dtype=jnp.int8, interpret=INTERPRET)
    with pytest.raises(ValueError, match="power of two"):
        Config(block_m=48)


def test_heuristic_small_and_large_m():
    assert heuristic(8, 768, 768).block_m == 16
    assert heuristic(32768, 3072, 768).block_m == 128


@pytest.fixture
def interpret_mode():
    pallas_kernels.set_interpret(True)
    yield
    pallas_kernels.set_interpret(False)


def test_dispatch_decision_on_cpu():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(384, 128)).astype(np.float32)
    x = jnp.asarray(rng.normal(size=(2, 5, 384)), jnp.float32)
    if jax.default_backend() != "gpu":
        with pytest.raises(NotImplementedError, match="need a GPU"):
            gemm(x, quantize_weight_int8(w), precision="int8", implementation="pallas")
    # the default order tries pallas first and falls back to xla for what it cannot run
    y = gemm(x, quantize_weight_int8(w), precision="int8")
    ref = gemm(x, quantize_weight_int8(w), precision="int8", implementation="xla")
    np.testing.assert_array_equal(np.asarray(y), np.asarray(ref))
    with pytest.raises(NotImplementedError, match="int8 only"):
        gemm(x, jnp.asarray(w), precision="fp16", implementation="pallas")


def test_pallas_path_runs_the_named_kernel_and_matches_xla(interpret_mode):
    rng = np.random.default_rng(1)
    w = quantize_weight_int8(rng.normal(size=(384, 256)).astype(np.float32))
    x = jnp.asarray(rng.normal(size=(3, 11, 384)), jnp.float16)
    bias = jnp.asarray(rng.normal(size=(256,)), jnp.float32)
    residual = jnp.asarray(rng.normal(size=(3, 11, 256)), jnp.float16)
    kwargs = dict(precision="int8", bias=bias, activation="gelu", residual=residual)
    jaxpr = str(jax.make_jaxpr(lambda x: gemm(x, w, implementation="pallas", **kwargs))(x))
    assert "pallas_call" in jaxpr and KERNEL_NAME in jaxpr
    out = gemm(x, w, implementation="pallas", **kwargs)
    ref = gemm(x, w, implementation="xla", **kwargs)
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32), atol=2e-2, rtol=1e-2)


def test_gemm_benchmark_script_runs(tmp_path):
    """CPU smoke of benchmarks/gemm.py --quick: it checks the script works, not its speed."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "gemm.json"
    subprocess.run([sys.executable, str(root / "benchmarks" / "gemm.py"), "--quick", "--out", str(out)],
                   check=True, cwd=root, capture_output=True, text=True, timeout=600,
                   env={**__import__("os").environ, "PYTHONPATH": str(root)})
    result = json.loads(out.read_text())
    timed = [r for r in result["rows"] if "ms" in r]
    assert {r["contender"] for r in timed} == {"xla_fp16", "xla_int8", "pallas_triton_int8"}
    assert all(r["ms"] > 0 and r["tops"] > 0 for r in timed)
    assert result["interpret"] == (jax.default_backend() != "gpu")
