"""INT8 attention matmuls against their NumPy references, and in the attention paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samp_jax.core.precision import AttentionPrecision, PrecisionMapError, SitePrecision
from samp_jax.models.int8_attention import (int8_context, int8_context_accumulator, int8_scores,
                                            int8_scores_accumulator, reference_int8_context,
                                            reference_int8_scores)
from samp_jax.models.layers import attention, xla_attention
from samp_jax.models.local_attention import band_mask, blockwise_local_attention

INT8 = SitePrecision("int8")
BOTH = AttentionPrecision(INT8, INT8)


def head_major(batch=2, heads=3, seq=11, head_dim=8, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, heads, seq, head_dim)) * 1.5).astype(np.float32)
            for _ in range(3)]


def unnormalised(logits, mask=None):
    """`exp(l - max)` over the keys, masked keys at about float32 min as the attention does."""
    logits = np.asarray(logits, np.float32)
    if mask is not None:
        logits = logits + np.where(mask[:, None, None, :], 0, np.finfo(np.float32).min)
    return np.exp(logits - logits.max(-1, keepdims=True)).astype(np.float32)


def test_scores_accumulate_exactly_and_dequantize_by_the_row_scales():
    q, k, _ = head_major()
    acc, q_scale, k_scale = jax.jit(int8_scores_accumulator)(q, k)
    want_acc, want = reference_int8_scores(q, k, 0.35)
    assert acc.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(acc), want_acc)
    got = np.asarray(jax.jit(lambda a, b: int8_scores(a, b, scale=0.35))(q, k))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)  # float32 products of exact terms
    # and it is an approximation of the float scores: a per-token INT8 error
    float_scores = np.einsum("bnth,bnsh->bnts", q.astype(np.float64), k) * 0.35
    assert 1e-3 < np.abs(got - float_scores).max() < 0.2  # measured 0.054


def test_context_accumulates_exactly_with_v_per_channel_and_p_at_one_over_127():
    _, k, v = head_major(seed=1)
    mask = np.ones((2, 11), bool)
    mask[1, 7:] = False
    p = unnormalised(np.einsum("bnth,bnsh->bnts", k, k) / 3, mask)
    acc, p_sum, _, v_scale = jax.jit(int8_context_accumulator)(p, v, mask)
    want_acc, want = reference_int8_context(p, v, mask)
    np.testing.assert_array_equal(np.asarray(acc), want_acc)
    np.testing.assert_array_equal(np.asarray(p_sum)[..., 0],
                                  np.round(p * np.float32(127)).sum(-1))  # P's scale is 1/127
    assert v_scale.shape == (2, 3, 1, 8)  # one scale per (batch, head, channel)
    got = np.asarray(jax.jit(int8_context)(p, v, mask))
    np.testing.assert_allclose(got, want, rtol=0, atol=3e-6)  # measured 4.8e-7
    weights = p / p.sum(-1, keepdims=True)
    float_context = np.einsum("bnts,bnsh->bnth", weights.astype(np.float64), v)
    assert 1e-3 < np.abs(got - float_context).max() < 0.1


def test_each_row_of_int8_weights_sums_to_one():
    """The context is divided by the sum of the dequantized probabilities: a V of ones gives
    ones exactly (to float32 rounding), where the float sum would be off by P's rounding."""
    q, k, _ = head_major(seed=2)
    p = unnormalised(np.einsum("bnth,bnsh->bnts", q, k))
    got = np.asarray(jax.jit(int8_context)(p, np.ones_like(q), None))
    np.testing.assert_allclose(got, 1.0, rtol=0, atol=4e-7)


def test_padding_keys_set_no_scale_and_get_no_weight():
    """V's channel scale is taken over the real keys: what padding holds changes nothing."""
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 9, 2, 8)).astype(np.float32) for _ in range(3))
    mask = np.ones((2, 9), np.int32)
    mask[1, 5:] = 0
    run = jax.jit(lambda q, k, v: attention(q, k, v, mask, precision=BOTH))
    before = np.asarray(run(q, k, v))
    k[1, 5:], v[1, 5:] = 1e3, -1e3
    np.testing.assert_array_equal(np.asarray(run(q, k, v)), before)


@pytest.mark.parametrize("precision", [AttentionPrecision(INT8, None), AttentionPrecision(None, INT8), BOTH])
def test_attention_runs_each_product_at_its_own_precision(precision):
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((2, 10, 2, 8)).astype(np.float32) for _ in range(3))
    mask = np.ones((2, 10), np.int32)
    bias = rng.standard_normal((1, 2, 10, 10)).astype(np.float32)  # MPNet-style, added in float32
    run = lambda p: np.asarray(jax.jit(lambda *a: attention(*a, mask, bias=bias, precision=p))(q, k, v))  # noqa: E731
    exact, got = run(None), run(precision)
    assert 1e-4 < np.abs(got - exact).max() < 0.05
    # the float precision of the compute dtype is the plain path, bit for bit
    fp32 = SitePrecision("fp32")
    np.testing.assert_array_equal(run(AttentionPrecision(fp32, fp32)), exact)


