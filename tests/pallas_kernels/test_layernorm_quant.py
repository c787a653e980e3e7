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


# y tolerance by output dtype: float32 reduction order may move a value by one 16-bit ulp.
Y_TOLERANCE = {jnp.dtype(jnp.float16): 2e-3, jnp.dtype(jnp.bfloat16): 1.6e-2}


def _assert_matches(out, ref):
    """y within its dtype's tolerance; q and scale up to float32 reduction order and .5 ties."""
    (y, q, s), (y_ref, q_ref, s_ref) = out, ref
    assert y.dtype == y_ref.dtype and q.dtype == jnp.int8 and s.shape == s_ref.shape
    tol = Y_TOLERANCE[jnp.dtype(y.dtype)]
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32), atol=tol, rtol=tol)
    np.testing.assert_allclose(np.asarray(s), np.asarray(s_ref), rtol=1e-5)
    diff = np.abs(np.asarray(q, np.int32) - np.asarray(q_ref, np.int32))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.995  # float32 reduction order, .5 ties


def _assert_int8_exact(out, ref, input_scale=None):
    """The INT8 output is exactly the quantization of the kernel's own `y` (times the float32
    reciprocal of its scale, round half to even: `numerics.divide_by_scale`), and equals the
    reference's wherever `y` equals the reference's `y`, .5 ties included: both compute the one
    product. Scales of rows whose `y` is identical are identical."""
    (y, q, s), (y_ref, q_ref, s_ref) = out, ref
    yf = np.asarray(y, np.float32)
    if input_scale is not None:
        yf = yf * np.asarray(input_scale, np.float32)
    quotient = yf * (np.float32(1) / np.asarray(s, np.float32))
    np.testing.assert_array_equal(np.asarray(q), np.clip(np.round(quotient), -127, 127).astype(np.int8))
    same_y = np.asarray(y, np.float32) == np.asarray(y_ref, np.float32)
    same_rows = same_y.all(-1)
    assert same_rows.mean() > 0.9  # reduction order moves at most a few rows
    np.testing.assert_array_equal(np.asarray(s)[same_rows], np.asarray(s_ref)[same_rows])
    np.testing.assert_array_equal(np.asarray(q)[same_rows], np.asarray(q_ref)[same_rows])


def _pallas_operands(closed_jaxpr) -> list[str]:
    """The operand types of the one pallas_call in a jaxpr."""
    (eqn,) = [e for e in closed_jaxpr.jaxpr.eqns if e.primitive.name == "pallas_call"]
    return [str(v.aval) for v in eqn.invars]


PADDING_IDX = 1  # RoBERTa / XLM-R / MPNet


def _roberta_position_ids(ids, padding_idx=PADDING_IDX):
    """HF `create_position_ids_from_input_ids`: `padding_idx + 1` onwards, padding at padding_idx."""
    mask = (ids != padding_idx).astype(jnp.int32)
    return jnp.cumsum(mask, axis=1) * mask + padding_idx


