"""How often the search's guarded drop accepts a map whose true drop is past the tolerance.

The promise (docs/protocol.md) is a one-sided 95% margin: a map whose drop on unseen rows is
past the tolerance should pass on the search split at most about 5% of the time. A quantized
map changes few rows, so the paired differences are sparse, where a plain standard error (or a
plain bootstrap) under-covers. This simulates search splits of several sizes and counts how
often each margin accepts such a map:

- accuracy: FP32 accuracy 0.90, tolerance 1% relative; each row the FP32 model gets right is
  flipped to wrong so that the true drop is a multiple of the allowed one (1.05x: should fail;
  0.5x: should pass, the power). Margins: the plain paired standard error (Wald) and the
  adjusted bound `samp_jax.tasks.metrics.guarded_difference` uses.
- entity F1: sentences with Poisson(1.5) gold entities, 70% of them found, Poisson(0.4) false
  positives; the candidate loses one found entity per sentence with the probability that makes
  the true F1 drop 1.05x the allowed one. Margins: the paired bootstrap without and with
  `ENTITY_F1.pseudo_rows`.
- macro-F1 over classes (`--metric class_macro_f1`): three classes of 80, 15 and 5% of the
  rows; the candidate turns right answers of the rarest class wrong. Margins: the bootstrap
  without and with `CLASS_MACRO_F1.pseudo_rows` (on the least-supported class).

Usage: .venv/bin/python tools/margin_coverage.py [--draws N] [--out docs/results/margin_coverage.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from calibrate.search.config import allowed_drop
from samp_jax.core.provenance import provenance
from samp_jax.serving.timing import device_description
from samp_jax.tasks.metrics import (ACCURACY, CLASS_MACRO_F1, ENTITY_F1, ROC_AUC, SPEARMAN,
                                     Z_ONE_SIDED_95)

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.01
FP32_ACCURACY = 0.90


def wald_drop(base: np.ndarray, candidate: np.ndarray) -> float:
    """The plain paired drop plus z standard errors of the `n` differences."""
    diff = base - candidate
    return float(diff.mean() + Z_ONE_SIDED_95 * diff.std(ddof=1) / np.sqrt(len(diff)))


def _pass_rates(name: str, sizes, draws: int, draw_pair, margins: dict, allowed: float,
                **fields) -> list[dict]:
    """One row per (true drop / allowed, size): the share of `draws` search splits on which each
    of `margins` (`name -> guarded_drop(base, candidate)`) passes the candidate that
    `draw_pair(n, multiple) -> (base, candidate)` draws."""
    rows = []
    for multiple in (1.05, 0.5):
        for n in sizes:
            accepted = dict.fromkeys(margins, 0)
            for _ in range(draws):
                base, candidate = draw_pair(n, multiple)
                for margin, guarded_drop in margins.items():
                    accepted[margin] += guarded_drop(base, candidate) <= allowed
            rows.append({"metric": name, "rows": n, "true_drop_over_allowed": multiple, **fields,
                         **{k: float(v) / draws for k, v in accepted.items()}})
            print(rows[-1], flush=True)
    return rows


def _plain_and_adjusted(metric) -> dict:
    """The bootstrap margin without the metric's pseudo-rows, and the one the search uses."""
    return {"plain": dataclasses.replace(metric, pseudo_rows=None).guarded_drop,
            "adjusted": metric.guarded_drop}


def accuracy_rows(rng, sizes, draws: int) -> list[dict]:
    allowed = allowed_drop(TOLERANCE, "relative", FP32_ACCURACY)

    def draw_pair(n, multiple):
        flip = allowed * multiple / FP32_ACCURACY  # per right row: true drop = multiple x allowed
        base = (rng.random(n) < FP32_ACCURACY).astype(np.float64)
        return base, np.where((base == 1) & (rng.random(n) < flip), 0.0, base)
    return _pass_rates("accuracy", sizes, draws, draw_pair,
                       {"plain": wald_drop, "adjusted": ACCURACY.guarded_drop}, allowed)


