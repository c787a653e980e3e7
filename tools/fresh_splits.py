"""The search's defaults on data the design never saw: fresh seeded splits, fresh test rows.

For each seed, this writes the seed's split files (JSONL) and runs the unchanged CLI on them
as a user would: `samp-jax finetune` (for a task that needs a fine-tuned model) and then
`samp-jax search` with every search default (strategy, margins, clip choice; `--target auto`,
tolerance 1%). The test rows of the seeds are disjoint from each other and from every row that
scored a design decision: for a built-in task, its seed-0 dev, calibration, search and test
splits (the published tables and every method choice used those); for a data set the project
never used, there were none.

Studies (`STUDIES`, one entry each):
  snli-embed  zero-shot MiniLM bi-encoder, entailment against contradiction (ROC-AUC); no
              fine-tune, fresh test pairs from the SNLI test file outside the published subset
  polarity    movie-review sentiment, MiniLM fine-tuned per seed (accuracy)
  wnut16      Twitter NER, MiniLM fine-tuned per seed (entity F1)
  snli        3-class NLI cross-encoder, MiniLM fine-tuned per seed (accuracy)
  amazon      Amazon product-review snippet sentiment from the same archive as polarity, a data
              set not otherwise used by the project, MiniLM fine-tuned per seed (accuracy)

Usage:
    python tools/fresh_splits.py --study polarity --seeds 1 2 3 --out /tmp/fresh \
        [--record docs/results/fresh_splits_polarity.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Hashable, Sequence

import numpy as np

from samp_jax.app.search_command import TOLERANCE_NOT_MET
from samp_jax.core.provenance import provenance
from samp_jax.data import POLARITY_LABELS, load_snippets
from samp_jax.serving.timing import device_description
from samp_jax.tasks import get_task

TOLERANCE = "1%"
BLOCK_SEED = 20261204  # orders the fresh pool before it is cut into the seeds' test blocks
PUBLISHED_EMBED_TEST = 2000  # the published snli-embed tables score this seeded test subset


def _text_key(example: dict) -> Hashable:
    return example["text"]


def _pair_key(example: dict) -> Hashable:
    return example["text"], example["text_pair"]


def _tokens_key(example: dict) -> Hashable:
    return tuple(example["tokens"])


@dataclasses.dataclass(frozen=True)
class Study:
    """One data set of the check.

    Attributes:
      name: the study's name (`--study`).
      description: one line for the record.
      key: an example's identity; examples with equal keys are one row.
      pools: `() -> (fresh, rest)`: the rows a test block may take (none of them scored a
        design decision), and the rows the other splits are drawn from.
      sizes: rows per split: test (per seed), search, calibration, dev, train (None: the rest).
      finetune: extra `samp-jax finetune` arguments; None: the packaged model is used as it is.
      search: extra `samp-jax search` arguments.
      carve: `(study, seed, rest, test) -> splits`; the default shuffles `rest` by the seed.
    """

    name: str
    description: str
    key: Callable[[dict], Hashable]
    pools: Callable[[], tuple[list[dict], list[dict]]]
    sizes: dict[str, int | None]
    finetune: tuple[str, ...] | None = ()
    search: tuple[str, ...] = ()
    carve: Callable | None = None


def _named(task, example: dict) -> dict:
    """An example as written to a file: class and tag ids as their names."""
    if "tags" in example:
        return {"tokens": list(example["tokens"]), "tags": [task.labels[t] for t in example["tags"]]}
    out = {k: v for k, v in example.items() if k in ("text", "text_pair")}
    out["label"] = task.labels[example["label"]]
    return out


def _task_pools(name: str) -> Callable[[], tuple[list[dict], list[dict]]]:
    """Fresh rows: the seed-0 train split (it only trained the published model, it scored no
    decision). Other splits: every row of the task."""
    def pools():
        task = get_task(name, seed=0)
        every = [_named(task, e) for split in ("train", "dev", "calibration", "search", "test")
                 for e in task.split(split)]
        return [_named(task, e) for e in task.split("train")], every
    return pools


def _amazon_pools() -> tuple[list[dict], list[dict]]:
    rows = list({e.text: {"text": e.text, "label": POLARITY_LABELS[e.label]}
                 for e in load_snippets("amazon_reviews")}.values())
    return rows, rows


def _snli_embed_pools() -> tuple[list[dict], list[dict]]:
    task = get_task("snli-embed", seed=0)
    published = {_pair_key(e) for e in task.examples("test", max_examples=PUBLISHED_EMBED_TEST)}
    return [dict(e) for e in task.split("test") if _pair_key(e) not in published], []


def _snli_embed_carve(study: Study, seed: int, rest: list[dict], test: list[dict]) -> dict:
    """The seed's balanced search subset and the calibration pairs of the registered task."""
    task = get_task("snli-embed", seed=seed)
    keys = {_pair_key(e) for e in test}
    search = [e for e in task.examples("search", max_examples=study.sizes["search"], seed=seed)
              if _pair_key(e) not in keys]
    calibration = [e for e in task.split("calibration") if e["label"] in (0, 1)
                   and _pair_key(e) not in keys][:study.sizes["calibration"]]
    return {"calibration": calibration, "search": search, "test": test}


