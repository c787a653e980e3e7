"""The inference engine: bucket choice, no compilation while serving, padding invariance,
parity with the model's own forward, input validation, the tokenizer (given, or the model's own;
never a default), class names in the outputs, quantized models, the persistent cache."""

import collections
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache

import samp_jax
from samp_jax import EncoderModel, PrecisionMap, TokenClassifier, Tokenizer, quantize
from samp_jax.models.heads import make_head
from samp_jax.serving.batching import bucket_batches, bucket_for
from samp_jax.serving.engine import (DEFAULT_CACHE_BYTES, CompileCounter, Engine, EngineOutput,
                                     enable_compilation_cache)
from samp_jax.serving.inputs import InputReader
from tests.helpers import TINY_CONFIG

SEQ_BUCKETS = (16, 32, 64)
BATCH_BUCKETS = (1, 4)
NLI_LABELS = ("contradiction", "entailment", "neutral")
TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
LONG = "The quick brown fox jumps over the lazy dog near the river bank. " * 3  # > 32 tokens
TOO_LONG = "word " * 100  # 102 tokens


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    """MiniLM's HF tokenizer (512 tokens, the position table's), not its sentence-transformers
    settings (256)."""
    return Tokenizer.from_pretrained(minilm_dir, sentence_transformers=False)


@pytest.fixture(scope="module")
def embedder(minilm, tokenizer):
    return samp_jax.compile(minilm, tokenizer=tokenizer, seq_buckets=SEQ_BUCKETS,
                            batch_buckets=BATCH_BUCKETS)


@pytest.fixture(scope="module")
def classifier_model(minilm):
    """The real MiniLM encoder with a randomly initialised 3-way SequenceClassifier head."""
    model = nnx.clone(minilm)
    model.head = make_head("sequence_classification", model.config, num_labels=3,
                           labels=NLI_LABELS, rngs=nnx.Rngs(1))
    return model


@pytest.fixture(scope="module")
def classifier(classifier_model, tokenizer):
    return samp_jax.compile(classifier_model, tokenizer=tokenizer, seq_buckets=(16, 64),
                            batch_buckets=BATCH_BUCKETS)


@pytest.fixture(scope="module")
def tagger_model(minilm):
    """The real MiniLM encoder with a randomly initialised 5-way TokenClassifier head."""
    model = nnx.clone(minilm)
    model.head = TokenClassifier(model.config, 5, labels=TAGS, rngs=nnx.Rngs(2))
    return model


# Jitted as the engine's executables are, but on the exact batch: no bucket, no padding rows.
# (Eagerly, each op of MiniLM would compile on its own for every new batch shape.)
_forward = nnx.jit(lambda model, batch: model(**batch))


def direct(model, tokenizer, texts, pairs=None, **kwargs):
    """The model's own forward on the un-bucketed tokenized batch."""
    return np.asarray(_forward(model, tokenizer(texts, pairs, **kwargs)))


# --------------------------------------------------------------------------- buckets
def test_bucket_for_is_the_smallest_that_fits():
    assert [bucket_for(n, SEQ_BUCKETS) for n in (1, 16, 17, 32, 33, 64)] == [16, 16, 32, 32, 64, 64]
    assert [bucket_for(n, BATCH_BUCKETS) for n in (1, 2, 4)] == [1, 4, 4]
    with pytest.raises(ValueError, match="size=65 exceeds the largest bucket 64"):
        bucket_for(65, SEQ_BUCKETS)


def test_the_short_chunk_goes_where_it_pads_fewer_tokens():
    """Padded to `batch_size` rows, a short chunk of the longest rows would pad whole rows at
    the longest bucket: it takes the shortest rows then. With batch buckets, where it pads
    only up to a bucket, the longest rows may be cheaper; an order given is cut as given."""
    lengths = np.array([5, 40, 3, 33, 7, 100, 2])
    arrays = {"input_ids": np.ones((7, 100), np.int32)}

    def cut(**kwargs):
        return [(sorted(lengths[rows].tolist()), batch["input_ids"].shape)
                for rows, batch in bucket_batches(arrays, lengths, **kwargs)]

    assert cut(batch_size=3) == [([2], (3, 32)), ([3, 5, 7], (3, 32)), ([33, 40, 100], (3, 128))]
    assert cut(batch_size=3, order=np.arange(7)) == [
        ([3, 5, 40], (3, 64)), ([7, 33, 100], (3, 128)), ([2], (3, 32))]
    assert cut(batch_size=3, batch_buckets=(1, 3)) == [
        ([2, 3, 5], (3, 32)), ([7, 33, 40], (3, 64)), ([100], (1, 128))]
    assert cut(batch_size=7) == [([2, 3, 5, 7, 33, 40, 100], (7, 128))]


