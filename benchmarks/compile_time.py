"""Where compile time goes, per precision preset: tracing + lowering, XLA compilation on this
backend, and (off a GPU) lowering for CUDA on an abstract H100, for one BERT-base forward.

Usage: PYTHONPATH=. python benchmarks/compile_time.py [--presets fp16,fully_quant,fp8]
       [--layers 12] [--shape 32x128] [--out FILE]
On a GPU, run it again with XLA_FLAGS=--xla_gpu_autotune_level=0 (or
--xla_gpu_enable_triton_gemm=false): a compile time that falls with the flag is autotuning.
Each row: `lower_s`, `compile_s`, StableHLO size, the dots and their operand types, and the
compiled entry computation's kernels (`kernel_profile.hlo_structure`).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
from pathlib import Path

import jax
from flax import nnx

from benchmarks.kernel_profile import hlo_structure
from calibrate import calibrate
from pallas_kernels.gpu_lowering import lower_for_gpu
from samp_jax.app import bench
from samp_jax.core.atomic import write_text_atomic
from samp_jax.core.precision import PrecisionMap
from samp_jax.ptq.quantized import quantize
from samp_jax.serving.forward import batch_inputs, merged_call


def dot_types(stablehlo: str) -> dict[str, int]:
    """`"lhs x rhs -> out"` element types of every `dot_general`, counted."""
    found = re.findall(r"stablehlo\.dot_general[^:]*: \(tensor<([^>]+)>, tensor<([^>]+)>\) "
                       r"-> tensor<([^>]+)>", stablehlo)
    element = lambda tensor: tensor.split("x")[-1]  # noqa: E731  ("32x128x768xf16" -> "f16")
    return dict(collections.Counter(f"{element(a)} x {element(b)} -> {element(c)}" for a, b, c in found))


def measure(model, preset: str, calibration, batch) -> dict:
    pmap = PrecisionMap.preset(preset, model.config.num_layers)
    quantized = quantize(model, pmap, calibration if pmap.needs_calibration() else None,
                         implementation="xla")
    graphdef, state = nnx.split(quantized)
    fn = lambda state, *inputs: merged_call(graphdef, state, *inputs)  # noqa: E731
    inputs = batch_inputs(batch)
    start = time.perf_counter()
    lowered = jax.jit(fn).trace(state, *inputs).lower()
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    text = lowered.as_text()
    row = {"preset": preset, "lower_s": lowered_at - start, "compile_s": done - lowered_at,
           "stablehlo_lines": text.count("\n"), "dots": dot_types(text),
           "compiled": hlo_structure(compiled.as_text())}
    if jax.default_backend() != "gpu":  # the CUDA lowering, on any machine
        start = time.perf_counter()
        abstract = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in inputs]
        cuda = lower_for_gpu(fn, state, *abstract)
        row.update(cuda_lower_s=time.perf_counter() - start, cuda_dots=dot_types(cuda))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="fp16,fully_quant,fp8")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--shape", default="32x128")
    parser.add_argument("--quick", action="store_true", help="the bench's tiny model, 1x32")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    config = bench.EncoderConfig.bert_base().replace(num_layers=args.layers)
    shape = bench.parse_shapes(args.shape)[0]
    if args.quick:
        config, shape = bench.TINY_CONFIG, (1, 32)
    model = bench.random_weights(config)
    calibration = calibrate(model, [bench.token_batch(config.vocab_size, 8, 128)], method="minmax")
    batch = bench.token_batch(config.vocab_size, *shape)
    document = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
                "layers": config.num_layers, "batch": shape[0], "seq": shape[1], "rows": []}
    for preset in (p.strip() for p in args.presets.split(",") if p.strip()):
        row = measure(model, preset, calibration, batch)
        document["rows"].append(row)
        print(f"{preset:<12} lower {row['lower_s']:6.2f} s  compile {row['compile_s']:6.2f} s  "
              f"dots {row['dots']}", flush=True)
        if args.out:
            write_text_atomic(args.out, json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
