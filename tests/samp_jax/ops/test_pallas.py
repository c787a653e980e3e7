"""The Pallas kernels wired into `samp_jax`: the GEMM implementations `pallas`, `pallas_mosaic`
and `pallas_triton` behind `samp_jax.gemm`, the fused LayerNorm/embedding + quantize ops, and
the whole INT8 model lowered for a GPU.

Off a GPU the kernels decline (so `gemm` falls back to XLA) unless interpret mode is on:
`with samp_jax.ops.interpret():` runs the same kernel bodies on the CPU.
"""

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import samp_jax.ops
from flax import nnx

from pallas_kernels.gpu_lowering import gpu_kernel_calls, lower_for_gpu
from pallas_kernels.int8_matmul import ENV_VAR, KERNEL_NAME, MOSAIC_KERNEL_NAME, WS_KERNEL_NAME, default_order
from pallas_kernels.layernorm_quant import EMBEDDING_KERNEL_NAME, LAYERNORM_KERNEL_NAME
from samp_jax import EncoderConfig, EncoderModel, PrecisionMap, gemm, quantize
from samp_jax.core.primitives import QArray, quantize_per_token_int8, quantize_weight_int8

KERNEL_NAMES = {"pallas_triton": KERNEL_NAME, "pallas_mosaic": MOSAIC_KERNEL_NAME,
                "pallas_mosaic_ws": WS_KERNEL_NAME}


def _automatic_gemm_kernel() -> str:
    """The INT8 GEMM kernel `pallas` picks first on this machine (Mosaic on Hopper, else Triton)."""
    return KERNEL_NAMES["pallas_" + default_order(jax.devices()[0].device_kind)[0]]


@pytest.fixture(autouse=True)
def _no_kernel_override(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def interpret_mode():
    with samp_jax.ops.interpret():
        yield


def _kernels_in(jaxpr: str) -> list[str]:
    """The names of our pallas_calls in a jaxpr (`name=samp_...`)."""
    return [name for name in re.findall(r"\bname=(\w+)", jaxpr) if name.startswith("samp_")]


def test_interpret_is_a_scoped_switch():
    assert not samp_jax.ops.interpreting()
    with samp_jax.ops.interpret():
        assert samp_jax.ops.interpreting() and samp_jax.ops.kernels_available()
        with samp_jax.ops.interpret(False):
            assert not samp_jax.ops.interpreting()
        assert samp_jax.ops.interpreting()
    assert not samp_jax.ops.interpreting()


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
    assert "pallas_call" in jaxpr and _kernels_in(jaxpr) == [_automatic_gemm_kernel()]
    out = gemm(x, w, implementation="pallas", **kwargs)
    ref = gemm(x, w, implementation="xla", **kwargs)
    # FP16 output: two units in the last place (measured one)
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("implementation", ["pallas_triton", "pallas_mosaic", "pallas_mosaic_ws"])
def test_a_pinned_kernel_runs_and_matches_xla(interpret_mode, implementation):
    """`pallas_mosaic` / `pallas_triton` (tried only when named) run exactly their kernel."""
    rng = np.random.default_rng(2)
    w = quantize_weight_int8(rng.normal(size=(384, 128)).astype(np.float32))
    x = jnp.asarray(rng.normal(size=(2, 9, 384)), jnp.float32)
    kwargs = dict(precision="int8", activation="gelu", out_dtype=jnp.float32)
    jaxpr = str(jax.make_jaxpr(lambda x: gemm(x, w, implementation=implementation, **kwargs))(x))
    assert _kernels_in(jaxpr) == [KERNEL_NAMES[implementation]]
    out = gemm(x, w, implementation=implementation, **kwargs)
    ref = gemm(x, w, implementation="xla", **kwargs)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)
    assert implementation not in samp_jax.ops.implementations()  # not tried automatically


@pytest.mark.parametrize("implementation", ["pallas_triton", "pallas_mosaic", "pallas_mosaic_ws"])
def test_relu_epilogue_matches_xla(interpret_mode, implementation):
    """`activation="relu"` (DistilBERT) through `gemm`: the kernel's epilogue and XLA's agree."""
    rng = np.random.default_rng(7)
    w = quantize_weight_int8(rng.normal(size=(384, 128)).astype(np.float32))
    x = jnp.asarray(rng.normal(size=(2, 9, 384)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(128,)), jnp.float32)
    kwargs = {"precision": "int8", "bias": bias, "activation": "relu", "out_dtype": jnp.float32}
    out = gemm(x, w, implementation=implementation, **kwargs)
    ref = gemm(x, w, implementation="xla", **kwargs)
    # the scale products rounded in another order: measured 5.4e-8 of max|y|
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=4e-7 * np.abs(ref).max())
    assert float(out.min()) == 0.0 and (np.asarray(out) == 0).mean() > 0.3


