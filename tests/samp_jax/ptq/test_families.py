"""Every family on tiny random models: each preset runs and stays close to FP32, the search's
candidate program is bit-identical to `quantize()`, the fused kernels (interpret mode) match
the unfused path, the engine matches a direct call, and quantized folders round-trip."""

import collections
import re

import jax
import numpy as np
import pytest
from flax import nnx

import samp_jax
from calibrate import calibrate
from calibrate.search.candidates import SwitchableModel
from pallas_kernels.int8_matmul import KERNEL_NAME, MOSAIC_KERNEL_NAME, default_order
from pallas_kernels.layernorm_quant import EMBEDDING_KERNEL_NAME, LAYERNORM_KERNEL_NAME
from samp_jax import EncoderModel, PrecisionMap, QuantizedModel, quantize
from samp_jax.models import make_head
from samp_jax.core.precision import PrecisionMapError
from samp_jax.serving.forward import jit_forward
from tests.helpers import FAMILY_CONFIGS, GOLDEN, family_batches, family_head_spec, family_param

FAMILIES = tuple(FAMILY_CONFIGS)
# bert runs in `make test-fast`; every family with model code of its own in `make test`
FAMILY_PARAMS = [family_param(f) for f in FAMILIES]
# (preset, activation): every preset, INT8 with both activation schemes
PRESETS = [("fp16", None), ("bf16", None), ("fp8", None), ("quant_ffn_only", "per_token_dynamic"),
           ("quant_ffn_only", "per_tensor_static"), ("fully_quant", "per_token_dynamic"),
           ("fully_quant", "per_tensor_static")]


@pytest.fixture(scope="module", params=FAMILY_PARAMS)
def family(request):
    """`(model_type, float model with the family's sequence head, batches, calibration)`."""
    config = FAMILY_CONFIGS[request.param]
    rngs = nnx.Rngs(0)
    model = EncoderModel(config, make_head("sequence_classification", config, num_labels=3,
                                           rngs=rngs, **family_head_spec(request.param)), rngs=rngs)
    # larger weights than the 0.02 init, so the logits differ between rows and precisions matter
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda p: p * 5.0 if p.ndim == 2 else p, state))
    batches = family_batches(config, 3)
    with pytest.warns(UserWarning, match="calibration saw only"):
        calibration = calibrate(model, batches[:2])
    return request.param, model, batches, calibration

# Relative logit error against FP32 (||out - fp32|| / ||fp32||): twice the largest measured over
# the families on the 2-core CPU VM (measured maxima: FP16 0.090%, BF16 0.881% (BF16 between
# sites too, as the preset runs), FP8 2.25%;
# INT8 FFN-only 0.574% dynamic / 0.687% static, fully INT8 0.558% / 0.686%). INT8 rounding by
# floor instead of half to even measured 1.53% (BERT) and 2.34% (DistilBERT) fully INT8 static.
RELATIVE_LOGIT_ERROR = {("fp16", None): 0.0018, ("bf16", None): 0.0176, ("fp8", None): 0.045,
                        ("quant_ffn_only", "per_token_dynamic"): 0.0115,
                        ("quant_ffn_only", "per_tensor_static"): 0.0137,
                        ("fully_quant", "per_token_dynamic"): 0.0112,
                        ("fully_quant", "per_tensor_static"): 0.0137}

def _preset(name, activation, config):
    if activation is None:
        return PrecisionMap.preset(name, config.num_layers)
    return PrecisionMap.preset(name, config.num_layers, activation=activation)


# Every preset on BERT. On another family `make test` runs fully INT8 (both activation
# schemes), FP8 and BF16; `make test-full` also FP16 (what fully INT8 runs between its sites)
# and FFN-only INT8 (a subset of fully INT8's sites).
IN_MAKE_TEST = [("fully_quant", "per_token_dynamic"), ("fully_quant", "per_tensor_static"),
                ("fp8", None), ("bf16", None)]
