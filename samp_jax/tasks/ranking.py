"""Ranking quality per query: the values of MRR@k, NDCG@k, average precision and recall@k of
each query's rows, ranked by a model's scores, as trec_eval defines them.

Rows come in groups, one per query: each row is one (query, passage) pair with a score (the
model's) and a relevance (the gold: 0 is not relevant, 1, 2, ... are more and more relevant).
A query's rows are ranked by descending score, and each measure gives the query one value in
[0, 1]; the task metric is their mean over the queries (`samp_jax.tasks.metrics`).

- relevant: a relevance of 1 or more (trec_eval's default `relevance_level`);
- `mrr@k`: 1 / the rank of the first relevant row, 0 when none is among the first k
  (trec_eval's `recip_rank` of the first k rows, ir_measures' `RR@k`);
- `ndcg@k`: DCG of the first k rows, the gain of a row its relevance (linear, as trec_eval's
  `ndcg_cut` and scikit-learn's `ndcg_score` take it; not `2^rel - 1`), discounted by
  `1 / log2(rank + 1)`, over the DCG of the rows in the best order;
- `map`: average precision over the whole ranking (trec_eval's `map`): the mean, over the
  query's relevant rows, of the precision at each one's rank;
- `recall@k`: the share of the query's relevant rows among the first k (trec_eval's
  `recall_k`).

Queries without a relevant row score 0 by every measure and count in the mean, as trec_eval
scores a query judged without any relevant document (and scikit-learn's `ndcg_score` a row of
zeros). Rows of equal score are ranked in every order they can take, equally likely, and a
query's value is its expectation over those orders: scikit-learn's `ndcg_score`
(`ignore_ties=False`, McSherry and Najork 2008) does this for NDCG, and it is trec_eval's
value averaged over every way of breaking the ties. trec_eval itself breaks ties by document
name, so a model whose scores all tie would score by the order of the file; here it scores as
a random ranking does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

RELEVANT = 1  # the smallest relevance that counts as relevant


def ranking_gold(examples: Sequence[dict]) -> np.ndarray:
    """`[n, 2]` float64: each example's query (an index, by first appearance of its `group`,
    else of its `text`) and its `relevance`."""
    index: dict = {}
    queries = [index.setdefault(e.get("group", e["text"]), len(index)) for e in examples]
    return np.column_stack([np.asarray(queries, np.float64),
                            np.asarray([e["relevance"] for e in examples], np.float64)]) \
        if examples else np.zeros((0, 2))


class _Ranked:
    """The rows sorted by query, then by descending score, with each run of equal scores of a
    query (a tie block) described by where it starts in its query's ranking (`before`: rows
    ranked above it), its size, and what it holds."""

    def __init__(self, scores: np.ndarray, relevance: np.ndarray, queries: np.ndarray):
        _, query = np.unique(queries, return_inverse=True)
        self.count = int(query.max()) + 1 if len(query) else 0
        order = np.lexsort((-scores, query))
        self.query, self.score, self.rel = query[order], scores[order], relevance[order]
        n = len(order)
        starts_query = np.r_[True, self.query[1:] != self.query[:-1]] if n else np.zeros(0, bool)
        starts_block = starts_query | np.r_[True, self.score[1:] != self.score[:-1]] if n else starts_query
        first_of_query = np.maximum.accumulate(np.where(starts_query, np.arange(n), 0))
        self.position = np.arange(n) - first_of_query  # 0-based rank within the query
        block = np.cumsum(starts_block) - 1
        first_of_block = np.flatnonzero(starts_block)
        size = np.diff(np.r_[first_of_block, n])
        relevant = (self.rel >= RELEVANT).astype(np.float64)
        in_block = np.add.reduceat(relevant, first_of_block) if n else np.zeros(0)
        # relevant rows of the query ranked above each block
        cumulative = np.cumsum(in_block) - in_block
        query_start = np.maximum.accumulate(np.where(starts_query[first_of_block],
                                                     np.arange(len(first_of_block)), 0))
        above = cumulative - cumulative[query_start]
        self.before = self.position[first_of_block][block]  # per row: rows above its block
        self.size = size[block]
        self.block_relevant = in_block[block]
        self.relevant_above = above[block]
        self.relevant = relevant
        self.first_of_block = starts_block

    def per_query(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.query, weights=values, minlength=self.count)

    @property
    def relevant_rows(self) -> np.ndarray:
        """`[queries]` relevant rows of each query."""
        return self.per_query(self.relevant)


def _ranked(scores, relevance, queries) -> _Ranked | None:
    scores = np.asarray(scores, np.float64)
    if np.isnan(scores).any():
        return None
    return _Ranked(scores, np.asarray(relevance, np.float64), np.asarray(queries))


def _of(ranked: _Ranked | None, queries, values) -> np.ndarray:
    if ranked is None:  # no ranking can be read from NaN scores
        return np.full(len(np.unique(np.asarray(queries))), np.nan)
    return values(ranked)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """`numerator / denominator`, 0 where the denominator is 0 (a query without relevant rows)."""
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)


def _cumulative_discount(length: int, k: int | None) -> np.ndarray:
    """`D[p]`: the summed discounts `1 / log2(rank + 1)` of ranks 1..p, none past `k`."""
    ranks = np.arange(1, length + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    if k is not None:
        discount[k:] = 0.0
    return np.r_[0.0, np.cumsum(discount)]


def ndcg(scores, relevance, queries, k: int | None = 10) -> np.ndarray:
    """`[queries]` NDCG@k (all rows: `k=None`) of each query, ties in expectation."""
    def values(r: _Ranked) -> np.ndarray:
        longest = int(r.position.max()) + 1 if len(r.position) else 0
        cum = _cumulative_discount(longest, k)
        discount = (cum[r.before + r.size] - cum[r.before]) / r.size  # mean over the block
        dcg = r.per_query(r.rel * discount)
        ideal = np.lexsort((-r.rel, r.query))  # within each query, by descending relevance
        positions = r.position  # the same ranks, now of the ideal order
        ideal_discount = np.diff(cum)[positions]
        idcg = r.per_query(r.rel[ideal] * ideal_discount)
        return _divide(dcg, idcg)
    ranked = _ranked(scores, relevance, queries)
    return _of(ranked, queries, values)


def recall(scores, relevance, queries, k: int = 10) -> np.ndarray:
    """`[queries]` recall@k: the expected share of a query's relevant rows in its first k."""
    def values(r: _Ranked) -> np.ndarray:
        inside = np.clip(k - r.before, 0, r.size) / r.size  # share of the block's places <= k
        return _divide(r.per_query(r.relevant * inside), r.relevant_rows)
    return _of(_ranked(scores, relevance, queries), queries, values)