def _sentences(rng, n: int) -> np.ndarray:
    gold = rng.poisson(1.5, n)
    correct = rng.binomial(gold, 0.7)
    predicted = correct + rng.poisson(0.4, n)
    return np.stack([gold, predicted, correct], 1).astype(np.float64)


def _f1(evidence: np.ndarray) -> float:
    return 2 * evidence[:, 2].sum() / (evidence[:, 0].sum() + evidence[:, 1].sum())


def _lose_one(rng, evidence: np.ndarray, probability: float) -> np.ndarray:
    lost = evidence.copy()
    hit = (lost[:, 2] >= 1) & (rng.random(len(lost)) < probability)
    lost[hit, 2] -= 1
    return lost


def entity_rows(rng, sizes, draws: int) -> list[dict]:
    population = _sentences(rng, 2_000_000)
    f1 = _f1(population)
    allowed = allowed_drop(TOLERANCE, "relative", f1)
    # the expected F1 drop is linear in the probability of losing one found entity
    slope = (population[:, 2] >= 1).mean() * 2 / (population[:, 0].mean() + population[:, 1].mean())

    def draw_pair(n, multiple):
        base = _sentences(rng, n)
        return base, _lose_one(rng, base, allowed * multiple / slope)
    return _pass_rates("entity_f1", sizes, draws, draw_pair, _plain_and_adjusted(ENTITY_F1),
                       allowed, fp32=round(float(f1), 4))


PRIORS, RIGHT = np.array([0.80, 0.15, 0.05]), np.array([0.95, 0.75, 0.65])
NAMES = ("a", "b", "c")


