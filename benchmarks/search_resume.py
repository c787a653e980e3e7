"""The search's single-site sensitivities run from each move's own layer or with the full
forward: the whole search's seconds, each way, on the packaged MiniLM (zero-shot SNLI).

Usage: PYTHONPATH=. python benchmarks/search_resume.py [--repeats 3] [--examples 32]
       [--shape 8x32] [--calibration auto] [--out FILE]
Each run is a fresh process (its own compilations); the ways take turns, run after run:
- `full`: every sensitivity batch runs the full forward (`resume_pays` answers no);
- `resumed`: every one runs from each move's layer (`resume_pays` answers yes);
- `policy`: as the search ships, `SwitchableModel.resume_pays` decides from the model's timings.
Rows: the search's seconds, its compiled candidate programs, how many sensitivity batches ran
each way, and whether every way measured the same sensitivities (they must, bit for bit).
The latency table is measured once, before the runs, and then read from its cache by each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax

from calibrate import SearchConfig, search
from calibrate.search.candidates import SwitchableModel
from samp_jax.core.atomic import write_text_atomic
from samp_jax.core.provenance import provenance
from samp_jax.serving.timing import device_description
from samp_jax.tasks import get_task
from samp_jax.workflows.pipeline import builtin_model

WAYS = ("full", "resumed", "policy")
ROOT = Path(__file__).resolve().parents[1]


def one_search(way: str, examples: int, batch: int, seq: int, calibration: str) -> dict:
    """Runs the search once in this process, `way` as the module docstring says."""
    if way != "policy":
        SwitchableModel.resume_pays = lambda self, choices, **kw: way == "resumed"
    model, tokenizer, _ = builtin_model("snli-embed")
    config = SearchConfig(tolerance=0.01, target="auto", max_search_examples=examples,
                          progress=False, batch=batch, seq=seq, calibration=calibration)
    began = time.perf_counter()
    result = search(model, get_task("snli-embed"), config, tokenizer=tokenizer)
    return {"way": way, "search_s": time.perf_counter() - began,
            "compilations": result.compilations,
            "sensitivity_batches": {"resumed": result.sensitivity_resumed_batches,
                                    "full_forward": result.sensitivity_full_batches},
            "sensitivity": {key: value["proxy"] for key, value in result.sensitivity.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=32, help="search rows")
    parser.add_argument("--shape", default="8x32", help="the latency table's BATCHxSEQ")
    parser.add_argument("--calibration", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process's way
    args = parser.parse_args(argv)
    batch, seq = (int(v) for v in args.shape.split("x"))
    if args.one:
        print(json.dumps(one_search(args.one, args.examples, batch, seq, args.calibration)))
        return 0

    child = [sys.executable, __file__, "--examples", str(args.examples), "--shape", args.shape,
             "--calibration", args.calibration]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = []
    # the first run measures and caches the latency table; not counted
    subprocess.run([*child, "--one", "policy"], env=env, check=True, capture_output=True)
    for repeat in range(args.repeats):
        for way in WAYS:
            done = subprocess.run([*child, "--one", way], env=env, check=True,
                                  capture_output=True, text=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{way:8s} {runs[-1]['search_s']:7.1f} s  {runs[-1]['sensitivity_batches']}",
                  flush=True)
    same = all(r["sensitivity"] == runs[0]["sensitivity"] for r in runs)
    rows = []
    for way in WAYS:
        mine = [r for r in runs if r["way"] == way]
        seconds = [r["search_s"] for r in mine]
        rows.append({"way": way, "median_search_s": statistics.median(seconds),
                     "min_s": min(seconds), "max_s": max(seconds), "runs": len(seconds),
                     "compilations": sorted({r["compilations"] for r in mine}),
                     "sensitivity_batches": mine[-1]["sensitivity_batches"]})
    document = {"rows": rows, "same_sensitivities": same,
                "settings": {"examples": args.examples, "shape": args.shape,
                             "calibration": args.calibration, "repeats": args.repeats},
                "provenance": provenance(" ".join(["python benchmarks/search_resume.py",
                                                   *(argv if argv is not None else sys.argv[1:])]),
                                         f"{jax.default_backend()} ({device_description()})")}
    for row in rows:
        print(f"{row['way']:8s} median {row['median_search_s']:.1f} s "
              f"({row['min_s']:.1f}-{row['max_s']:.1f}), compilations {row['compilations']}")
    print("same sensitivities every way:", same)
    if args.out is not None:
        write_text_atomic(args.out, json.dumps(document, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
