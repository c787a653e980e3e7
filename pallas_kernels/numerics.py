"""The numerical conventions every kernel shares with its XLA reference (plain `jax.numpy`).

These functions *are* the reference: `samp_jax`'s XLA implementations of the GEMM epilogue,
LayerNorm and INT8 activation quantization call them, and the Pallas kernels are tested
against them. Conventions:

- INT8 is symmetric in [-127, 127] (never -128, so negation is exact); `x ≈ q * scale`.
- A scale is never below `SCALE_EPS`, so an all-zero row or tensor quantizes to zeros with a
  positive scale instead of dividing by zero.
- Rounding is half to even (`jnp.round`); values beyond ±127 saturate.
- Every quantization multiplies by the scale's reciprocal, rounded to float32 once per scale:
  `x * (1 / scale)` (`divide_by_scale`), and the dynamic scale is `max|x| * INV_INT8_MAX`.
  Spelled out, this is the one computation every compiled program runs; a plain `x / scale`
  is not (see `divide_by_scale`).
- LayerNorm statistics, the epilogue and every scale are float32.
- Non-finite input propagates: a row holding NaN or ±Inf quantizes to zeros with a NaN scale
  (its scale plus `row_poison`, NaN for such a row). Every epilogue multiplies the int32
  accumulator by the row's scale, so that whole output row is NaN in the XLA reference and in every kernel alike,
  for dynamic and static scales (a FP16 GEMM propagates NaN too); the int8 values and the int32
  accumulator stay exact.
- A static scale (`act_scale`, `out_scale`) must be finite and at least `SCALE_EPS` (as
  float32): `check_scale` refuses any other concrete value. A traced scale (under jit) cannot be
  checked here: it is the caller's to make (calibration clamps every scale to at least
  `SCALE_EPS`).
- The int32 accumulator is exact only while `127 * 127 * K <= 2**31 - 1`, i.e.
  `K <= MAX_K` (133,144): `check_depth` refuses a deeper reduction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

INT8_MAX = 127.0
SCALE_EPS = 1e-12  # the smallest quantization scale: keeps all-zero inputs finite
# The floor as float32 holds it (9.99999996e-13, just under SCALE_EPS): what a clamp to
# SCALE_EPS gives in float32, and the smallest scale `check_scale` accepts.
SCALE_EPS_FLOAT32 = float(np.float32(SCALE_EPS))
_SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
QUICK_GELU_SLOPE = 1.702  # quick_gelu(x) = x sigmoid(1.702 x) (HF's QuickGELUActivation)
INT32_MAX = 2 ** 31 - 1
# The deepest reduction whose int32 accumulator cannot wrap: 127 * 127 * K <= 2**31 - 1.
MAX_K = INT32_MAX // int(INT8_MAX * INT8_MAX)  # 133,144
# 1/127 rounded to float32, held as a Python float (exact in float32, so it stays that value
# in float32 arithmetic and is a literal inside a kernel): the dynamic scale's multiplier
INV_INT8_MAX = float(np.float32(1.0) / np.float32(INT8_MAX))


def check_depth(k: int, what: str = "the INT8 GEMM") -> None:
    """Raises ValueError when a reduction over `k` could wrap the int32 accumulator.

    With operands in [-127, 127] a dot product of length K reaches at most `127 * 127 * K`,
    which exceeds `2**31 - 1` once `K > MAX_K` (133,144)."""
    if int(k) > MAX_K:
        raise ValueError(
            f"{what} reduces over K={int(k)} input features, more than the {MAX_K} an int32 "
            f"accumulator holds exactly (127 * 127 * K must stay <= 2**31 - 1); split the "
            "reduction or use a float precision for this GEMM")


def is_concrete(value) -> bool:
    """Whether `value` can be read on the host now (not a tracer under jit/vmap/grad)."""
    if isinstance(value, jax.core.Tracer):
        return False
    return getattr(value, "is_fully_addressable", True)


def check_scale(value, name: str = "act_scale") -> None:
    """Raises ValueError unless every entry of a concrete scale is finite and at least
    `SCALE_EPS` (as float32, `SCALE_EPS_FLOAT32`).

    A zero scale would quantize everything to zeros (or divide by zero), a negative one flip
    signs, a NaN/Inf one poison every row, and one below the floor (a denormal 2e-39, say) has
    a float32 reciprocal that overflows to Inf; no scale that calibration or quantization
    makes is below it. A traced scale (under jit) is not checked: it is the caller's to make
    (calibration clamps every scale to at least `SCALE_EPS`).
    """
    if value is None or not is_concrete(value):
        return
    array = np.asarray(value, np.float64)
    bad = ~(np.isfinite(array) & (array >= SCALE_EPS_FLOAT32))
    if bad.any():
        found = array.ravel()[np.flatnonzero(bad.ravel())[0]]
        where = "" if array.ndim == 0 else f" ({int(bad.sum())} of {array.size} entries; first)"
        raise ValueError(f"{name} must be a finite positive quantization scale, found "
                         f"{float(found)}{where}; expected a finite value >= {SCALE_EPS} "
                         f"(SCALE_EPS; as float32 {SCALE_EPS_FLOAT32:.9g})")


def to_rank(v, ndim: int) -> jax.Array:
    """`v` with leading axes of size 1 up to rank `ndim` (a scalar stays one): NumPy's implicit
    broadcasting of a `[N]` vector against a `[..., N]` array, written out, so that a program
    run under `jax_numpy_rank_promotion='raise'` (a strict host program) takes it. The same
    `lax.broadcast_to_rank` that `jnp` inserts for the implicit kind: the program is unchanged."""
    v = jnp.asarray(v)
    return v if v.ndim == 0 else jax.lax.broadcast_to_rank(v, ndim)


def round_clip_int8(x: jax.Array) -> jax.Array:
    """Round half to even and saturate to [-127, 127], as int8 (NaN becomes 0: casting NaN to
    an integer is undefined, and the row's NaN scale carries it instead)."""
    x = jnp.where(jnp.isnan(x), 0.0, x)
    return jnp.clip(jnp.round(x), -INT8_MAX, INT8_MAX).astype(jnp.int8)


def divide_by_scale(x: jax.Array, scale) -> jax.Array:
    """`x / scale` as every quantization step computes it: `x * (1 / scale)` in float32, the
    reciprocal rounded once per scale and the product once per value.

    A plain `x / scale` is not one computation under XLA: XLA:CPU's algebraic simplifier
    rewrites `x / broadcast(s)` into this multiplication only while `s` has no other use, and a
    multi-device program runs a common-subexpression pass first (the SPMD partitioner's
    cleanup), which shares the scale between the quantization and the dequantization after the
    INT8 GEMM. So at the same site `jit` multiplies and `shard_map` divides. The two results
    differ in the last bit for many values, and where the quotient lies on a .5 tie that bit
    decides the INT8 value: `x / s` rounds to the tie and then to even, `x * (1 / s)` lands just
    below or above it. Such ties are common: with float16 activations an element of exactly
    half its row's max quotients to about 63.5. One flipped INT8 value then moves that token's
    GEMM output, the next site's scale, and every later layer. Written out, the program holds
    no division to rewrite, and `jit`, `shard_map` and the kernels
    (`pallas_kernels.epilogue.requantize`) quantize a row alike.
    """
    return x * to_rank(1.0 / jnp.asarray(scale, jnp.float32), jnp.ndim(x))


def row_poison(x: jax.Array) -> jax.Array:
    """Per row over the last axis, `[..., 1]` float32: 0 where the row is all finite, NaN where
    it holds NaN or ±Inf (`sum(x - x)`: `±Inf - ±Inf` is NaN, and a sum keeps NaN; a finite
    row gives exact zeros, however large its values).

    Adding it to a row's scale makes the scale NaN exactly for a non-finite row. A sum, unlike
    `all(isfinite(x))`, fuses with the pass that reads the row: on the 2-core CPU the boolean
    form cost a boolean pass and two reductions per INT8 site, and the sum made the static-INT8
    MiniLM forward 1.06x faster (docs/results/ort_notes.md). `x * 0` would do too, but XLA:CPU then
    materialises a tensor of zeros; a maximum cannot carry NaN (XLA:CPU's vectorised `max`
    drops it).
    """
    x = x.astype(jnp.float32)
    return jnp.sum(x - x, axis=-1, keepdims=True)


def row_finite(x: jax.Array) -> jax.Array:
    """The per-row "all finite" flag over the last axis, `[..., 1]` bool."""
    return ~jnp.isnan(row_poison(x))


def per_token_scale(x: jax.Array) -> jax.Array:
    """Dynamic INT8 scale per row over the last axis: `max|x| / 127` (as
    `max|x| * INV_INT8_MAX`), `[..., 1]`, float32."""
    amax = jnp.max(jnp.abs(x.astype(jnp.float32)), axis=-1, keepdims=True)
    return jnp.maximum(amax * INV_INT8_MAX, SCALE_EPS)


def quantize_rows(x: jax.Array, *, act_scale=None, input_scale=None) -> tuple[jax.Array, jax.Array]:
    """INT8 of `x` as an INT8 GEMM site quantizes its input: per-token dynamic when `act_scale`
    is None, else per-tensor static with that scale. `input_scale` (`[K]`, SmoothQuant's `1/s`)
    multiplies first.

    Returns `(q int8 [..., K], scale float32 [..., 1])`: per row, the per-token scale (dynamic)
    or `act_scale` (static) -- or NaN for a row holding a non-finite value, whose `q` is zeros
    (`row_poison`: the epilogue's multiplication by the scale makes that output row NaN).

    Raises:
      ValueError: a concrete `act_scale` that is not finite and positive (`check_scale`).
    """
    check_scale(act_scale, "act_scale")
    x = x.astype(jnp.float32)
    if input_scale is not None:
        x = x * input_scale.astype(jnp.float32)
    poison = row_poison(x)  # [..., 1]
    if act_scale is None:
        scale = per_token_scale(x)  # a row's NaN may be dropped here; its poison keeps it
    else:  # a per-tensor scale: broadcast_to refuses any other shape
        scale = jnp.broadcast_to(jnp.asarray(act_scale, jnp.float32), poison.shape)
    scale = scale + poison  # NaN for a non-finite row
    # x * (1 / NaN) is NaN, which round_clip_int8 makes 0: such a row quantizes to zeros.
    return round_clip_int8(divide_by_scale(x, scale)), scale


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """LayerNorm over the last axis, computed in float32; returns float32."""
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    normed = (x - mean) * jax.lax.rsqrt(var + eps)
    scale, bias = (to_rank(v.astype(jnp.float32), x.ndim) for v in (scale, bias))
    return normed * scale + bias


def _gelu(x):
    # As PyTorch computes it (x * 1/sqrt(2), not x / sqrt(2)), and as the kernels do
    # (`pallas_kernels.epilogue`); the division `jax.nn.gelu` uses made the FFN epilogue
    # about 1.6x slower on CPU.
    return 0.5 * x * (1.0 + jax.lax.erf(x * _SQRT_HALF))


def _silu(x):
    return x * jax.nn.sigmoid(x)


# The epilogue activations, by name: the reference of each (float32 in, float32 out).
# `pallas_kernels.epilogue.KERNEL_ACTIVATIONS` holds the kernels' twin of each.
ACTIVATION_FUNCTIONS = {
    "gelu": _gelu,                                                # exact (erf) GELU, BERT's
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),      # GPT-2's tanh approximation
    "quick_gelu": lambda x: x * jax.nn.sigmoid(QUICK_GELU_SLOPE * x),  # CLIP's
    "silu": _silu,                                                # x sigmoid(x), "swish"
    "tanh": jnp.tanh,
    "relu": lambda x: jnp.maximum(x, 0.0),                        # DistilBERT's head
}
ACTIVATIONS = (*ACTIVATION_FUNCTIONS, None)


