"""Library calls given an argument of the wrong kind or shape: each fails at once with one line
naming the argument, what was found and what was expected (or, where a value may be left out,
does what the model does without it)."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from calibrate import calibrate, search
from samp_jax import EncoderModel
from samp_jax.models import make_head
from samp_jax.serving.forward import batch_inputs
from tests.helpers import TINY_CONFIG, random_batches


@pytest.fixture(scope="module")
def model():
    rngs = nnx.Rngs(0)
    return EncoderModel(TINY_CONFIG, make_head("sequence_classification", TINY_CONFIG,
                                               num_labels=2, rngs=rngs), rngs=rngs)


def test_batches_without_token_type_ids_calibrate_as_one_segment(model):
    batches = random_batches(2)
    without = [{k: v for k, v in b.items() if k != "token_type_ids"} for b in batches]
    got = calibrate(model, without, "minmax")
    want = calibrate(model, batches, "minmax")  # random_batches' token types are all zeros
    assert got.sites.keys() == want.sites.keys()
    for key in want.sites:
        assert got.sites[key].absmax == want.sites[key].absmax


@pytest.mark.parametrize("batch, found", [({"ids": np.ones((1, 4), np.int32)}, r"keys \['ids'\]"),
                                          ([np.ones((1, 4), np.int32)], "a list")])
def test_a_batch_without_input_ids_is_named(batch, found):
    with pytest.raises(ValueError, match=rf"a batch must be a dict with 'input_ids' .*; got {found}"):
        batch_inputs(batch)


@pytest.mark.parametrize("kwargs, message", [
    (dict(options=()), r"options=\(\) is empty; expected the precisions each site may take"),
    (dict(options=[]), r"options=\(\) is empty"),
    (dict(options="int8-dynamic"), "options='int8-dynamic' is one option; expected a sequence"),
    (dict(options=(), target="cpu"), r"options=\(\) is empty"),
    (dict(chunk=0), "chunk=0 must be a positive integer"),
    (dict(chunk=-2), "chunk=-2 must be a positive integer"),
    (dict(chunk=2.5), "chunk=2.5 must be a positive integer"),
    (dict(mode="pmap"), r"mode='pmap' is not one of \('map', 'vmap'\)"),
])
def test_search_names_a_bad_argument_before_any_work(model, kwargs, message, monkeypatch):
    with pytest.raises(ValueError, match=message):
        search(model, random_batches(2), progress=False, **kwargs)