def average_precision(scores, relevance, queries) -> np.ndarray:
    """`[queries]` average precision over each query's whole ranking, ties in expectation.

    A relevant row of a tie block of `g` rows, `r` of them relevant, that has `b` rows and `a`
    relevant rows above it, takes each of the block's places `j` alike; at place `j` the
    expected relevant rows of the block above it are `(j - 1)(r - 1)/(g - 1)`, so its expected
    precision is the mean over `j` of `(a + 1 + (j - 1)(r - 1)/(g - 1)) / (b + j)`, a sum of
    harmonic numbers.
    """
    def values(r: _Ranked) -> np.ndarray:
        longest = int(r.position.max()) + 1 if len(r.position) else 0
        harmonic = np.r_[0.0, np.cumsum(1.0 / np.arange(1, longest + 1, dtype=np.float64))]
        g, b = r.size.astype(np.float64), r.before
        c = np.where(g > 1, (r.block_relevant - 1.0) / np.maximum(g - 1.0, 1.0), 0.0)
        a = r.relevant_above + 1.0
        precision = ((a - c * (b + 1.0)) * (harmonic[b + r.size] - harmonic[b]) + c * g) / g
        return _divide(r.per_query(r.relevant * precision), r.relevant_rows)
    return _of(_ranked(scores, relevance, queries), queries, values)


def reciprocal_rank(scores, relevance, queries, k: int = 10) -> np.ndarray:
    """`[queries]` the expected 1 / rank of each query's first relevant row, 0 past rank `k`.

    In the first tie block that holds relevant rows (`g` rows, `r` relevant, `b` above it),
    the first relevant row is at the block's place `j` with probability `S(j-1) - S(j)`, where
    `S(j) = prod_{i<j} (g - r - i) / (g - i)` is the chance that the first `j` places hold none.
    """
    def values(r: _Ranked) -> np.ndarray:
        out = np.zeros(r.count)
        first = r.first_of_block & (r.block_relevant > 0)
        rows = np.flatnonzero(first)
        if not len(rows):
            return out
        query = r.query[rows]
        keep = np.r_[True, query[1:] != query[:-1]]  # the first such block of each query
        rows, query = rows[keep], query[keep]
        g = r.size[rows].astype(np.float64)[:, None]
        rel = r.block_relevant[rows][:, None]
        b = r.before[rows].astype(np.float64)[:, None]
        i = np.arange(k, dtype=np.float64)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(g - i > 0, np.maximum(g - rel - i, 0.0) / (g - i), 0.0)
        none_yet = np.concatenate([np.ones((len(rows), 1)), np.cumprod(step, axis=1)], axis=1)
        first_at = none_yet[:, :-1] - none_yet[:, 1:]  # place j = 1..k of the block
        rank = b + i + 1.0
        out[query] = np.sum(np.where(rank <= k, first_at / rank, 0.0), axis=1)
        return out
    return _of(_ranked(scores, relevance, queries), queries, values)