def test_engine_runs_each_chunk_in_the_smallest_buckets(embedder):
    def calls(inputs):
        before = embedder.bucket_calls.copy()
        embedder(inputs)
        return embedder.bucket_calls - before

    assert calls("Hi") == {(1, 16): 1}
    assert calls(["Hi", "Hello there"]) == {(4, 16): 1}  # 2 rows → batch bucket 4
    assert calls(["Hi"] * 4 + ["word " * 20]) == {(4, 16): 1, (1, 32): 1}  # sorted by length
    assert calls(["Hi"] * 3 + [LONG]) == {(4, 64): 1}
    assert calls(["Hi"] * 9) == {(4, 16): 2, (1, 16): 1}  # chunks of batch_size=4


def test_compile_report_and_counter(embedder):
    assert embedder.num_compilations == len(SEQ_BUCKETS) * len(BATCH_BUCKETS)
    assert [(r["batch"], r["seq"]) for r in embedder.compile_report] == [
        (b, s) for b in BATCH_BUCKETS for s in SEQ_BUCKETS]
    assert all(r["seconds"] > 0 for r in embedder.compile_report)
    assert embedder.batch_size == 4 and embedder.head_kind == "sentence_embedding"


def test_no_compilation_while_serving_100_mixed_calls(embedder, tokenizer):
    rng = np.random.default_rng(0)
    words = "the a dog cat runs quickly over snowy field while owner watches porch".split()
    compiled_before, calls_before = embedder.num_compilations, embedder.bucket_calls.copy()
    with CompileCounter() as counter:
        for call in range(100):
            rows = int(rng.integers(1, 7))
            # mostly short rows to save CPU time; every bucket is still reached
            most = 60 if call % 10 == 0 else 30 if call % 10 in (5, 7) else 14
            texts = [" ".join(rng.choice(words, int(rng.integers(1, most)))) for _ in range(rows)]
            if call % 10 == 3:
                embedder(tokenizer(texts))  # token ids
            elif call % 10 == 7:
                embedder(list(zip(texts, texts[::-1])))  # pairs
            else:
                embedder(texts if rows > 1 else texts[0])
        embedder(" ".join(words * 4))  # one long row alone: (1, 64), whatever the draws reached
        assert counter.count == 0
        jax.jit(lambda x: x * 3).lower(jax.ShapeDtypeStruct((3,), jnp.float32)).compile()
        assert counter.count == 1  # the listener does see compilations
    assert embedder.num_compilations == compiled_before
    used = embedder.bucket_calls - calls_before
    assert sum(used.values()) >= 101 and len(used) == 6  # every executable ran


def test_without_precompile_only_the_buckets_reached_compile_once(embedder, minilm, tokenizer):
    import threading
    lazy = samp_jax.compile(minilm, tokenizer=tokenizer, seq_buckets=SEQ_BUCKETS,
                            batch_buckets=BATCH_BUCKETS, precompile=False)
    assert lazy.num_compilations == 0 and lazy.compile_report == [] and not lazy.precompile
    texts = ["Hi", "Hello there", LONG]
    np.testing.assert_array_equal(lazy(texts).embeddings, embedder(texts).embeddings)
    assert [(r["batch"], r["seq"]) for r in lazy.compile_report] == [(4, 64)]
    results, barrier = [], threading.Barrier(4)

    def call():
        barrier.wait()
        results.append(lazy("Hi").embeddings)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # four threads reached bucket (1, 16) at once: it compiled once, and all four ran it
    assert [(r["batch"], r["seq"]) for r in lazy.compile_report] == [(4, 64), (1, 16)]
    assert lazy.num_compilations == 2 and lazy.bucket_calls[1, 16] == 4
    for result in results:
        np.testing.assert_array_equal(result, embedder("Hi").embeddings)
    with CompileCounter() as counter:
        lazy(["Hi", LONG])  # bucket (4, 64), compiled before: no compilation
        assert counter.count == 0
    assert "precompile=False" in repr(lazy)
    with pytest.raises(TypeError, match="precompile='no' must be True or False"):
        samp_jax.compile(minilm, tokenizer=tokenizer, precompile="no")

# ------------------------------------------------------------------------ numerics
def test_embeddings_equal_the_direct_forward(embedder, minilm, tokenizer, minilm_texts, minilm_golden):
    sentences = minilm_texts["sentences"]
    out = embedder(sentences)
    np.testing.assert_allclose(out.embeddings, direct(minilm, tokenizer, sentences), atol=6e-7)
    assert out.embeddings.dtype == np.float32 and out.embeddings.shape == (16, 384)
    cosine = np.sum(out.embeddings * minilm_golden["single_embedding"], axis=-1)
    assert cosine.min() > 1 - 1e-6  # and with HF's own embeddings (measured 1 - 1.2e-7)
    np.testing.assert_array_equal(out.lengths, tokenizer(sentences)["attention_mask"].sum(axis=1))
    assert not out.truncated.any() and len(out) == 16


