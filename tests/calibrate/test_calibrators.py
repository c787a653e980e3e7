"""Calibrators: clipping thresholds from |x| histograms, checked against raw-sample quantization."""

import time

import numpy as np
import pytest

from calibrate.calibration.calibrators import (
    CALIBRATORS,
    TINY_AMAX,
    HistogramStats,
    entropy,
    get_calibrator,
    minmax,
    mse,
    percentile,
)


def quantization_mse(x: np.ndarray, amax: float) -> float:
    """Measured squared error of symmetric INT8 quantize/dequantize of the raw samples."""
    scale = amax / 127
    q = np.clip(np.round(x / scale), -127, 127)
    return float(np.mean((x - q * scale) ** 2))


@pytest.fixture(scope="module")
def laplace():
    x = np.random.default_rng(0).laplace(size=200_000)
    return x, HistogramStats.from_values(x)


@pytest.fixture(scope="module")
def normal_with_outlier():
    x = np.append(np.random.default_rng(1).normal(size=100_000), 1000.0)
    return x, HistogramStats.from_values(x)


def test_from_values_histogram():
    stats = HistogramStats.from_values(np.array([-4.0, 0.5, 1.5, 3.9, 4.0]), bins=4)
    np.testing.assert_array_equal(stats.counts, [1, 1, 0, 3])
    assert stats.hist_max == 4.0 and stats.absmax == 4.0 and stats.bins == 4


def test_minmax_returns_absmax(normal_with_outlier):
    x, stats = normal_with_outlier
    assert minmax(stats) == np.abs(x).max() == 1000.0


def test_percentile_ignores_outlier_that_minmax_keeps(normal_with_outlier):
    _, stats = normal_with_outlier
    assert minmax(stats) == 1000.0
    assert 3.0 < percentile(stats, 99.99) < 10.0


def test_percentile_is_upper_edge_of_first_bin_reaching_p():
    stats = HistogramStats(counts=np.array([1, 1, 1, 1]), hist_max=4.0, absmax=4.0)
    assert percentile(stats, 50) == 2.0
    assert percentile(stats, 51) == 3.0
    assert percentile(stats, 100) == 4.0
    assert percentile(stats, 1e-3) == 1.0


def test_mse_and_entropy_beat_minmax_on_heavy_tail(laplace):
    x, stats = laplace
    amax_minmax, amax_mse, amax_entropy = minmax(stats), mse(stats), entropy(stats)
    assert amax_mse < amax_minmax
    assert amax_entropy < amax_minmax
    err_minmax = quantization_mse(x, amax_minmax)
    assert quantization_mse(x, amax_mse) < 0.8 * err_minmax
    assert quantization_mse(x, amax_entropy) < 0.8 * err_minmax


def test_mse_close_to_brute_force_optimum(laplace):
    x, stats = laplace
    grid = np.linspace(0.3, 1.0, 281) * stats.absmax
    errors = np.array([quantization_mse(x, a) for a in grid])
    best = grid[np.argmin(errors)]
    amax = mse(stats)
    assert abs(amax / best - 1) < 0.03
    assert quantization_mse(x, amax) < 1.01 * errors.min()


@pytest.mark.parametrize("calibrator", [mse, entropy])
def test_uniform_is_not_clipped_much(calibrator):
    stats = HistogramStats.from_values(np.random.default_rng(2).uniform(-1, 1, 200_000))
    assert 0.9 < calibrator(stats) <= stats.absmax


def test_entropy_threshold_is_a_bin_edge_at_or_after_start_bin(laplace):
    _, stats = laplace
    amax = entropy(stats)
    i = amax / stats.bin_width
    assert i == pytest.approx(round(i), abs=1e-6)
    assert 128 <= round(i) < stats.bins


