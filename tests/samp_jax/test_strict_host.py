"""A host program that forbids NumPy's implicit rank promotion
(`jax_numpy_rank_promotion='raise'`, as strict JAX codebases set it) can run samp-jax: its
programs broadcast a `[N]` vector against `[..., N]` explicitly (`pallas_kernels.numerics.to_rank`)."""

import jax
import numpy as np
import pytest
from flax import nnx

import samp_jax as sj
from calibrate import calibrate
from calibrate.search.driver import search
from calibrate.search.latency import estimate_table
from samp_jax.core.precision import PrecisionMap
from samp_jax.models.checkpoint import load_pretrained
from samp_jax.models.heads import SequenceClassifier
from samp_jax.models.model import EncoderModel
from tests.helpers import GOLDEN, TINY_CONFIG, family_batches, random_batches

PRESETS = (("fp16", "per_token_dynamic"), ("fully_quant", "per_token_dynamic"),
           ("fully_quant", "per_tensor_static"), ("quant_ffn_only", "per_tensor_static"), ("fp8", None))


@pytest.fixture
def strict():
    with jax.numpy_rank_promotion("raise"):
        yield


def test_a_static_int8_model_and_relative_attention_run_in_a_host_that_raises_on_rank_promotion(strict):
    bert = load_pretrained(GOLDEN / "families" / "bert" / "seqcls")
    batches = family_batches(bert.config, 2)
    with pytest.warns(UserWarning, match="calibration saw only"):
        calibration = calibrate(bert, batches)
    static = PrecisionMap.preset("fully_quant", bert.config.num_layers, activation="per_tensor_static")
    assert np.isfinite(np.asarray(sj.quantize(bert, static, calibration)(**batches[0]))).all()
    deberta = load_pretrained(GOLDEN / "families" / "deberta-v2" / "seqcls")
    assert np.isfinite(np.asarray(deberta(**family_batches(deberta.config, 1)[0]))).all()


# BERT's layers, DeBERTa-v3's relative attention, ModernBERT's bias-less norms and GLU
@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["bert", "deberta-v2", "modernbert"])
def test_every_precision_runs_in_a_host_that_raises_on_rank_promotion(model_type, strict):
    model = load_pretrained(GOLDEN / "families" / model_type / "tokcls")
    batch = family_batches(model.config, 1)[0]
    with pytest.warns(UserWarning, match="calibration saw only"):
        calibration = calibrate(model, family_batches(model.config, 2))
    outputs = [np.asarray(model(**batch))]
    for name, activation in PRESETS:
        kwargs = {} if activation is None else {"activation": activation}
        precision_map = PrecisionMap.preset(name, model.config.num_layers, **kwargs)
        outputs.append(np.asarray(sj.quantize(model, precision_map, calibration)(**batch)))
    assert all(np.isfinite(o).all() and o.shape == outputs[0].shape for o in outputs)


@pytest.mark.slow
def test_the_kernels_and_a_search_run_in_a_host_that_raises_on_rank_promotion(strict):
    tiny = EncoderModel(TINY_CONFIG, SequenceClassifier(TINY_CONFIG, 3, rngs=nnx.Rngs(5)), rngs=nnx.Rngs(5))
    batches = random_batches(2, rows=4, width=8)
    with pytest.warns(UserWarning, match="calibration saw only"):
        calibration = calibrate(tiny, batches)
    with sj.ops.interpret():  # the Pallas kernels' own epilogues, in interpret mode
        static = PrecisionMap.preset("fully_quant", 3, activation="per_tensor_static")
        assert np.isfinite(np.asarray(sj.quantize(tiny, static, calibration)(**batches[0]))).all()
    result = search(tiny, batches, target="h100", options=("fp16", "int8-dynamic", "int8-static"),
                    latency_table=estimate_table(TINY_CONFIG, 32, 128), sensitivity_batches=1,
                    progress=False, tolerance=0.3, stop_early=False, calibration=calibration)
    assert result.maps_run > 0
