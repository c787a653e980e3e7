"""A real one-output head through the command line, as a reranker's user would run it.

The fine-tuned polarity MiniLM (`samp_jax.training.finetuned_model("polarity")`, trained on the
seed-0 train split) becomes a one-output scorer the way an HF user would make one: its two
logits are collapsed into one, `positive - negative` (`classifier.weight` and `.bias` rows
subtracted, `num_labels=1`), which ranks rows exactly as the two-logit model's margin does.
Its calibration, search and test rows (the seed-0 splits, none of them trained on) are written
as CSV files with 0/1 labels, and `samp-jax search` runs on them with every default: the task
type is `text_scoring`, scored by ROC-AUC.

Usage: python tools/scorer_check.py --out DIR [--record docs/results/scorer_polarity.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path

from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samp_jax.core.assets import minilm_path
from samp_jax.core.provenance import provenance
from samp_jax.models.checkpoint import save_pretrained
from samp_jax.serving.timing import device_description
from samp_jax.tasks import get_task
from samp_jax.training import finetuned_model
from tools.cli_records import emit, run_json, search_fields  # noqa: E402

SPLITS = ("calibration", "search", "test")


def write_scorer(model, folder: Path, labels: tuple[str, ...]) -> Path:
    """The two-class `model` (its classes `labels`) saved as an HF folder with one output: the
    positive logit minus the negative one."""
    save_pretrained(model, folder, labels=labels, tokenizer_dir=minilm_path())
    weights = load_file(folder / "model.safetensors")
    pos, neg = labels.index("positive"), labels.index("negative")
    for key in ("classifier.weight", "classifier.bias"):
        weights[key] = (weights[key][pos] - weights[key][neg])[None].astype(weights[key].dtype)
    save_file(weights, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    config |= {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}, "num_labels": 1}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder


def write_splits(folder: Path, task) -> dict[str, Path]:
    """Each split as `text,label` CSV rows, label 1 for positive."""
    folder.mkdir(parents=True, exist_ok=True)
    positive = task.labels.index("positive")
    files = {}
    for split in SPLITS:
        files[split] = folder / f"{split}.csv"
        with open(files[split], "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([e["text"], int(e["label"] == positive)] for e in task.split(split))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--record", type=Path, default=None)
    args = parser.parse_args()
    task = get_task("polarity", seed=0)
    model, _, _ = finetuned_model("polarity")
    scorer = write_scorer(model, args.out / "scorer", task.labels)
    files = write_splits(args.out / "data", task)
    command = [sys.executable, "-m", "samp_jax.app", "search", "--model", str(scorer),
               *[a for split, path in files.items() for a in ("--split-file", f"{split}={path}")],
               "--out", str(args.out / "search"), "--json"]
    start = time.perf_counter()
    summary = run_json(command, "the search", tool="scorer_check")
    record = {"provenance": provenance("python tools/scorer_check.py " + shlex.join(sys.argv[1:]),
                                       device_description()),
              "model": "fine-tuned polarity MiniLM, logits collapsed to positive - negative",
              "search_command": shlex.join(["samp-jax", *command[3:]]),
              "rows": {split: len(task.split(split)) for split in SPLITS},
              **search_fields(summary), "wall_seconds": time.perf_counter() - start}
    emit(record, args.record)


if __name__ == "__main__":
    main()
