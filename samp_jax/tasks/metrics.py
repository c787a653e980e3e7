"""Task metrics that do not belong to one data set.

ROC-AUC and Spearman are computed over weighted copies of the examples: `weights` `[R, n]`
gives, per row, how many times each example counts, so one call scores every resample of a
paired bootstrap (a weight is the number of times a resample drew the example) without sorting
each resample again. A single evaluation is the one row of ones. Ties get average ranks.
"""

from __future__ import annotations

import numpy as np


def weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`[R, n]`: per row of `weights`, the average rank (1-based) each example's copies take
    among all copies of that row, ties sharing their average. Sorts `values` once."""
    values = np.asarray(values, np.float64)
    weights = np.asarray(weights, np.float64)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ordered)) + 1])  # tie groups
    group = np.cumsum(np.isin(np.arange(len(values)), starts)) - 1
    per_group = np.add.reduceat(weights[:, order], starts, axis=1)  # [R, groups]
    average = np.cumsum(per_group, axis=1) - per_group + (per_group + 1.0) / 2.0
    ranks = np.empty_like(weights)
    ranks[:, order] = average[:, group]
    return ranks


def roc_auc_weighted(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`[R]`: the area under the ROC curve (the Mann-Whitney U statistic; ties count one half)
    of each row's weighted copies; NaN for a row with one class only."""
    labels = np.asarray(labels).astype(bool)
    weights = np.asarray(weights, np.float64)
    ranks = weighted_ranks(scores, weights)
    positives = (weights * labels).sum(1)
    negatives = (weights * ~labels).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((weights * ranks * labels).sum(1) - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic; ties count one half).

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
    weights = np.asarray(weights, np.float64)
    total = weights.sum(1, keepdims=True)
    rx, ry = (weighted_ranks(v, weights) for v in (x, y))
    rx = rx - (weights * rx).sum(1, keepdims=True) / total
    ry = ry - (weights * ry).sum(1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights * rx * ry).sum(1) / np.sqrt((weights * rx * rx).sum(1) * (weights * ry * ry).sum(1))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two length-`n` arrays (NaN if either is constant)."""
    return float(spearman_weighted(x, y, np.ones((1, len(x))))[0])
