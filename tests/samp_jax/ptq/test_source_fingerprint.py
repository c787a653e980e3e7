"""A quantized model records which float model it was made from (`source_fingerprint`, the
`model_fingerprint` of its parameters) through save and load, whatever file format held the
float weights, and a model changed by one weight has another."""

import jax
from flax import nnx

import samp_jax
from samp_jax import PrecisionMap, QuantizedModel, load_pretrained, quantize
from samp_jax.ptq.folder import SIDECAR_FILE
from tests.helpers import GOLDEN, TINY_CONFIG, tiny_classifier

FORMATS = ("safetensors", "msgpack", "torch")


def test_the_fingerprint_is_the_weights_whatever_file_held_them():
    prints = {f: samp_jax.model_fingerprint(load_pretrained(GOLDEN / "tiny_seqcls" / f)) for f in FORMATS}
    assert len(set(prints.values())) == 1, prints


def test_a_saved_quantized_model_names_its_source(tmp_path):
    source = load_pretrained(GOLDEN / "tiny_seqcls" / "safetensors")
    q = quantize(source, PrecisionMap.preset("fully_quant", source.config.num_layers))
    assert q.source_fingerprint == samp_jax.model_fingerprint(source)
    loaded = QuantizedModel.load(q.save(tmp_path / "q"))
    assert loaded.source_fingerprint == q.source_fingerprint
    assert loaded.info["source_fingerprint"] == q.source_fingerprint  # in the sidecar's info
    assert q.source_fingerprint in (tmp_path / "q" / SIDECAR_FILE).read_text()
    # the same weights read from PyTorch's pickle: the same model
    assert samp_jax.model_fingerprint(load_pretrained(GOLDEN / "tiny_seqcls" / "torch")) == \
        loaded.source_fingerprint


def test_one_changed_weight_is_another_source():
    model = tiny_classifier()
    before = quantize(model, PrecisionMap.preset("fp16", model.config.num_layers)).source_fingerprint
    kernel = model.head.classifier.kernel
    kernel[...] = kernel[...].at[0, 0].add(1e-3)
    after = quantize(model, PrecisionMap.preset("fp16", model.config.num_layers)).source_fingerprint
    assert before != after and len(after) == 64


def test_a_model_of_other_weights_is_another_source():
    a = samp_jax.EncoderModel(TINY_CONFIG, rngs=nnx.Rngs(0))
    b = samp_jax.EncoderModel(TINY_CONFIG, rngs=nnx.Rngs(1))
    qa, qb = (quantize(m, PrecisionMap.preset("fp16", TINY_CONFIG.num_layers)) for m in (a, b))
    assert qa.source_fingerprint != qb.source_fingerprint


def test_a_model_quantized_under_jit_has_no_source_fingerprint():
    """Traced parameters cannot be hashed: the quantized model records None, not an error."""
    model = tiny_classifier()
    seen = []

    @nnx.jit
    def quantized_logits(m, ids):
        q = quantize(m, PrecisionMap.preset("fp16", m.config.num_layers))
        seen.append(q.source_fingerprint)
        return q(ids)

    ids = jax.numpy.ones((2, 8), jax.numpy.int32)
    assert quantized_logits(model, ids).shape == (2, 2)
    assert seen == [None]
