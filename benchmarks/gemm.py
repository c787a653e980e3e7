"""GEMM benchmark: XLA FP16, XLA INT8 and the Pallas INT8 kernels, each with its epilogue.

Usage (GPU): PYTHONPATH=. python benchmarks/gemm.py    → benchmarks/results/<device>-gemm.json
  CPU smoke (interpret mode, tiny shapes):
    PYTHONPATH=. python benchmarks/gemm.py --quick --out /tmp/gemm.json

Each contender is a `samp_jax.gemm` implementation: `xla`, or one Pallas kernel pinned by name
(`pallas_triton`, `pallas_mosaic`); a kernel that cannot run on this device or shape is
recorded as skipped. Off a GPU the kernels run in interpret mode (`samp_jax.ops.interpret`).

Timing: warm-up, then the median over repeats of back-to-back calls with one sync (see
`calibrate.search.latency.time_ms`). TOPS count 2·M·N·K operations; % of peak uses the dense
datasheet peak of the device in `pallas_kernels.devices` (H100 SXM: 989 TFLOP/s FP16, 1979 TOPS
INT8) when the table knows it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from calibrate.search.latency import time_ms
from pallas_kernels import devices
from pallas_kernels.int8_matmul import KERNEL_NAME, MOSAIC_KERNEL_NAME, default_order, int8_matmul
from pallas_kernels.int8_matmul.tuning import record, tune
from samp_jax import gemm
from samp_jax.ops import interpret
from samp_jax.core.primitives import quantize_weight_int8

SHAPES_M = (16, 128, 4096, 16384, 32768)
SHAPES_KN = ((768, 2304), (768, 768), (768, 3072), (3072, 768))


def peak_for(device: str, kind: str) -> float | None:
    """The device table's dense peak of `device` (a device kind) for precision `kind`."""
    known = devices.lookup(device)
    return None if known is None else known.peak_ops.get(kind)


def contenders(k: int, n: int):
    """(name, precision, `gemm` implementation, expected pallas_call name or None), each with
    the FFN-in epilogue: bias + GELU.

    Every contender is the whole GEMM site: the INT8 ones include the per-token dynamic
    quantization of their FP16 input, as the model runs them."""
    return [("xla_fp16", "fp16", "xla", None), ("xla_int8", "int8", "xla", None),
            ("pallas_triton_int8", "int8", "pallas_triton", KERNEL_NAME),
            ("pallas_mosaic_int8", "int8", "pallas_mosaic", MOSAIC_KERNEL_NAME)]


def tune_all(device: str, shapes_m, shapes_kn, repeats: int) -> None:
    """Times every candidate config of the kernels this device tries (raw kernel, bias + GELU
    epilogue): Mosaic and Triton on Hopper, Triton elsewhere."""
    rng = np.random.default_rng(1)
    for k, n in shapes_kn:
        w = jnp.asarray(rng.integers(-127, 128, (k, n)), jnp.int8)
        ws, bias = jnp.ones((n,), jnp.float32) * 1e-3, jnp.zeros((n,), jnp.float32)
        for m in shapes_m:
            x = jnp.asarray(rng.integers(-127, 128, (m, k)), jnp.int8)
            xs = jnp.ones((m, 1), jnp.float32) * 1e-2
            for impl in default_order(device):
                def time_config(config, impl=impl):
                    fn = jax.jit(lambda x: int8_matmul(x, w, xs, ws, bias=bias, activation="gelu",
                                                       implementation=impl, config=config))
                    return time_ms(lambda: fn(x), repeats=max(repeats // 5, 5))
                config, ms = tune(impl, m, n, k, time_config)
                record(impl, device, m, n, k, config)
                print(f"tuned {impl:<7} M={m:<6} K={k:<5} N={n:<5} {ms:8.4f} ms  {config}", flush=True)


def time_contender(name, precision, implementation, kernel, x, weights, bias, *, device: str,
                   repeats: int) -> dict:
    """One timed row: `gemm` with bias + GELU at `implementation`; raises NotImplementedError
    when the implementation cannot run this shape or device."""
    (m, k), n = x.shape, bias.shape[0]
    fn = jax.jit(lambda x: gemm(x, weights[precision], precision=precision, bias=bias,
                                activation="gelu", implementation=implementation))
    jaxpr = str(jax.make_jaxpr(fn)(x))
    ms = time_ms(lambda: fn(x), repeats=repeats)
    tops = 2 * m * n * k / (ms * 1e-3) / 1e12
    peak = peak_for(device, "fp16" if precision == "fp16" else "int8")
    row = {"m": m, "k": k, "n": n, "contender": name, "ms": ms, "tops": tops,
           "percent_of_peak": None if peak is None else 100 * tops * 1e12 / peak}
    if kernel is not None:  # the pallas_call that ran is named in the traced program
        row["kernel"] = kernel if re.search(rf"\bname={kernel}\b", jaxpr) else "missing"
    return row


def benchmark(device: str, shapes_m, shapes_kn, repeats: int) -> list[dict]:
    """Every contender on every shape; a contender that cannot run is recorded as skipped."""
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
                try:
                    row = time_contender(name, precision, impl, kernel, x, weights, bias,
                                         device=device, repeats=repeats)
                except NotImplementedError as e:
                    rows.append({"m": m, "k": k, "n": n, "contender": name, "skipped": str(e)})
                    continue
                if name == "xla_fp16":
                    baseline = row["ms"]
                row["speedup_vs_xla_fp16"] = None if baseline is None else baseline / row["ms"]
                rows.append(row)
                print(f"{name:<20} M={m:<6} K={k:<5} N={n:<5} {row['ms']:9.4f} ms "
                      f"{row['tops']:8.2f} TOPS"
                      + (f"  {row['speedup_vs_xla_fp16']:.2f}x fp16" if baseline else ""), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, interpret mode on CPU")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--tune", action="store_true",
                        help="first autotune the Pallas kernels this GPU tries for every shape and "
                             "record the winners in pallas_kernels/int8_matmul/tuned/<device>.json")
    args = parser.parse_args()
    device = jax.devices()[0].device_kind
    on_gpu = jax.default_backend() == "gpu"
    shapes_m, shapes_kn, repeats = SHAPES_M, SHAPES_KN, args.repeats
    if args.quick:
        shapes_m, shapes_kn, repeats = (16, 64), ((384, 256),), 3
    if args.tune:
        if not on_gpu:
            parser.error("--tune needs a GPU (tuning in interpret mode would measure nothing)")
        tune_all(device, shapes_m, shapes_kn, repeats)
    # Interpret mode is read while tracing, so it covers the whole benchmark.
    with contextlib.nullcontext() if on_gpu else interpret():
        rows = benchmark(device, shapes_m, shapes_kn, repeats)
    out = args.out or Path("benchmarks/results") / f"{device.replace(' ', '_')}-gemm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/gemm.py " + " ".join(sys.argv[1:])
    out.write_text(json.dumps({"device": device, "backend": jax.default_backend(),
                               "interpret": not on_gpu, "command": command,
                               "machine": platform.machine(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