@pytest.mark.parametrize("with_token_types", [True, False])
def test_the_embedding_op_takes_position_ids(interpret_mode, with_token_types):
    """The registered `embedding_quant` op forwards `(input_ids, position_ids, token_type_ids,
    word, position, token_type, gamma, beta)` to the kernel; RoBERTa-style position ids (from
    padding_idx=1), and no token-type term (None, None) for DistilBERT/MPNet."""
    from pallas_kernels.layernorm_quant import embedding_quant_reference
    rng = np.random.default_rng(8)
    ids = rng.integers(2, 50, (2, 7))
    ids[1, 4:] = 1  # right padding
    ids = jnp.asarray(ids, jnp.int32)
    mask = (ids != 1).astype(jnp.int32)
    positions = jnp.cumsum(mask, axis=1) * mask + 1
    word = jnp.asarray(rng.normal(size=(50, 64)), jnp.float16)
    position = jnp.asarray(rng.normal(size=(9, 64)), jnp.float16)
    types, token_type = ((jnp.zeros_like(ids), jnp.asarray(rng.normal(size=(1, 64)), jnp.float16))
                         if with_token_types else (None, None))
    gamma, beta = jnp.ones((64,), jnp.float32), jnp.zeros((64,), jnp.float32)
    args = (ids, positions, types, word, position, token_type, gamma, beta)
    op = samp_jax.ops.fused_op("embedding_quant")
    jaxpr = str(jax.make_jaxpr(lambda *a: op(*a, eps=1e-5, out_dtype=jnp.float16))(*args))
    assert _kernels_in(jaxpr) == [EMBEDDING_KERNEL_NAME]
    y, q, scale = op(*args, eps=1e-5, out_dtype=jnp.float16)
    y_ref, q_ref, scale_ref = embedding_quant_reference(*args, eps=1e-5)
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32), atol=2e-3)
    np.testing.assert_allclose(np.asarray(scale), np.asarray(scale_ref), rtol=1e-5)
    assert np.abs(np.asarray(q, np.int32) - np.asarray(q_ref, np.int32)).max() <= 1


def test_a_kernel_that_cannot_tile_falls_back_to_xla_only_when_allowed(interpret_mode):
    """N=100 tiles for neither kernel: named alone it raises; in a sequence XLA takes over."""
    rng = np.random.default_rng(3)
    w = quantize_weight_int8(rng.normal(size=(384, 100)).astype(np.float32))
    x = jnp.asarray(rng.normal(size=(2, 5, 384)), jnp.float32)
    ref = gemm(x, w, precision="int8", implementation="xla")
    for implementation in ("pallas_mosaic", "pallas_triton", "pallas"):
        with pytest.raises(NotImplementedError, match="cannot tile"):
            gemm(x, w, precision="int8", implementation=implementation)
        y = gemm(x, w, precision="int8", implementation=(implementation, "xla"))
        np.testing.assert_array_equal(np.asarray(y), np.asarray(ref))
    np.testing.assert_array_equal(np.asarray(gemm(x, w, precision="int8")), np.asarray(ref))


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


@pytest.mark.parametrize("precision, runs", [("int8-dynamic", "pallas"), ("int8-static", "pallas"),
                                             ("fp16", "xla"), ("fp32", "xla"), ("fp8_e4m3", "xla")])
def test_a_model_pin_sends_the_precisions_a_kernel_does_not_run_to_xla(precision, runs):
    assert samp_jax.ops.site_implementation("pallas", precision) == runs
    assert samp_jax.ops.site_implementation("pallas_triton", precision) == runs.replace("pallas", "pallas_triton")
    assert samp_jax.ops.site_implementation("xla", precision) == "xla"
    assert samp_jax.ops.site_implementation(None, precision) is None
    with pytest.raises(ValueError, match="'cuda' is not one of"):
        samp_jax.ops.site_implementation("cuda", precision)


