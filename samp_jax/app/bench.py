"""End-to-end inference benchmark: samp-jax precisions and GEMM implementations against HF
transformers on PyTorch, in one process, on the same token ids.

Models (`MODELS`): BERT-base (random weights, `EncoderConfig.bert_base()`), the real
all-MiniLM-L6-v2, and `tiny` (random weights, 6 layers of width 64: a CPU check that every
contender runs, with `--interpret` for the Pallas kernels).
Contenders (each skipped, with the reason recorded, where it cannot run):
- `torch_sdpa_fp16`, `torch_eager_fp16`, `torch_compile_fp16`: HF `BertModel` in FP16 on CUDA;
- `samp_fp16`: XLA GEMMs + cuDNN flash attention, the strongest FP16 baseline we have;
- `samp_quant_ffn_only_{xla,pallas}`, `samp_fully_quant_{xla,pallas}`: W8A8 (per-token dynamic
  activations) with XLA's s8 dot or the Pallas kernels (INT8 GEMMs plus the fused LN/embedding
  quantize kernels);
- `samp_fp8`: FP8 E4M3 GEMMs (minmax-calibrated static activation scales);
- `samp_search_snli_1pct`: the map the search recommended for SNLI at 1% (MiniLM: it was
  searched on MiniLM's 6 layers).

Your own model (`--model DIR`: an HF folder of any supported family, a PEFT adapter folder,
`minilm`, or a quantized folder samp-jax wrote) is timed instead, with its own head, at the
presets and map files `--precision` names (e.g. the `precision_map.json` a search wrote), each
compared with the first (`speedup_vs_baseline`); by default this device's float precision
(FP32 on a CPU, FP16 on a GPU), `quant_ffn_only` and `fully_quant` (and `fp8` where the device
has it). INT8 and FP8 presets are built for this device as the
search builds them (its float precision between sites); a map file as `quantize` builds it; a
quantized folder as it was saved. Static scales a map leaves to a calibration come from random
ids (`static_sites_scaled_on_random_ids`): a scale's value does not change the time, and
accuracy is `samp-jax eval`'s to measure. Every samp-jax row records its `compute_dtype` and
`site_precisions` (how many of the layers' GEMM sites run at each precision; `gemm_executed`
counts the head's GEMMs too), and `attention_precisions` where the map names attention products.

Timing (`samp_jax.serving.timing.time_ms` for JAX; the same scheme with CUDA syncs for torch): warm-up,
then the median over `repeats` of the mean of `inner` back-to-back calls with one sync. Every
row records the median latency and the throughput in sequences per second; ratios are taken
against `torch_sdpa_fp16` and `samp_fp16` of the same model and shape, measured in the same run.
Every samp-jax row also records `gemm_executed`, how many GEMM sites each implementation
(`pallas_mosaic`, `pallas_triton`, `xla`) actually ran, fallbacks included.
A samp-jax row also records `build_s` (quantizing the model), `lower_s` (tracing and lowering)
and `compile_s` (XLA compilation of that shape, ahead of time); a torch row its `first_call_s`
(`torch.compile` compiles on the first call). The results document is handed to `sink` after
every row, so a run cut short keeps the rows it finished: `samp-jax bench` writes it to `--out`
as `"complete": false` with `rows_done` of `rows_planned` (and the `versions` and `created`
of the run's start) until the run ends, `"complete": true` then, when the plot beside it
(`.png`) is drawn; the first row written removes the plot of the run before.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import platform
import re
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from flax import nnx

from calibrate.calibration import calibrate
from pallas_kernels import devices
from samp_jax import ops
from samp_jax.app.bench_contenders import (SAMP_CONTENDERS, SEARCH_MAP, TORCH_CONTENDERS,  # noqa: F401
                                           SampContender, SkipContender, contender_names,
                                           own_contenders)
from samp_jax.app.bench_options import QUICK_SHAPES, SHAPES, add_arguments  # noqa: F401
from samp_jax.core.text import command_line
from samp_jax.core.assets import minilm_path
from samp_jax.app.outputs import check_output, check_precision_items, summary_after
from samp_jax.core.atomic import atomic_file, resolve_output, write_text_atomic
from samp_jax.models import EncoderConfig, EncoderModel, load_pretrained
from samp_jax.models.config import INIT_STD
from samp_jax.core.version import run_record
from samp_jax.core.precision import PRESETS, PrecisionMap
from samp_jax.ptq.loading import load
from samp_jax.ptq.quantized import quantize
from samp_jax.serving.forward import batch_inputs, merged_call
from samp_jax.serving.timing import device_description, device_file_stem, error_line, time_ms

# ------------------------------------------------------------------------------- models
# Six layers, as the shipped search map has; widths every Pallas kernel tiles (multiples of 64).
TINY_CONFIG = EncoderConfig(vocab_size=2048, hidden_size=64, num_layers=6, num_heads=4,
                            intermediate_size=128, max_position_embeddings=512)


def random_weights(config: EncoderConfig, seed: int = 0) -> EncoderModel:
    """An `EncoderModel` of `config` with random weights drawn on the host: weights and
    embeddings normal with BERT's 0.02 spread, cut at two of it; LayerNorm scales 1, biases 0.
    Built abstract and filled, so that no random initializer runs on the device: each one JAX
    runs eagerly compiles per shape, seconds of a benchmark process's start."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: EncoderModel(config, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = next(key.key for key in reversed(path) if hasattr(key, "key"))  # the variable
        if name == "scale":
            value = np.ones(leaf.shape)
        elif name == "bias":
            value = np.zeros(leaf.shape)
        else:
            value = np.clip(rng.standard_normal(leaf.shape, np.float32), -2.0, 2.0) * INIT_STD
        return jax.numpy.asarray(value, leaf.dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def _random_model(config: EncoderConfig):
    return lambda minilm_dir: (random_weights(config), None)


def _minilm(minilm_dir: Path | None):
    folder = Path(minilm_dir) if minilm_dir is not None else minilm_path()
    return load_pretrained(folder), folder


# name -> (minilm_dir -> (float EncoderModel, HF folder or None))
MODELS = {"bert-base": _random_model(EncoderConfig.bert_base()), "minilm": _minilm,
          "tiny": _random_model(TINY_CONFIG)}


def load_models(names, minilm_dir: Path | None):
    """name -> (float EncoderModel, HF folder or None)."""
    load_models_check(names)
    return {name: MODELS[name](minilm_dir) for name in names}


def parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    """`"1x128,8x128"` -> `((1, 128), (8, 128))`.

    Raises:
      ValueError: a shape that is not BATCHxSEQ with positive integers.
    """
    shapes = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        batch, _, seq = item.partition("x")
        if not (batch.isdigit() and seq.isdigit() and int(batch) > 0 and int(seq) > 0):
            raise ValueError(f"shape {item!r} is not BATCHxSEQ with positive integers (e.g. 8x128)")
        shapes.append((int(batch), int(seq)))
    if not shapes:
        raise ValueError(f"--shapes {text!r} names no shape (e.g. 1x128,8x128)")
    return tuple(shapes)


def token_batch(vocab_size: int, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random ids with every position real, the same inputs for everyone: from id 1,000 on
    (past the special tokens of a BERT or RoBERTa vocabulary), or from the upper half of a
    vocabulary of under 2,000 ids."""
    rng = np.random.default_rng(seed + 1000 * batch + seq)
    low = min(1000, vocab_size // 2)
    return {"input_ids": rng.integers(low, vocab_size, (batch, seq)).astype(np.int32),
            "attention_mask": np.ones((batch, seq), np.int32),
            "token_type_ids": np.zeros((batch, seq), np.int32)}


# ------------------------------------------------------------------------------ samp-jax
def build_samp(contender: SampContender, model, calibration):
    """The quantized model's jitted forward `(state, *inputs) -> output`, its state and the
    quantized model itself (for what ran at each site). A saved model is timed as it is."""
    pmap = contender.precision_map(model.config.num_layers)
    if contender.implementation == "pallas":
        if not ops.kernels_available():
            raise SkipContender("the Pallas kernels need a GPU (run with --interpret to exercise "
                                "them on the CPU in interpret mode)")
    if contender.saved is not None:
        quantized = contender.saved
    else:
        quantized = quantize(model, pmap, calibration if pmap.needs_calibration() else None,
                             dtype=contender.dtype, implementation=contender.implementation)
    graphdef, state = nnx.split(quantized)
    return jax.jit(lambda state, *inputs: merged_call(graphdef, state, *inputs)), state, quantized


def aot_compile(forward, state, batch) -> tuple[jax.stages.Compiled, tuple, dict]:
    """Compiles `forward` for this batch's shape ahead of time: `(compiled, inputs, info)`,
    `info` being `{"lower_s", "compile_s", "kernels"}` (the Pallas calls in the traced
    program, which prove which kernels ran)."""
    inputs = batch_inputs(batch)
    start = time.perf_counter()
    traced = forward.trace(state, *inputs)
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    kernels = sorted(set(re.findall(r"name=(samp_[a-z0-9_]+)", str(traced.jaxpr))))
    return compiled, inputs, {"lower_s": lowered_at - start, "compile_s": done - lowered_at,
                              "kernels": kernels}


def compile_samp(forward, state, batch) -> tuple[Callable[[], jax.Array], dict]:
    """`aot_compile`, as the timed call `() -> output` and its info."""
    compiled, inputs, info = aot_compile(forward, state, batch)
    return (lambda: compiled(state, *inputs)), info


def site_precisions(pmap) -> dict[str, int]:
    """{precision: GEMM sites of the layers at it} of the model's map (`int8`, `fp32`, ...)."""
    return dict(sorted(collections.Counter(p.precision for _, p in pmap.items()).items()))


def attention_precisions(pmap) -> dict[str, int]:
    """{precision: attention products (`attn_scores`, `attn_context`) the map names at it}; the
    products it does not name run in the compute dtype and are not counted."""
    named = [p.precision for layer in range(pmap.num_layers)
             for p in (pmap.attention(layer).scores, pmap.attention(layer).context) if p is not None]
    return dict(sorted(collections.Counter(named).items()))


def gemm_executed(quantized, batch) -> dict[str, int]:
    """{implementation: GEMM sites it ran} in this model's traced program (`pallas_mosaic`,
    `pallas_triton`, `xla`): which implementation really executed, fallbacks included."""
    sites = quantized.executed_implementations(batch)["sites"]
    return dict(sorted(collections.Counter(sites.values()).items()))


# ---------------------------------------------------------------------------------- torch
def build_torch(name: str, model, hf_dir: Path | None):
    """HF `BertModel` FP16 on CUDA; `batch -> last hidden state` (a torch tensor)."""
    try:
        import torch
        import transformers
    except ImportError as e:
        raise SkipContender(f"torch/transformers not importable: {e}") from None
    if not torch.cuda.is_available():
        raise SkipContender("no CUDA device for torch FP16")
    attn = "eager" if name == "torch_eager_fp16" else "sdpa"
    if hf_dir is not None:
        net = transformers.BertModel.from_pretrained(str(hf_dir), attn_implementation=attn,
                                                     add_pooling_layer=False)
    else:
        config = transformers.BertConfig(**model.config.to_hf_dict())
        config._attn_implementation = attn
        net = transformers.BertModel(config, add_pooling_layer=False)
    net = net.half().cuda().eval()
    if name == "torch_compile_fp16":
        net = torch.compile(net)

    def forward(batch):
        with torch.inference_mode():
            ids = torch.from_numpy(batch["input_ids"]).long().cuda(non_blocking=True)
            mask = torch.from_numpy(batch["attention_mask"]).long().cuda(non_blocking=True)
            return net(input_ids=ids, attention_mask=mask).last_hidden_state
    return forward, torch


def time_torch(forward, batch, torch, *, warmup: int, repeats: int, inner: int) -> tuple[float, float]:
    """(median ms, seconds of the first call on this shape: `torch.compile` compiles there)."""
    with torch.inference_mode():
        start = time.perf_counter()
        forward(batch)
        torch.cuda.synchronize()
        first_call_s = time.perf_counter() - start
        for _ in range(warmup):
            forward(batch)
        torch.cuda.synchronize()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(inner):
                forward(batch)
            torch.cuda.synchronize()
            samples.append((time.perf_counter() - start) / inner * 1e3)
    return statistics.median(samples), first_call_s


# ------------------------------------------------------------------------------------ run
@dataclasses.dataclass(frozen=True)
class OwnModel:
    """`samp-jax bench --model`: a user's model and the contenders it is timed as
    (`bench_contenders.own_contenders`), the first the baseline of the ratios.

    Attributes:
      name: the rows' `model`.
      model: a float `EncoderModel`, or a `QuantizedModel` (timed as it was saved).
      contenders: what to time.
      source: the model as the user named it (a folder, or `minilm`).
    """

    name: str
    model: object
    contenders: tuple[SampContender, ...]
    source: str

    @property
    def baseline(self) -> str | None:
        """The contender the others are compared with: the first, where there are several."""
        return self.contenders[0].name if len(self.contenders) > 1 else None


def check_shapes_fit(shapes, model, what: str) -> None:
    """Refuses a shape longer than the model's position table (before any slow work).

    Raises:
      ValueError: naming the shape, the model and its limit.
    """
    limit = model.config.position_limit
    longer = [f"{b}x{s}" for b, s in shapes if limit is not None and s > limit]
    if longer:
        raise ValueError(f"--shapes {','.join(longer)}: longer than the {limit}-token limit of "
                         f"{what} (its position table); give rows of at most {limit} tokens")


def run(*, models=("bert-base", "minilm"), shapes=SHAPES, contenders: list[str] | None = None,
        repeats: int = 30, inner: int = 5, warmup: int = 3, minilm_dir: Path | None = None,
        interpret: bool = False, progress: Callable[[str], None] | None = print,
        sink: Callable[[dict], None] | None = None, own: OwnModel | None = None) -> dict:
    """Runs every (model, shape, contender) and returns the results document (see module doc).

    Contenders run in the order given (a short time box then measures the first ones), each
    on every shape. One that fails to build, compile or run gets a row with its `error` for
    each shape, and the next one runs. `sink(document)`, when given, receives the document
    (ratios included) after every row. `own`, when given, is the one model timed (`models`,
    `contenders` and `minilm_dir` are not used), its rows compared with its first contender's
    (`speedup_vs_baseline`)."""
    if own is not None:
        check_shapes_fit(shapes, own.model, own.source)
        wanted, loaded = list(own.contenders), {own.name: (own.model, None)}
    else:
        names = list(dict.fromkeys(contenders or contender_names()))
        unknown = set(names) - set(contender_names())
        if unknown:
            raise ValueError(f"unknown contenders {sorted(unknown)}; choose from {contender_names()}")
        by_name = {c.name: c for c in SAMP_CONTENDERS}
        wanted = [by_name.get(name, name) for name in names]
        loaded = load_models(models, minilm_dir)
    known = devices.lookup(jax.devices()[0].device_kind)
    document = {"device": device_description(), "device_table_entry": known and known.name,
                "backend": jax.default_backend(),
                "interpret": interpret, "jax": jax.__version__, "machine": platform.machine(),
                "timing": {"warmup": warmup, "repeats": repeats, "inner": inner,
                           "statistic": "median of repeats, each the mean of inner back-to-back calls"},
                "rows": []}
    ratios = BASELINES
    if own is not None:
        document |= {"model_source": own.source, "baseline": own.baseline}
        ratios = () if own.baseline is None else (("baseline", own.baseline),)

    def emit(row: dict, line: str | None = None) -> None:
        document["rows"].append(row)
        add_ratios(document["rows"], ratios)
        if line and progress:
            progress(line)
        if sink is not None:
            sink(document)

    timing = dict(warmup=warmup, repeats=repeats, inner=inner)
    with ops.interpret() if interpret else contextlib.nullcontext():
        for model_name, (model, hf_dir) in loaded.items():
            calibration = _random_id_calibration(model, wanted)
            batches = {shape: token_batch(model.config.vocab_size, *shape) for shape in shapes}
            for contender in wanted:
                _run_contender(contender, model_name, model, hf_dir, calibration, batches, timing,
                               emit)
    return document


def _random_id_calibration(model, contenders):
    """Minmax scales from random ids for the static sites a contender's map leaves to a
    calibration (timing only: a scale's value does not change the time), or None where no
    contender has one."""
    needed = False
    for c in contenders:
        if isinstance(c, SampContender) and c.saved is None:
            try:
                pmap = c.precision_map(model.config.num_layers)
                # the bench's own contenders take a calibration wherever they are static
                needed |= (c.unscaled_static_sites(model.config.num_layers) > 0
                           if c.map_path is not None else pmap.needs_calibration())
            except (SkipContender, ValueError, OSError):  # its own rows say what is wrong
                pass
    if not needed:
        return None
    limit = model.config.position_limit
    seq = 128 if limit is None else min(128, limit)
    with warnings.catch_warnings():  # scales for timing: the advice on their quality is moot
        warnings.filterwarnings("ignore", message="calibration saw only", category=UserWarning)
        return calibrate(model, [token_batch(model.config.vocab_size, 8, seq)], method="minmax")


def _run_contender(contender, model_name, model, hf_dir, calibration, batches, timing, emit) -> None:
    """Builds one contender (a torch contender's name, or a `SampContender`) once per model
    (quantization, HF load), then times it per shape."""
    name = contender if isinstance(contender, str) else contender.name
    start = time.perf_counter()
    try:
        if isinstance(contender, str):
            forward, torch = build_torch(name, model, hf_dir)
        else:
            forward, state, quantized = build_samp(contender, model, calibration)
    except SkipContender as e:
        for b, s in batches:
            emit({"model": model_name, "batch": b, "seq": s, "contender": name, "skipped": str(e)},
                 f"{model_name:<9} {b:>3}x{s:<3} {name:<28} skipped: {e}")
        return
    except Exception as e:  # noqa: BLE001  (a failed build is a result: the next contender runs)
        for b, s in batches:
            emit({"model": model_name, "batch": b, "seq": s, "contender": name, "error": error_line(e)},
                 f"{model_name:<9} {b:>3}x{s:<3} {name:<28} error: {error_line(e)}")
        return
    build_s = time.perf_counter() - start
    is_torch = isinstance(contender, str)
    built = {} if is_torch else _what_was_built(contender, quantized, model.config.num_layers)
    for (batch_size, seq), batch in batches.items():
        row = {"model": model_name, "batch": batch_size, "seq": seq, "contender": name,
               "build_s": build_s, **built}
        try:
            _time_row(row, name, forward, torch if is_torch else None,
                      None if is_torch else (state, quantized, contender),
                      batch, timing, emit)
        except Exception as e:  # noqa: BLE001  (a compile or run error is recorded, not fatal)
            row["error"] = error_line(e)
            emit(row, f"{model_name:<9} {batch_size:>3}x{seq:<3} {name:<28} error: {row['error']}")


def _what_was_built(contender: SampContender, quantized, num_layers: int) -> dict:
    """The row fields of a built samp-jax contender, the same for every shape: the dtype
    between sites, the precisions of its sites (and of the attention products its map names),
    and how many static sites took their scales from random ids."""
    pmap = quantized.precision_map
    built = {"compute_dtype": jax.numpy.dtype(quantized.model.dtype).name,
             "site_precisions": site_precisions(pmap)}
    if pmap.sets_attention:  # INT8 (or float) attention products
        built["attention_precisions"] = attention_precisions(pmap)
    unscaled = contender.unscaled_static_sites(num_layers)
    if unscaled:  # their scales came from random ids
        built["static_sites_scaled_on_random_ids"] = unscaled
    return built


def _time_row(row, name, forward, torch, samp, batch, timing, emit) -> None:
    """Times one (contender, shape) into `row` and emits it (or a skipped row). `torch` is the
    module for a torch contender; `samp` is `(state, quantized, contender)` for a samp-jax one."""
    model_name, batch_size, seq = row["model"], row["batch"], row["seq"]
    if torch is not None:
        ms, row["first_call_s"] = time_torch(forward, batch, torch, **timing)
    else:
        state, quantized, contender = samp
        call, info = compile_samp(forward, state, batch)
        row.update(info)
        row["gemm_executed"] = gemm_executed(quantized, batch)
        if contender.implementation == "pallas" and not info["kernels"]:
            row["skipped"] = "the Pallas kernels declined every site (fell back to XLA)"
            emit(row, f"{model_name:<9} {batch_size:>3}x{seq:<3} {name:<28} skipped: {row['skipped']}")
            return
        ms = time_ms(call, **timing)
    row.update(median_ms=ms, sequences_per_s=batch_size / (ms * 1e-3))
    emit(row, f"{model_name:<9} {batch_size:>3}x{seq:<3} {name:<28} {ms:9.3f} ms "
              f"{row['sequences_per_s']:10.1f} seq/s")


BASELINES = (("torch_sdpa_fp16", "torch_sdpa_fp16"), ("samp_fp16", "samp_fp16"))
"""The bench's own ratios: `speedup_vs_<label>` against `<contender>`."""


def add_ratios(rows: list[dict], pairs: tuple[tuple[str, str], ...] = BASELINES) -> None:
    """`speedup_vs_<label>` of each `(label, contender)` of `pairs`: that contender's latency
    at the same model and shape / this row's (None where it has none)."""
    base = {(r["model"], r["batch"], r["seq"], r["contender"]): r["median_ms"]
            for r in rows if "median_ms" in r}
    for r in rows:
        if "median_ms" not in r:
            continue
        for label, contender in pairs:
            ref = base.get((r["model"], r["batch"], r["seq"], contender))
            r[f"speedup_vs_{label}"] = None if ref is None else ref / r["median_ms"]


def _contenders_in(rows: list[dict]) -> list[str]:
    """The contenders of `rows`: the bench's own in its order, then others as they come."""
    present = list(dict.fromkeys(r["contender"] for r in rows))
    return [n for n in contender_names() if n in present] + [
        n for n in present if n not in contender_names()]


def markdown_table(result: dict, model: str) -> str:
    """Median ms per shape and contender, with the ratio to samp-jax FP16 (and torch sdpa),
    or to the baseline of a `--model` run."""
    rows = [r for r in result["rows"] if r["model"] == model]
    shapes = sorted({(r["batch"], r["seq"]) for r in rows}, key=lambda s: (s[1], s[0]))
    names = [n for n in _contenders_in(rows) if any(r["contender"] == n and "median_ms" in r
                                                   for r in rows)]
    lines = ["| contender | " + " | ".join(f"{b}×{s}" for b, s in shapes) + " |",
             "|---|" + "---|" * len(shapes)]
    for name in names:
        cells = []
        for b, s in shapes:
            r = next((r for r in rows if r["contender"] == name and (r["batch"], r["seq"]) == (b, s)), None)
            if r is None or "median_ms" not in r:
                cells.append("–")
                continue
            ratios = [f"{r[key]:.2f}×{suffix}" for key, suffix in
                      (("speedup_vs_baseline", ""), ("speedup_vs_samp_fp16", ""),
                       ("speedup_vs_torch_sdpa_fp16", " sdpa"))
                      if r.get(key) is not None]  # a baseline not run this time has no ratio
            cells.append(f"{r['median_ms']:.3f} ms" + (f" ({', '.join(ratios)})" if ratios else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Throughput (sequences/s, log scale) per shape, one panel per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = sorted({r["model"] for r in result["rows"]})
    fig, axes = plt.subplots(len(models), 1, figsize=(11, 4 * len(models)), squeeze=False)
    for ax, model in zip(axes[:, 0], models):
        rows = [r for r in result["rows"] if r["model"] == model and "median_ms" in r]
        shapes = sorted({(r["batch"], r["seq"]) for r in rows}, key=lambda s: (s[1], s[0]))
        names = _contenders_in(rows)
        width = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            values = [next((r["sequences_per_s"] for r in rows if r["contender"] == name
                            and (r["batch"], r["seq"]) == s), 0.0) for s in shapes]
            ax.bar(np.arange(len(shapes)) + i * width, values, width, label=name)
        ax.set_xticks(np.arange(len(shapes)) + 0.4 - width / 2, [f"{b}×{s}" for b, s in shapes])
        ax.set_yscale("log")
        ax.set_ylabel("sequences / s")
        ax.set_title(f"{model} on {result['device']}")
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="samp-jax bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def run_from_args(args, load_model: Callable | None = None) -> int:
    """`samp-jax bench`. `load_model(args)` gives `--model`'s `(model, description)` (the CLI
    loads it as its other commands do; by default `samp_jax.load` of the folder, or the
    packaged MiniLM for `minilm`)."""
    load_model = load_model or _load_own
    shapes, repeats, inner, warmup = SHAPES, args.repeats, args.inner, 3
    models = ("bert-base", "minilm")
    if args.quick:
        shapes, repeats, inner, warmup, models = QUICK_SHAPES, 1, 1, 1, ("minilm",)
    if args.models is not None:  # each model once, as it is benchmarked
        models = tuple(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip()))
    try:
        if args.shapes is not None:
            shapes = parse_shapes(args.shapes)
        if args.model is None:
            load_models_check(models)
        precisions = check_own_options(args)
    except (ValueError, OSError) as e:
        print(f"samp-jax bench: error: {e}", file=sys.stderr)
        return 2
    contenders = None if args.contenders is None else [c.strip() for c in args.contenders.split(",")]
    stem = device_file_stem() if args.model is None else f"{device_file_stem()}-{own_name(args.model)}"
    out = args.out or Path("benchmarks/results") / f"{stem}-e2e.json"
    figure = out.with_suffix(".png")
    if figure == out:  # the plot would replace the results
        print(f"samp-jax bench: error: --out {out} is where its plot goes (the .png beside "
              f"--out); give the results a .json path, such as {out.with_suffix('.json')}",
              file=sys.stderr)
        return 2
    inputs = () if args.model is None else (
        (args.model,) if args.model != "minilm" else ()) + tuple(
        name for name in (precisions or ()) if name not in PRESETS)  # the model and map files
    for path, what in ((out, "--out"), (figure, "--out's plot")):  # as every command: exit 1
        check_output(path, what=what, folder=False, inputs=inputs)  # before the benchmark
    own = None
    if args.model is not None:
        model, source = load_model(args)
        try:
            activation = None if args.activation is None else ACTIVATION_SCHEMES[args.activation]
            own = OwnModel(own_name(args.model), model,
                           own_contenders(model, precisions, activation), source)
            check_shapes_fit(shapes, model, source)
        except ValueError as e:
            print(f"samp-jax bench: error: {e}", file=sys.stderr)
            return 2
        models, contenders = (own.name,), [c.name for c in own.contenders]
    progress = (lambda line: print(line, file=sys.stderr, flush=True))
    command = command_line(["samp-jax", "bench", *(sys.argv[2:] if sys.argv[1:2] == ["bench"]
                                                   else sys.argv[1:])])
    record = run_record()  # the versions, and `created` when the run started: in every write
    planned = (len(models) * len(dict.fromkeys(contenders or contender_names()))
               * len(dict.fromkeys(shapes)))
    started = False

    def sink(document: dict, complete: bool = False) -> dict:  # each finished row, at once
        nonlocal started
        if not started:  # the previous run's plot goes with its results (`remove_plot`)
            out.parent.mkdir(parents=True, exist_ok=True)
            remove_plot(figure)
            started = True
        written = {"complete": complete, "rows_planned": planned,
                   "rows_done": len(document["rows"]), **document, "command": command, **record}
        write_text_atomic(out, json.dumps(written, indent=1))
        return written

    result = sink(run(models=models, shapes=shapes, contenders=None if own else contenders,
                      repeats=repeats, inner=inner, warmup=warmup, minilm_dir=args.minilm,
                      interpret=args.interpret, progress=progress, sink=sink, own=own),
                  complete=True)
    plot(result, figure)
    with summary_after(f"the results in {out} and their plot {figure}"):
        if args.json:
            print(json.dumps(result, indent=1))
        else:
            for model in sorted({r["model"] for r in result["rows"]}):
                against = (f"speed-up vs {result['baseline']}" if result.get("baseline") else
                           "speed-up vs samp-jax FP16" if own is None else "")
                print(f"\n{model} ({result['device']}): median latency"
                      + (f" ({against})" if against else ""))
                print(markdown_table(result, model))
            print(f"\nwrote {out} and {figure}")
    failed = [r for r in result["rows"] if "error" in r]
    if failed:  # recorded in the JSON; the exit status says so too (a GPU run's summary reads it)
        names = sorted({r["contender"] for r in failed})
        print(f"samp-jax bench: error: {len(failed)} of {len(result['rows'])} rows failed "
              f"({', '.join(names)}): see 'error' in {out}", file=sys.stderr)
        return 1
    return 0


ACTIVATION_SCHEMES = {"dynamic": "per_token_dynamic", "static": "per_tensor_static"}


def _load_own(args):
    """`--model` read with `samp_jax.load` (`minilm`: the packaged MiniLM)."""
    path = minilm_path() if args.model == "minilm" else Path(args.model)
    return load(path), str(args.model)


def own_name(model: str) -> str:
    """The rows' (and the default results file's) name of `--model`: its folder's name, in
    letters, digits, dots, dashes and underscores."""
    name = Path(str(model).rstrip("/\\")).name or "model"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def check_own_options(args) -> list[str] | None:
    """`--precision`'s items (None when not given), after checking that `--model`'s options
    come with it and the bench's own models' options do not (before any slow work).

    Raises:
      ValueError: naming the options that do not go together, or a `--precision` item that is
        neither a preset nor a file.
    """
    own_only = [f"--{name}" for name in ("precision", "activation")
                if getattr(args, name) is not None]
    if args.model is None:
        if own_only:
            raise ValueError(f"{' and '.join(own_only)} apply to --model (your own model); the "
                             "bench's own models are timed as --contenders names")
        return None
    builtin = [f"--{name}" for name in ("models", "contenders", "minilm")
               if getattr(args, name) is not None]
    if builtin:
        raise ValueError(f"--model times your own model at --precision's precisions; "
                         f"{' and '.join(builtin)} name the bench's own models and contenders: "
                         "give one or the other")
    if args.precision is None:
        return None
    names = [p.strip() for p in args.precision.split(",")]
    if not all(names):
        raise ValueError(f"--precision {args.precision!r} has an empty item; separate presets "
                         "and map files with single commas")
    check_precision_items(names)
    for name in names:  # every map file read now, not after the rows before it were timed
        if name not in PRESETS:
            PrecisionMap.from_json(Path(name))
    return names


def remove_plot(path: Path) -> None:
    """Removes the plot of an earlier run (`path`, or the file a link there points to; the link
    stays), as the first row of a new run replaces its results file: a plot is drawn when a run
    completes, and one beside a file of another run, or of a run cut short (`"complete":
    false`), would pass for its figure."""
    with contextlib.suppress(FileNotFoundError):
        resolve_output(path).unlink()


def load_models_check(models) -> None:
    """Raises ValueError for a model name `MODELS` does not have (before any slow work)."""
    unknown = [name for name in models if name not in MODELS]
    if unknown or not models:
        raise ValueError(f"--models {','.join(models)!r}: {unknown or 'none'} not among {list(MODELS)}")


if __name__ == "__main__":
    sys.exit(main())
