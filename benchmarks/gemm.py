"""GEMM benchmark: XLA FP16, XLA INT8 and the Pallas INT8 kernels, each with its epilogue, the
raw INT8 GEMMs, and cuBLAS through PyTorch as the library peer.

Usage (GPU): PYTHONPATH=. python benchmarks/gemm.py    → benchmarks/results/<device>-gemm.json
  CPU smoke (interpret mode, tiny shapes):
    PYTHONPATH=. python benchmarks/gemm.py --quick --out /tmp/gemm.json
  Autotune first (GPU), recording each shape's winner in pallas_kernels/int8_matmul/tuned/:
    PYTHONPATH=. python benchmarks/gemm.py --tune [--tune-seconds 1800]

Contenders, per (M, K, N):
- whole GEMM sites, each a `samp_jax.gemm` implementation with the FFN-in epilogue (bias +
  GELU) on FP16 input (the INT8 ones include its per-token dynamic quantization, as the model
  runs them): `xla_fp16`, `xla_int8`, `pallas_triton_int8`, `pallas_mosaic_int8`,
  `pallas_mosaic_ws_int8` (the warp-specialized persistent kernel);
- raw INT8 GEMMs (`int8 @ int8 -> int32`, no epilogue): `xla_int8_raw`, `pallas_mosaic_int8_raw`,
  `pallas_mosaic_ws_int8_raw` (the warp-specialized persistent kernel);
- cuBLAS through PyTorch on CUDA: `torch_fp16_mm` (`a @ b`) and `torch_int8_mm`
  (`torch._int_mm`, int32 out); skipped, with the reason, without torch or CUDA.
A contender that cannot run on this device or shape is recorded as skipped. Off a GPU the
kernels run in interpret mode (`samp_jax.ops.interpret`). The results file is rewritten after
every row, so a run cut short keeps what it finished.

Timing: warm-up, then the median over repeats of back-to-back calls with one sync (see
`samp_jax.serving.timing.time_ms`; torch: the same scheme with CUDA syncs). TOPS count 2·M·N·K
operations; % of peak uses the dense datasheet peak of the device in `pallas_kernels.devices`
(H100 SXM: 989 TFLOP/s FP16, 1979 TOPS INT8) when the table knows it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from samp_jax.serving.timing import device_file_stem, error_line, time_ms
from pallas_kernels import devices
from pallas_kernels.int8_matmul import (KERNEL_NAME, MOSAIC_KERNEL_NAME, WS_KERNEL_NAME, default_order,
                                        int8_matmul)
from pallas_kernels.int8_matmul.reference import int8_accumulate
from pallas_kernels.int8_matmul.tuning import accumulator_check, record, tune
from samp_jax import gemm
from samp_jax.core.atomic import write_text_atomic
from samp_jax.core.primitives import quantize_weight_int8
from samp_jax.ops import interpret

SHAPES_M = (16, 128, 4096, 16384, 32768)
SHAPES_KN = ((768, 2304), (768, 768), (768, 3072), (3072, 768))
QUICK_M, QUICK_KN = (16,), ((256, 128),)  # each kernel in interpret mode, in seconds on a CPU
# (name, precision, `gemm` implementation, expected pallas_call name or None)
SITE_CONTENDERS = (("xla_fp16", "fp16", "xla", None), ("xla_int8", "int8", "xla", None),
                   ("pallas_triton_int8", "int8", "pallas_triton", KERNEL_NAME),
                   ("pallas_mosaic_int8", "int8", "pallas_mosaic", MOSAIC_KERNEL_NAME),
                   ("pallas_mosaic_ws_int8", "int8", "pallas_mosaic_ws", WS_KERNEL_NAME))
RAW_CONTENDERS = (("xla_int8_raw", None, None), ("pallas_mosaic_int8_raw", "mosaic", MOSAIC_KERNEL_NAME),
                  ("pallas_mosaic_ws_int8_raw", "mosaic_ws", WS_KERNEL_NAME))
TORCH_CONTENDERS = ("torch_fp16_mm", "torch_int8_mm")
# Kernels run last on each shape: a fault in one never compiled on the device (a bad TMA
# descriptor aborts the process) then costs no row of the others.
LAST = ("pallas_mosaic_ws_int8", "pallas_mosaic_ws_int8_raw")


def peak_for(device: str, kind: str) -> float | None:
    """The device table's dense peak of `device` (a device kind) for precision `kind`."""
    known = devices.lookup(device)
    return None if known is None else known.peak_ops.get(kind)