OTHER_PRESETS = [preset for preset in PRESETS if preset not in IN_MAKE_TEST]


def _check_preset(family, preset, activation):
    _, model, batches, calibration = family
    batch = batches[2]  # not seen by calibration
    reference = np.asarray(model(**batch))
    q = quantize(model, _preset(preset, activation, model.config), calibration)
    out = np.asarray(q(**batch))
    assert np.all(np.isfinite(out))
    error = np.linalg.norm(out - reference) / np.linalg.norm(reference)
    assert error < RELATIVE_LOGIT_ERROR[preset, activation], error
    assert np.mean(out.argmax(-1) == reference.argmax(-1)) >= 0.75


@pytest.mark.parametrize("preset, activation", IN_MAKE_TEST)
def test_each_int8_fp8_and_bf16_preset_stays_close_to_fp32(family, preset, activation):
    _check_preset(family, preset, activation)


# only `family` is indirect: its module-scoped instances are shared with the other tests
@pytest.mark.parametrize("family", [family_param(f, full=FAMILIES) for f in FAMILIES], indirect=True)
@pytest.mark.parametrize("preset, activation", OTHER_PRESETS)
def test_each_fp16_and_ffn_only_preset_stays_close_to_fp32(family, preset, activation):
    _check_preset(family, preset, activation)


# The candidate program on the families whose layers or switchable sites differ from BERT's
# in `make test` (ELECTRA's embedding projection is a site); RoBERTa's, DistilBERT's and ERNIE's
# BERT layers in `make test-full`.
CANDIDATE_CASES = [family_param(f, fast=(), full=("roberta", "distilbert", "ernie"))
                   for f in FAMILIES]


@pytest.mark.slow
@pytest.mark.parametrize("family", CANDIDATE_CASES, indirect=True)
def test_candidate_program_is_bit_identical_to_quantize(family):
    _, model, batches, calibration = family
    switch = SwitchableModel(model, ("fp16", "int8-dynamic", "int8-static"), calibration)
    rng = np.random.default_rng(1)
    choices = np.stack([np.zeros((2, 4), np.int32), np.ones((2, 4), np.int32),
                        np.full((2, 4), 2, np.int32), rng.integers(0, 3, (2, 4)).astype(np.int32)])
    out = switch.evaluate(choices, batches[2], chunk=4)
    for i, choice in enumerate(choices):
        real = jit_forward(quantize(model, switch.map_for(choice), calibration))(batches[2])
        np.testing.assert_array_equal(np.asarray(real), out[i])


def _kernels_in(jaxpr: str) -> list[str]:
    """The names of our pallas_calls in a jaxpr (`name=samp_...`)."""
    return [name for name in re.findall(r"\bname=(\w+)", jaxpr) if name.startswith("samp_")]


def _automatic_gemm_kernel() -> str:
    """The INT8 GEMM kernel `pallas` picks first here (Mosaic on Hopper, else Triton)."""
    first = default_order(jax.devices()[0].device_kind)[0]
    return {"mosaic": MOSAIC_KERNEL_NAME, "triton": KERNEL_NAME}[first]


# every family with static INT8 (the INT8 hand-offs between kernels); dynamic on BERT
FUSED_CASES = [pytest.param(t, "per_tensor_static", marks=family_param(t, fast=()).marks)
               for t in FAMILIES] + [("bert", "per_token_dynamic")]