def _classes(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    gold = rng.choice(3, n, p=PRIORS)
    right = rng.random(n) < RIGHT[gold]
    return gold, np.where(right, gold, (gold + rng.integers(1, 3, n)) % 3)


def _break_rare(rng, gold, predicted, probability: float) -> np.ndarray:
    """The candidate turns right answers of the rarest class wrong."""
    hit = (predicted == gold) & (gold == 2) & (rng.random(len(gold)) < probability)
    return np.where(hit, 0, predicted)


def class_macro_rows(rng, sizes, draws: int) -> list[dict]:
    """Three classes (80/15/5%); the candidate costs the rarest class, the case a macro-F1 is
    chosen to catch."""
    def macro(gold, predicted):
        return CLASS_MACRO_F1.value(CLASS_MACRO_F1.evidence(predicted, gold, NAMES))
    gold, predicted = _classes(rng, 2_000_000)
    f1 = macro(gold, predicted)
    allowed = allowed_drop(TOLERANCE, "relative", f1)
    slope = (f1 - macro(gold, _break_rare(rng, gold, predicted, 0.02))) / 0.02  # linear in it

    def draw_pair(n, multiple):
        g, p = _classes(rng, n)
        broken = _break_rare(rng, g, p, allowed * multiple / slope)
        return CLASS_MACRO_F1.evidence(p, g, NAMES), CLASS_MACRO_F1.evidence(broken, g, NAMES)
    return _pass_rates("class_macro_f1", sizes, draws, draw_pair,
                       _plain_and_adjusted(CLASS_MACRO_F1), allowed, fp32=round(float(f1), 4))


AUC_SHIFT = 1.8  # positives' scores N(1.8, 1) against negatives' N(0, 1): ROC-AUC about 0.90


def _scored(rng, n: int, prevalence: float) -> tuple[np.ndarray, np.ndarray]:
    gold = (rng.random(n) < prevalence).astype(np.float64)
    return gold, rng.standard_normal(n) + AUC_SHIFT * gold


def roc_auc_rows(rng, sizes, draws: int, prevalence: float) -> list[dict]:
    """Pairs scored by ROC-AUC (about 0.90); the candidate gives a share of the positives a
    score drawn as a negative's (each such positive's share of negatives ranked below it falls
    from its own to 0.5 on average): sparse changes, as a quantized map makes them, whose true
    drop is that share times (AUC - 0.5)."""
    gold, scores = _scored(rng, 2_000_000, prevalence)
    auc = ROC_AUC.value(ROC_AUC.evidence(scores, gold, None))
    allowed = allowed_drop(TOLERANCE, "relative", auc)

    def draw_pair(n, multiple):
        g, base = _scored(rng, n, prevalence)
        moved = (g == 1) & (rng.random(n) < allowed * multiple / (auc - 0.5))
        candidate = np.where(moved, rng.standard_normal(n), base)
        return ROC_AUC.evidence(base, g, None), ROC_AUC.evidence(candidate, g, None)
    return _pass_rates("roc_auc", sizes, draws, draw_pair, _plain_and_adjusted(ROC_AUC), allowed,
                       fp32=round(float(auc), 4), prevalence=prevalence)


def _rated(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    gold = rng.standard_normal(n)
    return gold, gold + 0.5 * rng.standard_normal(n)


def _scramble(rng, scores: np.ndarray, probability: float) -> np.ndarray:
    """A share of the rows get a score drawn afresh from the scores' own spread."""
    hit = rng.random(len(scores)) < probability
    return np.where(hit, rng.standard_normal(len(scores)) * scores.std(), scores)


def spearman_rows(rng, sizes, draws: int) -> list[dict]:
    """Scores rated against gold scores (Spearman about 0.87); the candidate scrambles a share
    of the rows' scores: sparse changes whose true drop is linear in the share."""
    def rho(gold, scores):
        return SPEARMAN.value(SPEARMAN.evidence(scores, gold, None))
    gold, scores = _rated(rng, 200_000)
    value = rho(gold, scores)
    allowed = allowed_drop(TOLERANCE, "relative", value)
    slope = (value - rho(gold, _scramble(rng, scores, 0.02))) / 0.02

    def draw_pair(n, multiple):
        g, base = _rated(rng, n)
        candidate = _scramble(rng, base, allowed * multiple / slope)
        return SPEARMAN.evidence(base, g, None), SPEARMAN.evidence(candidate, g, None)
    return _pass_rates("spearman", sizes, draws, draw_pair, _plain_and_adjusted(SPEARMAN),
                       allowed, fp32=round(float(value), 4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000, help="search splits per cell")
    parser.add_argument("--entity-draws", type=int, default=2000,
                        help="search splits per entity-F1 cell (each bootstraps twice)")
    parser.add_argument("--rank-draws", type=int, default=400,
                        help="search splits per ROC-AUC and Spearman cell")
    parser.add_argument("--only", choices=("accuracy", "entity_f1", "class_macro_f1", "roc_auc",
                                           "spearman"), nargs="*", default=None,
                        help="the metrics to draw (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/margin_coverage.json")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    studies = {
        "accuracy": lambda: accuracy_rows(rng, (200, 400, 1000, 2000, 5000), args.draws),
        "entity_f1": lambda: entity_rows(rng, (200, 400, 1000, 2000), args.entity_draws),
        "class_macro_f1": lambda: class_macro_rows(rng, (400, 1000, 3000), args.entity_draws // 2),
        "roc_auc": lambda: (roc_auc_rows(rng, (200, 500, 1000, 2000), args.rank_draws, 0.5)
                            + roc_auc_rows(rng, (1000, 4000), args.rank_draws, 0.05)),
        "spearman": lambda: spearman_rows(rng, (50, 200, 500, 1000), args.rank_draws)}
    rows = [row for name, study in studies.items() if args.only is None or name in args.only
            for row in study()]
    command = " ".join(["python tools/margin_coverage.py", shlex.join(sys.argv[1:])]).strip()
    record = {"provenance": provenance(command, device_description()),
              "tolerance_relative": TOLERANCE, "fp32_accuracy": FP32_ACCURACY,
              "draws": {"accuracy": args.draws, "entity_f1": args.entity_draws,
                        "class_macro_f1": args.entity_draws // 2, "roc_auc": args.rank_draws,
                        "spearman": args.rank_draws},
              "rows": rows}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
