"""Where one forward's time goes: a per-kernel breakdown from JAX's profiler, by category.

Usage (GPU): PYTHONPATH=. python benchmarks/kernel_profile.py --models bert-base --shape 32x128
             → benchmarks/results/<device>-profile.json
CPU smoke:   PYTHONPATH=. python benchmarks/kernel_profile.py --quick --out /tmp/profile.json

For each contender (`samp_jax.app.bench` names; default FP16, fully_quant through the Pallas
kernels, and the shipped searched map), the forward is compiled ahead of time, run once, then
`--iters` forwards are traced with `jax.profiler.trace` (a Perfetto trace). Every device-side
event (the kernels on the GPU's streams) is summed by name and by category: `gemm`,
`attention`, `layernorm` (the fused LN/embedding + quantize kernels included), `quantize`,
`copies`, `other`; per forward, in ms. The CPU backend puts no kernel events in the trace, so
there the breakdown is empty and only the program's structure is reported: the instructions of
the compiled entry computation by opcode, fusion kind and custom-call target (each fusion or
custom call is one kernel launch on a GPU). The file is rewritten after every contender.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import jax

from calibrate import calibrate
from samp_jax.serving.timing import device_description, device_file_stem
from samp_jax import ops
from samp_jax.app import bench
from samp_jax.core.atomic import write_text_atomic

CONTENDERS = ("samp_fp16", "samp_fully_quant_pallas", "samp_search_snli_1pct")
# Kernel-name patterns (lowercase, searched in order); the first that matches names the category.
CATEGORIES = (
    ("gemm", r"gemm|matmul|cublas|cutlass|xmma|wgmma|\bdot|_dot|samp_int8_matmul"),
    ("attention", r"fmha|flash|cudnn|attention|softmax"),
    ("layernorm", r"layernorm|layer_norm|samp_embedding_quant|norm"),
    ("quantize", r"quant|convert|round|clamp"),
    ("copies", r"copy|transpose|memcpy|memset|concatenate|dynamic.update.slice|\bpad"),
    ("other", r""),
)


def category(kernel_name: str) -> str:
    """The `CATEGORIES` entry of a kernel name."""
    name = kernel_name.lower()
    return next(label for label, pattern in CATEGORIES if re.search(pattern, name))


def device_events(trace: dict | list) -> list[tuple[str, float]]:
    """`(name, duration µs)` of every complete event on a device (not `/host:`) process."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    processes = {e.get("pid"): e.get("args", {}).get("name", "") for e in events
                 if e.get("ph") == "M" and e.get("name") == "process_name"}
    return [(e["name"], float(e.get("dur", 0.0))) for e in events
            if e.get("ph") == "X" and not processes.get(e.get("pid"), "/host").startswith("/host")]


def breakdown(events: list[tuple[str, float]], iters: int, top: int = 15) -> dict:
    """Per-forward ms by category and for the `top` kernels, from device events."""
    by_name: dict[str, float] = collections.defaultdict(float)
    for name, dur in events:
        by_name[name] += dur
    by_category: dict[str, float] = collections.defaultdict(float)
    for name, dur in by_name.items():
        by_category[category(name)] += dur
    per_forward = lambda us: us / iters / 1e3  # noqa: E731
    return {"device_events": len(events),
            "total_ms": per_forward(sum(by_name.values())),
            "by_category_ms": {c: per_forward(us) for c, us in sorted(by_category.items())},
            "top_kernels_ms": [{"name": n, "category": category(n), "ms": per_forward(us)}
                               for n, us in sorted(by_name.items(), key=lambda kv: -kv[1])[:top]]}


def hlo_structure(hlo_text: str) -> dict:
    """Counts of the entry computation's instructions: by opcode, fusion kind, custom call."""
    entry = hlo_text[hlo_text.index("ENTRY"):] if "ENTRY" in hlo_text else hlo_text
    entry = entry[:entry.find("\n}") + 1] if "\n}" in entry else entry
    opcodes, kinds, targets = collections.Counter(), collections.Counter(), collections.Counter()
    for line in entry.splitlines()[1:]:
        found = re.search(r"=\s*[^=]*?\s([a-z][\w-]*)\(", line)
        if not found:
            continue
        opcodes[found.group(1)] += 1
        if (kind := re.search(r"kind=(k\w+)", line)) and found.group(1) == "fusion":
            kinds[kind.group(1)] += 1
        if target := re.search(r'custom_call_target="([^"]+)"', line):
            targets[target.group(1)] += 1
    return {"opcodes": dict(opcodes.most_common()), "fusion_kinds": dict(kinds),
            "custom_call_targets": dict(targets)}


def profile_contender(name, model, calibration, batch, iters: int) -> dict:
    """Compiles, runs once, traces `iters` forwards; the breakdown and the HLO structure."""
    contender = next(c for c in bench.SAMP_CONTENDERS if c.name == name)
    forward, state, _ = bench.build_samp(contender, model, calibration)
    compiled, inputs, info = bench.aot_compile(forward, state, batch)
    call = lambda: compiled(state, *inputs)  # noqa: E731
    jax.block_until_ready(call())
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(iters):
                out = call()
            jax.block_until_ready(out)
        trace_file = next(Path(folder).rglob("perfetto_trace.json.gz"))
        trace = json.load(gzip.open(trace_file))
    return {"contender": name, **info, "iters": iters,
            **breakdown(device_events(trace), iters), "hlo": hlo_structure(compiled.as_text())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke: the tiny model, 1x32, 2 iterations, the first two "
                             "contenders, Pallas in interpret mode")
    parser.add_argument("--models", default="bert-base", help=f"comma-separated, of {list(bench.MODELS)}")
    parser.add_argument("--shape", default="32x128", help="BATCHxSEQ")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--minilm", type=Path, default=None, help="MiniLM folder (e.g. an FP16 copy)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--interpret", action="store_true", help="Pallas kernels in interpret mode")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    models, iters, interpret = [m.strip() for m in args.models.split(",") if m.strip()], args.iters, args.interpret
    shape = bench.parse_shapes(args.shape)[0]
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if args.quick:
        models, shape, iters, interpret = ["tiny"], (1, 32), 2, True
        contenders = contenders[:2]
    unknown = [c for c in contenders if c not in {s.name for s in bench.SAMP_CONTENDERS}]
    if unknown:
        parser.error(f"contenders {unknown} are not samp-jax contenders of the bench")
    device = device_description()
    out = args.out or Path("benchmarks/results") / f"{device_file_stem()}-profile.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"device": device, "backend": jax.default_backend(), "interpret": interpret,
                "command": "python benchmarks/kernel_profile.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "jax": jax.__version__, "batch": shape[0], "seq": shape[1], "rows": []}
    with ops.interpret(interpret):
        for model_name, (model, _) in bench.load_models(models, args.minilm).items():
            calibration = calibrate(model, [bench.token_batch(model.config.vocab_size, 8, 128)],
                                    method="minmax")
            batch = bench.token_batch(model.config.vocab_size, *shape)
            for name in contenders:
                start = time.perf_counter()
                try:
                    row = profile_contender(name, model, calibration, batch, iters)
                except bench.SkipContender as e:
                    row = {"contender": name, "skipped": str(e)}
                row.update(model=model_name, wall_s=time.perf_counter() - start)
                document["rows"].append(row)
                write_text_atomic(out, json.dumps(document, indent=1))
                summary = row.get("by_category_ms", row.get("skipped"))
                print(f"{model_name:<9} {name:<26} {summary}", flush=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
