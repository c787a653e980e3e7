"""The XLA attention against a float64 NumPy softmax attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samp_jax.models.layers import attention, xla_attention


def reference(q, k, v, mask, bias=None):
    """softmax(q k^T / sqrt(d) + bias, masked) v in float64; all-masked rows attend uniformly."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    logits = np.where(np.asarray(mask, bool)[:, None, None, :], logits, -1e300)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("bnts,bsnh->btnh", weights, v)


def inputs(batch=3, seq=9, heads=4, head_dim=8, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((batch, seq, heads, head_dim)).astype(np.float32) * 2
               for _ in range(3))
    mask = np.ones((batch, seq), np.int32)
    mask[1, 5:] = 0  # right padding
    mask[2, :] = 0  # a sequence with no real token
    return q, k, v, mask


def test_matches_the_float64_softmax_with_padding_and_an_empty_sequence():
    q, k, v, mask = inputs()
    got = np.asarray(jax.jit(attention)(q, k, v, mask))
    np.testing.assert_allclose(got, reference(q, k, v, mask), rtol=0, atol=5e-6)  # measured 1.0e-6
    # padding keys get no weight: changing them changes nothing in the padded sequence
    k2, v2 = k.copy(), v.copy()
    k2[1, 5:], v2[1, 5:] = 1e3, -1e3
    again = np.asarray(jax.jit(attention)(q, k2, v2, mask))
    np.testing.assert_array_equal(again[1], got[1])


def test_adds_the_relative_position_bias():
    q, k, v, mask = inputs(seed=1)
    bias = np.random.default_rng(2).standard_normal((1, 4, 9, 9)).astype(np.float32) * 3
    got = np.asarray(jax.jit(lambda *a: attention(*a, bias=jnp.asarray(bias)))(q, k, v, mask))
    np.testing.assert_allclose(got, reference(q, k, v, mask, bias), rtol=0, atol=5e-6)


def test_matches_jax_dot_product_attention():
    q, k, v, mask = inputs(seed=3)
    theirs = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :].astype(bool),
                                          implementation="xla")
    ours = xla_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(mask, bool))
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_16_bit_inputs_keep_their_dtype_and_match_within_its_precision(dtype):
    q, k, v, mask = inputs(seed=4)
    q, k, v = (jnp.asarray(t, dtype) for t in (q, k, v))
    got = attention(q, k, v, mask)
    assert got.dtype == dtype
    # the probabilities and the output are rounded: measured 0.36 eps (FP16), 0.33 eps (BF16)
    tolerance = 2 * float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(np.asarray(got, np.float32), reference(q, k, v, mask),
                               rtol=tolerance, atol=tolerance)


def test_a_non_finite_key_poisons_its_sequence_only():
    q, k, v, mask = inputs(seed=5)
    k[0, 2, 1, 3] = np.nan
    got = np.asarray(attention(q, k, v, mask))
    assert np.isnan(got[0, :, 1]).all()  # every query of that head attends to the NaN key
    assert np.isfinite(got[1]).all()
