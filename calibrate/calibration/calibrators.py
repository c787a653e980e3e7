"""Calibrators: turn |x| statistics of one GEMM input into an INT8 clipping threshold `amax`.

Every calibrator consumes a `HistogramStats` (a histogram of |x| over uniform bins on
`[0, hist_max]` plus the exact absmax) and returns a Python float `amax` for symmetric
quantization: `scale = amax / 127` and `q = clip(round(x / scale), -127, 127)`.

Shared guarantees of every calibrator:
- `amax <= min(absmax, hist_max)` (above `TINY_AMAX`): a threshold above the largest value only
  coarsens the grid, so results are capped at `absmax` (a bin's upper edge may otherwise lie
  past it).
- `amax >= TINY_AMAX` (1e-8): an all-zero tensor (`absmax == 0`) or one whose threshold falls
  below it yields `TINY_AMAX`, so the scale stays positive and is the stored clip / 127.

Methods (`CALIBRATORS`):
- `minmax`: the exact absmax; never clips.
- `percentile`: the upper edge of the first bin at which the cumulative fraction reaches p%.
- `mse`: the amax minimising the histogram-estimated quantize/dequantize squared error.
- `entropy`: TensorRT-style KL-divergence calibration (Migacz 2017).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Callable

import numpy as np

TINY_AMAX = 1e-8  # returned for all-zero tensors so that the scale stays positive
# Probability given to the expanded reference bins Q that are empty where P is not (only the
# last bin, when the clipped tail lands in an empty region). Equivalent to the 1e-4-count
# epsilon of MXNet/TVM's `_smooth_distribution` at ~1e6 samples, but independent of scale.
KL_EPSILON = 1e-10
# Relative slack allowed between `absmax` and `hist_max` (collectors often reduce in float32).
_ABSMAX_RTOL = 1e-5


@dataclasses.dataclass(frozen=True, eq=False)
class HistogramStats:
    """|x| statistics of one tensor.

    `counts[i]` is the number (or weight) of values with |x| in bin i of `len(counts)` uniform
    bins over `[0, hist_max]`; values equal to `hist_max` belong to the last bin.

    Attributes:
      counts: `[bins]` non-negative, finite counts; stored as a read-only float64 array.
      hist_max: Upper edge of the last bin; positive and at least `absmax` (up to a 1e-5
        relative float32 slack).
      absmax: Exact max |x|; finite and non-negative.

    Raises:
      ValueError: On malformed counts, a non-positive `hist_max`, a bad `absmax`, or an empty
        histogram (total count 0).
    """

    counts: np.ndarray
    hist_max: float
    absmax: float

    def __post_init__(self):
        counts = np.array(self.counts, dtype=np.float64)  # a private copy
        if counts.ndim != 1 or counts.size == 0:
            raise ValueError(f"counts must be a non-empty 1-D array, got shape {counts.shape}")
        if not np.all(np.isfinite(counts)):
            raise ValueError("counts must be finite (found NaN or inf)")
        if np.any(counts < 0):
            raise ValueError("counts must be non-negative")
        if counts.sum() <= 0:
            raise ValueError("empty histogram: the total count is 0 (no values were observed)")
        hist_max, absmax = float(self.hist_max), float(self.absmax)
        if not (np.isfinite(hist_max) and hist_max > 0):
            raise ValueError(f"hist_max must be finite and > 0, got {hist_max}")
        if not (np.isfinite(absmax) and absmax >= 0):
            raise ValueError(f"absmax must be finite and >= 0, got {absmax}")
        if absmax > hist_max * (1 + _ABSMAX_RTOL):
            raise ValueError(f"absmax {absmax} exceeds hist_max {hist_max}")
        counts.flags.writeable = False
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "hist_max", hist_max)
        object.__setattr__(self, "absmax", absmax)

    @property
    def bins(self) -> int:
        """Number of histogram bins."""
        return self.counts.size

    @property
    def total(self) -> float:
        """Total count."""
        return float(self.counts.sum())

    @property
    def bin_width(self) -> float:
        """Width of one bin."""
        return self.hist_max / self.bins

    def upper_edges(self) -> np.ndarray:
        """`[bins]` upper edge of every bin."""
        return self.hist_max * np.arange(1, self.bins + 1) / self.bins

    def centres(self) -> np.ndarray:
        """`[bins]` centre of every bin."""
        return self.hist_max * (np.arange(self.bins) + 0.5) / self.bins

    @classmethod
    def from_values(cls, x: np.ndarray, bins: int = 2048) -> HistogramStats:
        """Histogram of |x| over `[0, max|x|]`.

        Args:
          x: Values of any shape; must be finite and non-empty.
          bins: Number of uniform bins.

        Returns:
          The statistics. For an all-zero `x`, `hist_max` is 1.0 and every value is in bin 0.

        Raises:
          ValueError: If `x` is empty, non-finite, or `bins < 1`.
        """
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        a = np.abs(np.asarray(x, dtype=np.float64)).ravel()
        if a.size == 0:
            raise ValueError("empty histogram: no values given")
        if not np.all(np.isfinite(a)):
            raise ValueError("values must be finite (found NaN or inf)")
        absmax = float(a.max())
        hist_max = absmax if absmax > 0 else 1.0
        counts, _ = np.histogram(a, bins=bins, range=(0.0, hist_max))
        return cls(counts=counts, hist_max=hist_max, absmax=absmax)


def _finalize(amax: float, stats: HistogramStats) -> float:
    """Caps `amax` at `min(absmax, hist_max)` and floors it at `TINY_AMAX`."""
    return max(min(float(amax), stats.absmax, stats.hist_max), TINY_AMAX)


def _levels(num_bits: int) -> int:
    """Positive quantization levels of symmetric `num_bits` integers (127 for 8 bits)."""
    if num_bits < 2:
        raise ValueError(f"num_bits must be >= 2, got {num_bits}")
    return 2 ** (num_bits - 1) - 1


def minmax(stats: HistogramStats) -> float:
    """The exact absmax: no clipping at all.

    Args:
      stats: |x| statistics.

    Returns:
      `stats.absmax` (or `TINY_AMAX` for an all-zero tensor).
    """
    return _finalize(stats.absmax, stats)


def percentile(stats: HistogramStats, p: float = 99.99) -> float:
    """Upper edge of the first bin at which the cumulative fraction of |x| reaches `p`%.

    Args:
      stats: |x| statistics.
      p: Percentile in (0, 100].

    Returns:
      The threshold, capped at absmax (so `p=100` gives absmax).

    Raises:
      ValueError: If `p` is outside (0, 100].
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile p must be in (0, 100], got {p}")
    cumulative = np.cumsum(stats.counts)
    target = p / 100 * cumulative[-1] * (1 - 1e-12)  # slack for float rounding at p=100
    index = min(int(np.searchsorted(cumulative, target, side="left")), stats.bins - 1)
    return _finalize(stats.upper_edges()[index], stats)