STUDIES = {study.name: study for study in (
    Study("snli-embed", "SNLI entailment vs contradiction, zero-shot MiniLM bi-encoder (ROC-AUC)",
          _pair_key, _snli_embed_pools, {"test": 1500, "search": 256, "calibration": 512},
          finetune=None, search=("--task-type", "embedding_pairs"), carve=_snli_embed_carve),
    Study("polarity", "movie-review sentiment, MiniLM fine-tuned per seed (accuracy)",
          _text_key, _task_pools("polarity"),
          {"test": 1000, "search": 500, "calibration": 256, "dev": 300, "train": 3000}),
    Study("wnut16", "WNUT-16 Twitter NER, MiniLM fine-tuned per seed (entity F1)",
          _tokens_key, _task_pools("wnut16"),
          {"test": 300, "search": 250, "calibration": 200, "dev": 200, "train": None},
          finetune=("--learning-rate", "3e-4", "--epochs", "6")),
    Study("snli", "SNLI 3-class NLI cross-encoder, MiniLM fine-tuned per seed (accuracy)",
          _pair_key, _task_pools("snli"),
          {"test": 1000, "search": 400, "calibration": 256, "dev": 400, "train": 4000}),
    Study("amazon", "Amazon product-review snippet sentiment (vaderSentiment archive; a data set "
          "the project does not otherwise use), MiniLM fine-tuned per seed (accuracy)",
          _text_key, _amazon_pools,
          {"test": 500, "search": 400, "calibration": 256, "dev": 300, "train": None}),
)}


def test_blocks(study: Study, fresh: Sequence[dict], count: int) -> list[list[dict]]:
    """`count` disjoint test blocks of `study.sizes['test']` rows from the fresh pool."""
    unique = list({study.key(e): e for e in fresh}.values())
    size = study.sizes["test"]
    if count * size > len(unique):
        raise SystemExit(f"{study.name}: {count} test blocks of {size} need {count * size} "
                         f"fresh rows; there are {len(unique)}")
    order = np.random.default_rng(BLOCK_SEED).permutation(len(unique))
    return [[unique[i] for i in order[k * size:(k + 1) * size]] for k in range(count)]


def carve(study: Study, seed: int, rest: Sequence[dict], test: list[dict]) -> dict[str, list]:
    """The seed's splits: `test`, then calibration, search, dev and train shuffled from the rows
    of `rest` that are not test rows of this seed."""
    if study.carve is not None:
        return study.carve(study, seed, rest, test)
    keys = {study.key(e) for e in test}
    unique = list({study.key(e): e for e in rest if study.key(e) not in keys}.values())
    order = np.random.default_rng(seed).permutation(len(unique))
    shuffled = [unique[i] for i in order]
    splits, start = {"test": test}, 0
    for name in ("calibration", "search", "dev", "train"):
        size = study.sizes[name]
        end = len(shuffled) if size is None else start + size
        if end > len(shuffled) or end <= start:
            raise SystemExit(f"{study.name}: {name} needs {size} rows; {len(shuffled) - start} left")
        splits[name], start = shuffled[start:end], end
    return splits


