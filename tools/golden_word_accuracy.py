"""Golden word accuracy, from scikit-learn (golden venv):

    .golden-venv/bin/python tools/golden_word_accuracy.py --out tests/golden/word_accuracy.json

`sentences`: random sentences of 1 to 14 words, each word's gold and predicted part-of-speech
tag (UPOS names); a gold tag of null is a word that is not scored (its tag ignored), and one
sentence has none scored. `accuracy` is scikit-learn's `accuracy_score` of the scored words'
tags, flattened over the sentences; each of `resamples` repeats each sentence `weights[i]`
times (a bootstrap resample) and gives `accuracy_score` of those sentences' words.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score

UPOS = ["ADJ", "ADP", "ADV", "DET", "NOUN", "PRON", "PUNCT", "VERB"]
SENTENCES = 40
RESAMPLES = 6


def flat(sentences: list[dict], weights: list[int]) -> tuple[list[str], list[str]]:
    """The scored words' gold and predicted tags of each sentence repeated `weights` times."""
    gold, predicted = [], []
    for sentence, weight in zip(sentences, weights):
        for _ in range(weight):
            for g, p in zip(sentence["gold"], sentence["predicted"]):
                if g is not None:
                    gold.append(g)
                    predicted.append(p)
    return gold, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(11)
    sentences = []
    for n in range(SENTENCES):
        words = int(rng.integers(1, 15))
        gold = [str(t) for t in rng.choice(UPOS, words)]
        predicted = [g if rng.random() < 0.7 else str(rng.choice(UPOS)) for g in gold]
        ignored = rng.random(words) < (1.0 if n == 7 else 0.15)
        sentences.append({"gold": [None if i else g for g, i in zip(gold, ignored)],
                          "predicted": predicted})
    resamples = []
    for _ in range(RESAMPLES):
        weights = np.bincount(rng.integers(0, SENTENCES, SENTENCES), minlength=SENTENCES)
        resamples.append({"weights": weights.tolist(),
                          "accuracy": float(accuracy_score(*flat(sentences, weights.tolist())))})
    out = {"generator": "tools/golden_word_accuracy.py",
           "sklearn": importlib.metadata.version("scikit-learn"), "labels": UPOS,
           "sentences": sentences,
           "accuracy": float(accuracy_score(*flat(sentences, [1] * SENTENCES))),
           "resamples": resamples}
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