def test_padding_and_batch_company_do_not_change_a_row(embedder, classifier, classifier_model,
                                                        minilm, tokenizer):
    text = "A man is playing a guitar."
    alone = embedder(text).embeddings[0]  # (1, 16) bucket
    crowded = embedder(["x", LONG, text, "word " * 20]).embeddings[2]  # (4, 64) bucket
    unpadded = direct(minilm, tokenizer, [text])[0]  # no padding at all
    np.testing.assert_allclose(alone, unpadded, atol=5e-7)  # measured 1.1e-7
    np.testing.assert_allclose(crowded, unpadded, atol=5e-7)
    pair = ("A man is playing a guitar.", "A person plays an instrument.")
    alone = classifier([pair]).logits[0]
    crowded = classifier([(LONG, "x"), pair, ("y", "z")]).logits[1]
    unpadded = direct(classifier_model, tokenizer, [pair[0]], [pair[1]])[0]
    np.testing.assert_allclose(alone, unpadded, atol=2.5e-7)
    np.testing.assert_allclose(crowded, unpadded, atol=2.5e-7)


def test_classifier_on_pairs_matches_the_direct_forward(classifier, classifier_model, tokenizer,
                                                        minilm_texts):
    pairs = [tuple(p) for p in minilm_texts["pairs"]]
    out = classifier(pairs)
    expected = direct(classifier_model, tokenizer, [a for a, _ in pairs], [b for _, b in pairs])
    assert out.kind == "sequence_classification" and out.logits.shape == (6, 3)
    np.testing.assert_allclose(out.logits, expected, atol=4e-7)
    np.testing.assert_array_equal(out.labels, np.argmax(out.logits, axis=-1))
    assert out.label_names == [NLI_LABELS[i] for i in out.labels]
    assert classifier.labels == NLI_LABELS
    assert out.embeddings is None
    # a pair is not the same input as its first text alone: token types and the second segment
    assert not np.allclose(classifier([pairs[0][0]]).logits[0], out.logits[0], atol=1e-4)


def test_token_id_inputs_give_the_text_results(embedder, tokenizer):
    texts = ["Hi", "Two dogs run across a snowy field."]
    expected = embedder(texts).embeddings
    batch = tokenizer(texts)
    np.testing.assert_array_equal(embedder(batch).embeddings, expected)
    rows = [list(r[m == 1]) for r, m in zip(batch["input_ids"], batch["attention_mask"])]
    np.testing.assert_array_equal(embedder(rows).embeddings, expected)
    np.testing.assert_array_equal(embedder([np.asarray(r) for r in rows]).embeddings, expected)
    one = np.asarray(rows[1:], np.int32)  # a 2-D array is all real tokens
    np.testing.assert_array_equal(embedder(one).embeddings, embedder(texts[1]).embeddings)
    # padded positions are ignored whatever they hold
    junk = {k: v.copy() for k, v in batch.items()}
    junk["input_ids"][junk["attention_mask"] == 0] = -100
    np.testing.assert_array_equal(embedder(junk).embeddings, expected)


def test_token_classifier_trims_rows_and_labels_words(tagger_model, embedder, tokenizer):
    engine = samp_jax.compile(tagger_model, tokenizer=tokenizer, seq_buckets=(16,),
                              batch_buckets=(4,))
    texts = ["Hi", "Two dogs run across a snowy field."]
    out = engine(texts)
    lengths = tokenizer(texts)["attention_mask"].sum(axis=1)
    assert [r.shape for r in out.logits] == [(n, 5) for n in lengths]
    expected = direct(tagger_model, tokenizer, texts)
    for row, (logits, labels) in enumerate(zip(out.logits, out.labels)):
        np.testing.assert_allclose(logits, expected[row, :lengths[row]], atol=1.5e-6)
        np.testing.assert_array_equal(labels, np.argmax(logits, axis=-1))
        assert out.label_names[row] == [TAGS[i] for i in labels]  # one name per token
    words = [["Hello", "snowfields"], ["dogs"]]
    tagged = engine.classify_words(words)
    batch, word_ids = tokenizer.encode_words(words)
    for row, sentence in enumerate(words):
        first = [int(np.flatnonzero(word_ids[row] == w)[0]) for w in range(len(sentence))]
        np.testing.assert_array_equal(tagged.word_logits[row], tagged.logits[row][first])
        np.testing.assert_array_equal(tagged.word_labels[row], tagged.labels[row][first])
        assert tagged.word_label_names[row] == [TAGS[i] for i in tagged.word_labels[row]]
    with pytest.raises(ValueError, match="needs a per-token logits head such as 'token_classification'"):
        embedder.classify_words(words)


