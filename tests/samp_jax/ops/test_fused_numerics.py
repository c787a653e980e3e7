"""The fused LayerNorm + quantize and embedding + LayerNorm + quantize ops (the registered
`samp_jax.ops` ops, their kernels in interpret mode) against the float64 numpy reference of
`tests/numerics_reference.py`, for per-token dynamic, static (with a saturating clip) and
smoothed scales.

The float output must be the float64 LayerNorm rounded to FP16: within `|y| * 2**-10` (about
one unit in the last place; measured at most 0.50 of it, correct rounding), and the INT8 output
exactly the reference quantization of that output.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import samp_jax.ops
from tests import numerics_reference as ref

H = 384
EPS = 1e-12
FP16_ULP = 2.0 ** -10


def _scales(y, kind, rng):
    inv_s = rng.uniform(0.3, 3, size=(H,)).astype(np.float32)
    static = np.float32(0.5 * np.abs(ref.f64(y)).max() / 127)  # clips the largest values
    return {"dynamic": {}, "static": {"act_scale": static},
            "smooth_static": {"act_scale": static, "input_scale": inv_s},
            "smooth_dynamic": {"input_scale": inv_s}}[kind]


KINDS = ["dynamic", "static", "smooth_static", "smooth_dynamic"]


def _check(y, q, scale, y_ref64, kwargs):
    y64 = ref.f64(np.asarray(y, np.float32))
    step = np.maximum(np.abs(y64), 2.0 ** -14) * FP16_ULP
    assert (np.abs(y64 - y_ref64) / step).max() <= 1.0  # measured 0.50
    q_ref, s_ref = ref.activation_int8(y64, kwargs.get("act_scale"), kwargs.get("input_scale"))
    np.testing.assert_allclose(np.asarray(scale, np.float64), s_ref, rtol=3e-7)  # measured 9.2e-8
    q = np.asarray(q, np.int64)
    tie = ref.near_tie(y64, s_ref, kwargs.get("input_scale"))
    assert np.abs(q - q_ref).max() <= 1 and not ((q != q_ref) & ~tie).any()
    if "act_scale" in kwargs:
        assert (np.abs(q_ref) == 127).any()  # the static clip saturates


@pytest.mark.parametrize("kind", KINDS)
def test_layernorm_quant_matches_the_reference(kind):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3, 7, H)) * 3).astype(np.float16)
    gamma = rng.uniform(0.5, 1.5, size=(H,)).astype(np.float32)
    beta = rng.normal(size=(H,)).astype(np.float32) * 0.1
    y_ref64 = ref.layer_norm(x, gamma, beta, EPS)
    kwargs = _scales(y_ref64, kind, rng)
    jkw = {k: jnp.asarray(v) for k, v in kwargs.items()}
    with samp_jax.ops.interpret():
        op = samp_jax.ops.fused_op("layernorm_quant")
        y, q, scale = op(jnp.asarray(x), jnp.asarray(gamma), jnp.asarray(beta), eps=EPS,
                         out_dtype=jnp.float16, **jkw)
    _check(y, q, scale, y_ref64, kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_embedding_quant_matches_the_reference(kind):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50, (2, 9)).astype(np.int32)
    positions = np.broadcast_to(np.arange(9), (2, 9)).astype(np.int32)
    types = (np.arange(9)[None] >= 4).astype(np.int32).repeat(2, 0)
    word, position, token_type = (rng.normal(size=s).astype(np.float16) for s in ((50, H), (16, H), (2, H)))
    gamma = rng.uniform(0.5, 1.5, size=(H,)).astype(np.float32)
    beta = rng.normal(size=(H,)).astype(np.float32) * 0.1
    summed = ref.f64(word)[ids] + ref.f64(position)[positions] + ref.f64(token_type)[types]
    y_ref64 = ref.layer_norm(summed, gamma, beta, EPS)
    kwargs = _scales(y_ref64, kind, rng)
    jkw = {k: jnp.asarray(v) for k, v in kwargs.items()}
    with samp_jax.ops.interpret():
        op = samp_jax.ops.fused_op("embedding_quant")
        y, q, scale = op(*(jnp.asarray(a) for a in (ids, positions, types, word, position,
                                                    token_type, gamma, beta)),
                         eps=EPS, out_dtype=jnp.float16, **jkw)
    _check(y, q, scale, y_ref64, kwargs)
