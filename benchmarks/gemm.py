"""GEMM benchmark: XLA FP16, XLA INT8 and the Pallas INT8 kernels, each with its epilogue.

Usage (GPU): PYTHONPATH=. python benchmarks/gemm.py           → benchmarks/results/<device>-gemm.json
       (CPU smoke, interpret mode, tiny shapes): python benchmarks/gemm.py --quick --out /tmp/gemm.json

Timing: warm-up, then the median over repeats of back-to-back calls with one sync (see
`samp_jax.latency.time_ms`). TOPS count 2·M·N·K operations; % of peak uses the dense
datasheet peak of the device (H100 SXM: 989 TFLOP/s FP16, 1979 TOPS INT8) when known.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import pallas_kernels
from pallas_kernels.int8_matmul import KERNEL_NAME, MOSAIC_KERNEL_NAME
from samp_jax import gemm
from calibrate.latency import time_ms
from samp_jax.quant.primitives import quantize_weight_int8

SHAPES_M = (16, 128, 4096, 16384, 32768)
SHAPES_KN = ((768, 2304), (768, 768), (768, 3072), (3072, 768))
PEAKS = {"H100": {"fp16": 989e12, "int8": 1979e12}, "H200": {"fp16": 989e12, "int8": 1979e12}}


def peak_for(device: str, kind: str) -> float | None:
    for name, peaks in PEAKS.items():
        if name in device:
            return peaks[kind]
    return None


def contenders(k: int, n: int):
    """(name, precision, implementation, Pallas kernel) with the FFN-in epilogue: bias + GELU.

    Every contender is the whole GEMM site: the INT8 ones include the per-token dynamic
    quantization of their FP16 input, as the model runs them."""
    return [("xla_fp16", "fp16", "xla", None), ("xla_int8", "int8", "xla", None),
            ("pallas_triton_int8", "int8", "pallas", "triton"),
            ("pallas_mosaic_int8", "int8", "pallas", "mosaic")]


def tune_all(device: str, shapes_m, shapes_kn, repeats: int) -> None:
    """Times every candidate config of both kernels (raw kernel, bias + GELU epilogue)."""
    from pallas_kernels.int8_matmul import int8_matmul
    from pallas_kernels.int8_matmul.tuning import record, tune
    rng = np.random.default_rng(1)
    for k, n in shapes_kn:
        w = jnp.asarray(rng.integers(-127, 128, (k, n)), jnp.int8)
        ws, bias = jnp.ones((n,), jnp.float32) * 1e-3, jnp.zeros((n,), jnp.float32)
        for m in shapes_m:
            x = jnp.asarray(rng.integers(-127, 128, (m, k)), jnp.int8)
            xs = jnp.ones((m, 1), jnp.float32) * 1e-2
            for impl in ("mosaic", "triton"):
                def time_config(config, impl=impl):
                    fn = jax.jit(lambda x: int8_matmul(x, w, xs, ws, bias=bias, activation="gelu",
                                                       implementation=impl, config=config))
                    return time_ms(lambda: fn(x), repeats=max(repeats // 5, 5))
                config, ms = tune(impl, m, n, k, time_config)
                record(impl, device, m, n, k, config)
                print(f"tuned {impl:<7} M={m:<6} K={k:<5} N={n:<5} {ms:8.4f} ms  {config}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, interpret mode on CPU")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--tune", action="store_true",
                        help="first autotune both Pallas kernels for every shape on this GPU and "
                             "record the winners in pallas_kernels/int8_matmul/tuned.json")
    args = parser.parse_args()
    device = jax.devices()[0].device_kind
    on_gpu = jax.default_backend() == "gpu"
    shapes_m, shapes_kn, repeats = SHAPES_M, SHAPES_KN, args.repeats
    if args.quick:
        shapes_m, shapes_kn, repeats = (16, 64), ((384, 256),), 3
    if not on_gpu:
        pallas_kernels.set_interpret(True)
    if args.tune:
        if not on_gpu:
            parser.error("--tune needs a GPU (tuning in interpret mode would measure nothing)")
        tune_all(device, shapes_m, shapes_kn, repeats)
    rng = np.random.default_rng(0)
    rows = []
    for k, n in shapes_kn:
        w = rng.normal(size=(k, n)).astype(np.float32) * 0.05
        weights = {"fp16": jnp.asarray(w, jnp.float16), "int8": quantize_weight_int8(w)}
        bias = jnp.asarray(rng.normal(size=(n,)), jnp.float32)
        for m in shapes_m:
            x = jnp.asarray(rng.normal(size=(m, k)), jnp.float16)
            baseline = None
            for name, precision, impl, kernel in contenders(k, n):
                fn = jax.jit(lambda x, p=precision, i=impl: gemm(
                    x, weights[p], precision=p, bias=bias, activation="gelu", implementation=i))
                try:
                    with pallas_kernels.int8_kernel(kernel):  # fixed while tracing
                        jaxpr = str(jax.make_jaxpr(fn)(x))
                        ms = time_ms(lambda: fn(x), repeats=repeats)
                except NotImplementedError as e:
                    rows.append({"m": m, "k": k, "n": n, "contender": name, "skipped": str(e)})
                    continue
                tops = 2 * m * n * k / (ms * 1e-3) / 1e12
                peak = peak_for(device, "fp16" if precision == "fp16" else "int8")
                row = {"m": m, "k": k, "n": n, "contender": name, "ms": ms, "tops": tops,
                       "percent_of_peak": None if peak is None else 100 * tops * 1e12 / peak}
                if kernel is not None:  # the pallas_call that ran is named in the traced program
                    expected = MOSAIC_KERNEL_NAME if kernel == "mosaic" else KERNEL_NAME
                    row["kernel"] = expected if f"name={expected}" in jaxpr else "fell back to XLA"
                if name == "xla_fp16":
                    baseline = ms
                row["speedup_vs_xla_fp16"] = None if baseline is None else baseline / ms
                rows.append(row)
                print(f"{name:<20} M={m:<6} K={k:<5} N={n:<5} {ms:9.4f} ms {tops:8.2f} TOPS"
                      + (f"  {row['speedup_vs_xla_fp16']:.2f}x fp16" if baseline else ""), flush=True)
    out = args.out or Path("benchmarks/results") / f"{device.replace(' ', '_')}-gemm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "backend": jax.default_backend(),
                               "interpret": not on_gpu, "command": "python benchmarks/gemm.py " + " ".join(sys.argv[1:]),
                               "machine": platform.machine(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
