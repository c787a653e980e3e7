"""Long-context models (ModernBERT, 8,192 positions): the engine's default buckets go past 512
up to the model's limit, and a long row through the engine matches a direct call."""

import numpy as np
import pytest
from flax import nnx

import samp_jax
from samp_jax.models import EncoderModel, make_head
from samp_jax.serving.engine import default_seq_buckets
from tests.helpers import FAMILY_CONFIGS, GOLDEN, family_head_spec


def test_default_buckets_follow_the_models_limit():
    assert default_seq_buckets(512) == [32, 64, 128, 256, 512]
    assert default_seq_buckets(32) == [32]
    assert default_seq_buckets(8192) == [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
    assert default_seq_buckets(3000) == [32, 64, 128, 256, 512, 1024, 2048, 3000]


@pytest.mark.slow
def test_a_row_past_512_tokens_runs_through_the_engine():
    config = FAMILY_CONFIGS["modernbert"].replace(max_position_embeddings=1100)
    rngs = nnx.Rngs(0)
    model = EncoderModel(config, make_head("sequence_classification", config, num_labels=3,
                                           rngs=rngs, **family_head_spec("modernbert")), rngs=rngs)
    tokenizer = samp_jax.Tokenizer.from_pretrained(GOLDEN / "families" / "modernbert" / "base",
                                                   max_length=1100)
    engine = samp_jax.compile(model, tokenizer=tokenizer, batch_size=2, batch_buckets=(2,))
    assert engine.seq_buckets == (32, 64, 128, 256, 512, 1024, 1100)
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, 300, 1050).astype(np.int32), rng.integers(1, 300, 700).astype(np.int32)]
    out = engine(rows).logits
    # the model called on each row alone, unpadded; jitted, as the engine is: eagerly, every op
    # of the 2-layer model would compile on its own for each row's length
    direct_call = nnx.jit(lambda model, ids, mask: model(ids, mask))
    for row, logits in zip(rows, out):
        direct = np.asarray(direct_call(model, row[None], np.ones((1, len(row)), np.int32)))[0]
        np.testing.assert_allclose(logits, direct, atol=1e-7)  # measured 1.5e-8
