"""Accuracy tables: FP32 and precision variants of a model on a task's held-out test split."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from calibrate import calibrate
from samp_jax.core.precision import PRESETS, PrecisionMap
from samp_jax.models.similarity import DEFAULT_SIMILARITY, similarity_of
from samp_jax.ptq.quantized import quantize, state_bytes
from samp_jax.serving.forward import jit_forward
from samp_jax.serving.sharding import data_mesh, sharded_forward
from samp_jax.tasks import Task, get_task


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of an accuracy table.

    Attributes:
      precision: a preset name or a path to a precision-map JSON file.
      activation: INT8 activation scheme for presets ('per_token_dynamic' or 'per_tensor_static').
      method: calibrator for static scales.
      smoothing: SmoothQuant alpha for `qkv`/`ffn_in`, or None.
    """

    precision: str
    activation: str = "per_token_dynamic"
    method: str = "percentile"
    smoothing: float | None = None

    @property
    def label(self) -> str:
        """The row's name: a preset's name (with its scheme), or a map file's path as given
        (two `*/precision_map.json` stay apart, and `./fully_quant` is not the preset)."""
        parts = [self.precision]
        if self.precision in ("fully_quant", "quant_ffn_only"):
            static = self.activation == "per_tensor_static"
            parts += ["static", self.method] if static else ["dynamic"]
        if self.smoothing is not None:
            parts.append(f"smooth α={self.smoothing:g}")
        return " / ".join(parts)

    def precision_map(self, num_layers: int) -> PrecisionMap:
        if self.precision in PRESETS:
            return PrecisionMap.preset(self.precision, num_layers, activation=self.activation)
        pmap = PrecisionMap.from_json(self.precision)
        if pmap.num_layers != num_layers:
            raise ValueError(f"{self.precision} has num_layers={pmap.num_layers}, model has {num_layers}")
        return pmap


class TaskEvaluator:
    """A task's held-out split as the accuracy tables use it: the model's outputs, the metric,
    agreement with the FP32 outputs, and the calibration batches.

    Built on `Task.evaluation` (the same object the search scores its split with), so every
    task type, built-in or loaded from a user's file, is scored the same way. `batch_size`:
    rows per batch (None: `Task.evaluation`'s default).

    Attributes:
      task: the `Task`.
      metric: the metric name ('accuracy', 'entity_f1', 'roc_auc', 'spearman', or None).
      agreement: what the agreement column measures.
    """

    def __init__(self, task: Task | str, tokenizer, *, split: str = "test",
                 max_examples: int | None = None, calibration_examples: int = 512, seed: int = 0,
                 similarity: str = DEFAULT_SIMILARITY, batch_size: int | None = None):
        self.task = get_task(task, seed=seed) if isinstance(task, str) else task
        self.tokenizer = tokenizer
        self.evaluation = self.task.evaluation(tokenizer, split, max_examples=max_examples,
                                               seed=seed, similarity=similarity,
                                               batch_size=batch_size)
        self.metric = self.evaluation.metric_name
        self.agreement = self.evaluation.agreement_name
        self.calibration_examples = calibration_examples

    @property
    def num_examples(self) -> int:
        return self.evaluation.num_examples

    @property
    def max_length(self) -> int:
        """The tokens each row is cut at (`Task.length`)."""
        return self.task.length(self.tokenizer)

    @property
    def truncation(self):
        """What cutting the split's rows at `max_length` left out (`Truncation`)."""
        return self.evaluation.truncation

    def calibration_batches(self) -> list[dict[str, np.ndarray]]:
        return self.task.calibration_batches(self.tokenizer, max_examples=self.calibration_examples)

    def outputs(self, model) -> list[np.ndarray]:
        """The model's outputs on every batch of the split."""
        if jax.device_count() > 1:  # every device, of every process in a distributed run
            return self.evaluation.outputs(sharded_forward(model, data_mesh()))
        return self.evaluation.outputs(jit_forward(model))

    def score(self, outputs, reference=None) -> dict[str, float]:
        return self.evaluation.score(outputs, reference)


def make_evaluator(task: Task | str, tokenizer, model=None, **options) -> TaskEvaluator:
    """The `TaskEvaluator` of a `Task` or a registered task name on its test split; an
    embedding task's pairs scored by `model`'s similarity (`similarity_of`) when given."""
    if model is not None:
        options.setdefault("similarity", similarity_of(model))
    return TaskEvaluator(task, tokenizer, **options)


