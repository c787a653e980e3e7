"""The ONNX Runtime side of tools/ort_compare.py; runs in .ort-venv (torch, optimum-onnx,
onnxruntime), never in the samp-jax venv.

Exports the HF model folder to ONNX with HF optimum, quantizes it with optimum's ORTQuantizer
(`AutoQuantizationConfig.avx512_vnni`, dynamic activations, weights per channel or per
tensor), then for FP32 and each INT8 model: mean-pooled embeddings of every batch in the
inputs file. Then it prints `ready` and serves timing requests on stdin, one per line
(`time VARIANT REPEATS` -> the median ms of the timing batch, `quit`), so that tools/ort_compare.py
can interleave ONNX Runtime's timings with samp-jax's: on a shared machine whose speed drifts,
only timings taken in alternation compare fairly.

    .ort-venv/bin/python tools/ort_run.py --model DIR --inputs in.npz --out out.npz --work DIR
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig


def median_ms(fn, *, warmup: int, repeats: int, inner: int = 5) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner * 1e3)
    return statistics.median(samples)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    work = Path(args.work)
    fp32_dir = work / "onnx-fp32"
    ORTModelForFeatureExtraction.from_pretrained(args.model, export=True).save_pretrained(fp32_dir)
    variants = {"ort-fp32": fp32_dir / "model.onnx"}
    for per_channel in (True, False):
        name = f"ort-int8-dynamic-{'per-channel' if per_channel else 'per-tensor'}"
        config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=per_channel)
        ORTQuantizer.from_pretrained(fp32_dir).quantize(save_dir=work / name, quantization_config=config)
        variants[name] = next((work / name).glob("*.onnx"))
    data = np.load(args.inputs)
    count = int(data["count"])
    sessions, arrays = {}, {}
    for name, path in variants.items():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}

        def feed(prefix, wanted=wanted):
            return {k: data[f"{prefix}{k}"].astype(np.int64) for k in
                    ("input_ids", "attention_mask", "token_type_ids") if k in wanted}
        for b in range(count):
            inputs = feed(f"b{b}_")
            hidden = session.run(None, inputs)[0]
            arrays[f"{name}/b{b}"] = mean_pool(hidden, inputs["attention_mask"])
        sessions[name] = (session, feed("timing_"))
    np.savez(args.out, **arrays)
    (Path(args.out).with_suffix(".json")).write_text(json.dumps({
        "variants": {name: {"file": str(path), "bytes": path.stat().st_size} for name, path in variants.items()},
        "onnxruntime": ort.__version__, "threads": ort.SessionOptions().intra_op_num_threads}, indent=1))
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[:1] == ["time"]:
            session, timing = sessions[command[1]]
            ms = median_ms(lambda: session.run(None, timing), warmup=2, repeats=int(command[2]))
            print(json.dumps({"ms": ms}), flush=True)
        elif command[:1] == ["quit"]:
            break


if __name__ == "__main__":
    main()
