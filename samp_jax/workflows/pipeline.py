"""The end-to-end pipeline behind `samp-jax search` and `make demo`.

a model and a task (yours, or a built-in one) → calibrate on the calibration split → search on
the search split → quantize with the chosen map → score the held-out test split with the real
quantized path → report, and the quantized model as a self-contained folder.
"""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from pathlib import Path
from typing import Sequence

import jax.numpy as jnp

from calibrate.search.config import SearchConfig, allowed_drop, check_tolerance_for_metric
from calibrate.search.driver import search
from calibrate.search.phases import preset_maps
from calibrate.search.plan import plan_search
from calibrate.search.report import write_report
from calibrate.search.result import SearchResult
from samp_jax.workflows.experiments import make_evaluator, relative_change
from samp_jax.core.assets import minilm_path
from samp_jax.core.atomic import atomic_folder, check_replaceable, holds_only
from samp_jax.core.kept_warnings import kept_warnings
from samp_jax.serving.xla_cache import as_kept
from samp_jax.core.version import run_record
from samp_jax.ptq.loading import SEARCH_MODEL, load
from samp_jax.models import Tokenizer
from samp_jax.ptq.quantized import QuantizedModel, quantize
from samp_jax.tasks import Task
from samp_jax.tasks.chance import at_chance, below_no_skill
from samp_jax.tasks.metrics import Metric, get_metric
from samp_jax.tasks.task import check_head_fits, warn_if_named_two_classes, with_model_relevant_class
from samp_jax.tasks.truncation import as_dicts
from samp_jax.training.finetuning import finetuned_model

ZERO_SHOT = "snli-embed"


def holds_pareto_maps(folder: Path) -> bool:
    """Whether `folder` holds only what a search writes into `pareto/`: `NN.json` maps (and
    the `.NN.json.tmp-...` litter of an interrupted write)."""
    return all(entry.is_file() and re.fullmatch(r"\.?\d+\.json(\.tmp-.*)?", entry.name)
               for entry in folder.iterdir())


SEARCH_OUTPUTS = ("model", "precision_map.json", "summary.json", "report.md", "pareto.png", "pareto",
                  "latency_table.json")
"""What `run_search` writes into its `out` folder, all committed together by one rename."""
LATENCY_TABLE_FILE = "latency_table.json"
"""The latency table the search priced every map with, in its `out` folder."""
is_search_output = holds_only(SEARCH_OUTPUTS, folders={"pareto": holds_pareto_maps})
"""Whether a folder holds only what a search writes (so a new search may replace it)."""


@dataclasses.dataclass(frozen=True)
class SearchRun:
    """What `run_search` returns.

    Attributes:
      summary: the JSON summary written beside the report (search and test figures).
      quantized: the model quantized with the chosen map.
      tokenizer: the model's tokenizer.
      result: the search's `SearchResult` (every map it measured).
      test: the evaluator of the held-out test split the summary's test figures come from.
    """

    summary: dict
    quantized: QuantizedModel
    tokenizer: Tokenizer
    result: SearchResult | None = None
    test: object | None = None


def builtin_model(task: str, *, progress: bool | None = None) -> tuple:
    """`(model, tokenizer, description)` for a built-in task without a user model: MiniLM
    fine-tuned on it (from the cache, or fine-tuned now), or zero-shot MiniLM for snli-embed."""
    if task == ZERO_SHOT:
        model = load(minilm_path())
        return model, model.tokenizer, "all-MiniLM-L6-v2 zero-shot"
    model, tokenizer, info = finetuned_model(task, progress=progress)
    model.tokenizer = tokenizer  # what samp_jax.load would attach; the folder is read once
    return model, tokenizer, f"all-MiniLM-L6-v2 fine-tuned on {task} (dev {info['dev_metric']:.4f})"


def serve_as_measured(model, tokenizer: Tokenizer, task: Task) -> None:
    """Makes `model` (a quantized copy about to be saved) serve as `task` measured it: its tokenizer is `tokenizer`, cut at `task.length(tokenizer)`
    tokens when that is shorter (what the calibration and the scores saw), and a multi-label
    head reads its label sets at the task's threshold (`EncoderModel.label_threshold`), and a
    two-class head read as a ranking by the task's relevant class, where the task names one
    (`EncoderModel.relevant_class`). So
    `samp-jax predict` and `samp_jax.compile` on the saved folder give, without options, the
    rows and label sets that were scored. Its sidecar's `info` records the task, its data,
    split seed and length (`QuantizedModel.record`)."""
    length = task.length(tokenizer)
    model.tokenizer = tokenizer if length >= tokenizer.max_length else \
        tokenizer.with_max_length(length)
    keep_label_threshold(model, task)
    keep_relevant_class(model, task)
    if isinstance(model, QuantizedModel):  # the sidecar says what it was calibrated on
        model.record(data={"task": task.name, "source": task.source,
                           "split_seed": task.split_seed, "max_length": length})


