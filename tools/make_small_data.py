"""Writes small labelled CSV files, as a user with a few hundred rows would bring, from the
packaged data (docs/results/finetune_small_data.md):

    python tools/make_small_data.py OUT_DIR [--rows 480] [--seed 0]

- `reviews2.csv` (text,label): movie-review snippets, negative / positive, balanced;
- `reviews4.csv` (text,label): the same snippets in four classes by their mean human rating
  (very negative <= -1.5 < negative < 0 < positive < 1.5 <= very positive), balanced;
- `snli3.csv` (premise,hypothesis,label): SNLI test pairs, entailment / neutral /
  contradiction, balanced.

Rows are drawn without replacement with `numpy.random.default_rng(seed)`.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from samp_jax.data.polarity import POLARITY_LABELS, load_polarity
from samp_jax.data.snli import LABELS as SNLI_LABELS
from samp_jax.data.snli import load_snli_file

REVIEW4 = ("very negative", "negative", "positive", "very positive")


def _review4(score: float) -> str:
    return REVIEW4[int(np.searchsorted([-1.5, 0.0, 1.5], score, side="right"))]


def _balanced(rows: list[dict], rows_wanted: int, rng: np.random.Generator) -> list[dict]:
    classes = sorted({row["label"] for row in rows})
    per_class = rows_wanted // len(classes)
    chosen = []
    for name in classes:
        members = [row for row in rows if row["label"] == name]
        chosen += [members[i] for i in rng.choice(len(members), per_class, replace=False)]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=480)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    reviews = load_polarity()
    _write(args.out / "reviews2.csv", _balanced(
        [{"text": r.text, "label": POLARITY_LABELS[r.label]} for r in reviews], args.rows, rng))
    _write(args.out / "reviews4.csv", _balanced(
        [{"text": r.text, "label": _review4(r.score)} for r in reviews], args.rows, rng))
    pairs = load_snli_file("test")
    _write(args.out / "snli3.csv", _balanced(
        [{"premise": p.premise, "hypothesis": p.hypothesis, "label": SNLI_LABELS[p.label]}
         for p in pairs], args.rows, rng))


if __name__ == "__main__":
    main()
