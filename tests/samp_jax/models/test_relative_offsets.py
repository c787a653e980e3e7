"""Relative positions by offset: DeBERTa's and MPNet's `[seq, seq]` indices depend on the
offset `key - query` only, so the program carries a `[2 seq - 1]` table and spreads the values
over the pairs with a relative shift (`by_pair`). Checked here: the pairs read what a direct
NumPy build of the `[seq, seq]` index says, and a long length's program (lowered and compiled)
holds no `[seq, seq]`-sized constant."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from samp_jax.models.layers import Encoder
from samp_jax.models.relative_attention import (RelativeTerms, by_pair, log_bucket_position,
                                                relative_positions)
from tests.helpers import FAMILY_CONFIGS


def pair_index(seq: int, *, buckets: int, max_distance: int) -> np.ndarray:
    """NumPy reference: HF `build_relative_position`, `[seq, seq]` of `query - key`."""
    ids = np.arange(seq)
    relative = ids[:, None] - ids[None, :]
    if buckets > 0 and max_distance > 0:
        relative = log_bucket_position(relative, buckets, max_distance)
    return relative


@pytest.mark.parametrize("seq", [1, 2, 7, 130])
def test_by_pair_reads_each_row_at_the_offset(seq):
    values = np.random.default_rng(seq).normal(size=(2, 3, seq, 2 * seq - 1)).astype(np.float32)
    rows, cols = np.meshgrid(np.arange(seq), np.arange(seq), indexing="ij")
    expected = values[..., rows, cols - rows + seq - 1]
    np.testing.assert_array_equal(np.asarray(jax.jit(by_pair)(values)), expected)


@pytest.mark.parametrize("seq", [1, 7, 40, 300])
@pytest.mark.parametrize("span, buckets, max_distance", [(256, 256, 512), (12, -1, 12), (8, 8, 40)])
def test_bias_reads_the_pair_index(seq, span, buckets, max_distance):
    """Position rows whose dot product with the query/key is their own row number make the
    bias reveal, exactly, the row each pair reads: c2p `span + rel(i - j)` and p2c
    `span - rel(j - i)`, clipped to the table (spans both shorter and longer than `seq`)."""
    head_dim = 4
    ones = jnp.ones((1, seq, 1, head_dim), jnp.float32) / head_dim
    rows = jnp.broadcast_to(jnp.arange(2 * span, dtype=jnp.float32)[:, None, None], (2 * span, 1, head_dim))
    relative = pair_index(seq, buckets=buckets, max_distance=max_distance)
    last = 2 * span - 1
    expected = {"c2p": np.clip(span + relative, 0, last), "p2c": np.clip(span - relative.T, 0, last)}
    for kind, (pos_key, pos_query) in {"c2p": (rows, None), "p2c": (None, rows)}.items():
        terms = RelativeTerms(pos_key, pos_query, span, buckets, max_distance, 2)
        bias = np.asarray(jax.jit(terms.bias)(ones, ones))[0, 0]
        np.testing.assert_array_equal(np.rint(bias / terms.scale(head_dim)), expected[kind], err_msg=kind)


def _constant_sizes(text: str) -> list[int]:
    """Element counts of the constants in StableHLO (`tensor<AxBxi32>`) or HLO (`s32[A,B]`) text."""
    sizes = []
    for line in text.splitlines():
        if "constant" not in line:
            continue
        for dims in re.findall(r"tensor<((?:\d+x)+)\w+>", line):
            sizes.append(int(np.prod([int(d) for d in dims.rstrip("x").split("x")])))
        for dims in re.findall(r"= \w+\[([\d,]+)\][^ ]* constant\(", line):
            sizes.append(int(np.prod([int(d) for d in dims.split(",")])))
    return sizes


def _assert_no_pair_sized_constant(fn, *args, seq: int):
    lowered = jax.jit(fn).lower(*args)
    for stage, text in (("lowered", lowered.as_text()), ("compiled", lowered.compile().as_text())):
        sizes = _constant_sizes(text)
        assert sizes and max(sizes) < seq * seq, f"{stage}: constant of {max(sizes)} elements"


def test_long_deberta_program_holds_no_pair_sized_constant():
    """A `[seq, seq]` index constant (one per layer and term) made long lengths slow to
    compile; XLA must not fold the in-graph index back into one either."""
    seq, span, heads, head_dim = 2048, 256, 2, 4
    q = jnp.zeros((1, seq, heads, head_dim), jnp.float32)
    positions = jnp.zeros((2 * span, heads, head_dim), jnp.float32)
    terms = RelativeTerms(positions, positions, span, span, 2 * span, 3)
    _assert_no_pair_sized_constant(terms.bias, q, q, seq=seq)


def test_mpnet_bias_program_holds_no_pair_sized_constant():
    encoder = Encoder(FAMILY_CONFIGS["mpnet"], rngs=nnx.Rngs(0))
    seq = 514
    _assert_no_pair_sized_constant(lambda: encoder.attention_bias(seq), seq=seq)


def test_relative_positions_are_by_offset():
    """Entry `m` is the position `query - key` of the pairs at offset `key - query = m - (seq - 1)`."""
    np.testing.assert_array_equal(relative_positions(4, buckets=-1, max_distance=-1),
                                  np.arange(3, -4, -1))
    np.testing.assert_array_equal(relative_positions(2048, buckets=256, max_distance=512),
                                  log_bucket_position(np.arange(2047, -2048, -1), 256, 512))
