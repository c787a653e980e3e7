"""Fused residual+LayerNorm+quantize and embedding+LayerNorm+quantize kernels, and their CUDA
lowering.

The numerical checks are written once in `LayernormQuantChecks` and run in interpret mode on the
CPU (`TestInterpret`) and compiled on a GPU (`TestCompiled`, marked `gpu`). The encoder wiring of
these kernels is tested in tests/samp_jax/ops/test_pallas.py; nothing here imports `samp_jax`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.gpu_lowering import gpu_kernel_calls, lower_for_gpu
from pallas_kernels.layernorm_quant import (
    EMBEDDING_KERNEL_NAME,
    LAYERNORM_KERNEL_NAME,
    embedding_quant,
    embedding_quant_reference,
    layernorm_quant,
    layernorm_quant_reference,
)

H = 384


def _ln_operands(seed=0, shape=(3, 7, H)):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape) * 3, jnp.float16)
    residual = jnp.asarray(rng.normal(size=shape), jnp.float16)
    gamma = jnp.asarray(rng.normal(size=(shape[-1],)), jnp.float32)
    beta = jnp.asarray(rng.normal(size=(shape[-1],)), jnp.float32)
    return x, residual, gamma, beta


def _assert_matches(out, ref):
    (y, q, s), (y_ref, q_ref, s_ref) = out, ref
    assert y.dtype == y_ref.dtype and q.dtype == jnp.int8 and s.shape == s_ref.shape
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32), atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(np.asarray(s), np.asarray(s_ref), rtol=1e-5)
    diff = np.abs(np.asarray(q, np.int32) - np.asarray(q_ref, np.int32))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.995  # float32 reduction order, .5 ties


class LayernormQuantChecks:
    """The numerical checks of both fused kernels; a subclass sets `INTERPRET`."""

    INTERPRET: bool

    @pytest.mark.parametrize("kwargs", [{}, {"residual": True}, {"act_scale": 0.03},
                                        {"input_scale": True}, {"out_dtype": jnp.bfloat16}])
    def test_layernorm_quant_matches_reference(self, kwargs):
        x, residual, gamma, beta = _ln_operands()
        kwargs = dict(kwargs)
        if kwargs.pop("residual", False):
            kwargs["residual"] = residual
        if kwargs.pop("input_scale", False):
            kwargs["input_scale"] = jnp.asarray(np.random.default_rng(1).uniform(0.5, 2, H), jnp.float32)
        out = layernorm_quant(x, gamma, beta, eps=1e-12, interpret=self.INTERPRET, **kwargs)
        _assert_matches(out, layernorm_quant_reference(x, gamma, beta, eps=1e-12, **kwargs))

    def test_layernorm_quant_non_power_of_two_hidden_and_zero_rows(self):
        x, _, gamma, beta = _ln_operands(shape=(2, 3, 300))
        x = x.at[0, 0].set(0)  # a constant row: LayerNorm gives beta, the scale stays positive
        out = layernorm_quant(x, gamma, beta, eps=1e-12, interpret=self.INTERPRET)
        _assert_matches(out, layernorm_quant_reference(x, gamma, beta, eps=1e-12))
        assert float(out[2].min()) > 0

    def test_embedding_quant_matches_reference(self):
        rng = np.random.default_rng(2)
        ids = jnp.asarray(rng.integers(0, 100, (2, 9)), jnp.int32)
        types = jnp.asarray(rng.integers(0, 2, (2, 9)), jnp.int32)
        word, position, token_type = (jnp.asarray(rng.normal(size=s), jnp.float16)
                                      for s in ((100, H), (16, H), (2, H)))
        gamma, beta = jnp.ones((H,), jnp.float32), jnp.asarray(rng.normal(size=(H,)), jnp.float32)
        for kwargs in ({}, {"act_scale": 0.05}):
            out = embedding_quant(ids, types, word, position, token_type, gamma, beta, eps=1e-12,
                                  interpret=self.INTERPRET, **kwargs)
            _assert_matches(out, embedding_quant_reference(ids, types, word, position, token_type,
                                                           gamma, beta, eps=1e-12, **kwargs))

    def test_the_named_kernels_run(self):
        x, _, gamma, beta = _ln_operands()
        fused_ln = functools.partial(layernorm_quant, eps=1e-12, interpret=self.INTERPRET)
        assert f"name={LAYERNORM_KERNEL_NAME}" in str(jax.make_jaxpr(fused_ln)(x, gamma, beta))
        ids, table = jnp.zeros((2, 9), jnp.int32), jnp.zeros((16, H), jnp.float16)
        fused_emb = functools.partial(embedding_quant, eps=1e-12, interpret=self.INTERPRET)
        jaxpr = str(jax.make_jaxpr(fused_emb)(ids, ids, table, table, table[:2], gamma, beta))
        assert f"name={EMBEDDING_KERNEL_NAME}" in jaxpr


class TestInterpret(LayernormQuantChecks):
    INTERPRET = True


@pytest.mark.gpu
class TestCompiled(LayernormQuantChecks):
    INTERPRET = False


def test_bad_inputs_raise():
    x, residual, gamma, beta = _ln_operands()
    with pytest.raises(ValueError, match="gamma and beta"):
        layernorm_quant(x, gamma[:10], beta, eps=1e-12, interpret=True)
    with pytest.raises(ValueError, match="residual"):
        layernorm_quant(x, gamma, beta, eps=1e-12, residual=residual[:1], interpret=True)
    with pytest.raises(ValueError, match="act_scale must be a scalar"):
        layernorm_quant(x, gamma, beta, eps=1e-12, act_scale=jnp.ones(3), interpret=True)
    ids = jnp.zeros((1, 20), jnp.int32)
    table = jnp.zeros((30, H))
    with pytest.raises(ValueError, match="exceeds the 16 positions"):
        embedding_quant(ids, ids, table, table[:16], table[:2], gamma, beta, eps=1e-12, interpret=True)


def test_fused_kernels_lower_for_cuda():
    S = jax.ShapeDtypeStruct
    hlo = lower_for_gpu(lambda x, r, g, b: layernorm_quant(x, g, b, eps=1e-12, residual=r, act_scale=0.1),
                        S((4, 128, 768), jnp.float16), S((4, 128, 768), jnp.float16),
                        S((768,), jnp.float32), S((768,), jnp.float32))
    assert gpu_kernel_calls(hlo) == ["__gpu$xla.gpu.triton"] and LAYERNORM_KERNEL_NAME in hlo
    hlo = lower_for_gpu(lambda i, t, w, p, tt, g, b: embedding_quant(i, t, w, p, tt, g, b, eps=1e-12),
                        S((4, 128), jnp.int32), S((4, 128), jnp.int32), S((30522, 768), jnp.float16),
                        S((512, 768), jnp.float16), S((2, 768), jnp.float16), S((768,), jnp.float32),
                        S((768,), jnp.float32))
    assert gpu_kernel_calls(hlo) == ["__gpu$xla.gpu.triton"] and EMBEDDING_KERNEL_NAME in hlo
