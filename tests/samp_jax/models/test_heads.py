"""Heads declare what they return (`HeadKind`): the declared shape is the traced one, and a
kind is registered with its declaration."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from samp_jax import EncoderModel, HeadKind, HeadOutput, SentenceEmbedder
from samp_jax.models import (NO_HEAD, SENTENCE_EMBEDDING, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION,
                             get_head_kind, head_kinds, make_head, register_head)
from samp_jax.models.heads import HEADS
from tests.helpers import TINY_CONFIG


def _traced_shape(model, batch, seq):
    spec = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
    return jax.eval_shape(lambda ids: model(ids, jnp.ones_like(ids), jnp.zeros_like(ids)), spec).shape


@pytest.mark.parametrize("kind, spec", [
    ("none", {}),
    ("sequence_classification", {"num_labels": 3}),
    ("token_classification", {"num_labels": 5}),
    ("sentence_embedding", {"pooling": ("mean", "max")}),
])
def test_the_declared_output_shape_is_the_traced_one(kind, spec):
    rngs = nnx.Rngs(0)
    model = EncoderModel(TINY_CONFIG, make_head(kind, TINY_CONFIG, rngs=rngs, **spec), rngs=rngs)
    assert model.head_kind == kind and model.head_declaration is get_head_kind(kind)
    for batch, seq in ((2, 7), (3, 16)):
        assert model.output_shape(batch, seq) == _traced_shape(model, batch, seq)


def test_built_in_kinds_say_what_they_return():
    assert [(k.per_token, k.output, k.classifies) for k in (
        NO_HEAD, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION, SENTENCE_EMBEDDING)] == [
        (True, HeadOutput.HIDDEN, False), (False, HeadOutput.LOGITS, True),
        (True, HeadOutput.LOGITS, True), (False, HeadOutput.EMBEDDING, False)]
    assert SentenceEmbedder.kind is SENTENCE_EMBEDDING and str(SENTENCE_EMBEDDING) == "sentence_embedding"


class _Doubled(nnx.Module):
    """A custom per-token head naming its kind by a registered name."""

    kind = "doubled_hidden"

    def __call__(self, hidden, attention_mask):
        return 2.0 * hidden.astype(jnp.float32)

    def output_width(self, config):
        return config.hidden_size


@pytest.fixture
def doubled():
    yield _Doubled
    HEADS.pop(_Doubled.kind, None)


def test_a_kind_registered_by_name_must_declare_its_shape(doubled):
    with pytest.raises(ValueError, match="needs per_token=True .* or False"):
        register_head(doubled.kind, lambda config, *, rngs: doubled())
    assert doubled.kind not in head_kinds()  # refused: nothing registered
    kind = register_head(doubled.kind, lambda config, *, rngs: doubled(), per_token=True)
    assert kind == HeadKind("doubled_hidden", per_token=True) and get_head_kind(doubled.kind) is kind
    model = EncoderModel(TINY_CONFIG, make_head(doubled.kind, TINY_CONFIG, rngs=nnx.Rngs(0)),
                         rngs=nnx.Rngs(0))
    assert model.head_declaration is kind
    assert model.output_shape(2, 5) == _traced_shape(model, 2, 5) == (2, 5, TINY_CONFIG.hidden_size)


def test_bad_declarations_are_refused():
    with pytest.raises(TypeError, match="per_token=1 must be True"):
        HeadKind("scores", per_token=1)
    with pytest.raises(TypeError, match="output='logits' is not a HeadOutput"):
        HeadKind("scores", per_token=False, output="logits")
    with pytest.raises(ValueError, match="other than 'none'"):
        register_head(HeadKind("none", per_token=True), lambda config, *, rngs: None)
    with pytest.raises(ValueError, match="already registered"):
        register_head(SEQUENCE_CLASSIFICATION, lambda config, *, rngs: None)
    with pytest.raises(ValueError, match="head kind 'nope' is not one of"):
        get_head_kind("nope")