@pytest.mark.slow
@pytest.mark.parametrize("model_type, activation", FUSED_CASES)
def test_fused_kernels_match_the_unfused_path(model_type, activation):
    # hidden 64 / FFN 128: shapes the Triton INT8 GEMM tiles (hidden 32 it leaves to XLA)
    config = FAMILY_CONFIGS[model_type].replace(hidden_size=64, intermediate_size=128)
    rngs = nnx.Rngs(0)
    model = EncoderModel(config, make_head("sequence_classification", config, num_labels=3,
                                           activation="tanh", rngs=rngs), rngs=rngs)
    batches = family_batches(config, 3)
    with pytest.warns(UserWarning, match="calibration saw only"):
        calibration = calibrate(model, batches[:2])
    pmap = PrecisionMap.preset("fully_quant", config.num_layers, activation=activation)
    unfused = quantize(model, pmap, calibration, implementation="xla")
    fused = quantize(model, pmap, calibration)  # Pallas first: GEMM, LayerNorm+quant, embedding+quant
    batch = batches[2]
    with samp_jax.ops.interpret():
        jaxpr = str(jax.make_jaxpr(lambda b: fused(**b))(batch))
        executed = fused.executed_implementations(batch)["sites"]
        out = np.asarray(fused(**batch))
    # the kernels really ran, every one of them: each INT8 GEMM, each LayerNorm feeding an
    # INT8 site (2 per layer but the last's output one), and the embeddings: the fused gather
    # kernel where they add a position table and no FP16 projection follows; LayerNorm+quant
    # where they add no positions (rotary ModernBERT, DeBERTa-v3)
    layers = config.num_layers
    embeddings = model.embeddings
    gather = embeddings.position is not None and embeddings.project is None
    norm_only = embeddings.position is None and embeddings.project is None
    assert collections.Counter(_kernels_in(jaxpr)) == {
        _automatic_gemm_kernel(): 4 * layers, LAYERNORM_KERNEL_NAME: 2 * layers - 1 + norm_only,
        **({EMBEDDING_KERNEL_NAME: 1} if gather else {})}
    assert [name for site, name in executed.items() if site[0].isdigit()] == \
        ["pallas_" + default_order(jax.devices()[0].device_kind)[0]] * (4 * layers)
    reference = np.asarray(unfused(**batch))
    # INT8 accumulators are exact; the fused passes may round a 16-bit activation differently
    # (measured at most 8.8e-4 of max|logit|, MPNet and RoBERTa static; 1e-5 BERT dynamic)
    np.testing.assert_allclose(out, reference, rtol=0, atol=3e-3 * np.abs(reference).max())


