"""The end-to-end pipeline behind `samp-jax search` and `make demo`.

model (fine-tuned from the cache, or zero-shot MiniLM) → calibrate on the calibration split →
search on the search split → quantize with the chosen map → score the held-out test split with
the real quantized path → report.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from calibrate import calibrate
from calibrate.objectives import TaskObjective, snli_embed_objective
from calibrate.report import write_report
from calibrate.search import search, validate_tolerance
from samp_jax.app.experiments import make_evaluator
from samp_jax.assets import minilm_path
from samp_jax.models import Tokenizer, load_pretrained
from samp_jax.quant.precision import PrecisionMap
from samp_jax.quant.quantized import QuantizedModel, quantize
from samp_jax.training.finetuning import finetuned_model

ZERO_SHOT = "snli-embed"


@dataclasses.dataclass(frozen=True)
class SearchRun:
    """What `run_search` returns.

    Attributes:
      summary: the JSON summary written beside the report (search and test figures).
      quantized: the model quantized with the chosen map.
      tokenizer: the model's tokenizer.
    """

    summary: dict
    quantized: QuantizedModel
    tokenizer: Tokenizer


def load_task_model(task: str, *, progress: bool = True):
    """(model, tokenizer, description) for a task: fine-tuned MiniLM, or zero-shot for snli-embed."""
    if task == ZERO_SHOT:
        path = minilm_path()
        return load_pretrained(path), Tokenizer.from_pretrained(path), "all-MiniLM-L6-v2 zero-shot"
    model, tokenizer, info = finetuned_model(task, progress=progress)
    return model, tokenizer, f"all-MiniLM-L6-v2 fine-tuned on {task} (dev {info['dev_metric']:.4f})"


def run_search(*, task: str = ZERO_SHOT, tolerance: float = 0.01, tolerance_mode: str = "relative",
               latency_target_ms: float | None = None, out: str | Path = "search_out",
               objective: str = "latency", calibration_method: str = "percentile",
               progress: bool = True, command: str | None = None, compare_presets: bool = True,
               max_search_examples: int | None = None,
               max_test_examples: int | None = None) -> SearchRun:
    """Runs the whole pipeline and writes the report.

    Returns the JSON summary with the chosen `QuantizedModel` and its tokenizer, for serving it
    afterwards without redoing the work."""

    validate_tolerance(tolerance, tolerance_mode)  # fail before any slow step
    start = time.perf_counter()
    model, tokenizer, description = load_task_model(task, progress=progress)
    if task == ZERO_SHOT:
        evaluator = make_evaluator(task, tokenizer, max_pairs=max_test_examples or 2400)
    else:
        evaluator = make_evaluator(task, tokenizer, max_examples=max_test_examples)
    calibration = calibrate(model, evaluator.calibration_batches(), calibration_method)
    if task == ZERO_SHOT:
        data = snli_embed_objective(model, tokenizer, max_pairs=max_search_examples or 600)
    else:
        data = TaskObjective(model, task, tokenizer, max_examples=max_search_examples)
    result = search(model, data, tokenizer=tokenizer, tolerance=tolerance, tolerance_mode=tolerance_mode,
                    objective=objective, latency_target_ms=latency_target_ms, calibration=calibration,
                    progress=progress)
    score = lambda m: evaluator.score(evaluator.outputs(m))["value"]  # noqa: E731  real quantized path
    chosen = quantize(model, result.precision_map, calibration)
    test = {"fp32": score(model), "chosen": score(chosen)}
    if compare_presets:
        layers = model.config.num_layers
        for name in ("fp16", "quant_ffn_only", "fully_quant"):
            test[name] = score(quantize(model, PrecisionMap.preset(name, layers), calibration))
    test["chosen_relative_change"] = test["chosen"] / test["fp32"] - 1.0
    summary = write_report(result, out, test_metrics=test, command=command, extra={
        "model": description, "task": task, "out": str(out),
        "test_examples": evaluator.num_examples,
        "total_seconds": time.perf_counter() - start,
        "compute_dtype": "float16"})  # quantize()'s default between GEMM sites
    return SearchRun(summary, chosen, tokenizer)
