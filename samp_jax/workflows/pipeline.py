"""The end-to-end pipeline behind `samp-jax search` and `make demo`.

a model and a task (yours, or a built-in one) → calibrate on the calibration split → search on
the search split → quantize with the chosen map → score the held-out test split with the real
quantized path → report, and the quantized model as a self-contained folder.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Mapping, Sequence

import jax.numpy as jnp

from calibrate import calibrate, calibrate_candidates, per_site_calibration
from calibrate.search.latency import table_for_target
from calibrate.search.objectives import task_objective
from calibrate.search.report import write_report
from calibrate.search.driver import (SearchResult, check_latency_target, preset_maps, search,
                              validate_tolerance)
from calibrate.search.targets import resolve_target
from samp_jax.workflows.experiments import make_evaluator, relative_change
from samp_jax.core.assets import minilm_path
from samp_jax.core.atomic import atomic_folder, check_replaceable, holds_only
from samp_jax.ptq.loading import load
from samp_jax.models import Tokenizer
from samp_jax.ptq.quantized import QuantizedModel, quantize
from samp_jax.tasks import Task
from samp_jax.training.finetuning import finetuned_model

ZERO_SHOT = "snli-embed"
SEARCH_OUTPUTS = ("model", "precision_map.json", "summary.json", "report.md", "pareto.png")
"""What `run_search` writes into its `out` folder, all committed together by one rename."""
is_search_output = holds_only(SEARCH_OUTPUTS)
"""Whether a folder holds only what a search writes (so a new search may replace it)."""


@dataclasses.dataclass(frozen=True)
class SearchRun:
    """What `run_search` returns.

    Attributes:
      summary: the JSON summary written beside the report (search and test figures).
      quantized: the model quantized with the chosen map.
      tokenizer: the model's tokenizer.
      result: the search's `SearchResult` (every map it measured).
    """

    summary: dict
    quantized: QuantizedModel
    tokenizer: Tokenizer
    result: SearchResult | None = None


def builtin_model(task: str, *, progress: bool = True) -> tuple:
    """`(model, tokenizer, description)` for a built-in task without a user model: MiniLM
    fine-tuned on it (from the cache, or fine-tuned now), or zero-shot MiniLM for snli-embed."""
    if task == ZERO_SHOT:
        model = load(minilm_path())
        return model, model.tokenizer, "all-MiniLM-L6-v2 zero-shot"
    model, tokenizer, info = finetuned_model(task, progress=progress)
    model.tokenizer = tokenizer  # what samp_jax.load would attach; the folder is read once
    return model, tokenizer, f"all-MiniLM-L6-v2 fine-tuned on {task} (dev {info['dev_metric']:.4f})"


def search_calibration(model, batches, method: str = "auto"):
    """What `run_search` hands the search: for 'auto', one calibration per method of
    `calibrate.AUTO_METHODS` (the search keeps each static site's least harmful clip); for a
    method name, that calibrator's clips at every site."""
    if method == "auto":
        return calibrate_candidates(model, batches)
    return calibrate(model, batches, method)


def calibration_of_search(model, batches, summary: Mapping):
    """The calibration a finished search quantized with, rebuilt from its `summary.json` and the
    same calibration batches (the clips are deterministic), for tools that re-score its maps.

    Raises:
      ValueError: the summary names no calibration.
    """
    method = summary.get("calibration")
    if method is None:
        raise ValueError("the search summary names no calibration (a search before per-site "
                         "clips, or one without static sites)")
    if method != "per-site":
        return calibrate(model, batches, method)
    chosen = summary["static_calibration"]
    candidates = calibrate_candidates(model, batches, chosen["methods"])
    sites = {(int(key.split(".")[0]), key.split(".")[1]): m for key, m in chosen["site_methods"].items()}
    return per_site_calibration(candidates, sites)


def run_search(model, tokenizer, task: Task, *, description: str = "", tolerance: float = 0.01,
               tolerance_mode: str = "relative", latency_target_ms: float | None = None,
               out: str | Path = "search_out", objective: str = "latency",
               calibration_method: str = "auto", progress: bool = True,
               command: str | None = None, compare_presets: bool = True,
               max_search_examples: int | None = None, max_test_examples: int | None = None,
               seed: int = 0, target: str = "auto", options: Sequence[str] | None = None,
               strategy: str | None = None, stop_early: bool = True,
               selection_margin: bool = True, latency_table=None) -> SearchRun:
    """Calibrates on the task's calibration split, searches on its search split, quantizes with
    the chosen map, scores the held-out test split with the real quantized model, and writes the
    report plus the quantized model (`out/model`, loadable with `samp_jax.load`).

    `target` ('auto', 'h100', 'a100', 'l4', 'cpu') sets the options (narrowed by `options`), the
    dtype between sites and the latency model (`calibrate.search.targets`); `latency_table` (a
    `calibrate.search.latency.LatencyTable`, e.g. measured on another machine) replaces that model.

    `calibration_method` 'auto' calibrates with every method of `calibrate.AUTO_METHODS` and
    lets the search pick each static INT8 site's clip (`calibrate.search.driver.choose_static_calibration`);
    a method name uses that calibrator at every site.

    The whole of `out` is written beside it and renamed into place at the end
    (`samp_jax.core.atomic`): a run that dies leaves the previous run's folder whole, never
    files of two runs. `out` must be new, empty, or hold only what a search writes.

    Returns the JSON summary with the chosen `QuantizedModel` and its tokenizer, for serving it
    afterwards without redoing the work.
    """
    validate_tolerance(tolerance, tolerance_mode)  # fail before any slow step
    check_replaceable(out, replaceable=is_search_output)
    target = resolve_target(target)
    options = target.search_options(options)
    table = latency_table
    if latency_target_ms is not None:
        if table is None:
            table = table_for_target(model, target, 32, 128, options=options)
        check_latency_target(latency_target_ms, table, options, model.config.num_layers)
    if model.head_kind != task.head:
        raise ValueError(f"task {task.name!r} ({task.task_type.name}) needs a {task.head} head; "
                         f"the model has {model.head_kind}")
    start = time.perf_counter()
    evaluator = make_evaluator(task, tokenizer, max_examples=max_test_examples, seed=seed)
    calibration = search_calibration(model, evaluator.calibration_batches(), calibration_method)
    data = task_objective(model, task, tokenizer, max_examples=max_search_examples, seed=seed)
    result = search(model, data, tokenizer=tokenizer, tolerance=tolerance, tolerance_mode=tolerance_mode,
                    objective=objective, latency_target_ms=latency_target_ms, calibration=calibration,
                    progress=progress, target=target, options=options, latency_table=table,
                    strategy=strategy, stop_early=stop_early, selection_margin=selection_margin)
    calibration = result.calibration  # the clips the search ran with (per site with 'auto')
    chosen = quantize(model, result.precision_map, calibration, dtype=target.dtype)
    test = {}
    if evaluator.metric is not None:
        score = lambda m: evaluator.score(evaluator.outputs(m))["value"]  # noqa: E731  real quantized path
        test = {"fp32": score(model), "chosen": score(chosen)}
        if compare_presets:  # the presets the search scored, now on the test split
            for name, pmap in preset_maps(options, model.config.num_layers).items():
                test[name] = score(quantize(model, pmap, calibration, dtype=target.dtype))
        test["chosen_relative_change"] = relative_change(test["chosen"], test["fp32"])
    with atomic_folder(out, replaceable=is_search_output) as staging:  # one run, one rename
        chosen.save(staging / "model")
        summary = write_report(result, staging, test_metrics=test, command=command, extra={
            "model": description, "task": task.name, "task_type": task.task_type.name,
            "data": task.source, "split_sizes": task.sizes(), "out": str(out),
            "quantized_model": str(Path(out) / "model"), "test_examples": evaluator.num_examples,
            "total_seconds": time.perf_counter() - start,
            "compute_dtype": jnp.dtype(target.dtype).name})  # between GEMM sites
    return SearchRun(summary, chosen, tokenizer, result)