def test_a_word_without_a_token_is_unlabelled_in_a_row_not_truncated(tagger_model, tokenizer):
    """A zero-width word makes no token: its label is -1 / None and its logits NaN although
    nothing was truncated, as `EngineOutput`'s docstring says (not only "truncation removed")."""
    engine = samp_jax.compile(tagger_model, tokenizer=tokenizer, seq_buckets=(16,),
                              batch_buckets=(2,), precompile=False)
    out = engine.classify_words([["\u200b", "dogs"]])
    assert not out.truncated[0] and out.word_labels[0][0] == -1 and out.word_labels[0][1] >= 0
    assert out.word_label_names[0][0] is None and np.isnan(out.word_logits[0][0]).all()
    doc = " ".join(EngineOutput.__doc__.split())
    for field in ("word_logits", "word_labels", "word_label_names"):
        entry = doc.split(f"{field}: ")[1].split(" word_")[0]
        assert "without a sub-token" in entry, (field, entry)
    assert "a word the tokenizer makes no token of, such as a zero-width" in doc


def test_bare_encoder_returns_trimmed_hidden_states(minilm, tokenizer):
    bare = nnx.clone(minilm)
    bare.head = None
    engine = samp_jax.compile(bare, tokenizer=tokenizer, seq_buckets=(16,), batch_buckets=(2,))
    texts = ["Hi", "Two dogs run across a snowy field."]
    out = engine(texts)
    assert out.kind == "none" and out.embeddings is None and out.label_names is None
    expected = np.asarray(nnx.jit(lambda model, batch: model.encode(**batch))(minilm, tokenizer(texts)))
    for row, hidden in enumerate(out.hidden_states):
        assert hidden.shape == (out.lengths[row], 384)
        np.testing.assert_allclose(hidden, expected[row, :out.lengths[row]], atol=1e-5)


# ---------------------------------------------------------------- length and errors
def test_too_long_rows_raise_unless_truncating(embedder, classifier_model, tokenizer):
    with pytest.raises(ValueError, match=r"row 1 has 102 tokens, more than the largest bucket 64.*"
                                         r"truncate=True"):
        embedder(["Hi", TOO_LONG])
    with pytest.raises(ValueError, match="row 0 has 102 tokens"):
        embedder({"input_ids": np.ones((1, 102), np.int32)})
    # a row of more characters than MEASURED_CHARS is named by its head's length, a least count
    from samp_jax.serving.inputs import MEASURED_CHARS
    huge = "word " * (MEASURED_CHARS // 4)
    words = len(huge.rstrip()[:MEASURED_CHARS].rsplit(" ", 1)[0].split())  # the head's words
    with pytest.raises(ValueError, match=rf"row 1 has at least {words + 2} tokens, more than the "
                                         r"largest bucket 64 \(2 row\(s\) too long\)"):
        embedder(["Hi", huge, TOO_LONG])
    engine = samp_jax.compile(classifier_model, tokenizer=tokenizer, seq_buckets=(16,),
                              batch_buckets=(2,), truncate=True)
    out = engine([TOO_LONG, "Hi"])
    np.testing.assert_array_equal(out.truncated, [True, False])
    np.testing.assert_array_equal(out.lengths, [16, 3])
    expected = direct(classifier_model, tokenizer, [TOO_LONG, "Hi"], padding=16, truncation=True)
    np.testing.assert_allclose(out.logits, expected, atol=1.5e-7)
    pairs = [(TOO_LONG, "A short second segment."), ("a", "b")]  # longest segment is cut first
    out = engine(pairs)
    expected = direct(classifier_model, tokenizer, [a for a, _ in pairs], [b for _, b in pairs],
                      padding=16, truncation=True)
    np.testing.assert_allclose(out.logits, expected, atol=1.5e-7)
    np.testing.assert_array_equal(out.truncated, [True, False])
    ids = engine([list(range(1000, 1040))])  # raw ids keep their first tokens
    first = engine([list(range(1000, 1016))])
    np.testing.assert_array_equal(ids.logits, first.logits)
    assert ids.truncated[0] and not first.truncated[0]


def test_rows_are_served_up_to_the_tokenizers_own_limit(minilm_dir):
    """all-MiniLM-L6-v2 has 512 positions but sentence-transformers cuts rows at its
    max_seq_length of 256: the engine serves 256 at most, as the model was trained."""
    model = samp_jax.load(minilm_dir)
    assert model.tokenizer.max_length == 256 and model.config.max_sequence_length == 512
    engine = samp_jax.compile(model, batch_size=1, truncate=True, precompile=False)
    assert engine.seq_buckets[-1] == 256
    out = engine(TOO_LONG * 3)  # 302 tokens
    assert out.truncated[0] and out.lengths[0] == 256
    np.testing.assert_allclose(out.embeddings, direct(model, model.tokenizer, [TOO_LONG * 3],
                                                      truncation=True), atol=2e-6)
    with pytest.raises(ValueError, match=r"row 0 has 302 tokens, more than the largest bucket 256"):
        samp_jax.compile(model, batch_size=1, precompile=False)(TOO_LONG * 3)
    with pytest.raises(ValueError, match=r"has 512, more than the tokenizer's max_length of 256 "
                                         r"tokens .*max_length=N\)"):
        samp_jax.compile(model, seq_buckets=(128, 512), precompile=False)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(seq_buckets=()), ValueError, "seq_buckets is empty"),
    (dict(seq_buckets=(0, 16)), ValueError, "every size must be a positive int"),
    (dict(seq_buckets=(16, -1)), ValueError, "every size must be a positive int"),
    (dict(seq_buckets=(16.0,)), ValueError, "every size must be a positive int"),
    (dict(seq_buckets=(32, 1024)), ValueError, "more than the model's maximum of 512 tokens"),
    (dict(seq_buckets=64), TypeError, "must be a sequence of ints"),
    (dict(batch_size=0), ValueError, "batch_size=0 must be a positive int"),
    (dict(batch_buckets=()), ValueError, "batch_buckets is empty"),
    (dict(batch_size=8, batch_buckets=(1, 4)), ValueError, "must have batch_size=8 as its largest"),
    (dict(truncate="yes"), TypeError, "truncate='yes' must be True or False"),
    (dict(dtype=jnp.int8), ValueError, "must be float32, float16 or bfloat16"),
])
def test_bad_compile_arguments_raise(minilm, tokenizer, kwargs, error, message):
    with pytest.raises(error, match=message):
        samp_jax.compile(minilm, tokenizer=tokenizer, **kwargs)