def test_engine_matches_a_direct_call(family):
    model_type, model, batches, calibration = family
    q = quantize(model, PrecisionMap.preset("fully_quant", model.config.num_layers), calibration)
    batch = dict(batches[2], token_type_ids=np.zeros_like(batches[2]["input_ids"]))
    rows = [ids[mask == 1] for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
    # the family's own tokenizer (it pads with the family's pad id); id rows skip tokenizing
    tokenizer = samp_jax.Tokenizer.from_pretrained(GOLDEN / "families" / model_type / "base")
    engine = samp_jax.compile(q, tokenizer=tokenizer, seq_buckets=(16,), batch_size=8)
    direct = np.asarray(q(**batch))
    np.testing.assert_allclose(engine(rows).logits, direct, atol=1e-6)  # measured 2.4e-7 (ModernBERT)


def test_quantized_folder_round_trips_bit_exactly(family, tmp_path):
    model_type, model, batches, calibration = family
    q = quantize(model, PrecisionMap.preset("fully_quant", model.config.num_layers,
                                            activation="per_tensor_static"), calibration)
    loaded = QuantizedModel.load(q.save(tmp_path / "q"))
    assert loaded.config == model.config and loaded.config.model_type == model_type
    assert loaded.model.head.activation == model.head.activation
    np.testing.assert_array_equal(np.asarray(loaded(**batches[2])), np.asarray(q(**batches[2])))


@pytest.mark.parametrize("model_type", FAMILY_PARAMS)
def test_sentence_heads_keep_their_pooling_through_a_quantized_folder(model_type, tmp_path):
    config = FAMILY_CONFIGS[model_type]
    rngs = nnx.Rngs(0)
    model = EncoderModel(config, make_head("sentence_embedding", config, pooling=("max", "cls"),
                                           normalize=False, rngs=rngs), rngs=rngs)
    q = quantize(model, PrecisionMap.preset("fully_quant", config.num_layers))
    loaded = QuantizedModel.load(q.save(tmp_path / "q"))
    assert loaded.model.head.pooling == ("max", "cls") and loaded.model.head.normalize is False
    batch = family_batches(config, 1)[0]
    out = np.asarray(loaded(**batch))
    assert out.shape == (8, 2 * config.hidden_size)
    np.testing.assert_array_equal(out, np.asarray(q(**batch)))


def test_electra_embedding_projection_follows_the_map():
    config = FAMILY_CONFIGS["electra"]
    model = EncoderModel(config, rngs=nnx.Rngs(0))
    assert model.embeddings.project.shape == (config.embedding_size, config.hidden_size)
    default = quantize(model, PrecisionMap.preset("fully_quant", config.num_layers))
    assert str(default.model.embeddings.project.precision) == "fp16"  # the compute dtype
    pmap = PrecisionMap(config.num_layers, embedding_project="int8-dynamic")
    assert str(quantize(model, pmap).model.embeddings.project.precision) == "int8-dynamic"
    assert PrecisionMap.from_json(pmap.to_json()) == pmap
    with pytest.raises(PrecisionMapError, match="embedding projection takes a float precision or dynamic INT8"):
        PrecisionMap(config.num_layers, embedding_project="int8-static")
    bert = EncoderModel(FAMILY_CONFIGS["bert"], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="the model has no embedding projection"):
        quantize(bert, pmap)


class _Scaled(nnx.Module):
    """A custom head: the first token, scaled."""

    kind = samp_jax.HeadKind("scaled_first_token", per_token=False)

    def __init__(self, config, *, factor: float, rngs=None):
        self.factor = factor

    def __call__(self, hidden, attention_mask):
        return hidden[:, 0] * self.factor

    def spec(self):
        return {"factor": self.factor}


@pytest.fixture
def custom_head():
    yield _Scaled
    samp_jax.models.heads.HEADS.pop(_Scaled.kind.name, None)


def test_custom_heads_save_and_load_once_registered(custom_head, tmp_path):
    config = FAMILY_CONFIGS["roberta"]
    model = EncoderModel(config, custom_head(config, factor=3.0), rngs=nnx.Rngs(0))
    q = quantize(model, PrecisionMap.preset("fp16", config.num_layers))
    with pytest.raises(ValueError, match="cannot be saved: .* register it with"):
        q.save(tmp_path / "unregistered")
    assert not (tmp_path / "unregistered").exists()  # refused before writing anything
    samp_jax.register_head(custom_head.kind, custom_head)
    loaded = QuantizedModel.load(q.save(tmp_path / "q"))
    assert isinstance(loaded.model.head, custom_head) and loaded.model.head.factor == 3.0
    batch = family_batches(config, 1)[0]
    np.testing.assert_array_equal(np.asarray(loaded(**batch)), np.asarray(q(**batch)))


def test_the_fusions_a_family_forgoes_are_recorded(tmp_path):
    """ModernBERT's gated FFN, rotary embeddings and local layers skip some fused kernels; the
    quantized model says which and why (also in its saved folder); BERT's skip none."""
    config = FAMILY_CONFIGS["modernbert"]
    q = quantize(EncoderModel(config, rngs=nnx.Rngs(0)), PrecisionMap.preset("fully_quant", 2))
    assert set(q.info["unfused"]) == {"embedding_quant", "ffn_in.gate",
                                      "ffn_in->ffn_out int8 hand-off", "local attention"}
    assert "intermediate_size columns away" in q.info["unfused"]["ffn_in.gate"]
    assert QuantizedModel.load(q.save(tmp_path / "q")).info["unfused"] == q.info["unfused"]
    bert = quantize(EncoderModel(FAMILY_CONFIGS["bert"], rngs=nnx.Rngs(0)),
                    PrecisionMap.preset("fully_quant", 2))
    assert "unfused" not in bert.info
