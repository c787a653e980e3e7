"""ONNX Runtime's own per-operator profile of HF optimum's INT8 MiniLM; runs in .ort-venv.

    .ort-venv/bin/python tools/ort_profile.py --model "$(.venv/bin/python -c \
        'from samp_jax import minilm_path; print(minilm_path())')" --work /tmp/ort-profile

Exports the model with optimum, quantizes it as tools/ort_run.py does (avx512_vnni, dynamic,
weights per channel), runs `--calls` forwards of a 32x128 batch with profiling on, and prints the
kernel time per operator type per forward, largest first.
"""

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=8)
    args = parser.parse_args()
    fp32, int8 = args.work / "fp32", args.work / "int8-per-channel"
    if not fp32.exists():
        ORTModelForFeatureExtraction.from_pretrained(args.model, export=True).save_pretrained(fp32)
    if not int8.exists():
        config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
        ORTQuantizer.from_pretrained(fp32).quantize(save_dir=int8, quantization_config=config)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(args.work / "profile")
    session = ort.InferenceSession(str(next(int8.glob("*.onnx"))), options, providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(1000, 30000, (32, 128)).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feed = {k: v for k, v in feed.items() if k in {i.name for i in session.get_inputs()}}
    for _ in range(args.calls):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            total[e["args"]["op_name"]] += e["dur"]
            count[e["args"]["op_name"]] += 1
    print(f"onnxruntime {ort.__version__}: kernel time per forward (32x128), {args.calls} forwards")
    for op, us in total.most_common():
        print(f"{us / args.calls / 1e3:8.1f} ms  {count[op] // args.calls:4d}x  {op}")
    print(f"{sum(total.values()) / args.calls / 1e3:8.1f} ms  total")


if __name__ == "__main__":
    main()
