"""benchmarks/gpu_check.sh and the Python steps it calls, on the CPU: the script runs every
step with its tiny option (QUICK=1) and writes each step's JSON, so it is known to work before
a GPU session spends its minutes on it; the profile's parsing of a trace, on a planted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import jax
import pytest

from benchmarks import kernel_profile as profile
from pallas_kernels.int8_matmul import KERNEL_NAME as TRITON_KERNEL_NAME
from pallas_kernels.int8_matmul import MOSAIC_KERNEL_NAME, WS_KERNEL_NAME
from benchmarks import compile_time, minilm_fp16
from tests.helpers import ROOT


def test_kernel_names_fall_into_categories():
    assert profile.category("samp_int8_matmul_mosaic") == "gemm"
    assert profile.category("sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64") == "gemm"
    assert profile.category("cutlass_80_tensorop_s8_i16832gemm") == "gemm"
    assert profile.category("cudnn_generated_fort_native_sdpa_sm90_flash_fprop") == "attention"
    assert profile.category("samp_layernorm_quant") == "layernorm"
    assert profile.category("samp_embedding_quant") == "layernorm"
    assert profile.category("loop_convert_fusion_2") == "quantize"
    assert profile.category("copy_fusion") == "copies" and profile.category("transpose_3") == "copies"
    assert profile.category("loop_add_fusion") == "other"


def test_the_breakdown_sums_device_events_per_forward():
    trace = {"traceEvents": [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
        {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/device:GPU:0"}},
        {"ph": "X", "pid": 1, "name": "PjitFunction(forward)", "dur": 900.0},  # host: not counted
        {"ph": "X", "pid": 2, "name": "samp_int8_matmul_mosaic", "dur": 300.0},
        {"ph": "X", "pid": 2, "name": "samp_int8_matmul_mosaic", "dur": 100.0},
        {"ph": "X", "pid": 2, "name": "loop_convert_fusion", "dur": 40.0},
        {"ph": "X", "pid": 2, "name": "loop_add_fusion", "dur": 60.0}]}
    events = profile.device_events(trace)
    assert len(events) == 4
    result = profile.breakdown(events, iters=2)
    assert result["total_ms"] == pytest.approx(0.25)  # 500 µs over 2 forwards
    assert result["by_category_ms"] == pytest.approx({"gemm": 0.2, "quantize": 0.02, "other": 0.03})
    assert result["top_kernels_ms"][0] == {"name": "samp_int8_matmul_mosaic", "category": "gemm", "ms": 0.2}


def test_hlo_structure_counts_the_entry_computation():
    hlo = """HloModule m
