"""The shared epilogue activations: `numerics.apply_activation` (the XLA reference) and its
kernel-side twin `epilogue.activation` agree, including ReLU."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import epilogue, numerics


def test_relu_is_an_activation():
    assert "relu" in numerics.ACTIVATIONS
    x = jnp.asarray([-3.0, -1e-30, -0.0, 0.0, 1e-30, 2.5, np.inf, -np.inf], jnp.float32)
    expected = np.asarray([0.0, 0.0, 0.0, 0.0, 1e-30, 2.5, np.inf, 0.0], np.float32)
    np.testing.assert_array_equal(np.asarray(numerics.apply_activation(x, "relu")), expected)
    np.testing.assert_array_equal(np.asarray(epilogue.activation(x, "relu")), expected)


@pytest.mark.parametrize("name", numerics.ACTIVATIONS)
def test_kernel_activations_match_the_reference(name):
    x = jnp.asarray(np.random.default_rng(0).normal(size=1000) * 4, jnp.float32)
    np.testing.assert_allclose(np.asarray(epilogue.activation(x, name)),
                               np.asarray(numerics.apply_activation(x, name)), rtol=1e-6, atol=1e-6)


def test_relu_epilogue_order():
    """`relu(y + bias) + residual`: the residual is added after the activation."""
    y = jnp.asarray([[-2.0, 1.0]], jnp.float32)
    out = numerics.epilogue(y, bias=jnp.asarray([0.5, 0.5]), activation="relu",
                            residual=jnp.asarray([[1.0, 1.0]]))
    np.testing.assert_array_equal(np.asarray(out), [[1.0, 2.5]])


def test_unknown_activations_raise():
    with pytest.raises(ValueError, match="relu"):  # the message lists what is accepted
        numerics.apply_activation(jnp.zeros(2), "swish")
    with pytest.raises(ValueError, match="relu"):
        epilogue.activation(jnp.zeros(2), "leaky_relu")


def test_gelu_is_the_exact_erf_gelu_to_float32_rounding():
    """x/2 (1 + erf(x / sqrt 2)) against float64 (math.erf), over the range BERT activations
    reach, including the far tails where it is 0 or x."""
    x = np.concatenate([np.linspace(-12, 12, 4001), [-1e4, -50.0, 0.0, 50.0, 1e4]]).astype(np.float32)
    exact = np.array([v / 2 * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    got = np.asarray(numerics.apply_activation(jnp.asarray(x), "gelu"), np.float64)
    np.testing.assert_allclose(got, exact, rtol=2e-6, atol=1e-6)


def test_row_poison_is_nan_exactly_for_rows_holding_nan_or_inf():
    big = np.finfo(np.float32).max
    x = np.array([[1.0, -2.0, 3.0, 0.0],
                  [big, big, -big, big],        # finite, though its sum would overflow
                  [1.0, np.nan, 2.0, 3.0],
                  [np.inf, 1.0, 2.0, 3.0],
                  [1.0, 2.0, 3.0, -np.inf]], np.float32)
    poison = np.asarray(numerics.row_poison(jnp.asarray(x)))
    assert poison.shape == (5, 1)
    assert np.array_equal(np.isnan(poison[:, 0]), [False, False, True, True, True])
    assert np.all(poison[:2] == 0.0)
    assert np.array_equal(np.asarray(numerics.row_finite(jnp.asarray(x)))[:, 0], [True, True, False, False, False])


@pytest.mark.parametrize("jitted", [False, True])  # compiled, XLA must not simplify x - x away
@pytest.mark.parametrize("act_scale", [None, 0.05])
def test_a_non_finite_row_quantizes_to_zeros_with_a_nan_scale(act_scale, jitted):
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    x[1, 5], x[3, 0] = np.nan, -np.inf
    fn = lambda x: numerics.quantize_rows(x, act_scale=act_scale)  # noqa: E731
    q, scale = (np.asarray(a) for a in (jax.jit(fn) if jitted else fn)(jnp.asarray(x)))
    assert np.isnan(scale[[1, 3], 0]).all() and np.isfinite(scale[[0, 2], 0]).all()
    assert not q[[1, 3]].any() and q[[0, 2]].any()


def test_a_static_scale_must_be_per_tensor():
    x = jnp.ones((4, 64), jnp.float32)
    with pytest.raises(ValueError):
        numerics.quantize_rows(x, act_scale=jnp.full((64,), 0.05))


def _hf_formulas(x):
    """transformers' activations (activations.py) in float64 numpy."""
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    tanh_gelu = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return {
        "gelu_new": tanh_gelu,
        "gelu_pytorch_tanh": tanh_gelu,
        "gelu_fast": 0.5 * x * (1.0 + np.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
        "gelu_accurate": tanh_gelu,
        "quick_gelu": x * sigmoid(1.702 * x),
        "silu": x * sigmoid(x),
        "swish": x * sigmoid(x),
        "relu": np.maximum(x, 0.0),
        "gelu": np.array([v / 2 * (1 + math.erf(v / math.sqrt(2))) for v in x]),
    }


@pytest.mark.parametrize("hf_name", sorted(_hf_formulas(np.zeros(1))))
def test_each_hf_activation_runs_as_hf_computes_it(hf_name):
    """Every `hidden_act` samp-jax reads is the epilogue activation that computes HF's formula
    (gelu_fast's rounded constant 0.7978845608 is within float32 rounding of sqrt(2/pi))."""
    from samp_jax.models.activations import SUPPORTED_ACTIVATIONS

    assert set(SUPPORTED_ACTIVATIONS) >= set(_hf_formulas(np.zeros(1)))
    x = np.linspace(-12, 12, 2001)  # the range BERT's FFN activations reach
    expected = _hf_formulas(x)[hf_name]
    ours = SUPPORTED_ACTIVATIONS[hf_name]
    for implementation in (numerics.apply_activation, epilogue.activation):
        got = np.asarray(implementation(jnp.asarray(x, jnp.float32), ours), np.float64)
        np.testing.assert_allclose(got, expected, rtol=3e-6, atol=2e-6, err_msg=implementation.__name__)


@pytest.mark.parametrize("rounded_to", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_requantizing_is_what_a_static_site_quantizes_from_the_rounded_output(rounded_to):
    """`epilogue(..., out_dtype=int8, requantize_from=d)` is exactly `quantize_rows` of the
    output cast to `d`: the INT8 hand-off gives the next site its own numbers. A value past
    FP16's range saturates to 127 (as a value past the clip does), where the float path makes
    the whole row NaN."""
    rng = np.random.default_rng(0)
    y = jnp.asarray(rng.normal(size=(16, 96)) * 3.0, jnp.float32)
    scale = jnp.asarray(0.021, jnp.float32)
    handed = numerics.epilogue(y, activation="gelu", out_dtype=jnp.int8, out_scale=scale,
                               requantize_from=rounded_to)
    float_input = numerics.epilogue(y, activation="gelu", out_dtype=rounded_to)
    np.testing.assert_array_equal(np.asarray(handed),
                                  np.asarray(numerics.quantize_rows(float_input, act_scale=scale)[0]))
    if rounded_to == jnp.float16:
        big = y.at[3, 5].set(7e4)
        past = np.asarray(numerics.requantize(big, scale, jnp.float16))
        assert past[3, 5] == 127
        np.testing.assert_array_equal(
            np.delete(past[3], 5), np.delete(np.asarray(numerics.requantize(y, scale, jnp.float16))[3], 5))
        row_scales = np.asarray(numerics.quantize_rows(big.astype(jnp.float16), act_scale=scale)[1])
        assert np.isnan(row_scales[3]).all() and not np.isnan(row_scales[2]).any()


@pytest.mark.parametrize("scale", [np.float32(2e-39), 1e-13, np.asarray([0.5, 1e-30], np.float32)],
                         ids=["denormal", "below the floor", "one entry of two"])
def test_a_scale_below_the_floor_is_refused(scale):
    """A positive scale below `SCALE_EPS` is no scale calibration gives, and a denormal one's
    float32 reciprocal (what every quantization multiplies by) overflows to Inf."""
    with pytest.raises(ValueError, match=r"^act_scale must be a finite positive quantization scale, "
                                         r"found [0-9.e-]+( \(1 of 2 entries; first\))?; expected a "
                                         r"finite value >= 1e-12 \(SCALE_EPS; as float32 9\.99999996e-13\)"):
        numerics.check_scale(scale)


def test_the_floor_scale_itself_is_a_scale():
    """The floor as float32 (9.99999996e-13, just under 1e-12), as `per_token_scale` and the
    weight quantizers clamp to it, passes."""
    floor = numerics.per_token_scale(jnp.zeros((2, 4), jnp.float32))
    assert float(floor[0, 0]) < numerics.SCALE_EPS
    numerics.check_scale(floor)
    numerics.check_scale(np.float64(numerics.SCALE_EPS))