def keep_label_threshold(model, task: Task) -> None:
    """Gives `model`'s multi-label head (a `SequenceClassifier` read as label sets) the
    threshold `task` scores label sets at, which it saves and serves by default; nothing for
    another head or task type."""
    head = model.model.head if isinstance(model, QuantizedModel) else model.head
    threshold = task.decision_threshold
    if threshold is not None and hasattr(head, "label_threshold"):
        head.label_threshold = threshold


def keep_relevant_class(model, task: Task) -> None:
    """Gives `model`'s two-class head the relevant class `task` reads its ranking by, where the
    task names one (`Task.relevant_class`), which it saves and the commands read by default;
    nothing for another head, task type, or a task that names none."""
    head = model.model.head if isinstance(model, QuantizedModel) else model.head
    if task.relevant_class is not None and hasattr(head, "relevant_class"):
        head.relevant_class = task.relevant_class


def run_search(model, tokenizer, task: Task, config: SearchConfig | None = None, *,
               out: str | Path = "search_out", description: str = "", command: str | None = None,
               max_test_examples: int | None = None, compare_presets: bool = True,
               latency_table=None, warnings_before: Sequence[str] = ()) -> SearchRun:
    """Calibrates on the task's calibration split, searches on its search split, quantizes with
    the chosen map, scores the held-out test split with the real quantized model, and writes the
    report plus the quantized model (`out/model`, loadable with `samp_jax.load`), which serves
    rows cut at the length they were scored at and reads label sets at the threshold they were
    scored at (`serve_as_measured`).

    Args:
      model, tokenizer: the float model and its tokenizer.
      task: the task (its calibration, search and test splits). A multi-label task's metric,
        on the search split and the test split alike, is measured at its `label_threshold`,
        which the summary records (`label_threshold`; None for other task types). Rows are
        cut at `task.length(tokenizer)` tokens, which the summary records (`max_length`) with
        what the cut left out of the search and test splits (`truncation`).
      config: the search settings (`calibrate.SearchConfig`; default: all defaults). Its
        `target` sets the options, the dtype between sites and the latency model; its
        `calibration` ('auto': each static INT8 site keeps the least harmful of
        `calibrate.AUTO_METHODS`' clips) how static scales are calibrated.
      out: the report folder.
      description: the model's description in the report.
      command: the command line recorded in the summary.
      max_test_examples: score a fixed seeded subset of the test split (`config.seed`).
      compare_presets: also score the presets the search scored on the test split.
      latency_table: a `calibrate.search.latency.LatencyTable` (e.g. measured on another
        machine, or the `out/latency_table.json` of an earlier run, which this run repeats)
        instead of the target's latency model.
      warnings_before: warnings shown before the call about the same run (reading the data,
        say), which the report keeps first.

    The warnings shown while it searches and scores the test split (too few rows for the
    tolerance, a model at chance, too few calibration tokens: `UserWarning`s) are shown as
    ever and kept in the summary (`warnings`) and at the top of report.md (JAX's errors of
    compilation cache entries as one line per reason). A warning Python's filters do not show
    again (its default shows one from a line of code once per process) is not kept again by
    a later run in the same process.

    The whole of `out` is written beside it and renamed into place at the end
    (`samp_jax.core.atomic`): a run that dies leaves the previous run's folder whole, never
    files of two runs. `out` must be new, empty, or hold only what a search writes.

    Returns:
      The JSON summary with the chosen `QuantizedModel` and its tokenizer, for serving it
      afterwards without redoing the work. Its paths are recorded as a record's paths are
      (docs/design.md): `out` as given, `quantized_model` and `latency_table` (files inside
      `out`) relative to `out`, so that a moved folder's summary still finds them; its
      `test_within_tolerance` says whether the chosen map's test metric is within the
      tolerance of FP32's (`within_tolerance`; None without a metric or with a latency target).
    """
    with kept_warnings(kept_as=as_kept) as kept:  # shown as ever, and kept for the report
        config = SearchConfig() if config is None else config
        check_replaceable(out, replaceable=is_search_output)
        check_head_fits(model, task)
        task = with_model_relevant_class(model, task, warn=False)  # the search's objective warns
        warn_if_named_two_classes(model, task)
        check_tolerance_for_metric(config, task.task_metric)  # before the plan times the model
        plan = plan_search(model, config, latency_table)  # target, options, table: before calibration
        start = time.perf_counter()
        evaluator = make_evaluator(task, tokenizer, model, max_examples=max_test_examples,
                                   seed=config.seed)
        result = search(model, task, plan, tokenizer=tokenizer)
        calibration = result.calibration  # the clips the search ran with (per site with 'auto')
        plan = result.plan  # its float option: another than planned when the model overflowed it
        target, options = plan.target, plan.options
        chosen = quantize(model, result.precision_map, calibration, dtype=target.dtype)
        serve_as_measured(chosen, tokenizer, task)
        truncation = {"search": result.search_truncation, "test": evaluator.truncation}
        # the presets the search scored, now on the test split, each quantized when scored
        presets = preset_maps(options, model.config.num_layers).items() if compare_presets else ()
        preset = lambda pmap: quantize(model, pmap, calibration, dtype=target.dtype)  # noqa: E731
        test, test_proxy, test_within = {}, None, None
        if evaluator.metric is not None:
            test = {"fp32": held_out_value(evaluator, model, "fp32"),
                    "chosen": held_out_value(evaluator, chosen, "the chosen map")}
            test |= {name: held_out_value(evaluator, preset(pmap), name) for name, pmap in presets}
            test["chosen_relative_change"] = relative_change(test["chosen"], test["fp32"])
            warn_of_test_reference(evaluator, test["fp32"])
            test_within = within_tolerance(test["chosen"], test["fp32"], config,
                                           get_metric(evaluator.metric))
        else:  # texts only: how far from FP32 the test split's outputs are (the proxy it bounds)
            reference = evaluator.outputs(model)
            proxy = lambda m: evaluator.evaluation.proxy(evaluator.outputs(m), reference)  # noqa: E731
            test_proxy = {"proxy": evaluator.evaluation.proxy_kind.name, "chosen": proxy(chosen)}
            test_proxy |= {name: proxy(preset(pmap)) for name, pmap in presets}
    with atomic_folder(out, replaceable=is_search_output) as staging:  # one run, one rename
        chosen.save(staging / SEARCH_MODEL)
        # the table every map was priced with: `latency_table=` (--latency-table) repeats the run
        (staging / LATENCY_TABLE_FILE).write_text(plan.table.to_json(), encoding="utf-8")
        summary = write_report(result, staging, test_metrics=test, command=command, extra={
            "model": description, "task": task.name, "task_type": task.task_type.name,
            "data": task.source, "split_seed": task.split_seed, "split_sizes": task.sizes(),
            "split_queries": task.query_sizes(),
            "out": str(out),  # as given; the files inside it relative to it
            "label_threshold": task.decision_threshold,
            "max_length": task.length(tokenizer), "truncation": as_dicts(truncation),
            "quantized_model": SEARCH_MODEL, "test_examples": evaluator.num_examples,
            "latency_table": LATENCY_TABLE_FILE,
            "test_within_tolerance": test_within,
            "total_seconds": time.perf_counter() - start,
            "compute_dtype": jnp.dtype(target.dtype).name,  # between GEMM sites
            "warnings": list(dict.fromkeys([*warnings_before, *kept]))}
            | ({"test_proxy": test_proxy} if test_proxy is not None else {}) | run_record())
    return SearchRun(summary, chosen, tokenizer, result, evaluator)