def test_a_map_with_float_sites_pinned_to_pallas_runs_them_on_xla(interpret_mode):
    """quant_ffn_only pinned to `pallas` (FP16 attention sites, INT8 FFN sites): the INT8 sites
    run the kernel, the FP16 ones XLA, and the output is the all-XLA model's."""
    config = EncoderConfig(vocab_size=64, hidden_size=64, num_layers=2, num_heads=4,
                           intermediate_size=128, max_position_embeddings=32)
    model = EncoderModel(config, rngs=nnx.Rngs(0))
    pmap = PrecisionMap.preset("quant_ffn_only", 2)
    pinned = quantize(model, pmap, implementation="pallas")
    sites = {(i, s): getattr(layer, s).implementation
             for i, layer in enumerate(pinned.model.encoder.layers) for s in ("qkv", "ffn_in")}
    assert set(sites.values()) == {"pallas", "xla"} and sites[0, "qkv"] == "xla"
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 64, (2, 16)), jnp.int32)
    mask = jnp.ones_like(ids)
    jaxpr = str(jax.make_jaxpr(lambda i, m: pinned(i, m))(ids, mask))
    assert collections.Counter(_kernels_in(jaxpr))[KERNEL_NAME] == 4  # ffn_in, ffn_out x 2 layers
    run = lambda m: jax.jit(lambda i, k: m(i, k))(ids, mask)  # noqa: E731  (one program each)
    reference = run(quantize(model, pmap, implementation="xla"))
    np.testing.assert_array_equal(np.asarray(run(pinned)), np.asarray(reference))


@pytest.mark.parametrize("compute_dtype", [jnp.float16, jnp.bfloat16])
def test_a_static_int8_model_with_the_kernels_is_the_xla_model(compute_dtype):
    """Every INT8 site static, 16-bit between sites: with the kernels (interpret mode, so the
    LayerNorms and embeddings quantize for their sites and `ffn_in`'s epilogue requantizes for
    `ffn_out`) the outputs are the XLA path's, token for token but for a rare token where the
    fused LayerNorm's float32 reduction, summed in another order than XLA's, moves a value
    across an INT8 rounding step (none of 128 tokens on one x86 CPU, 2 on another: the order
    XLA's CPU reductions take depends on the vector width; docs/design.md), where the outputs
    then differ by at most 3e-4 of their largest. The requantizing epilogue gives `ffn_out` its
    own numbers: requantizing the float32 values instead moves 68 (FP16) and 126 (BF16) of the
    128 tokens, which this fails on."""
    from calibrate import calibrate
    from samp_jax.serving.forward import jit_forward
    from tests.helpers import TINY_CONFIG, random_batches

    config = TINY_CONFIG.replace(hidden_size=64, intermediate_size=128, num_layers=2)
    model = EncoderModel(config, rngs=nnx.Rngs(0))
    calibration = calibrate(model, random_batches(seed=1), "minmax")
    pmap = PrecisionMap.preset("fully_quant", 2, activation="per_tensor_static")
    batch = random_batches()[0]
    xla = jit_forward(quantize(model, pmap, calibration, dtype=compute_dtype))(batch)
    with samp_jax.ops.interpret(), samp_jax.ops.record_executions() as ran:
        fused = jit_forward(quantize(model, pmap, calibration, dtype=compute_dtype))(batch)
    assert len(ran) == 8 and all(r.executed.startswith("pallas_") for r in ran)  # 2 x 4 sites
    fused, xla = (np.asarray(out, np.float32) for out in (fused, xla))
    moved = np.argwhere((fused != xla).any(axis=-1))  # tokens whose outputs differ at all
    assert len(moved) <= 4, f"{len(moved)} of {xla.shape[0] * xla.shape[1]} tokens differ: {moved[:8]}"
    np.testing.assert_allclose(fused, xla, rtol=0, atol=1e-3 * np.abs(xla).max())


@pytest.mark.gpu
@pytest.mark.parametrize("activation", ["per_token_dynamic", "per_tensor_static"])
def test_an_int8_model_through_the_compiled_kernels_is_the_xla_model(activation):
    """On a GPU: fully_quant through the compiled kernels (fused LayerNorm/embedding
    quantization, the requantizing epilogue) against the same map pinned to XLA, FP16 between
    sites. XLA fuses the float ops otherwise, which moves last bits that an INT8 rounding can
    amplify (docs/design.md), so the bound is per-row cosine, not equality: a check of the
    compiled kernels against gross errors (layouts, tiles, scales), not of last bits, which
    the interpret-mode tests check exactly (in interpret mode this model is within 1 - 2e-7;
    unmeasured on a GPU)."""
    from calibrate import calibrate
    from samp_jax.serving.forward import jit_forward
    from tests.helpers import TINY_CONFIG, random_batches

    config = TINY_CONFIG.replace(hidden_size=256, intermediate_size=1024, num_layers=2)
    model = EncoderModel(config, rngs=nnx.Rngs(0))
    calibration = calibrate(model, random_batches(seed=1), "minmax")
    pmap = PrecisionMap.preset("fully_quant", 2, activation=activation)
    batch = random_batches(rows=64)[0]
    xla = jit_forward(quantize(model, pmap, calibration, dtype=jnp.float16, implementation="xla"))(batch)
    with samp_jax.ops.record_executions() as ran:
        kernels = jit_forward(quantize(model, pmap, calibration, dtype=jnp.float16))(batch)
    assert len(ran) == 8 and all(r.executed.startswith("pallas_") for r in ran), ran
    assert _cosine(kernels, xla).min() > 0.999


