"""Golden per-query ranking metrics, from trec_eval (pytrec_eval) and scikit-learn (golden venv,
after `pip install pytrec-eval-terrier`):

    .golden-venv/bin/python tools/golden_ranking.py --out tests/golden/ranking_metrics.json

`queries`: random queries of 2 to 14 rows, each with scores that tie often (a few values) and
relevances 0 to 3 (some queries none relevant, some 0/1 only), then a few set ones: every row
tied, none relevant, relevant rows past rank 10, and queries of one row (relevant, graded, not
relevant: trec_eval scores them 1 or 0). Each query's reference values
are trec_eval's averaged over every way of breaking its ties (the tie convention
`samp_jax.tasks.ranking` documents; trec_eval alone breaks ties by document name): each tie
order is one run of distinct scores. `recip_rank@10` is trec_eval's `recip_rank` of the first
10 rows of each run (MRR@10), `ndcg_cut_10`, `map` and `recall_k` its own measures over the
whole run. `sklearn_ndcg_10` is scikit-learn's `ndcg_score(k=10)` of the query's own scores,
ties and all (it averages the gains of tied rows, McSherry and Najork); null for a query of
one row, which scikit-learn refuses ("only meaningful when there is more than 1 document").
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytrec_eval
import sklearn
from sklearn.metrics import ndcg_score

QUERIES = 160
MAX_ORDERS = 720  # tie orders enumerated per query
MEASURES = ("map", "ndcg_cut_10", "recall_1", "recall_5", "recall_10", "recall_100")


def tie_orders(scores: list[float]) -> list[list[int]]:
    """Every ranking of the rows by descending score, ties broken every way."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    blocks = [list(b) for _, b in itertools.groupby(order, key=lambda i: scores[i])]
    return [[i for block in choice for i in block]
            for choice in itertools.product(*(itertools.permutations(b) for b in blocks))]


def averaged(scores: list[float], relevance: list[int]) -> dict[str, float]:
    """trec_eval's measures of one query, averaged over its tie orders."""
    orders = tie_orders(scores)
    qrels, full, top = {}, {}, {}
    for n, order in enumerate(orders):  # one pseudo-query per order: one evaluator call
        q = f"q{n}"
        qrels[q] = {f"d{i}": int(r) for i, r in enumerate(relevance)}
        full[q] = {f"d{i}": float(len(order) - rank) for rank, i in enumerate(order)}
        top[q] = {d: s for d, s in full[q].items() if s > len(order) - 10}
    every = pytrec_eval.RelevanceEvaluator(qrels, set(MEASURES)).evaluate(full)
    first = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top)
    out = {m: float(np.mean([every[q][m] for q in every])) for m in MEASURES}
    out["recip_rank@10"] = float(np.mean([first[q]["recip_rank"] for q in first]))
    return out


def random_query(rng: np.random.Generator) -> tuple[list[float], list[int]]:
    while True:
        n = int(rng.integers(2, 15))
        scores = rng.integers(0, int(rng.integers(2, 9)), n) / 4.0  # a few values: ties
        kind = rng.random()
        relevance = (np.zeros(n, int) if kind < 0.15 else
                     (rng.random(n) < 0.3).astype(int) if kind < 0.55 else
                     rng.integers(0, 4, n) * (rng.random(n) < 0.5))
        sizes = np.unique(scores, return_counts=True)[1]
        if math.prod(math.factorial(int(s)) for s in sizes) <= MAX_ORDERS:
            return scores.tolist(), relevance.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    queries = [random_query(rng) for _ in range(QUERIES)]
    queries += [([1.0, 1.0, 1.0, 1.0], [0, 1, 0, 0]),            # every row tied
                ([3.0, 2.0, 1.0], [0, 0, 0]),                    # none relevant
                ([float(s) for s in range(13, 0, -1)], [0] * 11 + [2, 1]),  # past rank 10
                ([9.0, 8, 7, 6, 5, 4, 3, 2, 1, 1, 1, 0.5], [0] * 9 + [1, 0, 1]),  # a tie at 10
                ([0.5], [1]), ([0.25], [3]), ([0.75], [0])]     # one row: relevant or not
    rows = []
    for scores, relevance in queries:
        ndcg = float(ndcg_score([relevance], [scores], k=10)) if len(scores) > 1 else None
        rows.append({"scores": scores, "relevance": relevance, **averaged(scores, relevance),
                     "sklearn_ndcg_10": ndcg})
    header = {"generator": "tools/golden_ranking.py",
              "pytrec_eval_terrier": importlib.metadata.version("pytrec-eval-terrier"),
              "sklearn": sklearn.__version__}
    args.out.write_text(json.dumps(header | {"queries": rows}, separators=(",", ":")))


if __name__ == "__main__":
    main()
