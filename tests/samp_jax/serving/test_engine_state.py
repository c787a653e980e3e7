"""What an engine serves, whatever else happens: the weights it was compiled with (a snapshot),
a quantized row within one bucket whatever its company, and texts given as a numpy array."""

import copy
import pickle

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


def test_a_bare_tuple_of_two_texts_is_refused_as_ambiguous(classifier):
    """One pair (sentence-transformers' CrossEncoder reads it so) or two texts? Neither is
    guessed; a list says which."""
    texts = ("A man is playing a guitar.", "Nobody is outside.")
    with pytest.raises(ValueError, match=r"inputs are a tuple of two texts .* expected a list: "
                                         r"\[\(text, text_pair\)\] for one pair"):
        classifier(texts)
    assert len(classifier([texts])) == 1 and len(classifier(list(texts))) == 2
    assert len(classifier(texts + ("A cat sleeps.",))) == 3  # a longer tuple is a list of texts


def test_an_engine_refuses_pickle_and_copy_naming_what_to_pickle(classifier):
    for copier in (pickle.dumps, copy.deepcopy, copy.copy):
        with pytest.raises(TypeError, match=r"an Engine holds compiled executables, which do not "
                                            r"pickle or copy; pickle the model it serves"):
            copier(classifier)
    restored = pickle.loads(pickle.dumps(classifier.model))  # the model does pickle
    np.testing.assert_array_equal(samp_jax.compile(restored, tokenizer=classifier.tokenizer,
                                                   seq_buckets=(16,), batch_size=1)(["a b"]).logits,
                                  classifier(["a b"]).logits)


def test_an_engine_output_shows_its_shapes_not_its_values(classifier, tokenizer, minilm):
    assert repr(classifier(["a b", "c d e"])) == (
        "EngineOutput(kind='sequence_classification', lengths=int64[2], truncated=bool[2], "
        "logits=float32[2, 3], labels=int64[2], label_names=list[2], non_finite=bool[2])")
    tagger = nnx.clone(minilm)
    tagger.head = make_head("token_classification", tagger.config, num_labels=5, rngs=nnx.Rngs(0))
    tags = samp_jax.compile(tagger, tokenizer=tokenizer, seq_buckets=(16,), batch_size=2,
                            precompile=False)(["a b", "c d e"])
    assert repr(tags) == ("EngineOutput(kind='token_classification', lengths=int64[2], "
                          "truncated=bool[2], logits=[2 x float32[L, 5]], labels=[2 x int64[L]], "
                          "non_finite=bool[2])")


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