def _reference_entropy_bin(counts: np.ndarray, levels: int, start_bin: int) -> int:
    """Loop-by-loop KL calibration, written independently of the vectorised code."""
    best_i, best_kl = None, np.inf
    for i in range(start_bin, len(counts) + 1):
        p = [float(c) for c in counts[:i]]
        p[-1] += float(counts[i:].sum())
        chunks = [min(j * levels // i, levels - 1) for j in range(i)]
        q = [0.0] * i
        for level in range(levels):
            members = [j for j in range(i) if chunks[j] == level]
            mass = sum(float(counts[j]) for j in members)
            support = [j for j in members if p[j] > 0]
            for j in support:
                q[j] = mass / len(support)
        p_sum, q_sum = sum(p), sum(q)
        kl = 0.0
        for pj, qj in zip(p, q):
            if pj > 0:
                kl += pj / p_sum * np.log((pj / p_sum) / max(qj / q_sum, 1e-10))
        if kl <= best_kl:
            best_i, best_kl = i, kl
    return best_i


def test_entropy_matches_loop_reference():
    x = np.random.default_rng(3).standard_t(4, size=20_000)
    stats = HistogramStats.from_values(x, bins=300)
    i_best = _reference_entropy_bin(stats.counts, levels=127, start_bin=128)
    assert entropy(stats) == pytest.approx(stats.hist_max * i_best / stats.bins)


def test_entropy_is_fast_on_2048_bins(laplace):
    _, stats = laplace
    start = time.perf_counter()
    entropy(stats)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("name", sorted(CALIBRATORS))
def test_amax_positive_and_within_range(name):
    calibrate = CALIBRATORS[name]
    # hist_max beyond absmax (a fixed collection range): results are capped at absmax.
    wide = HistogramStats(counts=np.r_[np.full(64, 10.0), np.zeros(192)], hist_max=4.0,
                          absmax=1.0)
    assert 0 < calibrate(wide) <= 1.0
    zeros = HistogramStats.from_values(np.zeros(100))
    assert calibrate(zeros) == TINY_AMAX
    # an all-zero site as calibrate's observer passes it (hist_max and absmax raised to the
    # floor): percentile and mse gave the first bin's edge, 1e-8 / 2048, below the floor
    observed = HistogramStats(counts=np.r_[100.0, np.zeros(2047)], hist_max=TINY_AMAX,
                              absmax=TINY_AMAX)
    assert calibrate(observed) == TINY_AMAX


def test_histogram_counts_are_exact_past_float32s_integers():
    """2^24 + 5 real values in one bin of one batch: float32 counts stopped at 2^24."""
    import jax.numpy as jnp

    from calibrate.calibration.observers import histogram_reduce
    x = jnp.zeros((1, 2 ** 12 + 5, 2 ** 12), jnp.float32).at[0, -5:, 0].set(1.0)
    mask = jnp.ones((1, 2 ** 12 + 5, 1), bool)
    counts = np.asarray(histogram_reduce("site", x, mask, {"site": (1.0, 1.0)}, bins=4))
    assert counts.tolist() == [2 ** 24 + 5 * (2 ** 12 - 1), 0, 0, 5]


@pytest.mark.parametrize("kwargs, message", [
    (dict(counts=np.zeros(16), hist_max=1.0, absmax=0.5), "empty histogram"),
    (dict(counts=np.array([1.0, -1.0, 2.0]), hist_max=1.0, absmax=0.5), "non-negative"),
    (dict(counts=np.array([1.0, np.nan]), hist_max=1.0, absmax=0.5), "finite"),
    (dict(counts=np.ones((2, 2)), hist_max=1.0, absmax=0.5), "1-D"),
    (dict(counts=np.ones(4), hist_max=0.0, absmax=0.0), "hist_max"),
    (dict(counts=np.ones(4), hist_max=1.0, absmax=np.inf), "absmax"),
    (dict(counts=np.ones(4), hist_max=1.0, absmax=2.0), "exceeds hist_max"),
])
def test_invalid_stats_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HistogramStats(**kwargs)


def test_from_values_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="empty histogram"):
        HistogramStats.from_values(np.array([]))
    with pytest.raises(ValueError, match="finite"):
        HistogramStats.from_values(np.array([1.0, np.nan]))


@pytest.mark.parametrize("p", [0.0, -1.0, 100.5])
def test_percentile_out_of_range_raises(normal_with_outlier, p):
    _, stats = normal_with_outlier
    with pytest.raises(ValueError, match="percentile"):
        percentile(stats, p)


def test_get_calibrator_binds_options(normal_with_outlier):
    _, stats = normal_with_outlier
    p999, p9999 = get_calibrator("percentile", p=99.9), get_calibrator("percentile", p=99.99)
    assert p999(stats) == percentile(stats, 99.9)
    assert p999(stats) < p9999(stats)
    assert get_calibrator("minmax")(stats) == 1000.0


def test_get_calibrator_unknown_name_and_option():
    with pytest.raises(ValueError, match=r"calibration method 'kl' is not one of \['entropy'"):
        get_calibrator("kl")
    with pytest.raises(TypeError):
        get_calibrator("percentile", q=99.0)