def _embedding_operands(case, seed=2, batch=3, seq=9, vocab=100):
    """`(input_ids, position_ids, token_type_ids, word, position, token_type, gamma, beta)`."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(PADDING_IDX + 1, vocab, (batch, seq))
    roberta = case.startswith("roberta")
    if roberta:  # right padding inside the batch: rows of length 9, 5 and 2
        for row, length in enumerate((seq, 5, 2)[:batch]):
            ids[row, length:] = PADDING_IDX
    ids = jnp.asarray(ids, jnp.int32)
    if roberta:
        position_ids, n_positions = _roberta_position_ids(ids), seq + PADDING_IDX + 1
    else:
        position_ids, n_positions = jnp.broadcast_to(jnp.arange(seq), (batch, seq)), 16
    word, position = (jnp.asarray(rng.normal(size=s), jnp.float16) for s in ((vocab, H), (n_positions, H)))
    if case.endswith("no_types"):
        types = token_type = None
    else:
        n_types = 1 if roberta else 2
        types = jnp.asarray(rng.integers(0, n_types, (batch, seq)), jnp.int32)
        token_type = jnp.asarray(rng.normal(size=(n_types, H)), jnp.float16)
    gamma = jnp.asarray(rng.uniform(0.5, 1.5, size=(H,)), jnp.float32)
    beta = jnp.asarray(rng.normal(size=(H,)), jnp.float32)
    return ids, position_ids, types, word, position, token_type, gamma, beta


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

    @pytest.mark.parametrize("case", ["arange_with_types", "roberta_with_types", "roberta_no_types",
                                      "arange_no_types"])
    @pytest.mark.parametrize("kwargs", [{}, {"act_scale": 0.05}, {"input_scale": True},
                                        {"out_dtype": jnp.bfloat16}])
    def test_embedding_quant_matches_reference(self, case, kwargs):
        """BERT (positions 0..S-1, token types), RoBERTa/XLM-R (positions from padding_idx,
        right padding), MPNet (RoBERTa positions, no token types), DistilBERT (no token types);
        dynamic and static scales. In interpret mode the INT8 output is checked bit for bit."""
        ops = _embedding_operands(case)
        kwargs = dict(kwargs)
        if kwargs.pop("input_scale", False):
            kwargs["input_scale"] = jnp.asarray(np.random.default_rng(5).uniform(0.5, 2, H), jnp.float32)
        out = embedding_quant(*ops, eps=1e-12, interpret=self.INTERPRET, **kwargs)
        ref = embedding_quant_reference(*ops, eps=1e-12, **kwargs)
        assert out[0].dtype == jnp.dtype(kwargs.get("out_dtype", jnp.float16))
        _assert_matches(out, ref)
        if self.INTERPRET:  # compiled, Triton's float32 division may round differently
            _assert_int8_exact(out, ref, kwargs.get("input_scale"))

    def test_embedding_quant_uses_the_given_position_ids(self):
        """RoBERTa positions (offset by padding_idx + 1) are not arange: the outputs differ."""
        ids, pos, types, *tables = _embedding_operands("roberta_with_types")
        arange = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
        y, _, _ = embedding_quant(ids, pos, types, *tables, eps=1e-12, interpret=self.INTERPRET)
        y_arange, _, _ = embedding_quant(ids, arange, types, *tables, eps=1e-12, interpret=self.INTERPRET)
        assert not np.allclose(np.asarray(y, np.float32), np.asarray(y_arange, np.float32), atol=1e-2)

    def test_the_named_kernels_run(self):
        x, _, gamma, beta = _ln_operands()
        fused_ln = functools.partial(layernorm_quant, eps=1e-12, interpret=self.INTERPRET)
        assert f"name={LAYERNORM_KERNEL_NAME}" in str(jax.make_jaxpr(fused_ln)(x, gamma, beta))
        ids, table = jnp.zeros((2, 9), jnp.int32), jnp.zeros((16, H), jnp.float16)
        fused_emb = functools.partial(embedding_quant, eps=1e-12, interpret=self.INTERPRET)
        with_types = jax.make_jaxpr(fused_emb)(ids, ids, ids, table, table, table[:2], gamma, beta)
        assert f"name={EMBEDDING_KERNEL_NAME}" in str(with_types)
        assert _pallas_operands(with_types) == ["int32[18,3]", f"float16[16,{H}]", f"float16[16,{H}]",
                                                f"float16[2,{H}]", f"float32[{H}]", f"float32[{H}]"]
        # No token types: a variant without the token-type table (not a zero table).
        no_types = jax.make_jaxpr(lambda i, p, w, pt: fused_emb(i, p, None, w, pt, None, gamma, beta))(
            ids, ids, table, table)
        assert f"name={EMBEDDING_KERNEL_NAME}" in str(no_types)
        assert _pallas_operands(no_types) == ["int32[18,2]", f"float16[16,{H}]", f"float16[16,{H}]",
                                              f"float32[{H}]", f"float32[{H}]"]


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
    with pytest.raises(ValueError, match=r"position_ids \(1, 19\) != input_ids \(1, 20\)"):
        embedding_quant(ids, ids[:, :19], ids, table, table, table[:2], gamma, beta, eps=1e-12,
                        interpret=True)
    with pytest.raises(ValueError, match="token_type_ids"):
        embedding_quant(ids, ids, ids[:, :19], table, table, table[:2], gamma, beta, eps=1e-12,
                        interpret=True)
    # a position table shorter than the sequence is fine: only the ids' values must be < P
    out = embedding_quant(ids, jnp.zeros_like(ids), None, table, table[:2], None, gamma, beta,
                          eps=1e-12, interpret=True)
    assert out[0].shape == (1, 20, H)


@pytest.mark.parametrize("fn", [functools.partial(embedding_quant, interpret=True),
                                embedding_quant_reference])
def test_token_types_are_both_given_or_both_none(fn):
    ids, pos, types, word, position, token_type, gamma, beta = _embedding_operands("arange_with_types")
    with pytest.raises(ValueError, match="token_type is None but token_type_ids is given"):
        fn(ids, pos, types, word, position, None, gamma, beta, eps=1e-12)
    with pytest.raises(ValueError, match="token_type_ids is None but token_type is given"):
        fn(ids, pos, None, word, position, token_type, gamma, beta, eps=1e-12)


def _numpy_embedding_reference(ids, types, word, position, token_type, gamma, beta, eps, padding_idx):
    """A plain numpy RoBERTa embedding: positions counted per row from padding_idx + 1 by a loop,
    LayerNorm in float64, float16 output, per-token absmax INT8 of that output."""
    ids = np.asarray(ids)
    positions = np.full_like(ids, padding_idx)
    for b in range(ids.shape[0]):
        count = padding_idx
        for s in range(ids.shape[1]):
            if ids[b, s] != padding_idx:
                count += 1
                positions[b, s] = count
    h = (np.asarray(word, np.float64)[ids] + np.asarray(position, np.float64)[positions]
         + np.asarray(token_type, np.float64)[np.asarray(types)])
    mean = h.mean(-1, keepdims=True)
    var = ((h - mean) ** 2).mean(-1, keepdims=True)
    y = ((h - mean) / np.sqrt(var + eps) * np.asarray(gamma, np.float64)
         + np.asarray(beta, np.float64)).astype(np.float16)
    scale = np.maximum(np.abs(y.astype(np.float64)).max(-1, keepdims=True) / 127, 1e-12)
    q = np.clip(np.round(y.astype(np.float64) / scale), -127, 127).astype(np.int8)
    return positions, y, q, scale


def test_reference_matches_numpy_for_roberta_positions():
    ids, pos, types, word, position, token_type, gamma, beta = _embedding_operands("roberta_with_types")
    positions, y_np, q_np, s_np = _numpy_embedding_reference(ids, types, word, position, token_type,
                                                             gamma, beta, 1e-5, PADDING_IDX)
    np.testing.assert_array_equal(np.asarray(pos), positions)  # the helper the tests use
    assert positions[2, 2:].tolist() == [PADDING_IDX] * 7 and positions[0].tolist() == list(range(2, 11))
    y, q, s = embedding_quant_reference(ids, pos, types, word, position, token_type, gamma, beta, eps=1e-5)
    # one float16 unit in the last place (float32 vs float64 LayerNorm near a rounding edge)
    np.testing.assert_allclose(np.asarray(y, np.float32), y_np.astype(np.float32), atol=1e-6, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(s), s_np, rtol=3e-7)  # measured 5.2e-8
    diff = np.abs(np.asarray(q, np.int32) - q_np.astype(np.int32))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.995  # float32 vs float64 rounding, .5 ties


def test_fused_kernels_lower_for_cuda():
    S = jax.ShapeDtypeStruct
    hlo = lower_for_gpu(lambda x, r, g, b: layernorm_quant(x, g, b, eps=1e-12, residual=r, act_scale=0.1),
                        S((4, 128, 768), jnp.float16), S((4, 128, 768), jnp.float16),
                        S((768,), jnp.float32), S((768,), jnp.float32))
    assert gpu_kernel_calls(hlo) == ["__gpu$xla.gpu.triton"] and LAYERNORM_KERNEL_NAME in hlo
    emb = functools.partial(embedding_quant, eps=1e-12)
    ids, h = S((4, 128), jnp.int32), S((768,), jnp.float32)
    hlo = lower_for_gpu(emb, ids, ids, ids, S((30522, 768), jnp.float16), S((512, 768), jnp.float16),
                        S((2, 768), jnp.float16), h, h)
    assert gpu_kernel_calls(hlo) == ["__gpu$xla.gpu.triton"] and EMBEDDING_KERNEL_NAME in hlo
    # no token types (DistilBERT, MPNet), RoBERTa-sized position table, static scale
    hlo = lower_for_gpu(lambda i, p, w, pt, g, b: emb(i, p, None, w, pt, None, g, b, act_scale=0.1),
                        ids, ids, S((30527, 768), jnp.float16), S((514, 768), jnp.float16), h, h)
    assert gpu_kernel_calls(hlo) == ["__gpu$xla.gpu.triton"] and EMBEDDING_KERNEL_NAME in hlo