def test_buckets_are_sorted_and_deduplicated_with_the_models_own_tokenizer(minilm_dir, capsys):
    model = samp_jax.load(minilm_dir)  # attaches the folder's tokenizer: no tokenizer= needed
    engine = samp_jax.compile(model, seq_buckets=(16, 8, 16), batch_size=1)
    assert engine.seq_buckets == (8, 16) and engine.batch_buckets == (1,)  # (1, 8, batch_size)
    assert engine.num_compilations == 2
    defaults = {size: samp_jax.compile(model, seq_buckets=(8,), batch_size=size,
                                       precompile=False).batch_buckets for size in (4, 8, 32)}
    assert defaults == {4: (1, 4), 8: (1, 8), 32: (1, 8, 32)}
    assert engine.tokenizer is model.tokenizer and engine.tokenizer.vocab_size == 30522
    assert engine("hello world").embeddings.shape == (1, 384)
    assert capsys.readouterr().out == ""  # quiet by default
    engine = samp_jax.compile(model, seq_buckets=(8,), batch_buckets=(3, 1, 3), progress=True)
    assert engine.batch_buckets == (1, 3) and engine.batch_size == 3
    printed = capsys.readouterr().out
    assert "batch=1 seq=8" in printed and "batch=3 seq=8" in printed


def test_no_tokenizer_is_a_clear_error_and_tokenizer_overrides_the_models(minilm, minilm_dir,
                                                                         tokenizer):
    assert minilm.tokenizer is None  # load_pretrained reads weights only; samp_jax.load adds it
    with pytest.raises(ValueError, match=r"the EncoderModel has no tokenizer; pass tokenizer=.*"
                                         r"samp_jax.load\(folder\)"):
        samp_jax.compile(minilm, seq_buckets=(8,), batch_size=1)
    q = quantize(minilm, PrecisionMap.preset("fp16", minilm.config.num_layers))
    with pytest.raises(ValueError, match="the QuantizedModel has no tokenizer"):
        samp_jax.compile(q, seq_buckets=(8,), batch_size=1)
    with pytest.raises(TypeError, match="tokenizer must be a samp_jax.Tokenizer, got str"):
        samp_jax.compile(minilm, tokenizer="all-MiniLM-L6-v2", seq_buckets=(8,), batch_size=1)
    own = nnx.clone(minilm)
    own.tokenizer = Tokenizer.from_pretrained(minilm_dir, max_length=32)
    assert samp_jax.compile(own, seq_buckets=(8,), batch_size=1).tokenizer is own.tokenizer
    engine = samp_jax.compile(own, tokenizer=tokenizer, seq_buckets=(8,), batch_size=1)
    assert engine.tokenizer is tokenizer  # tokenizer= wins over the model's


