"""Times one jitted MiniLM forward (FP32 between sites, as the CPU target runs it) per variant.

    .venv/bin/python tools/forward_ms.py --variants fp32,dynamic,static --batch 32 --seq 128

Variants: `fp32`, `dynamic` (every site INT8 per-token dynamic), `static` (every site INT8
per-tensor static, minmax scales from the timed batch: the speed does not depend on them).
Prints the median of `--repeats` samples of 5 calls each, after warm-up
(`samp_jax.serving.timing.time_ms`), and the page faults and system time per forward. Used for
before/after figures of a code change: run it on both revisions back to back, since a shared
machine's speed drifts. `--malloc system` leaves glibc's allocator as it is, `keep` (the
default, as the `samp-jax` command runs) reuses freed host memory
(`samp_jax.core.host_memory.keep_cpu_buffers`); alternate the two for their difference:

    for i in 1 2 3 4 5 6; do for m in system keep; do
      .venv/bin/python tools/forward_ms.py --variants static --malloc $m; done; done
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibrate.calibration.api import calibrate  # noqa: E402
from samp_jax.serving.timing import keep_cpu_buffers_for_timing, time_ms  # noqa: E402
from samp_jax import PrecisionMap, load, minilm_path, quantize  # noqa: E402
from samp_jax.serving.forward import jit_forward  # noqa: E402
from tools.ort_compare import timing_batch  # noqa: E402

ACTIVATION = {"dynamic": "per_token_dynamic", "static": "per_tensor_static"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="fp32,dynamic,static")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--malloc", choices=("keep", "system"), default="keep")
    args = parser.parse_args()
    if args.malloc == "keep":
        keep_cpu_buffers_for_timing("forward_ms", required=True)
    model = load(minilm_path())
    inputs = timing_batch(args.batch, args.seq, model.config.vocab_size)
    calibration = calibrate(model, [inputs], "minmax")
    for name in args.variants.split(","):
        if name == "fp32":
            m = model
        else:
            pmap = PrecisionMap.preset("fully_quant", model.config.num_layers, activation=ACTIVATION[name])
            m = quantize(model, pmap, calibration, dtype=jnp.float32)
        forward = jit_forward(m)
        ms = time_ms(lambda: forward(inputs), repeats=args.repeats)
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(5):
            jax.block_until_ready(forward(inputs))
        after = resource.getrusage(resource.RUSAGE_SELF)
        print(f"{name}: {ms:.1f} ms at {args.batch}x{args.seq} (malloc {args.malloc}; per forward "
              f"{(after.ru_minflt - before.ru_minflt) / 5:.0f} page faults, "
              f"{(after.ru_stime - before.ru_stime) / 5 * 1e3:.1f} ms system time)", flush=True)


if __name__ == "__main__":
    main()