def apply_activation(x: jax.Array, activation: str | None) -> jax.Array:
    """The epilogue activation `ACTIVATION_FUNCTIONS[activation]`, or nothing for None."""
    if activation is None:
        return x
    if activation not in ACTIVATION_FUNCTIONS:
        raise ValueError(f"{activation=} is not one of {ACTIVATIONS}")
    return ACTIVATION_FUNCTIONS[activation](x)


def requantize(y: jax.Array, out_scale, rounded_to=jnp.float32) -> jax.Array:
    """float32 `y` as a static-INT8 site quantizes its input: rounded to the float dtype
    `rounded_to` (what that site would read from a float output), then
    `round_clip_int8(divide_by_scale(., out_scale))`. A value past `rounded_to`'s range
    saturates to +-127 (a value past the clip saturates anyway); NaN becomes 0."""
    check_scale(out_scale, "out_scale")
    if jnp.dtype(rounded_to) != jnp.float32:
        y = y.astype(rounded_to).astype(jnp.float32)
    return round_clip_int8(divide_by_scale(y, out_scale))


def epilogue(y: jax.Array, *, bias=None, activation: str | None = None, residual=None,
             out_dtype=jnp.float32, out_scale=None, requantize_from=jnp.float32) -> jax.Array:
    """`act(y + bias) + residual` in float32, cast to `out_dtype`, or requantized to INT8 with
    the static `out_scale` when `out_dtype` is int8 (for a following static-INT8 GEMM), from
    the values rounded to `requantize_from` (`requantize`)."""
    y = y.astype(jnp.float32)
    if bias is not None:
        y = y + to_rank(bias.astype(jnp.float32), y.ndim)
    y = apply_activation(y, activation)
    if residual is not None:
        y = y + residual.astype(jnp.float32)
    if jnp.dtype(out_dtype) == jnp.int8:
        return requantize(y, out_scale, requantize_from)
    return y.astype(out_dtype)