def warn_of_test_reference(evaluator, fp32: float) -> None:
    """Warns (`UserWarning`, kept in the report) when the FP32 model's test metric is below
    what a model that learned nothing scores (`below_no_skill`) or no better than always
    predicting the most frequent class (`at_chance`): a change relative to it means nothing."""
    below = below_no_skill(evaluator.metric, fp32, "the FP32 model's test")
    if below is not None:
        warnings.warn(below, UserWarning, stacklevel=2)
    verdict = at_chance(evaluator.evaluation, fp32, "the FP32 model's test")
    if verdict is not None:
        warnings.warn(f"{verdict}: a change relative to it means nothing (is the model trained "
                      "for this data?)", UserWarning, stacklevel=2)


def within_tolerance(chosen: float, fp32: float, config: SearchConfig,
                     metric: Metric) -> bool | None:
    """Whether the chosen map's `metric` on the test split is within the tolerance of FP32's
    (the plain drop, a change against the metric's direction, without the search's margin);
    None with a latency target (no tolerance), False for a NaN metric."""
    if config.latency_target_ms is not None:
        return None
    return bool(metric.drop(fp32, chosen)
                <= allowed_drop(config.tolerance, config.tolerance_mode, fp32))


def held_out_value(evaluator, model, name: str) -> float:
    """`model`'s metric on the evaluator's (test) split, through its real quantized path; NaN,
    with a warning naming `name`, when some of its outputs are NaN or Inf."""
    score = evaluator.score(evaluator.outputs(model))
    if score.get("non_finite_rows"):
        warnings.warn(f"{name} gives NaN or Inf outputs for {score['non_finite_rows']} of "
                      f"{score['examples']} test rows (values past the range of its precision, "
                      f"e.g. above FP16's 65,504); its {score['metric']} is NaN",
                      UserWarning, stacklevel=2)
    return score["value"]