def tune_all(device: str, shapes_m, shapes_kn, repeats: int, seconds: float | None = None,
             *, interpret: bool = False, directory: Path | None = None) -> None:
    """Times every candidate config of the kernels this device tries (raw kernel, bias + GELU
    epilogue): Mosaic and Triton on Hopper, Triton elsewhere. A candidate must first compute
    the raw int32 accumulator exactly (`accumulator_check`); one that raises or is wrong is
    reported as failed. After `seconds` no further candidate starts: each shape's best so far
    is recorded and the shapes not reached are listed."""
    deadline = None if seconds is None else time.monotonic() + seconds
    rng = np.random.default_rng(1)
    for k, n in shapes_kn:
        w = jnp.asarray(rng.integers(-127, 128, (k, n)), jnp.int8)
        ws, bias = jnp.ones((n,), jnp.float32) * 1e-3, jnp.zeros((n,), jnp.float32)
        for m in shapes_m:
            x = jnp.asarray(rng.integers(-127, 128, (m, k)), jnp.int8)
            xs = jnp.ones((m, 1), jnp.float32) * 1e-2
            for impl in default_order(device):
                if deadline is not None and time.monotonic() > deadline:
                    print(f"--tune-seconds {seconds:g} spent: not tuned {impl} M={m} K={k} N={n} "
                          "(and any later shape)", flush=True)
                    return

                def time_config(config, impl=impl):
                    fn = jax.jit(lambda x: int8_matmul(x, w, xs, ws, bias=bias, activation="gelu",
                                                       implementation=impl, config=config,
                                                       interpret=interpret))
                    return time_ms(lambda: fn(x), repeats=max(repeats // 5, 5))
                check = accumulator_check(impl, x, w, interpret=interpret)
                try:
                    found = tune(impl, m, n, k, time_config, check=check, deadline=deadline)
                except RuntimeError as e:  # no candidate ran: nothing to record for this shape
                    print(f"not tuned {impl:<7} M={m:<6} K={k:<5} N={n:<5} {e}", flush=True)
                    continue
                for config, reason in found.failed:
                    print(f"  failed {impl} {config}: {reason}", flush=True)
                path = record(impl, device, m, n, k, found.config, directory)
                print(f"tuned {impl:<7} M={m:<6} K={k:<5} N={n:<5} {found.ms:8.4f} ms  {found.config} "
                      f"({len(found.failed)} failed{'' if found.complete else ', cut short'}) -> {path}",
                      flush=True)


def _row(name, m, k, n, ms, device, peak_kind) -> dict:
    tops = 2 * m * n * k / (ms * 1e-3) / 1e12
    peak = peak_for(device, peak_kind)
    return {"m": m, "k": k, "n": n, "contender": name, "ms": ms, "tops": tops,
            "percent_of_peak": None if peak is None else 100 * tops * 1e12 / peak}


def _ran(kernel, fn, *args) -> str | None:
    """The pallas_call name in the traced program ('missing' if the kernel did not run)."""
    if kernel is None:
        return None
    return kernel if re.search(rf"\bname={kernel}\b", str(jax.make_jaxpr(fn)(*args))) else "missing"


def _failed(m, k, n, name, e: Exception) -> dict:
    """The row of a contender that declined (`skipped`) or failed (`error`): a result too."""
    if isinstance(e, NotImplementedError):
        return {"m": m, "k": k, "n": n, "contender": name,
                "skipped": (str(e).strip().splitlines() or [""])[0]}
    return {"m": m, "k": k, "n": n, "contender": name, "error": error_line(e)}


def site_rows(x, weights, bias, *, device, repeats, contenders=SITE_CONTENDERS):
    """The whole-site contenders on one shape (one that declines or fails gets a row saying so)."""
    (m, k), n = x.shape, bias.shape[0]
    for name, precision, implementation, kernel in contenders:
        fn = jax.jit(lambda x, p=precision, i=implementation: gemm(
            x, weights[p], precision=p, bias=bias, activation="gelu", implementation=i))
        try:
            ran = _ran(kernel, fn, x)
            ms = time_ms(lambda: fn(x), repeats=repeats)
        except Exception as e:  # noqa: BLE001  (recorded; the next contender runs)
            yield _failed(m, k, n, name, e)
            continue
        yield {**_row(name, m, k, n, ms, device, "fp16" if precision == "fp16" else "int8"),
               **({"kernel": ran} if ran else {})}


def raw_rows(xq, wq, *, device, repeats, contenders=RAW_CONTENDERS):
    """`int8 @ int8 -> int32` with no epilogue: XLA's s8 dot and the Mosaic kernels."""
    (m, k), n = xq.shape, wq.shape[1]
    xs, ws = jnp.ones((m, 1), jnp.float32), jnp.ones((n,), jnp.float32)
    for name, implementation, kernel in contenders:
        if implementation is None:
            fn = jax.jit(int8_accumulate)
            args = (xq, wq)
        else:
            fn = jax.jit(lambda a, b, i=implementation: int8_matmul(
                a, b, xs, ws, out_dtype=jnp.int32, implementation=i, interpret=_interpreting()))
            args = (xq, wq)
        try:
            ran = _ran(kernel, fn, *args)
            ms = time_ms(lambda: fn(*args), repeats=repeats)
        except Exception as e:  # noqa: BLE001  (recorded; the next contender runs)
            yield _failed(m, k, n, name, e)
            continue
        yield {**_row(name, m, k, n, ms, device, "int8"), **({"kernel": ran} if ran else {})}


def _interpreting() -> bool:
    return jax.default_backend() != "gpu"


def torch_rows(m, k, n, *, device, repeats):
    """cuBLAS FP16 and INT8 through PyTorch; skipped without torch or CUDA."""
    try:
        import torch
        available = torch.cuda.is_available()
        reason = "no CUDA device for torch"
    except ImportError as e:
        available, reason = False, f"torch not importable: {e}"
    if not available:
        for name in TORCH_CONTENDERS:
            yield {"m": m, "k": k, "n": n, "contender": name, "skipped": reason}
        return
    a, b = (torch.randn(s, device="cuda", dtype=torch.float16) for s in ((m, k), (k, n)))
    ai = torch.randint(-127, 128, (m, k), device="cuda", dtype=torch.int8)
    bi = torch.randint(-127, 128, (n, k), device="cuda", dtype=torch.int8).t()
    for name, fn, kind in (("torch_fp16_mm", lambda: a @ b, "fp16"),
                           ("torch_int8_mm", lambda: torch._int_mm(ai, bi), "int8")):
        try:
            ms = _time_torch(fn, torch, repeats)
        except RuntimeError as e:  # _int_mm refuses some shapes
            yield {"m": m, "k": k, "n": n, "contender": name, "skipped": str(e).splitlines()[0]}
            continue
        yield _row(name, m, k, n, ms, device, kind)


def _time_torch(fn, torch, repeats: int, inner: int = 5) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) / inner * 1e3)
    return statistics.median(samples)


