"""Task metrics that do not belong to one data set.

ROC-AUC and Spearman are computed over weighted copies of the examples: `weights` `[R, n]`
gives, per row, how many times each example counts, so one call scores every resample of a
paired bootstrap (a weight is the number of times a resample drew the example) without sorting
each resample again. A single evaluation is the one row of ones. Ties get average ranks.
"""

from __future__ import annotations

import numpy as np


_CHUNK_ELEMENTS = 1 << 22  # weights scored per chunk: a few [chunk, n] float64 temporaries


def _by_chunks(score_rows, weights: np.ndarray) -> np.ndarray:
    """`score_rows(weights_chunk) -> [chunk]` over row chunks of `[R, n]` weights."""
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    step = max(1, _CHUNK_ELEMENTS // max(weights.shape[1], 1))
    return np.concatenate([score_rows(weights[i:i + step]) for i in range(0, len(weights), step)])


def weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`[R, n]`: per row of `weights`, the average rank (1-based) each example's copies take
    among all copies of that row, ties sharing their average. Sorts `values` once."""
    values = np.asarray(values, np.float64)
    weights = np.asarray(weights, np.float64)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]])  # each tie group's first place
    starts, group = np.flatnonzero(first), np.cumsum(first) - 1
    per_group = np.add.reduceat(weights[:, order], starts, axis=1)  # [R, groups]
    average = np.cumsum(per_group, axis=1) - per_group + (per_group + 1.0) / 2.0
    ranks = np.empty_like(weights)
    ranks[:, order] = average[:, group]
    return ranks


def roc_auc_weighted(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`[R]`: the area under the ROC curve (the Mann-Whitney U statistic; ties count one half)
    of each row's weighted copies; NaN for a row with one class only."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    if np.isnan(scores).any():
        return np.full(np.atleast_2d(weights).shape[0], np.nan)

    def score_rows(w):
        ranks = weighted_ranks(scores, w)
        positives = (w * labels).sum(1)
        negatives = (w * ~labels).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((w * ranks * labels).sum(1) - positives * (positives + 1) / 2) / (positives * negatives)
        return np.where((positives > 0) & (negatives > 0), auc, np.nan)
    return _by_chunks(score_rows, weights)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic; ties count one half); NaN if a
    score is NaN.

    Raises:
      ValueError: the labels hold one class only.
    """
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("ROC-AUC needs both positive and negative examples")
    return float(roc_auc_weighted(scores, labels, np.ones((1, len(labels))))[0])


def spearman_weighted(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`[R]`: Spearman's rank correlation (Pearson's of the average ranks) of each row's
    weighted copies; NaN for a row where either is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if np.isnan(x).any() or np.isnan(y).any():
        return np.full(np.atleast_2d(weights).shape[0], np.nan)

    def score_rows(w):
        rx, ry = (weighted_ranks(v, w) for v in (x, y))
        with np.errstate(invalid="ignore", divide="ignore"):
            total = w.sum(1, keepdims=True)
            rx = rx - (w * rx).sum(1, keepdims=True) / total
            ry = ry - (w * ry).sum(1, keepdims=True) / total
            return (w * rx * ry).sum(1) / np.sqrt((w * rx * rx).sum(1) * (w * ry * ry).sum(1))
    return _by_chunks(score_rows, weights)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two length-`n` arrays (NaN if either is constant)."""
    return float(spearman_weighted(x, y, np.ones((1, len(x))))[0])
