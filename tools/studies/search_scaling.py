"""How search time grows with the number of layers (and so of GEMM sites), on this device.

Builds MiniLM truncated to its first k layers (real weights), runs the zero-shot SNLI search at
1% on a fixed set of pairs, and records time, maps evaluated and compilations.

Usage: .venv/bin/python tools/studies/search_scaling.py [--layers 2 4 6] [--pairs 200]
Writes docs/results/search_scaling.json.
"""

import argparse
import json
import time
from pathlib import Path

from flax import nnx

from calibrate import calibrate
from samp_jax.serving.timing import device_description, keep_cpu_buffers_for_timing
from calibrate.search.objectives import task_objective
from calibrate.search.driver import search
from samp_jax import EncoderModel, SentenceEmbedder, Tokenizer, load_pretrained, minilm_path
from samp_jax.tasks import get_task


def truncated(model, layers: int):
    config = model.config.replace(num_layers=layers)
    small = EncoderModel(config, SentenceEmbedder(), rngs=nnx.Rngs(0))
    small.embeddings = model.embeddings
    small.encoder.layers = nnx.List(list(model.encoder.layers)[:layers])
    return small


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4, 6])
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    keep_cpu_buffers_for_timing("search_scaling")  # as the samp-jax command serves and measures
    path = minilm_path()
    full, tokenizer = load_pretrained(path), Tokenizer.from_pretrained(path)
    task = get_task("snli-embed")
    batches = task.calibration_batches(tokenizer, max_examples=256)
    rows = []
    for layers in args.layers:
        model = truncated(full, layers)
        cal = calibrate(model, batches, "percentile")
        objective = task_objective(model, task, tokenizer, max_examples=args.pairs)
        start = time.perf_counter()
        result = search(model, objective, calibration=cal, tolerance=0.01, target="h100",
                        progress=False)
        seconds = time.perf_counter() - start
        greedy = sum(e.kind == "greedy" for e in result.evaluated)
        rows.append({"layers": layers, "sites": 4 * layers, "seconds": seconds,
                     "maps_evaluated": len(result.evaluated), "sensitivity_maps": len(result.sensitivity),
                     "greedy_maps": greedy, "compilations": result.compilations,
                     "batches": len(objective.batches), "int8_flop_fraction": result.chosen.int8_fraction})
        print(json.dumps(rows[-1]), flush=True)
    out = {"command": "python tools/studies/search_scaling.py " + " ".join(
        ["--layers", *map(str, args.layers), "--pairs", str(args.pairs)]),
        "device": device_description(), "rows": rows}
    Path("docs/results/search_scaling.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