def _mse_candidates(stats: HistogramStats, num_candidates: int) -> np.ndarray:
    """Geometric grid of amax candidates from one bin width up to `min(absmax, hist_max)`."""
    upper = min(stats.absmax, stats.hist_max)
    lower = min(stats.bin_width, upper)
    return np.geomspace(lower, upper, num_candidates)


def expected_quantization_mse(stats: HistogramStats, amax: np.ndarray,
                              num_bits: int = 8) -> np.ndarray:
    """Histogram estimate of the per-value squared quantize/dequantize error.

    Every value is represented by its bin centre `c`; its dequantized value is
    `s * min(round(c / s), levels)` with `s = amax / levels`, which covers both the rounding
    error (`c <= amax`) and the clipping error `(c - amax)**2` (`c > amax`).

    Args:
      stats: |x| statistics.
      amax: `[k]` positive candidate thresholds.
      num_bits: Integer bit width (symmetric, `2**(num_bits-1) - 1` levels).

    Returns:
      `[k]` expected squared error per value for each candidate.
    """
    levels = _levels(num_bits)
    amax = np.atleast_1d(np.asarray(amax, dtype=np.float64))
    weights = stats.counts / stats.total
    nonzero = weights > 0  # skip empty bins: they cost nothing
    centres, weights = stats.centres()[nonzero], weights[nonzero]
    scale = (amax / levels)[:, None]  # [k, 1]
    dequantized = scale * np.minimum(np.round(centres / scale), levels)  # [k, b]
    return ((centres - dequantized) ** 2) @ weights


def mse(stats: HistogramStats, num_bits: int = 8, num_candidates: int = 512) -> float:
    """The amax minimising the expected squared quantization error.

    Candidates form a geometric grid (constant ~1.5% relative step for 2048 bins and 512
    candidates) from one bin width up to `min(absmax, hist_max)`; each is scored with
    `expected_quantization_mse`. Ties go to the largest candidate.

    Args:
      stats: |x| statistics.
      num_bits: Integer bit width.
      num_candidates: Number of candidate thresholds (>= 1).

    Returns:
      The best candidate.
    """
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
    if stats.absmax == 0:
        return TINY_AMAX
    candidates = _mse_candidates(stats, num_candidates)
    errors = expected_quantization_mse(stats, candidates, num_bits)
    best = len(errors) - 1 - int(np.argmin(errors[::-1]))
    return _finalize(candidates[best], stats)