def _run(command: list[str], what: str) -> dict:
    """The JSON a command prints; a search whose tolerance no map met (exit code 3) is a
    result to record (its summary says `tolerance_met: false`), any other failure ends the run."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, TOLERANCE_NOT_MET):
        raise SystemExit(f"{what}: {shlex.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def run_seed(study: Study, seed: int, splits: dict[str, list], out: Path) -> dict:
    """Writes the seed's split files, fine-tunes (if the study does) and searches through the
    CLI; returns the seed's row."""
    folder = out / study.name / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with (folder / f"{name}.jsonl").open("w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    start = time.perf_counter()
    row = {"seed": seed, **{f"{name}_rows": len(rows) for name, rows in splits.items()}}
    model = "minilm"
    if study.finetune is not None:
        model = str(folder / "model")
        tuned = _run(["samp-jax", "finetune", "--model", "minilm",
                      "--split-file", f"train={folder / 'train.jsonl'}",
                      "--split-file", f"dev={folder / 'dev.jsonl'}", *study.finetune,
                      "--seed", str(seed), "--out", model, "--json"], f"seed {seed} finetune")
        row["finetune"] = {k: tuned[k] for k in ("dev_metric", "steps", "seconds", "learned")}
    summary = _run(["samp-jax", "search", "--model", model, *study.search,
                    *[arg for name in ("calibration", "search", "test")
                      for arg in ("--split-file", f"{name}={folder / (name + '.jsonl')}")],
                    "--tolerance", TOLERANCE, "--target", "auto", "--out", str(folder / "search"),
                    "--json"], f"seed {seed} search")
    test_figures = summary["test"]
    row.update({"metric": summary.get("metric"), "fp32_test": test_figures["fp32"],
                "chosen_test": test_figures["chosen"],
                "test_relative_change": test_figures["chosen_relative_change"],
                "int8_flop_fraction": summary["int8_flop_fraction"],
                "search_seconds": summary["search_seconds"],
                "search_warnings": summary.get("warnings", []),  # as its report.md lists them
                "default_option": summary["default_option"],
                "kept_default": _kept_default(folder / "search" / "precision_map.json",
                                              summary["default_option"]),
                "wall_seconds": time.perf_counter() - start})
    return row


def _kept_default(map_file: Path, default_option: str) -> bool:
    """Whether the search's map runs every GEMM site at its default option and names no
    attention precision (nothing moved)."""
    from samp_jax.core.precision import PrecisionMap
    chosen = PrecisionMap.from_json(map_file)
    return not chosen.sets_attention and all(str(p) == default_option for _, p in chosen.items())


def summarize(study: Study, rows: list[dict], args: argparse.Namespace) -> dict:
    """The study's record: provenance, every seed's row and the spread of the test change over
    the seeds whose fine-tune learned (a model at chance has no relative change to judge)."""
    changes = [r["test_relative_change"] for r in rows if r["test_relative_change"] is not None]
    if not changes:  # every fine-tune so far is at chance: no search to judge yet
        changes = [float("nan")]
    return {"provenance": provenance("python tools/fresh_splits.py " + shlex.join(sys.argv[1:]),
                                     device_description()),
            "study": study.name, "description": study.description, "tolerance": 0.01,
            "sizes": study.sizes, "finetune_arguments": study.finetune,
            "seeds_requested": args.seeds, "rows": rows,
            "seeds_not_learned": [r["seed"] for r in rows if r["test_relative_change"] is None],
            "test_relative_change": {"mean": statistics.fmean(changes), "min": min(changes),
                                     "max": max(changes),
                                     "stdev": statistics.stdev(changes) if len(changes) > 1 else 0.0}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=sorted(STUDIES), default="snli-embed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--record", type=Path, help="write the result JSON here")
    args = parser.parse_args()
    study = STUDIES[args.study]
    fresh, rest = study.pools()
    blocks = test_blocks(study, fresh, len(args.seeds))
    rows = []
    for seed, block in zip(args.seeds, blocks):
        rows.append(run_seed(study, seed, carve(study, seed, rest, block), args.out))
        print(json.dumps(rows[-1]), flush=True)
        record = summarize(study, rows, args)  # after every seed: an interrupted study keeps its rows
        if args.record:
            args.record.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["test_relative_change"]))


if __name__ == "__main__":
    main()
