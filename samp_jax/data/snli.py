"""SNLI sentence pairs: loading, deterministic splits and evaluation helpers.

The data is the `snli` asset (see `samp_jax.core.assets`): the full SNLI 1.0 test file and a
100,000-pair subset of the training file. The training subset is split into disjoint
`train` / `calibration` / `search` parts; the test file is held out and never used for
calibration or precision search.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
from collections.abc import Sequence
from typing import Literal

import numpy as np

from samp_jax.core.assets import fetch

LABELS = ("entailment", "neutral", "contradiction")
"""Label names; a `PairExample.label` is an index into this tuple."""

_FILES = {"test": "snli_1.0_test.jsonl", "train_subset": "snli_1.0_train_subset.jsonl"}
_LABEL_IDS = {name: i for i, name in enumerate(LABELS)}
_ENTAILMENT, _CONTRADICTION = _LABEL_IDS["entailment"], _LABEL_IDS["contradiction"]


@dataclasses.dataclass(frozen=True)
class PairExample:
    """One labelled premise/hypothesis pair.

    Attributes:
      premise: SNLI `sentence1`, surrounding whitespace stripped.
      hypothesis: SNLI `sentence2`, surrounding whitespace stripped.
      label: index into `LABELS`.
      pair_id: SNLI `pairID`.
    """

    premise: str
    hypothesis: str
    label: int
    pair_id: str


@dataclasses.dataclass(frozen=True)
class SNLISplits:
    """Disjoint parts of the SNLI training subset, plus the held-out test file.

    Attributes:
      train: for fine-tuning (everything not in `calibration` or `search`).
      calibration: for quantization calibration.
      search: for the precision-map search.
      test: the whole test file (minus unlabelled pairs); never used for calibration or search.
      dropped_overlap: training pairs dropped because their text pair also occurs in `test`.
      dropped_duplicates: training pairs dropped because their text pair occurred earlier
        in the training file (keeps the parts disjoint by text).
    """

    train: tuple[PairExample, ...]
    calibration: tuple[PairExample, ...]
    search: tuple[PairExample, ...]
    test: tuple[PairExample, ...]
    dropped_overlap: int
    dropped_duplicates: int


def load_snli_file(which: Literal["test", "train_subset"]) -> list[PairExample]:
    """Reads one SNLI file, dropping pairs without a gold label ("-"), in file order.

    The file is parsed once per process; each call returns a fresh list.

    Raises:
      ValueError: `which` is not one of "test", "train_subset".
    """
    return list(_load(which))


def snli_splits(seed: int = 0, calibration_size: int = 1024, search_size: int = 2000) -> SNLISplits:
    """Splits the SNLI training subset deterministically into train / calibration / search.

    Training pairs whose (premise, hypothesis) text also occurs in the test file, or occurred
    earlier in the training file, are dropped first (text compared case- and
    whitespace-insensitively). The remaining indices are shuffled with
    `np.random.default_rng(seed)`: the first `calibration_size` are `calibration`, the next
    `search_size` are `search` and the rest are `train`. Results are cached per arguments.

    Raises:
      ValueError: a size is not positive, or the sizes leave no pairs for `train`.
    """
    return _splits(operator.index(seed), operator.index(calibration_size),
                   operator.index(search_size))


def embedding_eval_pairs(examples: Sequence[PairExample], *, max_pairs: int | None = None,
                         seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    """Binary pairs for zero-shot bi-encoder evaluation.

    Keeps entailment pairs (label 1) and contradiction pairs (label 0); neutral pairs are
    dropped. With `max_pairs`, a seeded class-balanced subsample is taken (`max_pairs // 2`
    positives, the rest negatives), kept in input order.

    Returns:
      (premises, hypotheses, labels) with `labels` an int32 array of 0/1.

    Raises:
      ValueError: `max_pairs` is not positive or exceeds what either class can supply.
    """
    positives = [i for i, ex in enumerate(examples) if ex.label == _ENTAILMENT]
    negatives = [i for i, ex in enumerate(examples) if ex.label == _CONTRADICTION]
    if max_pairs is None:
        chosen = sorted(positives + negatives)
    else:
        n_pos = max_pairs // 2
        n_neg = max_pairs - n_pos
        if max_pairs <= 0 or n_pos > len(positives) or n_neg > len(negatives):
            raise ValueError(f"{max_pairs=} must be positive and need at most {len(positives)} "
                             f"positives and {len(negatives)} negatives (needs {n_pos} and {n_neg})")
        rng = np.random.default_rng(seed)
        chosen = sorted([*rng.choice(positives, n_pos, replace=False).tolist(),
                         *rng.choice(negatives, n_neg, replace=False).tolist()])
    picked = [examples[i] for i in chosen]
    labels = np.array([ex.label == _ENTAILMENT for ex in picked], dtype=np.int32)
    return [ex.premise for ex in picked], [ex.hypothesis for ex in picked], labels


def unique_sentences(examples: Sequence[PairExample]) -> list[str]:
    """Premises and hypotheses of `examples`, de-duplicated, in first-seen order."""
    return list(dict.fromkeys(s for ex in examples for s in (ex.premise, ex.hypothesis)))


def _text_key(ex: PairExample) -> tuple[str, str]:
    return " ".join(ex.premise.casefold().split()), " ".join(ex.hypothesis.casefold().split())


@functools.lru_cache(maxsize=None)
def _load(which: str) -> tuple[PairExample, ...]:
    if which not in _FILES:
        raise ValueError(f"{which=} is not one of {sorted(_FILES)}")
    examples = []
    with open(fetch("snli") / _FILES[which], encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["gold_label"] == "-":
                continue
            examples.append(PairExample(premise=row["sentence1"].strip(),
                                        hypothesis=row["sentence2"].strip(),
                                        label=_LABEL_IDS[row["gold_label"]], pair_id=row["pairID"]))
    return tuple(examples)


@functools.lru_cache(maxsize=None)
def _splits(seed: int, calibration_size: int, search_size: int) -> SNLISplits:
    if calibration_size <= 0 or search_size <= 0:
        raise ValueError(f"{calibration_size=} and {search_size=} must be positive")
    test = _load("test")
    test_keys = {_text_key(ex) for ex in test}
    seen: set[tuple[str, str]] = set()
    pool, dropped_overlap, dropped_duplicates = [], 0, 0
    for ex in _load("train_subset"):
        key = _text_key(ex)
        if key in test_keys:
            dropped_overlap += 1
        elif key in seen:
            dropped_duplicates += 1
        else:
            seen.add(key)
            pool.append(ex)
    if calibration_size + search_size >= len(pool):
        raise ValueError(f"{calibration_size=} + {search_size=} must be below the {len(pool)} "
                         "usable training pairs (train would be empty)")
    order = np.random.default_rng(seed).permutation(len(pool))
    shuffled = tuple(pool[i] for i in order)
    end_search = calibration_size + search_size
    return SNLISplits(train=shuffled[end_search:], calibration=shuffled[:calibration_size],
                      search=shuffled[calibration_size:end_search], test=test,
                      dropped_overlap=dropped_overlap, dropped_duplicates=dropped_duplicates)