@pytest.mark.parametrize("dtype", [None, jnp.float32])
def test_whole_int8_model_lowers_to_the_mosaic_and_fused_kernels_for_h100(dtype):
    """fully_quant BERT (2 layers) lowered for an abstract H100 on the CPU: every INT8 GEMM is
    the Mosaic kernel and every LayerNorm feeding an INT8 site is the fused LN+quant kernel.
    In FP32 too, where the FFN output's FP32 output and residual tiles leave room for fewer
    TMA buffers (with the default four those tiles do not fit in Hopper's shared memory)."""
    from flax import nnx

    from samp_jax import EncoderConfig, EncoderModel, PrecisionMap, quantize
    layers = 2 if dtype is None else 1
    config = EncoderConfig.bert_base().replace(num_layers=layers)
    model = quantize(EncoderModel(config, rngs=nnx.Rngs(0)), PrecisionMap.preset("fully_quant", layers),
                     **({} if dtype is None else {"dtype": dtype}))
    graphdef, state = nnx.split(model)
    S = jax.ShapeDtypeStruct
    hlo = lower_for_gpu(lambda s, ids, mask: nnx.merge(graphdef, s)(ids, mask), state,
                        S((32, 128), jnp.int32), S((32, 128), jnp.int32))
    calls = collections.Counter(gpu_kernel_calls(hlo))
    # 4 GEMMs a layer; 1 embedding + (2 x layers - 1) LayerNorm kernels
    assert calls == {"mosaic_gpu_v2": 4 * layers, "__gpu$xla.gpu.triton": 2 * layers}
    assert hlo.count("samp_embedding_quant") >= 1 and hlo.count("samp_layernorm_quant") >= 2 * layers - 1


def _cosine(a, b):
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["per_token_dynamic", "per_tensor_static"])
def test_int8_encoder_wires_the_fused_kernels(minilm, minilm_dir, activation):
    """With the kernels on (interpret mode), a fully-INT8 MiniLM runs the embedding+LN+quant
    kernel once, LN+quant for every LayerNorm feeding an INT8 site, and the INT8 GEMM for every
    site (the static map also chains ffn_in's INT8 output into ffn_out); its embeddings stay as
    close to FP32 as the unfused XLA path's."""
    from calibrate import calibrate
    from samp_jax import PrecisionMap, Tokenizer, quantize
    minilm_model, minilm_tokenizer = minilm, Tokenizer.from_pretrained(minilm_dir)
    texts = ["a man is playing a guitar on stage", "the cat sleeps", "dogs run in the park",
             "it rains a lot today"]
    batch = {k: jnp.asarray(v) for k, v in minilm_tokenizer(texts, padding=16).items()}
    layers = minilm_model.config.num_layers
    pmap = PrecisionMap.preset("fully_quant", layers, activation=activation)
    calibration = calibrate(minilm_model, [batch], method="minmax", precision_map=pmap)
    model = quantize(minilm_model, pmap, calibration)
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    unfused = np.asarray(model(*args), np.float32)
    with samp_jax.ops.interpret():
        jaxpr = str(jax.make_jaxpr(lambda *a: model(*a))(*args))
        fused = np.asarray(model(*args), np.float32)
    names = collections.Counter(_kernels_in(jaxpr))
    assert names == {EMBEDDING_KERNEL_NAME: 1, LAYERNORM_KERNEL_NAME: 2 * layers - 1,
                     _automatic_gemm_kernel(): 4 * layers}
    chained = len(re.findall(r"i8\[64,1536\] = pallas_call", jaxpr))  # ffn_in's kernel writes INT8
    assert chained == (layers if activation == "per_tensor_static" else 0)
    reference = np.asarray(minilm_model(*args), np.float32)
    assert _cosine(fused, unfused).min() > 0.97
    assert _cosine(fused, reference).mean() > _cosine(unfused, reference).mean() - 0.01