def benchmark(device: str, shapes_m, shapes_kn, repeats: int, emit) -> None:
    """Every contender on every shape, each row handed to `emit` as it finishes."""
    first_site, last_site = _split(SITE_CONTENDERS)
    first_raw, last_raw = _split(RAW_CONTENDERS)
    rng = np.random.default_rng(0)
    for k, n in shapes_kn:
        w = rng.normal(size=(k, n)).astype(np.float32) * 0.05
        weights = {"fp16": jnp.asarray(w, jnp.float16), "int8": quantize_weight_int8(w)}
        bias = jnp.asarray(rng.normal(size=(n,)), jnp.float32)
        for m in shapes_m:
            x = jnp.asarray(rng.normal(size=(m, k)), jnp.float16)
            xq = jnp.asarray(rng.integers(-127, 128, (m, k)), jnp.int8)
            timing = dict(device=device, repeats=repeats)
            for row in itertools.chain(  # each row emitted as it finishes
                    site_rows(x, weights, bias, contenders=first_site, **timing),
                    raw_rows(xq, weights["int8"].qvalue, contenders=first_raw, **timing),
                    torch_rows(m, k, n, **timing),
                    site_rows(x, weights, bias, contenders=last_site, **timing),
                    raw_rows(xq, weights["int8"].qvalue, contenders=last_raw, **timing)):
                emit(row)


