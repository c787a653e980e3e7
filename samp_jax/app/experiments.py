"""Zero-shot SNLI with sentence embeddings, and accuracy tables over precision variants.

The task: embed SNLI test premises and hypotheses with the bi-encoder, score each pair by
cosine similarity, and measure how well that separates entailment from contradiction
(ROC-AUC). Calibration uses sentences from the SNLI *train* subset's calibration split; the
evaluation pairs come from the held-out test file.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from calibrate import calibrate
from samp_jax.data import embedding_eval_pairs, snli_splits, unique_sentences
from samp_jax.quant.precision import FLOAT_DTYPES, PRESETS, PrecisionMap
from samp_jax.quant.quantized import quantize
from samp_jax.serving.batching import length_batches, run_batched
from samp_jax.serving.forward import jit_forward
from samp_jax.tasks.metrics import roc_auc
from samp_jax.tasks.task import IGNORE, get_task, predict, split_examples


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
        parts = [Path(self.precision).name]
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


class SnliEmbedTask:
    """Zero-shot SNLI entailment-vs-contradiction with cosine similarity of embeddings.

    An evaluator: `outputs(model)` embeds every unique test sentence, `score(outputs,
    reference)` gives ROC-AUC (`value`) and the mean cosine to the reference embeddings
    (`agreement`).
    """

    metric = "roc_auc"
    agreement = "cosine to FP32"

    def __init__(self, tokenizer, *, max_pairs: int = 2400, calibration_sentences: int = 512,
                 seed: int = 0, batch_size: int = 128):
        splits = snli_splits(seed)
        self.premises, self.hypotheses, self.labels = embedding_eval_pairs(
            splits.test, max_pairs=max_pairs, seed=seed)
        self.texts = list(dict.fromkeys(self.premises + self.hypotheses))
        index = {text: i for i, text in enumerate(self.texts)}
        self._left = np.array([index[t] for t in self.premises])
        self._right = np.array([index[t] for t in self.hypotheses])
        self.calibration_texts = unique_sentences(splits.calibration)[:calibration_sentences]
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    @property
    def num_examples(self) -> int:
        return int(len(self.labels))

    def calibration_batches(self) -> list[dict[str, np.ndarray]]:
        return [batch for _, batch in length_batches(self.tokenizer, self.calibration_texts, batch_size=64)]

    def outputs(self, model) -> np.ndarray:
        """Embeddings of every unique evaluation sentence, `[n, hidden]`."""
        return run_batched(jit_forward(model), self.tokenizer, self.texts, batch_size=self.batch_size)

    def score(self, embeddings: np.ndarray, reference: np.ndarray | None = None) -> dict[str, float]:
        cosine = np.sum(embeddings[self._left] * embeddings[self._right], axis=-1)
        metrics = {"value": roc_auc(cosine, self.labels), "examples": int(len(self.labels))}
        if reference is not None:
            norms = np.linalg.norm(embeddings, axis=-1) * np.linalg.norm(reference, axis=-1)
            metrics["agreement"] = float(np.mean(np.sum(embeddings * reference, -1) / norms))
        return metrics


class LabelledTaskEvaluator:
    """A fine-tuned task's metric on one split; `agreement` is the share of predictions (labelled
    tokens for NER) equal to the reference model's."""

    agreement = "same prediction as FP32"

    def __init__(self, task: str, tokenizer, *, split: str = "test", seed: int = 0,
                 max_examples: int | None = None, calibration_examples: int = 512, batch_size: int = 64):
        self.task = get_task(task)
        self.metric = self.task.metric
        self.tokenizer = tokenizer
        examples = list(split_examples(self.task, split, seed))
        if max_examples is not None and max_examples < len(examples):  # a seeded, fixed subset
            keep = np.sort(np.random.default_rng(seed).choice(len(examples), max_examples, replace=False))
            examples = [examples[i] for i in keep]
        self.encoded = self.task.encode(tokenizer, examples)
        self._calibration = list(split_examples(self.task, "calibration", seed))[:calibration_examples]
        self.batch_size = batch_size

    @property
    def num_examples(self) -> int:
        return len(self.encoded)

    def calibration_batches(self) -> list[dict[str, np.ndarray]]:
        encoded = self.task.encode(self.tokenizer, self._calibration)
        return [{k: v for k, v in b.items() if k != "labels"} for _, b in encoded.batches(64)]

    def outputs(self, model) -> np.ndarray:
        return predict(jit_forward(model), self.encoded, batch_size=self.batch_size)

    def score(self, logits: np.ndarray, reference: np.ndarray | None = None) -> dict[str, float]:
        metrics = self.task.score(logits, self.encoded)
        if reference is not None:
            same = np.argmax(logits, -1) == np.argmax(reference, -1)
            if same.ndim == 2:
                same = same[self.encoded.labels != IGNORE]
            metrics["agreement"] = float(np.mean(same))
        return metrics


def make_evaluator(task: str, tokenizer, **options):
    """`snli-embed` (zero-shot bi-encoder) or a labelled task name."""
    if task == "snli-embed":
        return SnliEmbedTask(tokenizer, **options)
    return LabelledTaskEvaluator(task, tokenizer, **options)


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
             "param_mb": None, "seconds": time.perf_counter() - start}]
    calibrations = {}
    batches = None
    for variant in variants:
        start = time.perf_counter()
        pmap = variant.precision_map(model.config.num_layers)
        calibration = None
        if pmap.needs_calibration() or variant.smoothing is not None:
            key = (variant.method, variant.smoothing)
            if key not in calibrations:
                batches = batches or evaluator.calibration_batches()
                calibrations[key] = calibrate(model, batches, variant.method, smoothing=variant.smoothing)
            calibration = calibrations[key]
        # a float preset runs at its own dtype; every other variant between sites at `dtype`
        variant_dtype = FLOAT_DTYPES.get(variant.precision, dtype)
        quantized = quantize(model, pmap, calibration, dtype=variant_dtype)
        metrics = evaluator.score(evaluator.outputs(quantized), reference)
        rows.append({"variant": variant.label, **metrics,
                     "relative_change": metrics["value"] / base["value"] - 1.0,
                     "param_mb": quantized.memory_report()["quantized_bytes"] / 2**20,
                     "seconds": time.perf_counter() - start})
        if progress is not None:
            progress(rows[-1])
    return rows


def default_variants() -> list[Variant]:
    """The rows of docs/accuracy.md: float baselines, FP8, SAMP's FFN-only, and full INT8."""
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
        lines.append(f"| {r['variant']} | {r['value']:.4f} | {100 * r['relative_change']:+.2f}% | "
                     f"{r['agreement']:.5f} | {mb} | {r['seconds']:.1f} |")
    return "\n".join(lines)
