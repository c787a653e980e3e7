"""What an engine serves, whatever else happens: the weights it was compiled with (a snapshot),
a quantized row within one bucket whatever its company, and texts given as a numpy array."""

import jax
import numpy as np
import pytest
from flax import nnx

import samp_jax
from calibrate import calibrate
from samp_jax import Tokenizer
from samp_jax.models.heads import make_head

LONG = "The quick brown fox jumps over the lazy dog near the river bank. " * 3  # > 32 tokens


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return Tokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def classifier_model(minilm):
    """The real MiniLM encoder with a randomly initialised 3-way SequenceClassifier head."""
    model = nnx.clone(minilm)
    model.head = make_head("sequence_classification", model.config, num_labels=3,
                           labels=("contradiction", "entailment", "neutral"), rngs=nnx.Rngs(1))
    return model


@pytest.fixture(scope="module")
def classifier(classifier_model, tokenizer):
    return samp_jax.compile(classifier_model, tokenizer=tokenizer, seq_buckets=(16, 64),
                            batch_buckets=(1, 4))


@pytest.mark.parametrize("preset, activation", [
    ("fully_quant", "per_token_dynamic"),
    pytest.param("fully_quant", "per_tensor_static", marks=pytest.mark.slow)])
def test_a_quantized_row_in_one_bucket_is_the_same_whatever_its_company(
        classifier_model, tokenizer, preset, activation):
    """Within one (batch, seq) bucket a quantized row's output does not depend on the rows
    beside it or on its place: per-token scales are each row's own, static ones fixed. (Across
    buckets it may move by an INT8 step: docs/design.md, serving.)"""
    pmap = samp_jax.PrecisionMap.preset(preset, classifier_model.config.num_layers,
                                        activation=activation)
    texts = ["A man is playing a guitar.", "Nobody is outside.", LONG, "A cat sleeps."]
    calibration = None
    if pmap.needs_calibration():
        calibration = calibrate(classifier_model, [tokenizer(texts)], "minmax")
    quantized = samp_jax.quantize(classifier_model, pmap, calibration)
    engine = samp_jax.compile(quantized, tokenizer=tokenizer, seq_buckets=(64,),
                              batch_buckets=(4,))
    alone = engine(["Nobody is outside."]).logits[0]
    for company in (texts, texts[::-1], ["Nobody is outside.", "x", "y"]):
        row = engine(company).logits[company.index("Nobody is outside.")]
        np.testing.assert_array_equal(row, alone)


def test_a_numpy_array_of_texts_or_pairs_is_read_as_the_list(classifier):
    texts = ["A man is playing a guitar.", "Nobody is outside."]
    expected = classifier(texts).logits
    np.testing.assert_array_equal(classifier(np.array(texts)).logits, expected)
    np.testing.assert_array_equal(classifier(np.array(texts, dtype=object)).logits, expected)
    pairs = [(texts[0], texts[1]), (texts[1], texts[0])]
    np.testing.assert_array_equal(classifier(np.array(pairs)).logits, classifier(pairs).logits)
    np.testing.assert_array_equal(classifier(np.array(pairs, dtype=object)).logits,
                                  classifier(pairs).logits)
    # an object array is the list it holds, whatever its first row (was read as token ids)
    for rows, bad in (([None, texts[0]], 0), ([texts[0], None], 1)):
        with pytest.raises(TypeError, match=f"row {bad} is None; expected a str"):
            classifier(np.array(rows, dtype=object))


def test_the_engine_serves_the_weights_it_was_compiled_with(classifier_model, tokenizer):
    """A snapshot: a later `nnx.update` or assignment to the model's variables does not change
    what the engine serves."""
    model = nnx.clone(classifier_model)
    engine = samp_jax.compile(model, tokenizer=tokenizer, seq_buckets=(16,), batch_buckets=(2,))
    before = engine(["A cat sleeps.", "Nobody is outside."]).logits
    model.head.classifier.bias[...] = model.head.classifier.bias[...] + 100.0
    nnx.update(model, jax.tree.map(lambda x: x * 0.5, nnx.state(model, nnx.Param)))
    np.testing.assert_array_equal(engine(["A cat sleeps.", "Nobody is outside."]).logits, before)
    fresh = samp_jax.compile(model, tokenizer=tokenizer, seq_buckets=(16,), batch_buckets=(2,))
    assert np.abs(fresh(["A cat sleeps.", "Nobody is outside."]).logits - before).min() > 1.0