def _smooth(q: np.ndarray, needed: np.ndarray, eps: float) -> np.ndarray:
    """Gives probability `eps` to the zeros of `q` where `needed`, rescaling the rest to sum 1.

    Args:
      q: A probability distribution (sums to 1).
      needed: Bins where `q` must be positive (where the reference P is non-zero).
      eps: Probability to give each such empty bin.
    """
    holes = needed & (q == 0)
    n_holes = int(holes.sum())
    if n_holes == 0:
        return q
    return np.where(holes, eps, q * (1 - eps * n_holes))


def _kl_divergence(counts: np.ndarray, threshold_bin: int, levels: int) -> float:
    """KL(P || Q) for clipping at the upper edge of bin `threshold_bin - 1`.

    P is `counts[:i]` with the clipped tail `counts[i:]` added to its last bin. Q quantizes the
    unclipped `counts[:i]` into `levels` merged chunks (bin j goes to chunk `j * levels // i`)
    and spreads each chunk's mass evenly over the chunk's bins where P is non-zero (zero
    elsewhere). Both are normalised to sum 1; Q is smoothed with `KL_EPSILON` where P > 0 but
    Q == 0 (the tail landed in an empty chunk).
    """
    i = threshold_bin
    p = counts[:i].copy()
    p[-1] += counts[i:].sum()
    chunk = (np.arange(i) * levels) // i
    p_nonzero = p > 0
    mass = np.bincount(chunk, weights=counts[:i], minlength=levels)
    support = np.bincount(chunk, weights=p_nonzero, minlength=levels)
    q_mass = mass.sum()
    if q_mass <= 0:
        return np.inf  # everything was clipped into the last bin
    q = np.where(p_nonzero, mass[chunk] / np.maximum(support[chunk], 1), 0.0) / q_mass
    q = _smooth(q, p_nonzero, KL_EPSILON)
    p = p[p_nonzero] / p.sum()
    return float(np.sum(p * np.log(p / q[p_nonzero])))


def entropy(stats: HistogramStats, num_bits: int = 8, start_bin: int = 128) -> float:
    """TensorRT-style KL-divergence calibration (Migacz 2017, "8-bit inference with TensorRT").

    For every candidate `i` in `[min(start_bin, bins), bins]` the threshold is the upper edge of
    bin `i - 1`, i.e. `hist_max * i / bins`. The reference P keeps bins `[0, i)` and adds the
    clipped tail to its last bin; Q merges the unclipped bins `[0, i)` into
    `2**(num_bits-1) - 1` levels and expands them back (see `_kl_divergence`). The candidate with
    the smallest KL(P || Q) wins; ties go to the largest threshold (as in NVIDIA's
    pytorch-quantization). A histogram with fewer than `start_bin` bins has the single
    candidate `i = bins`.

    Args:
      stats: |x| statistics.
      num_bits: Integer bit width.
      start_bin: Smallest candidate bin count (the threshold is at least
        `start_bin / bins * hist_max`).

    Returns:
      `hist_max * i_best / bins`, capped at absmax.
    """
    levels = _levels(num_bits)
    if start_bin < 1:
        raise ValueError(f"start_bin must be >= 1, got {start_bin}")
    if stats.absmax == 0:
        return TINY_AMAX
    candidates = np.arange(min(start_bin, stats.bins), stats.bins + 1)
    divergences = np.array([_kl_divergence(stats.counts, i, levels) for i in candidates])
    best = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return _finalize(stats.hist_max * candidates[best] / stats.bins, stats)


Calibrator = Callable[[HistogramStats], float]

# Its names are `samp_jax.core.precision.CALIBRATOR_NAMES`, those a precision map's rule may
# give (tests/samp_jax/core/test_precision.py keeps the two alike).
CALIBRATORS: dict[str, Calibrator] = {
    "minmax": minmax,
    "percentile": percentile,
    "mse": mse,
    "entropy": entropy,
}


def get_calibrator(name: str, **options) -> Calibrator:
    """Looks up a calibrator and binds its options.

    Args:
      name: One of `CALIBRATORS`.
      **options: Keyword options of that calibrator (e.g. `p=99.9` for `percentile`).

    Returns:
      A function `HistogramStats -> amax`.

    Raises:
      ValueError: For an unknown name.
      TypeError: For an option the calibrator does not take.
    """
    if name not in CALIBRATORS:
        raise ValueError(f"calibration method {name!r} is not one of {sorted(CALIBRATORS)}")
    fn = CALIBRATORS[name]
    if not options:
        return fn
    inspect.signature(fn).bind_partial(None, **options)  # fail early on a misspelt option
    return functools.partial(fn, **options)
