"""samp-jax against HF optimum's ONNX Runtime INT8 on this CPU, side by side in one run.

Same model (all-MiniLM-L6-v2), same held-out test batches, same timing batch: ONNX Runtime FP32
and INT8 (`AutoQuantizationConfig.avx512_vnni`, dynamic, weights per channel and per tensor;
run by tools/ort_run.py in .ort-venv), and samp-jax FP32 plus INT8 maps (FP32 between sites, as
the CPU target runs them), each scored on the test split and timed at the serving shape.

Timing interleaves the engines: `--rounds` rounds, each timing every variant in turn (ONNX
Runtime in its own process, which idles meanwhile, and samp-jax here), `--repeats` samples of 5
calls per variant and round. A variant's figure is the median over rounds of its per-round
medians, so a drift of the machine's speed during the run hits every variant alike.

    bash tools/make_ort_venv.sh            # once: .ort-venv with torch, optimum-onnx, onnxruntime
    .venv/bin/python tools/ort_compare.py --max-examples 2000 \
        --map benchmarks/results/search-snli-embed-cpu/knapsack/precision_map.json \
        --out docs/results/ort_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibrate import calibrate  # noqa: E402
from samp_jax.serving.timing import device_description, keep_cpu_buffers_for_timing, time_ms  # noqa: E402
from samp_jax import PrecisionMap, load, minilm_path, quantize  # noqa: E402
from samp_jax.workflows.experiments import make_evaluator, relative_change  # noqa: E402
from samp_jax.serving.forward import jit_forward  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timing_batch(batch: int, seq: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, vocab, (batch, seq)).astype(np.int32)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP], every position a real token
    return {"input_ids": ids, "attention_mask": np.ones((batch, seq), np.int32),
            "token_type_ids": np.zeros((batch, seq), np.int32)}


def reply(worker: subprocess.Popen, wanted) -> str:
    """The next line of the ORT worker's stdout that `wanted` accepts (other output is echoed)."""
    for line in worker.stdout:
        line = line.strip()
        if wanted(line):
            return line
        print(line, flush=True)
    raise SystemExit(f"tools/ort_run.py ended early (exit code {worker.wait()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="snli-embed")
    parser.add_argument("--max-examples", type=int, default=2000)
    parser.add_argument("--map", type=Path, action="append", default=[],
                        help="extra samp-jax precision_map.json to run (e.g. a search's)")
    parser.add_argument("--calibration", default="percentile")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="samples per variant and round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--ort-python", default=str(ROOT / ".ort-venv/bin/python"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--malloc", choices=("keep", "system"), default="keep",
                        help="keep: samp-jax reuses freed host memory, as its CLI serves "
                             "(samp_jax.core.host_memory); system: glibc's default")
    args = parser.parse_args()
    if args.malloc == "keep":
        keep_cpu_buffers_for_timing("ort_compare", required=True)
    start = time.perf_counter()
    path = minilm_path()
    model = load(path)
    tokenizer = model.tokenizer
    evaluator = make_evaluator(args.data, tokenizer, max_examples=args.max_examples)
    batches = evaluator.evaluation.batches
    timing = timing_batch(args.batch, args.seq, model.config.vocab_size)
    calibration = calibrate(model, evaluator.calibration_batches(), args.calibration)
    layers = model.config.num_layers
    maps = {"samp-jax fully_quant (INT8 dynamic)": PrecisionMap.preset("fully_quant", layers),
            "samp-jax fully_quant_static (INT8 static)": PrecisionMap.preset(
                "fully_quant", layers, activation="per_tensor_static")}
    for file in args.map:
        maps[f"samp-jax {file.parent.name} map"] = PrecisionMap.from_json(file)
    variants = {"samp-jax fp32": model} | {
        name: quantize(model, pmap, calibration, dtype=jnp.float32) for name, pmap in maps.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        arrays = {"count": np.int64(len(batches))}
        for b, batch in enumerate(batches):
            arrays.update({f"b{b}_{k}": np.asarray(v) for k, v in batch.items()})
        arrays.update({f"timing_{k}": v for k, v in timing.items()})
        np.savez(tmp / "inputs.npz", **arrays)
        worker = subprocess.Popen(
            [args.ort_python, str(ROOT / "tools/ort_run.py"), "--model", str(path), "--inputs",
             str(tmp / "inputs.npz"), "--out", str(tmp / "ort.npz"), "--work", str(tmp)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        try:
            reply(worker, lambda line: line == "ready")
            ort_info = json.loads((tmp / "ort.json").read_text())
            ort_out = np.load(tmp / "ort.npz")
            for name, info in ort_info["variants"].items():
                outputs = [ort_out[f"{name}/b{b}"] for b in range(len(batches))]
                rows.append({"variant": name, "engine": "onnxruntime " + ort_info["onnxruntime"],
                             "metric": evaluator.score(outputs)["value"]})
            for name, m in variants.items():
                rows.append({"variant": name, "engine": f"jax {jax.__version__} (XLA CPU)",
                             "metric": evaluator.score(evaluator.outputs(m))["value"]})
            forwards = {name: jit_forward(m) for name, m in variants.items()}
            for forward in forwards.values():  # compile before the first round
                jax.block_until_ready(forward(timing))
            per_round = {r["variant"]: [] for r in rows}
            for round_ in range(args.rounds):
                for name in per_round:
                    if name in forwards:
                        ms = time_ms(lambda: forwards[name](timing), warmup=2, repeats=args.repeats)
                    else:
                        worker.stdin.write(f"time {name} {args.repeats}\n")
                        worker.stdin.flush()
                        ms = json.loads(reply(worker, lambda line: line.startswith("{")))["ms"]
                    per_round[name].append(ms)
                print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(
                    f"{n} {v[-1]:.1f} ms" for n, v in per_round.items()), flush=True)
            worker.stdin.write("quit\n")
            worker.stdin.flush()
        finally:
            worker.stdin.close()
            if worker.wait(timeout=60) != 0:
                raise SystemExit(f"tools/ort_run.py exited with {worker.returncode}")
    for r in rows:
        r["ms"] = statistics.median(per_round[r["variant"]])
        r["ms_per_round"] = per_round[r["variant"]]
    fp32 = next(r["metric"] for r in rows if r["variant"] == "samp-jax fp32")
    best_ort = min(r["ms"] for r in rows if r["variant"].startswith("ort-int8"))
    for r in rows:
        r["relative_change"] = relative_change(r["metric"], fp32)
        r["speedup_vs_best_ort_int8"] = best_ort / r["ms"]
    command = shlex.join(["python", "tools/ort_compare.py", *sys.argv[1:]])
    result = {"command": command, "device": device_description(),
              "malloc": args.malloc,
              "data": args.data, "metric": evaluator.metric, "test_examples": evaluator.num_examples,
              "shape": f"{args.batch}x{args.seq}", "repeats": args.repeats, "rounds": args.rounds,
              "rows": rows,
              "seconds": time.perf_counter() - start}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\n| variant | {evaluator.metric} (test) | vs FP32 | ms at {args.batch}x{args.seq} | "
          "speed vs best ORT INT8 |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['metric']:.4f} | {100 * r['relative_change']:+.2f}% | "
              f"{r['ms']:.1f} | {r['speedup_vs_best_ort_int8']:.2f}x |")


if __name__ == "__main__":
    main()