def test_bad_model_raises(tokenizer):
    with pytest.raises(TypeError, match="needs an EncoderModel or a QuantizedModel, got dict"):
        samp_jax.compile({}, tokenizer=tokenizer)


@pytest.mark.parametrize("inputs, error, message", [
    ([], ValueError, "empty input"),
    ({"input_ids": np.zeros((0, 4), np.int32)}, ValueError, "empty input"),
    (["a", ("b", "c")], ValueError, "row 0 is a text, row 1 is a .text, text_pair. pair"),
    (["a", [101, 102]], ValueError, "row 0 is a text, row 1 is token ids"),
    (["a", 3], TypeError, "row 1 is 3; expected a str"),
    ([("a", "b", "c")], TypeError, "row 0 is"),
    ([[]], ValueError, "row 0 is an empty list of token ids"),
    (3.5, TypeError, "inputs must be a str"),
    ([[101, 40000]], ValueError, r"input_ids row 0 position 1 is 40000, outside the model's range \[0, 30522\)"),
    ([[101, -1]], ValueError, "outside the model's range"),
    ({"input_ids": [[101, 102]], "token_type_ids": [[0, 2]]}, ValueError,
     r"token_type_ids row 0 position 1 is 2, outside the model's range \[0, 2\)"),
    ({"input_ids": [[101, 102]], "attention_mask": [[0, 1]]}, ValueError,
     "attention_mask row 0 is not right padding"),
    ({"input_ids": [[101, 102]], "attention_mask": [[0, 0]]}, ValueError,
     "attention_mask row 0 has no real token"),
    ({"input_ids": [[101, 102]], "attention_mask": [[1]]}, ValueError,
     r"attention_mask has shape \(1, 1\), expected \(1, 2\)"),
    ({"input_ids": [[1.0, 2.0]]}, ValueError, "input_ids must be integers"),
    ({"input_ids": [101, 102]}, ValueError, r"input_ids must be \[batch, seq\]"),
    ({"ids": [[101]]}, ValueError, "token-id input needs 'input_ids'"),
    # the tokenizers library's "TextEncodeInput must be Union[...]", and bytes read as ids
    (["ok", "abc\ud800"], ValueError, r"row 1 has a lone surrogate '\\ud800' at character 3, "
     r"which is not Unicode text; expected a str that UTF-8 can encode"),
    ([("a", "b"), ("c", "\udc80d")], ValueError, r"row 1's text_pair has a lone surrogate '\\udc80' at "
     r"character 0"),
    ("x\udfff", ValueError, r"row 0 has a lone surrogate"),
    (b"abc", TypeError, r"inputs are bytes \(b'abc'\); expected a str \(decode the bytes first"),
    (np.array([b"a film"]), TypeError, "a numpy array of bytes"),
    (np.array([["a", "b", "c"]]), TypeError, r"of shape \(1, 3\); expected \[N\] texts"),
    (np.array(["a", 3], dtype=object), TypeError, "row 1 is 3; expected a str"),
])
def test_bad_inputs_raise(embedder, inputs, error, message):
    with pytest.raises(error, match=message):
        embedder(inputs)


# ---------------------------------------------------------------- models and dtypes
def test_quantized_model_and_float16_copy_serve(minilm, embedder, tokenizer, minilm_texts):
    source = nnx.clone(minilm)
    source.tokenizer = tokenizer
    q = quantize(source, PrecisionMap.preset("fp16", minilm.config.num_layers))
    assert q.tokenizer is tokenizer  # the quantized copy keeps the source's tokenizer
    quantized = samp_jax.compile(q, seq_buckets=(32,), batch_buckets=(4,))
    assert quantized.model is q and quantized.head_kind == "sentence_embedding"
    assert quantized.tokenizer is tokenizer
    half = samp_jax.compile(minilm, tokenizer=tokenizer, seq_buckets=(32,), batch_buckets=(4,),
                            dtype=jnp.float16)
    assert half.model is not minilm and half.model.dtype == jnp.float16
    assert half.model.encoder.layers[0].qkv.kernel.dtype == jnp.float16
    # the caller's model is untouched
    assert minilm.dtype == jnp.float32 and minilm.embeddings.word.dtype == jnp.float32
    assert minilm.encoder.layers[0].qkv.kernel.dtype == jnp.float32
    assert minilm.encoder.layers[0].qkv.dtype == jnp.float32
    sentences = minilm_texts["sentences"][:8]
    from_quantized, from_half = quantized(sentences).embeddings, half(sentences).embeddings
    # an all-FP16 map runs the same FP16 GEMMs as the FP16 copy of the float model: one program
    np.testing.assert_array_equal(from_quantized, from_half)
    reference = embedder(sentences).embeddings  # FP32, equal to the direct forward (tested above)
    for embeddings in (from_quantized, from_half):
        assert np.sum(embeddings * reference, axis=-1).min() > 1 - 4e-6  # cosine; measured 1 - 7.7e-7
    with pytest.raises(ValueError, match="does not match the QuantizedModel's compute dtype float16"):
        samp_jax.compile(q, tokenizer=tokenizer, dtype=jnp.float32)


