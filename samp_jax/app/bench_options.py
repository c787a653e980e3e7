"""`samp-jax bench`'s options and the shapes they name, apart from the benchmark itself
(`samp_jax.app.bench`, which loads JAX and the models): the parser builds `samp-jax bench
--help` from this module without loading them."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

from samp_jax.app import choices
from samp_jax.app.arguments import positive_int

SHAPES = ((1, 32), (1, 128), (8, 128), (32, 128), (32, 384), (128, 128), (256, 128))
QUICK_SHAPES = ((1, 32), (2, 32))


BENCH = "samp_jax.app.bench"


def description() -> str:
    """The command's description: `samp_jax.app.bench`'s docstring, read from its source
    (the one copy of it) rather than imported; imported where no source was installed."""
    source = importlib.util.find_spec(BENCH).loader.get_source(BENCH)
    if source is None:  # compiled files only
        return importlib.import_module(BENCH).__doc__
    return ast.get_docstring(ast.parse(source), clean=False)


def add_arguments(parser) -> None:
    parser.add_argument("--model", default=None,
                        help="time your own model instead of the bench's: an HF folder, a PEFT "
                             "adapter folder, 'minilm', or a quantized folder samp-jax wrote "
                             "(timed as it was saved), at --precision's precisions; ratios are "
                             "to the first of them")
    parser.add_argument("--precision", default=None,
                        help="with --model: comma-separated presets and precision-map files "
                             "(e.g. search_out/precision_map.json); default: this device's float "
                             "precision (fp32 on a CPU, fp16 on a GPU), quant_ffn_only, "
                             "fully_quant, and fp8 where the device has it")
    parser.add_argument("--activation", default=None, choices=("dynamic", "static"),
                        help="with --model: the INT8 presets' activation scales (default: "
                             "dynamic; static ones come from random ids: timing only)")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke run: shapes 1x32 and 2x32, one timed repeat (MiniLM unless "
                             "--models says otherwise)")
    parser.add_argument("--models", default=None,
                        help=f"comma-separated, of {list(choices.BENCH_MODELS)} (default: "
                             "bert-base,minilm)")
    parser.add_argument("--shapes", default=None,
                        help="comma-separated BATCHxSEQ, e.g. 1x128,8x128 (default: "
                             + ",".join(f"{b}x{s}" for b, s in SHAPES) + ")")
    parser.add_argument("--contenders", default=None,
                        help=f"comma-separated subset of {list(choices.BENCH_CONTENDERS)}")
    parser.add_argument("--minilm", type=Path, default=None,
                        help="MiniLM folder (e.g. an FP16 copy carried to a GPU machine); "
                             "default: the asset cache")
    parser.add_argument("--repeats", type=positive_int, default=30,
                        help="timed samples per contender and shape; the median is reported")
    parser.add_argument("--inner", type=positive_int, default=5,
                        help="calls per timed sample (the sample is their mean)")
    parser.add_argument("--interpret", action="store_true",
                        help="run the Pallas kernels in interpret mode (CPU; slow, checks only)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default benchmarks/results/<device>-e2e.json), "
                             'each row written as it finishes ("complete": false until the run '
                             "ends); the plot goes beside it as .png when the run completes (the "
                             "previous run's is removed as its results are replaced)")
    parser.add_argument("--json", action="store_true", help="print the results JSON to stdout")
