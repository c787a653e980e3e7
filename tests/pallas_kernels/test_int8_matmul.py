"""The Pallas INT8 GEMMs (Mosaic GPU wgmma and Triton) on the CPU: interpret mode for numerics,
cross-lowering for CUDA (an abstract H100) for "it lowers, and it is the kernel we meant".

Interpret mode runs each kernel body on the CPU (the Mosaic one under GPU interpret mode, which
simulates TMA, barriers and wgmma); the int32 accumulator must equal an int64 numpy matmul bit
for bit, and every epilogue must match `int8_matmul_reference` within its dtype's tolerance.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pallas_kernels
from pallas_kernels.gpu_lowering import gpu_kernel_calls, lower_for_gpu
from pallas_kernels.int8_matmul import (KERNEL_NAME, MOSAIC_KERNEL_NAME, Config, MosaicConfig,
                                        default_implementation, heuristic, int8_matmul,
                                        int8_matmul_reference, mosaic_heuristic)
from samp_jax import gemm
from samp_jax.quant.primitives import QArray, quantize_per_token_int8, quantize_weight_int8

IMPLS = ("triton", "mosaic")


def _operands(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.integers(-127, 128, size=(m, k)), jnp.int8)
    w = jnp.asarray(rng.integers(-127, 128, size=(k, n)), jnp.int8)
    xs = jnp.asarray(rng.uniform(1e-3, 2e-2, size=(m, 1)), jnp.float32)
    ws = jnp.asarray(rng.uniform(1e-3, 2e-2, size=(n,)), jnp.float32)
    return x, w, xs, ws


def _exact(x, w):
    return np.asarray(x, np.int64) @ np.asarray(w, np.int64)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("m, k, n", [(1, 384, 128), (7, 768, 256), (16, 1536, 128), (130, 384, 384),
                                     (33, 3072, 128)])
def test_int32_accumulator_is_exact(impl, m, k, n):
    x, w, xs, ws = _operands(m, k, n)
    acc = int8_matmul(x, w, xs, ws, out_dtype=jnp.int32, implementation=impl, interpret=True)
    np.testing.assert_array_equal(np.asarray(acc), _exact(x, w))


def test_accumulator_extremes_do_not_overflow_or_saturate():
    """All -127 x 127 over K=3072: |acc| = 49.5M, far inside int32, exactly represented."""
    m, k, n = 64, 3072, 128
    x = jnp.full((m, k), -127, jnp.int8)
    w = jnp.full((k, n), 127, jnp.int8)
    xs, ws = jnp.ones((m, 1), jnp.float32), jnp.ones((n,), jnp.float32)
    for impl in IMPLS:
        acc = int8_matmul(x, w, xs, ws, out_dtype=jnp.int32, implementation=impl, interpret=True)
        assert int(acc.min()) == int(acc.max()) == -127 * 127 * k


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("activation", [None, "gelu"])
@pytest.mark.parametrize("out_dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_epilogue_matches_reference(impl, activation, out_dtype):
    m, k, n = 70, 384, 256
    x, w, xs, ws = _operands(m, k, n, seed=1)
    rng = np.random.default_rng(2)
    bias = jnp.asarray(rng.normal(size=(n,)), jnp.float32)
    residual = jnp.asarray(rng.normal(size=(m, n)), out_dtype)
    kwargs = dict(bias=bias, activation=activation, residual=residual, out_dtype=out_dtype)
    out = int8_matmul(x, w, xs, ws, implementation=impl, interpret=True, **kwargs)
    ref = int8_matmul_reference(x, w, xs, ws, **kwargs)
    assert out.dtype == out_dtype and out.shape == (m, n)
    tol = {jnp.float16: 1e-2, jnp.bfloat16: 6e-2, jnp.float32: 1e-5}[out_dtype]
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32), rtol=tol, atol=tol)


@pytest.mark.parametrize("impl", IMPLS)
def test_int8_requantized_output(impl):
    x, w, xs, ws = _operands(40, 768, 128, seed=3)
    scale = jnp.asarray(0.05, jnp.float32)  # a traced model value, not a Python constant
    out = int8_matmul(x, w, xs, ws, activation="gelu", out_dtype=jnp.int8, out_scale=scale,
                      implementation=impl, interpret=True)
    ref = int8_matmul_reference(x, w, xs, ws, activation="gelu", out_dtype=jnp.int8, out_scale=0.05)
    assert out.dtype == jnp.int8
    diff = np.abs(np.asarray(out, np.int32) - np.asarray(ref, np.int32))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # only exact .5 ties may differ


def test_random_shapes_and_scales_property():
    """Random shapes (M not a multiple of any tile), tiles and scale magnitudes, both kernels."""
    rng = np.random.default_rng(7)
    for trial in range(6):
        impl = IMPLS[trial % 2]
        m = int(rng.integers(1, 200))
        k = int(rng.choice([384, 768, 1536]))
        n = int(rng.choice([128, 256, 384]))
        x, w, xs, ws = _operands(m, k, n, seed=100 + trial)
        xs = xs * float(rng.uniform(0.1, 10))
        ws = ws * float(rng.uniform(0.1, 10))
        if impl == "triton":
            config = Config(block_m=int(rng.choice([16, 32, 64])), block_n=128,
                            block_k=int(rng.choice([64, 128])))
        else:
            config = MosaicConfig(tile_m=int(rng.choice([64, 128])), tile_n=128,
                                  tile_k=int(rng.choice([64, 128])), max_concurrent_steps=2)
        kw = dict(implementation=impl, config=config, interpret=True)
        acc = int8_matmul(x, w, xs, ws, out_dtype=jnp.int32, **kw)
        np.testing.assert_array_equal(np.asarray(acc), _exact(x, w), err_msg=f"{impl} {m}x{k}x{n}")
        out = int8_matmul(x, w, xs, ws, out_dtype=jnp.float32, **kw)
        ref = int8_matmul_reference(x, w, xs, ws, out_dtype=jnp.float32)
        np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_unsupported_shapes_and_bad_inputs():
    x, w, xs, ws = _operands(8, 384, 100)
    with pytest.raises(NotImplementedError, match="n=100"):
        int8_matmul(x, w, xs, ws, implementation="triton", interpret=True)
    with pytest.raises(NotImplementedError, match="Mosaic INT8 GEMM cannot tile"):
        int8_matmul(x, w, xs, ws, implementation="mosaic", interpret=True)
    with pytest.raises(ValueError, match="must be int8"):
        int8_matmul(x.astype(jnp.float16), w, xs, ws, interpret=True)
    with pytest.raises(ValueError, match="scales must be"):
        int8_matmul(x, w, xs[:4], ws, interpret=True)
    with pytest.raises(ValueError, match="out_scale is required"):
        int8_matmul(x, w, xs, ws, out_dtype=jnp.int8, interpret=True)
    with pytest.raises(ValueError, match="implementation="):
        int8_matmul(x, w, xs, ws, implementation="cutlass", interpret=True)
    with pytest.raises(ValueError, match="needs implementation='mosaic'"):
        int8_matmul(x, w, xs, ws, implementation="triton", config=MosaicConfig(), interpret=True)
    with pytest.raises(ValueError, match="residual must be"):
        int8_matmul(x, w[:, :64], xs, ws[:64], residual=jnp.zeros((8, 32)), interpret=True)
    with pytest.raises(ValueError, match="power of two"):
        Config(block_m=48)
    with pytest.raises(ValueError, match="tile_m"):
        MosaicConfig(tile_m=32)
    with pytest.raises(ValueError, match="accumulator budget"):
        MosaicConfig(tile_m=128, tile_n=256)


def test_automatic_choice_falls_back_from_mosaic_to_triton(monkeypatch):
    """On Hopper the default is Mosaic; a shape it cannot tile goes to Triton, not to an error."""
    monkeypatch.setenv("SAMP_JAX_INT8_KERNEL", "mosaic")
    x, w, xs, ws = _operands(8, 384, 96)  # N=96: neither Mosaic (tile_n 64k) nor Triton tiles it
    with pytest.raises(NotImplementedError, match="block_n"):
        int8_matmul(x, w, xs, ws, interpret=True)  # Triton can't either: a clear error
    x, w, xs, ws = _operands(8, 96, 128)  # K=96: Mosaic needs K % 64, Triton takes block_k=32
    acc = int8_matmul(x, w, xs, ws, out_dtype=jnp.int32, interpret=True)
    np.testing.assert_array_equal(np.asarray(acc), _exact(x, w))
    monkeypatch.setenv("SAMP_JAX_INT8_KERNEL", "cublas")
    with pytest.raises(ValueError, match="SAMP_JAX_INT8_KERNEL"):
        default_implementation("NVIDIA H100 80GB HBM3")


def test_default_implementation_by_device(monkeypatch):
    monkeypatch.delenv("SAMP_JAX_INT8_KERNEL", raising=False)
    assert default_implementation("NVIDIA H100 80GB HBM3") == "mosaic"
    assert default_implementation("NVIDIA H200") == "mosaic"
    assert default_implementation("NVIDIA A100-SXM4-80GB") == "triton"


def test_heuristics_small_and_large_m():
    assert heuristic(8, 768, 768).block_m == 16
    assert heuristic(32768, 3072, 768).block_m == 128
    assert mosaic_heuristic(16, 768, 768).tile_m == 64
    assert mosaic_heuristic(32768, 3072, 768) == MosaicConfig(tile_m=128, tile_n=128, tile_k=128,
                                                             max_concurrent_steps=4)


@pytest.mark.parametrize("impl, call_target, name", [("triton", "__gpu$xla.gpu.triton", KERNEL_NAME),
                                                     ("mosaic", "mosaic_gpu_v2", MOSAIC_KERNEL_NAME)])
@pytest.mark.parametrize("out_dtype", [jnp.float16, jnp.int8])
def test_kernels_lower_for_cuda(impl, call_target, name, out_dtype):
    """The whole Pallas lowering (Triton IR / Mosaic GPU MLIR) runs for an abstract H100."""
    S = jax.ShapeDtypeStruct
    out_scale = 0.05 if out_dtype == jnp.int8 else None

    def fn(x, w, xs, ws, b, r):
        return int8_matmul(x, w, xs, ws, bias=b, activation="gelu",
                           residual=None if out_scale else r, out_dtype=out_dtype,
                           out_scale=out_scale, implementation=impl)

    hlo = lower_for_gpu(fn, S((200, 768), jnp.int8), S((768, 3072), jnp.int8), S((200, 1), jnp.float32),
                        S((3072,), jnp.float32), S((3072,), jnp.float32), S((200, 3072), jnp.float16))
    assert gpu_kernel_calls(hlo) == [call_target] and name in hlo


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


def test_gemm_takes_prequantized_input_and_emits_int8(interpret_mode):
    """The chaining contract: a QArray input skips quantization; int8 out needs out_scale."""
    rng = np.random.default_rng(4)
    w = quantize_weight_int8(rng.normal(size=(384, 128)).astype(np.float32))
    x = jnp.asarray(rng.normal(size=(2, 9, 384)), jnp.float32)
    xq = quantize_per_token_int8(x)
    xq = QArray(xq.qvalue, xq.scale, "int8")
    for impl in ("xla", "pallas"):
        from_float = gemm(x, w, precision="int8", out_dtype=jnp.float32, implementation=impl)
        from_q = gemm(xq, w, precision="int8", out_dtype=jnp.float32, implementation=impl)
        np.testing.assert_array_equal(np.asarray(from_q), np.asarray(from_float))
        q8 = gemm(x, w, precision="int8", activation="gelu", out_dtype=jnp.int8, out_scale=0.02,
                  implementation=impl)
        assert q8.dtype == jnp.int8 and q8.shape == (2, 9, 128)
    with pytest.raises(ValueError, match="explicit out_dtype"):
        gemm(xq, w, precision="int8")
    with pytest.raises(ValueError, match="out_scale is required"):
        gemm(x, w, precision="int8", out_dtype=jnp.int8)
    with pytest.raises(ValueError, match="int8 QArray for an int8 site"):
        gemm(xq, jnp.zeros((384, 128)), precision="fp16", out_dtype=jnp.float16)


def test_whole_int8_model_lowers_to_the_mosaic_and_fused_kernels_for_h100():
    """fully_quant BERT (2 layers) lowered for an abstract H100 on the CPU: every INT8 GEMM is
    the Mosaic kernel and every LayerNorm feeding an INT8 site is the fused LN+quant kernel."""
    from flax import nnx

    from samp_jax import EncoderConfig, EncoderModel, PrecisionMap, quantize
    config = EncoderConfig.bert_base().replace(num_layers=2)
    model = quantize(EncoderModel(config, rngs=nnx.Rngs(0)), PrecisionMap.preset("fully_quant", 2))
    graphdef, state = nnx.split(model)
    S = jax.ShapeDtypeStruct
    hlo = lower_for_gpu(lambda s, ids, mask: nnx.merge(graphdef, s)(ids, mask), state,
                        S((32, 128), jnp.int32), S((32, 128), jnp.int32))
    calls = collections.Counter(gpu_kernel_calls(hlo))
    assert calls == {"mosaic_gpu_v2": 8, "__gpu$xla.gpu.triton": 4}  # 2x4 GEMMs; 1 emb + 3 LN
    assert hlo.count("samp_embedding_quant") >= 1 and hlo.count("samp_layernorm_quant") >= 3


def test_gemm_benchmark_script_runs(tmp_path):
    """CPU smoke of benchmarks/gemm.py --quick: it checks the script works, not its speed."""
    from tests.helpers import run_benchmark_quick

    out = tmp_path / "gemm.json"
    result = run_benchmark_quick("gemm.py", out, timeout=600)
    timed = [r for r in result["rows"] if "ms" in r]
    assert {r["contender"] for r in timed} == {"xla_fp16", "xla_int8", "pallas_triton_int8",
                                               "pallas_mosaic_int8"}
    assert all(r["ms"] > 0 and r["tops"] > 0 for r in timed)
    assert result["interpret"] == (jax.default_backend() != "gpu")


def test_tuning_picks_the_fastest_and_the_table_round_trips(tmp_path):
    from pallas_kernels.int8_matmul.config import tuned
    from pallas_kernels.int8_matmul.tuning import candidates, record, tune
    for impl in IMPLS:
        options = candidates(impl, 4096, 768, 3072)
        assert options and all(768 % getattr(c, "tile_n", getattr(c, "block_n", 1)) == 0 for c in options)
        target = options[len(options) // 2]

        def fake_time(config):  # the middle candidate is fastest; one config "fails to compile"
            if config == options[0]:
                raise ValueError("exceeds available shared memory")
            return 1.0 if config == target else 2.0
        best, ms = tune(impl, 4096, 768, 3072, fake_time)
        assert best == target and ms == 1.0
        table = tmp_path / "tuned.json"
        record(impl, "NVIDIA H100 80GB HBM3", 3000, 768, 3072, best, table=table)
        assert tuned("NVIDIA H100 80GB HBM3", 4096, 768, 3072, impl, table=table) == best  # 3000 -> 4096
        assert tuned("NVIDIA A100", 4096, 768, 3072, impl, table=table) is None
    with pytest.raises(RuntimeError, match="no triton config ran"):
        tune("triton", 16, 768, 768, lambda c: (_ for _ in ()).throw(RuntimeError("boom")))
