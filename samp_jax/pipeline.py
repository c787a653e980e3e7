"""The end-to-end pipeline behind `samp-jax search` and `make demo`.

model (fine-tuned from the cache, or zero-shot MiniLM) → calibrate on the calibration split →
search on the search split → quantize with the chosen map → score the held-out test split with
the real quantized path → report.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax.numpy as jnp

from samp_jax.precision import PrecisionMap
from samp_jax.quantized import quantize

ZERO_SHOT = "snli-embed"


def load_task_model(task: str, *, progress: bool = True):
    """(model, tokenizer, description) for a task: fine-tuned MiniLM, or zero-shot for snli-embed."""
    from samp_jax import Tokenizer, load_pretrained, minilm_path
    if task == ZERO_SHOT:
        path = minilm_path()
        return load_pretrained(path), Tokenizer.from_pretrained(path), "all-MiniLM-L6-v2 zero-shot"
    from samp_jax.finetune import finetuned_model
    model, tokenizer, info = finetuned_model(task, progress=progress)
    return model, tokenizer, f"all-MiniLM-L6-v2 fine-tuned on {task} (dev {info['dev_metric']:.4f})"


def calibration_batches(task: str, tokenizer, *, limit: int = 512) -> list[dict]:
    """Batches from the task's calibration split (never the test split)."""
    from samp_jax.evaluation import length_batches
    if task == ZERO_SHOT:
        from samp_jax.data import snli_splits, unique_sentences
        texts = unique_sentences(snli_splits().calibration)[:limit]
        return [b for _, b in length_batches(tokenizer, texts, batch_size=64)]
    from samp_jax.tasks import get_task, split_examples
    t = get_task(task)
    encoded = t.encode(tokenizer, list(split_examples(t, "calibration"))[:limit])
    return [{k: v for k, v in b.items() if k != "labels"} for _, b in encoded.batches(64)]


def test_metric_fn(task: str, tokenizer, *, max_pairs: int = 2400):
    """A function `model -> test metric` that runs the real (quantized) model."""
    if task == ZERO_SHOT:
        from samp_jax.experiments import SnliEmbedTask
        zero_shot = SnliEmbedTask(tokenizer, max_pairs=max_pairs)
        return lambda model: zero_shot.score(zero_shot.embed(model))["roc_auc"]
    from samp_jax.tasks import evaluate, get_task, split_examples
    t = get_task(task)
    encoded = t.encode(tokenizer, split_examples(t, "test"))
    return lambda model: evaluate(model, t, tokenizer=tokenizer, encoded=encoded)["value"]


def run_search(*, task: str = ZERO_SHOT, tolerance: float = 0.01, tolerance_mode: str = "relative",
               latency_target_ms: float | None = None, out: str | Path = "search_out",
               objective: str = "latency", calibration_method: str = "percentile",
               progress: bool = True, command: str | None = None, compare_presets: bool = True,
               max_search_examples: int | None = None) -> dict:
    """Runs the whole pipeline and writes the report. Returns the JSON summary."""
    from calibrate import calibrate
    from calibrate.report import write_report
    from calibrate.search import search, validate_tolerance

    validate_tolerance(tolerance, tolerance_mode)  # fail before any slow step
    start = time.perf_counter()
    model, tokenizer, description = load_task_model(task, progress=progress)
    calibration = calibrate(model, calibration_batches(task, tokenizer), calibration_method)
    from calibrate.objectives import TaskObjective, snli_embed_objective
    if task == ZERO_SHOT:
        data = snli_embed_objective(model, tokenizer, max_pairs=max_search_examples or 600)
    else:
        data = TaskObjective(model, task, tokenizer, max_examples=max_search_examples)
    result = search(model, data, tokenizer=tokenizer, tolerance=tolerance, tolerance_mode=tolerance_mode,
                    objective=objective, latency_target_ms=latency_target_ms, calibration=calibration,
                    progress=progress)
    score = test_metric_fn(task, tokenizer)
    test = {"fp32": score(model), "chosen": score(quantize(model, result.precision_map, calibration))}
    if compare_presets:
        layers = model.config.num_layers
        for name in ("quant_ffn_only", "fully_quant"):
            test[name] = score(quantize(model, PrecisionMap.preset(name, layers), calibration))
    test["chosen_relative_change"] = test["chosen"] / test["fp32"] - 1.0
    return write_report(result, out, test_metrics=test, command=command, extra={
        "model": description, "task": task, "out": str(out),
        "total_seconds": time.perf_counter() - start, "compute_dtype": jnp.dtype(jnp.float16).name})
