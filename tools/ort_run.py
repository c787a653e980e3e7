"""The ONNX Runtime side of tools/ort_compare.py; runs in .ort-venv (torch, optimum-onnx,
onnxruntime), never in the samp-jax venv.

Exports the HF model folder to ONNX with HF optimum, quantizes it with optimum's ORTQuantizer
(`AutoQuantizationConfig.avx512_vnni`, dynamic activations, weights per channel or per
tensor), then for FP32 and each INT8 model: mean-pooled embeddings of every batch in the
inputs file, and the median latency of the timing batch.

    .ort-venv/bin/python tools/ort_run.py --model DIR --inputs in.npz --out out.npz --work DIR
"""

import argparse
import json
import statistics
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
    parser.add_argument("--repeats", type=int, default=20)
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
    results, arrays = {}, {}
    for name, path in variants.items():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}

        def feed(prefix):
            return {k: data[f"{prefix}{k}"].astype(np.int64) for k in
                    ("input_ids", "attention_mask", "token_type_ids") if k in wanted}
        for b in range(count):
            inputs = feed(f"b{b}_")
            hidden = session.run(None, inputs)[0]
            arrays[f"{name}/b{b}"] = mean_pool(hidden, inputs["attention_mask"])
        timing = feed("timing_")
        results[name] = {"ms": median_ms(lambda: session.run(None, timing), warmup=5, repeats=args.repeats),
                         "file": str(path), "bytes": path.stat().st_size}
        print(name, f"{results[name]['ms']:.1f} ms", flush=True)
    np.savez(args.out, **arrays)
    (Path(args.out).with_suffix(".json")).write_text(json.dumps({
        "variants": results, "onnxruntime": ort.__version__,
        "threads": ort.SessionOptions().intra_op_num_threads}, indent=1))


if __name__ == "__main__":
    main()