def _split(contenders):
    """`(the others, the LAST ones)` of a contender table, each in table order."""
    return (tuple(c for c in contenders if c[0] not in LAST),
            tuple(c for c in contenders if c[0] in LAST))


def add_ratios(rows: list[dict]) -> None:
    """`speedup_vs_xla_fp16`: the FP16 site's time over this row's, same shape, same run."""
    base = {(r["m"], r["k"], r["n"]): r["ms"] for r in rows if r["contender"] == "xla_fp16" and "ms" in r}
    for r in rows:
        if "ms" in r:
            ref = base.get((r["m"], r["k"], r["n"]))
            r["speedup_vs_xla_fp16"] = None if ref is None else ref / r["ms"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, interpret mode on CPU")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--m", default=None, help="comma-separated M values (default: "
                        + ",".join(map(str, SHAPES_M)) + ")")
    parser.add_argument("--kn", default=None, help="comma-separated KxN shapes (default: "
                        + ",".join(f"{k}x{n}" for k, n in SHAPES_KN) + ")")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--tune", action="store_true",
                        help="first autotune the Pallas kernels this GPU tries for every shape and "
                             "record the winners in pallas_kernels/int8_matmul/tuned/<device>.json")
    parser.add_argument("--tune-seconds", type=float, default=None, metavar="S",
                        help="with --tune: start no candidate after S seconds; record the best "
                             "found so far for each shape tuned")
    args = parser.parse_args(argv)
    device = jax.devices()[0].device_kind
    on_gpu = jax.default_backend() == "gpu"
    shapes_m, shapes_kn, repeats = SHAPES_M, SHAPES_KN, args.repeats
    if args.quick:
        shapes_m, shapes_kn, repeats = QUICK_M, QUICK_KN, 2
    try:
        if args.m:
            shapes_m = tuple(int(v) for v in args.m.split(",") if v.strip())
        if args.kn:
            shapes_kn = tuple((int(k), int(n)) for k, _, n in
                              (item.strip().partition("x") for item in args.kn.split(",") if item.strip()))
    except ValueError:
        parser.error(f"--m {args.m!r} / --kn {args.kn!r}: expected e.g. --m 4096,32768 --kn 768x3072")
    if any(v <= 0 for v in shapes_m) or any(v <= 0 for kn in shapes_kn for v in kn):
        parser.error("--m and --kn values must be positive")
    if args.tune_seconds is not None and not (args.tune and args.tune_seconds > 0):
        parser.error("--tune-seconds needs --tune and a positive number of seconds")
    if args.tune:
        if not on_gpu:
            parser.error("--tune needs a GPU (tuning in interpret mode would measure nothing)")
        tune_all(device, shapes_m, shapes_kn, repeats, args.tune_seconds)
    out = args.out or Path("benchmarks/results") / f"{device_file_stem()}-gemm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"device": device, "backend": jax.default_backend(), "interpret": not on_gpu,
                "command": "python benchmarks/gemm.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "jax": jax.__version__, "machine": platform.machine(), "rows": []}

    def emit(row: dict) -> None:
        document["rows"].append(row)
        add_ratios(document["rows"])
        write_text_atomic(out, json.dumps(document, indent=1))
        shape = f"M={row['m']:<6} K={row['k']:<5} N={row['n']:<5}"
        if "ms" in row:
            ratio = row.get("speedup_vs_xla_fp16")
            print(f"{row['contender']:<24} {shape} {row['ms']:9.4f} ms {row['tops']:8.2f} TOPS"
                  + (f"  {ratio:.2f}x fp16" if ratio else ""), flush=True)
        else:
            print(f"{row['contender']:<24} {shape} skipped: {row['skipped']}", flush=True)

    # Interpret mode is read while tracing, so it covers the whole benchmark.
    with contextlib.nullcontext() if on_gpu else interpret():
        benchmark(device, shapes_m, shapes_kn, repeats, emit)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