def test_a_lone_surrogate_in_a_word_is_named(minilm, tokenizer):
    reader = InputReader(tokenizer, minilm.config, limit=16, truncate=False)
    with pytest.raises(ValueError, match=r"words\[1\]\[1\] has a lone surrogate '\\udc80' at "
                       r"character 1"):
        reader.read_words([["ok"], ["fine", "a\udc80"]])


@pytest.fixture
def restore_cache_config():
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes", "jax_compilation_cache_max_size")
    saved = {name: getattr(jax.config, name) for name in names}
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def test_persistent_cache_dir_is_filled_and_reused(minilm, tokenizer, tmp_path, monkeypatch,
                                                   restore_cache_config):
    cache = tmp_path / "xla"
    first = Engine(minilm, tokenizer=tokenizer, seq_buckets=(8,), batch_buckets=(2,),
                   cache_dir=cache)
    assert first.cache_dir == cache.resolve()
    assert len(list(cache.iterdir())) >= 1
    hits = collections.Counter()
    listener = lambda event, **kwargs: hits.update([event])  # noqa: E731
    jax.monitoring.register_event_listener(listener)
    monkeypatch.setenv("SAMP_JAX_XLA_CACHE", str(cache))  # the same folder, named by the env
    try:
        second = Engine(minilm, tokenizer=tokenizer, seq_buckets=(8,), batch_buckets=(2,))
    finally:
        jax.monitoring.unregister_event_listener(listener)
    assert second.cache_dir == cache.resolve()
    assert hits["/jax/compilation_cache/cache_hits"] == 1  # loaded, not compiled
    np.testing.assert_array_equal(second(["a b c"]).embeddings, first(["a b c"]).embeddings)


def test_the_environment_cache_leaves_a_cache_the_program_set_as_it_is(
        minilm, tokenizer, tmp_path, monkeypatch, restore_cache_config):
    """A host program with its own JAX cache (folder and thresholds): `$SAMP_JAX_XLA_CACHE`
    (set for the command line, say) moves none of it; the engine uses the program's folder."""
    mine = tmp_path / "mine"
    jax.config.update("jax_compilation_cache_dir", str(mine))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 5.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 1000)
    monkeypatch.setenv("SAMP_JAX_XLA_CACHE", str(tmp_path / "env"))
    engine = samp_jax.compile(minilm, tokenizer=tokenizer, seq_buckets=(8,), batch_size=2,
                              precompile=False)
    assert engine.cache_dir == mine and jax.config.jax_compilation_cache_dir == str(mine)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 5.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == 1000
    assert not (tmp_path / "env").exists()


def test_the_environment_cache_without_one_set_is_turned_on_and_bounded(
        minilm, tokenizer, tmp_path, monkeypatch, restore_cache_config):
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("SAMP_JAX_XLA_CACHE", str(tmp_path / "env"))
    engine = samp_jax.compile(minilm, tokenizer=tokenizer, seq_buckets=(8,), batch_size=2,
                              precompile=False)
    assert engine.cache_dir == (tmp_path / "env").resolve()
    assert jax.config.jax_compilation_cache_dir == str(engine.cache_dir)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    if importlib.util.find_spec("filelock") is not None:
        assert jax.config.jax_compilation_cache_max_size == DEFAULT_CACHE_BYTES


def test_a_cache_dir_that_is_a_file_is_named(minilm, tokenizer, tmp_path, restore_cache_config):
    """Not "[Errno 17] File exists": the argument, the file in the way and what is expected."""
    blocking = tmp_path / "file"
    blocking.write_text("x")
    for path in (blocking, blocking / "below"):
        with pytest.raises(ValueError, match=rf"cache_dir='{re.escape(str(path))}' cannot be a "
                           rf"folder: {re.escape(str(blocking))} is a file; expected a folder"):
            samp_jax.compile(minilm, tokenizer=tokenizer, cache_dir=path, precompile=False)