def accuracy_table(model, evaluator, variants: Sequence[Variant], *,
                   dtype=jnp.float16, progress=None) -> list[dict]:
    """Evaluates FP32 and every variant with `evaluator`; returns one dict per row.

    Each row has the variant label, the metric `value`, its relative change against FP32, the
    `agreement` with the FP32 outputs, the stored parameter MB and the wall time.
    """

    start = time.perf_counter()
    reference = evaluator.outputs(model)
    base = evaluator.score(reference)
    rows = [{"variant": "fp32 (reference)", **base, "relative_change": 0.0, "agreement": 1.0,
             "param_mb": state_bytes(model) / 2**20, "seconds": time.perf_counter() - start}]
    calibrations = {}
    batches = None
    for variant in variants:
        start = time.perf_counter()
        pmap = variant.precision_map(model.config.num_layers)
        calibration = None
        if pmap.needs_calibration() or variant.smoothing is not None:
            # a map's own calibrators and stored clips are followed (`calibrate.calibrate`)
            key = _calibration_key(variant, pmap)
            if key not in calibrations:
                batches = batches or evaluator.calibration_batches()
                calibrations[key] = calibrate(model, batches, variant.method, precision_map=pmap,
                                              smoothing=variant.smoothing)
            calibration = calibrations[key]
        # a map chosen for a compute dtype runs at it; a map of one float precision (a float
        # preset or file) at its own dtype; every other variant between sites at `dtype`
        variant_dtype = pmap.compute_dtype or pmap.uniform_float_dtype() or dtype
        quantized = quantize(model, pmap, calibration, dtype=variant_dtype)
        metrics = evaluator.score(evaluator.outputs(quantized), reference)
        rows.append({"variant": variant.label, **metrics,
                     "relative_change": relative_change(metrics["value"], base["value"]),
                     "param_mb": quantized.memory_report()["quantized_bytes"] / 2**20,
                     "seconds": time.perf_counter() - start})
        if progress is not None:
            progress(rows[-1])
    return rows


def _calibration_key(variant: Variant, pmap) -> tuple:
    """What a variant's calibration depends on, so that variants alike share one pass: the
    default calibrator and smoothing, each cell's named calibrator and stored clip, and the
    cells the pass calibrates (static, no stored clip), with their precisions."""
    calibrated = tuple(sorted((key, str(p)) for key, p in pmap.items()
                              if p.needs_calibration and p.clip is None))
    return (variant.method, variant.smoothing, tuple(sorted(pmap.site_methods().items())),
            tuple(sorted(pmap.stored_clips().items())), calibrated)


def relative_change(value: float | None, base: float | None) -> float | None:
    """`(value - base) / |base|`: positive when the metric rose, whatever the sign of `base`
    (a Spearman of -0.8937 that becomes -0.8936 has risen); None when the task has no metric,
    the base is 0, or either is NaN (outputs that held NaN or Inf)."""
    if value is None or not base or not (math.isfinite(value) and math.isfinite(base)):
        return None
    return (value - base) / abs(base)


def default_variants() -> list[Variant]:
    """The rows of docs/results/accuracy.md: float baselines, FP8, SAMP's FFN-only, and full INT8."""
    rows = [Variant("fp16"), Variant("bf16"), Variant("fp8"), Variant("quant_ffn_only"),
            Variant("fully_quant")]
    rows += [Variant("fully_quant", smoothing=0.5)]
    for method in ("minmax", "percentile", "mse", "entropy"):
        rows.append(Variant("fully_quant", "per_tensor_static", method))
        rows.append(Variant("fully_quant", "per_tensor_static", method, smoothing=0.5))
    return rows


def format_table(rows: Sequence[dict], *, metric: str = "metric", agreement: str = "agreement") -> str:
    """A markdown table of `accuracy_table` rows."""
    lines = [f"| variant | {metric} | rel. change vs FP32 | {agreement} | params (MB) | time (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        mb = "" if r["param_mb"] is None else f"{r['param_mb']:.1f}"
        value = "–" if r["value"] is None else f"{r['value']:.4f}"
        change = r["relative_change"]
        change = "–" if change is None else f"{100 * change:+.2f}%"
        lines.append(f"| {r['variant']} | {value} | {change} | {r['agreement']:.5f} | {mb} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)