def test_blockwise_local_attention_gives_the_banded_int8_numbers():
    """Long local rows run in query blocks; with INT8 they give the unblocked INT8 result."""
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 19, 2, 8)).astype(np.float32) for _ in range(3))
    mask = np.ones((2, 19), np.int32)
    mask[1, 13:] = 0
    blocks = jax.jit(lambda *a: attention(*a, mask, window=4, precision=BOTH))(q, k, v)
    band = jnp.asarray(mask, bool)[:, None, None, :] & band_mask(19, 4)[None, None]
    unblocked = jax.jit(lambda *a: xla_attention(*a, band, int8_scores=True, int8_context=True,
                                                 key_mask=jnp.asarray(mask, bool)))(q, k, v)
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(blocks)[real], np.asarray(unblocked)[real], rtol=0, atol=2e-6)
    float_blocks = jax.jit(lambda *a: blockwise_local_attention(*a, jnp.asarray(mask, bool), window=4))(q, k, v)
    assert 1e-4 < np.abs(np.asarray(blocks) - np.asarray(float_blocks))[real].max() < 0.05


def test_int8_attention_stays_off_cudnn(monkeypatch):
    """Automatic choice would take cuDNN for 16-bit inputs on a GPU; INT8 attention stays on
    XLA, and a cuDNN named explicitly is refused."""
    rng = np.random.default_rng(6)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 6, 2, 8)), jnp.float16) for _ in range(3))
    mask = jnp.ones((1, 6), jnp.int32)
    expected = jax.jit(lambda *a: attention(*a, mask, precision=BOTH))(q, k, v)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    on_gpu = jax.jit(lambda *a: attention(*a, mask, precision=BOTH))(q, k, v)  # traced afresh
    np.testing.assert_array_equal(on_gpu, expected)
    with pytest.raises(PrecisionMapError, match="implementation='cudnn'.*cannot take INT8"):
        attention(q, k, v, mask, precision=BOTH, implementation="cudnn")


def test_products_of_two_float_dtypes_stay_off_cudnn(monkeypatch):
    """cuDNN takes q, k and v of one dtype: scores and context at two precisions run on XLA
    under automatic choice, and a cuDNN named explicitly is refused naming the map's sites."""
    rng = np.random.default_rng(7)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 6, 2, 8)), jnp.float16) for _ in range(3))
    mask = jnp.ones((1, 6), jnp.int32)
    mixed = AttentionPrecision(SitePrecision("fp16"), SitePrecision("fp32"))
    expected = jax.jit(lambda *a: attention(*a, mask, precision=mixed))(q, k, v)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    on_gpu = jax.jit(lambda *a: attention(*a, mask, precision=mixed))(q, k, v)  # no cuDNN call
    np.testing.assert_array_equal(on_gpu, expected)
    with pytest.raises(PrecisionMapError, match=r"two dtypes \(float16 and float32\)"):
        attention(q, k, v, mask, precision=mixed, implementation="cudnn")


@pytest.mark.parametrize("precision, message", [
    (SitePrecision("fp8_e4m3"), "precision='fp8_e4m3' is not supported"),
    (SitePrecision("int8", "per_tensor_static"), "activation='per_tensor_static' is not supported")])
def test_an_attention_precision_built_in_code_refuses_what_attention_cannot_run(precision, message):
    with pytest.raises(PrecisionMapError, match=message):
        AttentionPrecision(precision, None)
    with pytest.raises(PrecisionMapError, match=message):
        AttentionPrecision(None, precision)


def test_a_query_with_no_key_attends_uniformly_in_float_and_to_zero_with_an_int8_context():
    """An all-padding row: its queries see no key. Float attends uniformly (the mean of V over
    every key); an INT8 context zeroes V on masked keys, so its context is 0. Real rows are
    the same either way to INT8 precision."""
    q, k, v = (jnp.swapaxes(jnp.asarray(t), 1, 2) for t in head_major(seed=3))  # [b, s, h, d]
    mask = np.ones((2, 11), np.int32)
    mask[1] = 0
    as_float = np.asarray(attention(q, k, v, mask, implementation="xla"))
    as_int8 = np.asarray(attention(q, k, v, mask, implementation="xla",
                                   precision=AttentionPrecision(None, INT8)))
    np.testing.assert_allclose(as_float[1], np.broadcast_to(np.asarray(v)[1].mean(0), as_float[1].shape),
                               rtol=1e-5, atol=1e-5)
    assert np.all(as_int8[1] == 0)
    assert 0 < np.abs(as_int8[0] - as_float[0]).max() < 0.1