def test_the_compile_counter_counts_programs_the_persistent_cache_serves(tmp_path,
                                                                         restore_cache_config):
    """A program recompiled after the in-memory caches are cleared comes from the persistent
    cache without a backend compilation; it still counts."""
    enable_compilation_cache(tmp_path / "xla")
    f = jax.jit(lambda x: jnp.sin(x) * 3 + 1)
    x = jnp.arange(5.0)
    with CompileCounter() as first:
        f(x).block_until_ready()
    jax.clear_caches()
    with CompileCounter() as again:
        jax.jit(lambda x: jnp.sin(x) * 3 + 1)(x).block_until_ready()
    assert first.count == again.count == 1


class _TokenScores(nnx.Module):
    """A custom head that returns two scores per token (its declaration says so)."""

    kind = samp_jax.HeadKind("token_scores", per_token=True)

    def __call__(self, hidden, attention_mask):
        return hidden[..., :2].astype(jnp.float32)


class _RowScores(nnx.Module):
    """A custom head that returns two scores per row."""

    kind = samp_jax.HeadKind("row_scores", per_token=False)

    def __call__(self, hidden, attention_mask):
        return hidden[:, 0, :2].astype(jnp.float32)


class _Undeclared(nnx.Module):
    """A custom head that declares nothing about its output."""

    def __call__(self, hidden, attention_mask):
        return hidden[:, 0, :2].astype(jnp.float32)


def test_custom_heads_are_served_as_they_declare_and_undeclared_ones_refused(tokenizer):
    ids = [[5, 6, 7], [5, 6, 7, 8, 9]]
    model = EncoderModel(TINY_CONFIG, _TokenScores(), rngs=nnx.Rngs(0))
    engine = samp_jax.compile(model, tokenizer=tokenizer, seq_buckets=(8,), batch_size=2)
    out = engine(ids)
    assert out.kind == "token_scores" and out.logits is None and out.embeddings is None
    assert [o.shape for o in out.outputs] == [(3, 2), (5, 2)]  # trimmed per row, as declared
    alone = nnx.jit(lambda model, ids: model(ids))  # each row unpadded
    for row, o in zip(ids, out.outputs):
        np.testing.assert_allclose(o, np.asarray(alone(model, np.array([row])))[0], atol=2e-6)
    out = samp_jax.compile(EncoderModel(TINY_CONFIG, _RowScores(), rngs=nnx.Rngs(0)),
                           tokenizer=tokenizer, seq_buckets=(8,), batch_size=2)(ids)
    assert out.kind == "row_scores" and out.outputs.shape == (2, 2)
    with CompileCounter() as counter, pytest.raises(ValueError, match="_Undeclared declares no HeadKind"):
        samp_jax.compile(EncoderModel(TINY_CONFIG, _Undeclared(), rngs=nnx.Rngs(0)),
                         tokenizer=tokenizer, seq_buckets=(8,), batch_size=2)
    assert counter.count == 0  # refused before compiling anything


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fully_quant"])
def test_a_restarted_process_loads_the_engine_from_the_persistent_cache(minilm_dir, tmp_path, precision):
    """Two processes, one after the other, with `$SAMP_JAX_XLA_CACHE` set: the first compiles
    every bucket and fills the cache; the second compiles nothing and serves the same outputs."""
    env = {**os.environ, "SAMP_JAX_XLA_CACHE": str(tmp_path / "xla"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    worker = Path(__file__).with_name("cache_worker.py")

    def run() -> dict:
        done = subprocess.run([sys.executable, str(worker), str(minilm_dir), precision], env=env,
                              capture_output=True, text=True, timeout=600, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["executables"] == second["executables"] == 2  # batch buckets 1 and 2
    assert first["cache_hits"] == 0 and first["cache_misses"] == 2
    assert second["cache_hits"] == 2 and second["cache_misses"] == 0  # loaded, none compiled
    assert second["embeddings"] == first["embeddings"]


def test_a_taggers_engine_refuses_pairs_and_points_at_classify_words(tmp_path):
    """`engine([["John", "Paris"]])` would tag `[CLS] John [SEP] Paris [SEP]`, a pair, not the
    two words; a longer word list's error says where words go."""
    from tests.helpers import GOLDEN
    tagger = samp_jax.load(GOLDEN / "families" / "bert" / "tokcls")
    engine = samp_jax.compile(tagger, seq_buckets=(16,), batch_size=2, precompile=False)
    with pytest.raises(ValueError, match=r"pairs, which a token classifier does not tag; a row "
                                         r"of pre-split words goes to engine\.classify_words"):
        engine([["John", "Paris"]])
    with pytest.raises(TypeError, match=r"a tagger's pre-split words go to Engine\.classify_words"):
        engine([["John", "went", "to", "Paris"]])
    assert len(engine.classify_words([["John", "Paris"]]).word_labels[0]) == 2