%fused (p: f16[4]) -> f16[4] {
  %p = f16[4]{0} parameter(0)
  ROOT %n = f16[4]{0} negate(%p)
}
ENTRY %main (a: f16[4]) -> f16[4] {
  %a = f16[4]{0} parameter(0)
  %f = f16[4]{0} fusion(%a), kind=kLoop, calls=%fused
  %c = (f16[4]{0}, s8[16]{0}) custom-call(%f), custom_call_target="__cublas$gemm"
  ROOT %g = f16[4]{0} get-tuple-element(%c), index=0
}
"""
    result = profile.hlo_structure(hlo)
    assert result["opcodes"] == {"parameter": 1, "fusion": 1, "custom-call": 1, "get-tuple-element": 1}
    assert result["fusion_kinds"] == {"kLoop": 1} and result["custom_call_targets"] == {"__cublas$gemm": 1}


@pytest.mark.slow
def test_gpu_check_runs_every_step_quickly_on_the_cpu(tmp_path, minilm_dir):
    carried = minilm_fp16.write_fp16_copy(minilm_dir, tmp_path / "minilm-fp16")
    assert (carried / "model.safetensors").stat().st_size < 0.6 * (minilm_dir / "model.safetensors").stat().st_size
    results = tmp_path / "results"
    results.mkdir()
    (results / "cpu-e2e-old.json").write_text("{}")  # an earlier run's file: never packed
    env = {**os.environ, "QUICK": "1", "RESULTS": str(results), "OUT": str(tmp_path / "out"),
           # this interpreter: a $PYTHON the caller set (the Makefile reads one to build .venv)
           # may have no JAX
           "MINILM": str(carried), "PYTHON": sys.executable}
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=ROOT, env=env,
                   check=True, capture_output=True, text=True, timeout=2400)
    summary = json.loads((results / "cpu-gpu_check.json").read_text())
    steps = {s["step"]: s["rc"] for s in summary["steps"]}
    assert steps == {"env": 0, "tests": 0, "tests_ws": 0, "gemm": 0, "e2e": 0, "e2e_more": 0,
                     "e2e_minilm": 0, "profile": 0}
    _check_gemm_rows(json.loads((results / "cpu-gemm.json").read_text()))
    for name in ("cpu-e2e.json", "cpu-e2e-more.json", "cpu-e2e-minilm.json"):
        rows = json.loads((results / name).read_text())["rows"]
        assert rows and all(("median_ms" in r) != ("skipped" in r) for r in rows)
    _check_minilm_rows(json.loads((results / "cpu-e2e-minilm.json").read_text())["rows"])
    assert (results / "cpu-e2e-minilm.png").stat().st_size > 0
    prof = json.loads((results / "cpu-profile.json").read_text())["rows"]
    assert [r["contender"] for r in prof] == ["samp_fp16", "samp_fully_quant_pallas"]
    assert all(r["hlo"]["opcodes"] for r in prof)
    tests = json.loads((results / "cpu-tests.json").read_text())
    assert tests["tests"]["failures"] == tests["tests_ws"]["failures"] == 0
    assert tests["tests_ws"]["tests"] > 0  # the warp-specialized kernel's own run
    # a device run returns at most 8 files from $OUT: the packed results and the summary
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert out == ["cpu-gpu_check.json", "gpu_check.tgz"]
    with tarfile.open(tmp_path / "out" / "gpu_check.tgz") as packed:
        names = {Path(n).name for n in packed.getnames()}
    assert {p.name for p in results.iterdir()} - {"cpu-e2e-old.json"} <= names
    assert {"gemm.log", "e2e.log"} <= names and "cpu-e2e-old.json" not in names


def _check_gemm_rows(result):
    """benchmarks/gemm.py --quick times every contender (interpret mode off a GPU) and names
    the kernel that ran."""
    timed = [r for r in result["rows"] if "ms" in r]
    assert {r["contender"] for r in timed} == {"xla_fp16", "xla_int8", "pallas_triton_int8",
                                               "pallas_mosaic_int8", "xla_int8_raw",
                                               "pallas_mosaic_int8_raw", "pallas_mosaic_ws_int8_raw",
                                               "pallas_mosaic_ws_int8"}
    assert all(r["ms"] > 0 and r["tops"] > 0 for r in timed)
    names = {"triton": TRITON_KERNEL_NAME, "mosaic": MOSAIC_KERNEL_NAME, "mosaic_ws": WS_KERNEL_NAME}
    assert all(r["kernel"] == names[r["contender"].removeprefix("pallas_").removesuffix("_int8_raw")
                                    .removesuffix("_int8")]
               for r in timed if r["contender"].startswith("pallas"))
    assert result["interpret"] == (jax.default_backend() != "gpu")


def _check_minilm_rows(rows):
    """The carried FP16 MiniLM loads and runs every quick contender: both quick shapes, each row
    timed or skipped with a reason, consistent throughput, and which GEMM implementation ran."""
    assert {(r["batch"], r["seq"]) for r in rows} == {(1, 32), (2, 32)}
    timed = {r["contender"] for r in rows if "median_ms" in r}
    assert timed == {"samp_fp16", "samp_fully_quant_xla", "samp_fp8", "samp_search_snli_1pct"}
    for r in rows:
        assert ("median_ms" in r) != ("skipped" in r)
        if "median_ms" in r:
            assert r["median_ms"] > 0 and r["speedup_vs_samp_fp16"] > 0
            assert r["sequences_per_s"] == pytest.approx(r["batch"] / (r["median_ms"] / 1e3))
            assert r["gemm_executed"] and set(r["gemm_executed"]) <= {"pallas_mosaic",
                                                                      "pallas_triton", "xla"}


def test_the_e2e_script_is_the_bench_command():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "e2e.py"), "--help"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.startswith("usage: samp-jax bench") and "--contenders" in done.stdout


@pytest.mark.slow
def test_compile_time_reports_each_preset_and_the_fp8_dots(tmp_path):
    out = tmp_path / "compile.json"
    assert compile_time.main(["--quick", "--presets", "fp16,fp8", "--out", str(out)]) == 0
    rows = {r["preset"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["fp16"]["compile_s"] > 0 and rows["fp8"]["lower_s"] > 0
    # 6 layers x 4 GEMM sites; the FP8 ones are f8 x f8 -> f32 dots, for CUDA too
    assert rows["fp8"]["dots"]["f8E4M3FN x f8E4M3FN -> f32"] == 24
    assert rows["fp8"]["cuda_dots"]["f8E4M3FN x f8E4M3FN -> f32"] == 24
    assert "f8E4M3FN x f8E4M3FN -> f32" not in rows["fp16"]["dots"]


def test_a_gemm_contender_that_fails_is_a_row_and_the_next_one_runs(monkeypatch):
    """benchmarks/gemm.py: an error of one contender (a compile error, a CUDA fault) is its
    row's `error` and the table goes on; a kernel that declines is `skipped`; the
    warp-specialized kernel runs last on each shape."""
    import jax.numpy as jnp
    import numpy as np

    from benchmarks import gemm as bench_gemm
    from samp_jax.core.primitives import quantize_weight_int8

    calls = []

    def timing(fn, repeats):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("INTERNAL: CUDA_ERROR_ILLEGAL_ADDRESS\nstack")
        return 1.0

    monkeypatch.setattr(bench_gemm, "time_ms", timing)
    w = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    weights = {"fp16": jnp.asarray(w, jnp.float16), "int8": quantize_weight_int8(w)}
    rows = list(bench_gemm.site_rows(jnp.ones((8, 64), jnp.float16), weights, jnp.zeros(64),
                                     device="cpu", repeats=1,
                                     contenders=bench_gemm.SITE_CONTENDERS[:3]))
    assert rows[0] == {"m": 8, "k": 64, "n": 64, "contender": "xla_fp16",
                       "error": "RuntimeError: INTERNAL: CUDA_ERROR_ILLEGAL_ADDRESS"}
    assert rows[1]["contender"] == "xla_int8" and rows[1]["ms"] == 1.0
    assert rows[2]["contender"] == "pallas_triton_int8" and "skipped" in rows[2]  # no GPU here
    first, last = bench_gemm._split(bench_gemm.SITE_CONTENDERS)
    assert [c[0] for c in last] == ["pallas_mosaic_ws_int8"] and len(first) == 4
