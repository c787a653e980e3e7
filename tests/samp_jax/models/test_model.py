"""Forward-pass behaviour: jit, reduced precision, padding, and input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from samp_jax import (
    EncoderConfig,
    EncoderModel,
    SentenceEmbedder,
    Tokenizer,
    cosine_similarity,
    load_pretrained,
)
from samp_jax.models.layers import resolve_attention_impl
from tests.helpers import golden_inputs


def test_jit_forward_equals_eager(minilm, minilm_golden):
    inputs = golden_inputs(minilm_golden, "single")
    eager = minilm(*inputs)

    @nnx.jit
    def forward(model, ids, mask, types):
        return model(ids, mask, types)

    np.testing.assert_allclose(np.asarray(forward(minilm, *inputs)), np.asarray(eager), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_embeddings_stay_close_to_fp32(minilm_dir, minilm, minilm_golden, dtype):
    """Documented tolerance (docs/design.md) on the cosine between 16-bit and FP32 sentence
    embeddings: 1 - cosine measured at most 1.2e-6 (FP16) and 8e-5 (BF16)."""
    inputs = golden_inputs(minilm_golden, "single")
    half = load_pretrained(minilm_dir, dtype=dtype)
    assert half.embeddings.word.dtype == dtype
    reference = minilm(*inputs)
    embedding = jax.jit(lambda *a: half(*a))(*inputs)
    cosine = np.asarray(cosine_similarity(embedding, reference))
    assert cosine.min() >= 1 - {jnp.float16: 5e-6, jnp.bfloat16: 3e-4}[dtype], cosine.min()


def test_padding_does_not_change_real_tokens(minilm, minilm_golden):
    ids, mask, types = golden_inputs(minilm_golden, "single")
    row = 2  # "Hi": three real tokens, the rest padding
    n = int(mask[row].sum())
    alone = minilm(ids[row:row + 1, :n], mask[row:row + 1, :n], types[row:row + 1, :n])
    batched = minilm(ids, mask, types)[row:row + 1]
    np.testing.assert_allclose(np.asarray(alone), np.asarray(batched), atol=1e-6)


def test_bi_encoder_scores_paraphrase_above_contradiction(minilm, minilm_dir):
    tok = Tokenizer.from_pretrained(minilm_dir)
    a = minilm(**tok(["A man is playing a guitar.", "A man is playing a guitar."]))
    b = minilm(**tok(["A person plays an instrument.", "The stock market crashed today."]))
    scores = np.asarray(cosine_similarity(a, b))
    assert scores[0] > scores[1] + 0.3


def test_cross_encoder_uses_token_types(minilm_dir):
    model = load_pretrained(minilm_dir, head="sequence_classification", num_labels=3,
                            allow_new_head=True)
    ids = np.array([[101, 2000, 102, 2001, 102]])
    zero = model(ids, np.ones_like(ids), np.zeros_like(ids))
    pair = model(ids, np.ones_like(ids), np.array([[0, 0, 0, 1, 1]]))
    assert not np.allclose(np.asarray(zero), np.asarray(pair))


def test_sequence_longer_than_positions_raises(minilm):
    ids = np.ones((1, 513), np.int32)
    with pytest.raises(ValueError, match="sequence length 513 exceeds the model's maximum of 512 tokens"):
        minilm(ids)


@pytest.mark.parametrize("shape", [(0, 8), (2, 0)])
def test_empty_batch_raises(minilm, shape):
    with pytest.raises(ValueError, match="empty batch"):
        minilm(np.zeros(shape, np.int32))


def test_mask_shape_mismatch_raises(minilm):
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\), expected \(2, 5\)"):
        minilm(np.ones((2, 5), np.int32), np.ones((2, 4), np.int32))


def test_float_ids_and_bad_rank_raise(minilm):
    with pytest.raises(ValueError, match="must be integers"):
        minilm(np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match=r"must be \[batch, seq\]"):
        minilm(np.ones((4,), np.int32))


def test_unsupported_compute_dtype():
    with pytest.raises(ValueError, match="must be float32, float16 or bfloat16"):
        EncoderModel(EncoderConfig.minilm_l6(), dtype=jnp.int8, rngs=nnx.Rngs(0))


def test_attention_implementation_choice():
    assert resolve_attention_impl(None, jnp.float32) == "xla"
    expected_half = "cudnn" if jax.default_backend() == "gpu" else "xla"
    assert resolve_attention_impl(None, jnp.float16) == expected_half
    assert resolve_attention_impl("cudnn", jnp.float32) == "cudnn"
    with pytest.raises(ValueError, match="implementation='flash'"):
        resolve_attention_impl("flash", jnp.float16)


@pytest.mark.slow
def test_random_bert_base_builds_with_the_four_sites():
    config = EncoderConfig.bert_base().replace(num_layers=2)
    model = EncoderModel(config, SentenceEmbedder(), rngs=nnx.Rngs(0))
    layer = model.encoder.layers[0]
    assert {name: site.shape for name, site in layer.sites().items()} == {
        "qkv": (768, 2304), "attn_out": (768, 768), "ffn_in": (768, 3072), "ffn_out": (3072, 768)}
    out = model(np.ones((2, 7), np.int32))
    assert out.shape == (2, 768)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), 1.0, rtol=1e-6)
