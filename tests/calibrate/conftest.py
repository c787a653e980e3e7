"""A tiny random 3-layer classifier and its calibration, shared by the search tests."""

import pytest
from flax import nnx

from calibrate import calibrate
from samp_jax import EncoderModel, SequenceClassifier
from tests.helpers import TINY_CONFIG, random_batches


@pytest.fixture(scope="module")
def tiny():
    rngs = nnx.Rngs(5)
    return EncoderModel(TINY_CONFIG, SequenceClassifier(TINY_CONFIG, 3, rngs=rngs), rngs=rngs)


@pytest.fixture(scope="module")
def calibration(tiny):
    return calibrate(tiny, random_batches(seed=1), "minmax")
