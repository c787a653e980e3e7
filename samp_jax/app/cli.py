"""The `samp-jax` command line, on your own model folder and data file, or the packaged ones.

    samp-jax finetune  --model DIR|minilm --data FILE [--task-type ...] [columns] --out DIR
    samp-jax eval      --model DIR --data FILE --precision fp16,fully_quant,map.json
    samp-jax calibrate --model DIR --data FILE --precision fully_quant --out DIR
    samp-jax search    --model DIR --data FILE --tolerance 1% --out DIR
    samp-jax predict   --model DIR --data FILE --out predictions.jsonl
    samp-jax bench | demo

`--data` takes a CSV/TSV/JSON Lines/Parquet file, a `datasets.save_to_disk` folder, or a
built-in name (snli, snli-embed, polarity, wnut16; with a built-in name `--model` may be left
out: MiniLM fine-tuned on it is used). Every argument, file and output path is checked before
any slow step. Exit codes: 0 success, 1 an error (one line on stderr, no traceback unless
`--debug`; a warning is one line too; a summary that standard output cannot take after the
outputs were written is one, saying that they were: `outputs.summary_after`), 2 bad usage, 130
interrupted (Ctrl-C), 141 standard output's reader gone (`| head`), 143 terminated (SIGTERM,
when run through `samp_jax.app.entry`). Progress goes to stderr;
`--json` puts the machine-readable result alone on stdout. The arguments each command takes are
`samp_jax.app.parser`'s; this module runs the commands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Iterator

import jax
from flax import nnx

from calibrate import CalibrationError, calibrate
from calibrate.search.config import check_tolerance_for_metric
from calibrate.search.latency import LatencyTable, check_given_table
from calibrate.search.plan import resolve_options
from samp_jax.app import bench, demo, jax_platforms, predictions
from samp_jax.app.entry import Terminated, closed_at_start, out_of_host_memory, plugin_failed
from samp_jax.app.figure_warnings import (warn_if_at_chance, warn_if_coarse,
                                          warn_if_trained_below_no_skill, warn_if_undefined,
                                          warn_non_finite)
from samp_jax.core.text import command_line
from samp_jax.core.kept_warnings import kept_warnings
from samp_jax.core import strict_json
from samp_jax.core.version import run_record
from samp_jax.app.lengths import at_max_length, check_max_length, fit_max_length, say_truncation
from samp_jax.app.outputs import (FileSizeLimitError, ResultsStream, StdoutError, UsageError,
                                  silence_stdout, summary_after)
from samp_jax.app.outputs import check_output as _check_output
from samp_jax.app.outputs import check_precision_items
from samp_jax.app.parser import ACTIVATIONS, PACKAGED_MODEL, build_parser, joined_negative_percents
from samp_jax.app.plugins import PluginError
from samp_jax.app.search_command import (TOLERANCE_NOT_MET, bench_command, print_summary,
                                          search_config, tolerance_not_met)
from samp_jax.app.stdio import (STDIN, one_line, predict_progress, results_only_on_stdout,
                                rows_from_stdin, tolerate_unencodable_output, warning_printer)
from samp_jax.workflows.experiments import Variant, accuracy_table, format_table, make_evaluator
from samp_jax.workflows.pipeline import (ZERO_SHOT, builtin_model, is_search_output,
                                        keep_label_threshold, run_search, serve_as_measured)
from samp_jax.core.assets import (NoCacheFolderError, beyond_file_size_limit, cache_dir,
                                  file_size_limit, minilm_path)
from samp_jax.core.atomic import (atomic_folder, committed_path, is_quantized_folder,
                                  resolve_output)
from samp_jax.ptq.loading import load
from samp_jax.ptq.saved import WEIGHTS_FILE
from samp_jax.models.bio_tags import IO, io_outside
from samp_jax.models.checkpoint import export_state_dict, save_pretrained
from samp_jax.models.config import EncoderConfig
from samp_jax.models.heads import head_spec, make_head
from samp_jax.models.head_kinds import LABEL_THRESHOLD, SENTENCE_EMBEDDING, Readout
from samp_jax.ptq.quantized import QuantizedModel, quantize, state_bytes
from samp_jax.serving.engine import default_compilation_cache
from samp_jax.serving.xla_cache import as_kept, cache_errors_once
from samp_jax.serving.distributed import (check_same, check_same_options, describe_failure, digest,
                                          initialize_distributed, is_distributed, is_primary,
                                          silence_watchdog, state_digest)
from samp_jax.tasks import SPLITS, TASKS, Task, get_task
from samp_jax.tasks.task import (CALIBRATION_BATCH_SIZE, CALIBRATION_EXAMPLES,
                                 RelevantClassOverride, warn_if_named_two_classes,
                                 with_model_relevant_class)
from samp_jax.tasks.truncation import Truncation, as_dicts
from samp_jax.models.hf_labels import all_generic
from samp_jax.tasks.files import Columns, load_task
from samp_jax.tasks.metrics import ENTITY_F1
from samp_jax.tasks.trained_rows import (TRAINED_ROWS_CONFIG, TRAINED_ROWS_FILE, overlap,
                                         save_trained_rows, trained_rows)
from samp_jax.training import FinetuneConfig, finetune

# ---------------------------------------------------------------------- model and data
def resolve_task(args, model=None) -> Task:
    """The task of `--data`: a built-in name, or the user's file(s) read with the column
    options (labels checked against the model's own label names); a multi-label task reads
    its label sets at `--threshold` where the command takes one (else at the model's own
    threshold, `EncoderModel.label_threshold`, when it has one), and its rows are cut at
    `--max-length` when given (`samp_jax.app.lengths`)."""
    task = with_metric(args, at_max_length(args, _read_task(args, model)))
    if model is not None:
        task = with_relevant_class(args, task, model)
    warn_if_io_tags(task)
    threshold = getattr(args, "threshold", None)
    if threshold is None:
        own = getattr(model, "label_threshold", None)
        return task if own is None or task.task_type.readout is not Readout.LABELS else \
            dataclasses.replace(task, label_threshold=own)
    if task.task_type.readout is not Readout.LABELS:
        raise UsageError(f"--threshold {threshold:g} is for a multi-label task (a set of labels "
                         f"per row); {task.name} is {task.task_type.name}")
    return dataclasses.replace(task, label_threshold=threshold)


def warn_if_trained_on(args, task: Task, splits: tuple[str, ...]) -> None:
    """Warns when the held-out `splits` of `task` hold rows that `--model` (a folder `samp-jax
    finetune` wrote) was trained on: another `--seed`, a reordered or extended data file puts
    them there, and its score on them overstates the model (`samp_jax.tasks.trained_rows`)."""
    if args.model is None or args.model == PACKAGED_MODEL:
        return
    trained = trained_rows(args.model)
    if trained is None:
        return
    held_out = {split: task.split(split) for split in splits}
    found = [f"{n} of {len(rows)} {split} rows" for split, rows in held_out.items()
             if (n := overlap(trained, rows))]
    if found:
        warnings.warn(f"{' and '.join(found)} have the inputs of rows in the training split "
                      f"{args.model} was fine-tuned on ({TRAINED_ROWS_FILE}; its finetune.json "
                      "names the data and split seed): scores on them overstate the model. "
                      "Another --seed, or a reordered or extended data file, draws other splits: "
                      "give the fine-tune's --seed and file, or a held-out --split-file "
                      "test=FILE (rows the data repeats count too)")


def warn_if_io_tags(task: Task) -> None:
    """Says, in one warning line, that entity F1 reads a tagger's tags as IO tags ("O" beside
    bare types, `samp_jax.models.bio_tags.io_outside`: a run of words of one type is one
    entity), which the names alone decide, and that `--metric word_accuracy` scores each word
    instead. BIO, BIOES and BILOU tags say their scheme by their prefixes."""
    if not task.labels or io_outside(task.labels) is None or task.metric != ENTITY_F1.name:
        return
    names = list(task.labels)
    warnings.warn(f"the tags {names[:8]}{' ...' if len(names) > 8 else ''} have no B-/I- "
                  f"prefix: entity F1 reads them as {IO} tags, each run of words of one type "
                  "one entity (two entities of one type side by side count as one); "
                  "--metric word_accuracy scores each word's tag instead", UserWarning,
                  stacklevel=2)


def with_relevant_class(args, task: Task, model) -> Task:
    """`task` reading the class `--relevant-class` names (a name in the model's id2label, or
    the id 0 or 1) as the relevant one of the model's two-class head, where it is given, else
    the class the model says (`EncoderModel.relevant_class`, saved by `finetune
    --relevant-class`) for a ranking (`Task.relevant_class`). A given class that is not the
    model's is read, with a warning line naming both."""
    given = getattr(args, "relevant_class", None)
    own = getattr(model, "relevant_class", None)
    if given is None:  # the library's reading (the workflows it hands the task to warn)
        return with_model_relevant_class(model, task, warn=False)
    if not task.task_type.ranks_two_classes:
        raise UsageError(f"--relevant-class {given}: names the relevant class of a two-class "
                         f"head read as a ranking (text_pair_ranking); {task.name} is "
                         f"{task.task_type.name}")
    width = model.output_shape(1, 1)[-1]
    if model.readout is not Readout.CLASSES or width != 2:
        raise UsageError(f"--relevant-class {given}: names the relevant one of a head of two "
                         f"classes; the {model.head_kind} head of {args.model} has {width} "
                         f"output{'' if width == 1 else 's'}, read as a score per row")
    names = [str(name) for name in model.labels or ()]
    if given in names:
        relevant = names.index(given)
    elif given in ("0", "1"):
        relevant = int(given)
    else:
        raise UsageError(f"--relevant-class {given!r} is none of the model's two classes "
                         f"{names or '(unnamed)'}, nor the id 0 or 1")
    if own is not None and own != relevant and task.relevant_class != relevant:  # once
        def name(i: int) -> str:
            return f"class {i}" + (f" ({names[i]!r})" if len(names) == 2 else "")
        warnings.warn(f"--relevant-class {given} reads {name(relevant)} as the relevant one; "
                      f"{args.model} says {name(own)} is (its saved relevant class, which the "
                      "commands read without the option)", UserWarning, stacklevel=2)
    if own is not None and own != relevant:  # said above, in the option's words: not again
        warnings.filterwarnings("ignore", category=RelevantClassOverride)
    return dataclasses.replace(task, relevant_class=relevant)


def with_metric(args, task: Task) -> Task:
    """`task` scored by `--metric` where the command takes one and it is given."""
    name = getattr(args, "metric", None)
    if name is None:
        return task
    try:
        return dataclasses.replace(task, metric_name=name)
    except ValueError as e:  # a metric the task type does not offer: the choices in one line
        raise UsageError(f"--metric {name}: {e}") from None


def _read_task(args, model) -> Task:
    split_files = _split_files(args)
    if args.data in TASKS and not split_files:
        task = get_task(args.data, seed=args.seed)
        labels = _model_labels(model)
        if labels is not None and task.labels is not None and tuple(labels) != task.labels and \
                not all_generic(labels):
            raise ValueError(f"the model's labels {list(labels)} are not the {task.name} labels "
                             f"{list(task.labels)} in that order; its logits would be scored "
                             "against the wrong classes")
        return task
    if args.data is None and not split_files:
        raise UsageError("--data is required: a data file, a saved dataset folder, or one of "
                         f"{sorted(TASKS)}")
    labels = _model_labels(model)
    columns = Columns(text=args.text_column, text_pair=args.text_pair_column,
                      label=args.label_column, tokens=args.tokens_column, tags=args.tags_column,
                      score=args.score_column, relevance=args.relevance_column,
                      group=args.group_column)
    return load_task(args.data, task_type=args.task_type, columns=columns, labels=labels,
                     split_files=split_files or None, seed=args.seed,
                     head=None if model is None else model.head_kind,
                     readout=None if model is None else model.readout)


def resolve_model(args, *, progress: bool | None):
    """`(model, tokenizer, description)` of `--model`: a folder (HF or quantized), the packaged
    MiniLM, or (no `--model`, built-in data) MiniLM fine-tuned on that data. `--max-length` is
    checked against its limit as soon as its tokenizer is read."""
    if args.model is None:
        model, tokenizer, description = _builtin_model(args, progress=progress)
        return model, fit_max_length(args, model, tokenizer, description), description
    path = minilm_path() if args.model == PACKAGED_MODEL else Path(args.model)
    model = load(path, **model_options(args))
    check_threshold(args, model)
    fit_max_length(args, model, model.tokenizer, str(args.model))
    if isinstance(model, QuantizedModel) and args.command in ("eval", "calibrate", "search"):
        raise ValueError(f"{path} is a quantized model; {args.command} starts from the float "
                         "model it came from (an HF folder): pass that folder to --model")
    return model, model.tokenizer, str(args.model)


def _builtin_model(args, *, progress: bool | None):
    """The model of built-in `--data` without `--model` (`builtin_model`); `--max-length` is
    first checked against the packaged tokenizer's limit, before a fine-tune that is not cached
    yet would run."""
    if args.data in TASKS:
        if getattr(args, "threshold", None) is not None:  # no built-in task is multi-label
            raise UsageError(f"--threshold is for a multi-label model (problem_type "
                             f"multi_label_classification); the built-in {args.data} task "
                             "is not multi-label")
        if args.seed != 0:  # the cached fine-tunes were trained on the seed-0 splits
            raise UsageError(f"--seed {args.seed} needs --model: the packaged fine-tune of "
                             f"{args.data} was trained on the seed-0 splits, and other seeds "
                             "would put its training rows in the test split")
        given = [f"--{name.replace('_', '-')}" for name in ("head", "pooling", "normalize",
                                                             "prompt_name")
                 if getattr(args, name, None) is not None]
        if given:  # the packaged fine-tune is read as it was saved
            raise UsageError(f"{' and '.join(given)} apply to a --model folder; without --model "
                             f"the packaged model of {args.data} is used as it was saved")
        if args.data != ZERO_SHOT and getattr(args, "max_length", None) is not None:
            check_max_length(args, EncoderConfig.from_hf_config(minilm_path()).position_limit,
                             "the packaged all-MiniLM-L6-v2")
        return builtin_model(args.data, progress=progress)
    raise UsageError("--model is required with your own data: an HF model folder, a folder "
                     f"samp-jax wrote, or {PACKAGED_MODEL!r}")


def model_options(args) -> dict:
    """`load` options from `--head`, `--pooling` and `--normalize` (only when given, so a
    quantized folder, which takes none, loads when they are not), `--prompt-name`, and a PEFT
    adapter folder's `--base-model` and `--adapter`.

    Raises:
      UsageError: `--pooling` or `--[no-]normalize` (which embed with the sentence_embedding
        head) with a `--head` that names another head.
    """
    options = {}
    head, pooling = getattr(args, "head", None), getattr(args, "pooling", None)
    normalize = getattr(args, "normalize", None)
    embedding = [f"--pooling {pooling}"] if pooling else []
    if normalize is not None:
        embedding.append("--normalize" if normalize else "--no-normalize")
    if embedding and head not in (None, SENTENCE_EMBEDDING.name):
        raise UsageError(f"{' and '.join(embedding)} embed{'s' if len(embedding) == 1 else ''} "
                         f"with the {SENTENCE_EMBEDDING.name} head; --head {head} reads another: "
                         "give one of them")
    if head is not None:
        options["head"] = head
    if pooling:
        options |= {"head": SENTENCE_EMBEDDING.name, "pooling": tuple(pooling.split(","))}
    if normalize is not None:
        options["normalize"] = normalize
    if getattr(args, "prompt_name", None) is not None:
        options |= {"prompt_name": args.prompt_name}
    for option in ("base_model", "adapter"):  # a PEFT adapter folder's
        if getattr(args, option, None) is not None:
            options[option] = getattr(args, option)
    return options


def check_threshold(args, model) -> None:
    """Refuses `--threshold` for a model that is not multi-label (a usage error, before any
    slow step): its predictions have no threshold to apply it to."""
    threshold = getattr(args, "threshold", None)
    if threshold is None or model.readout is Readout.LABELS:
        return
    reads = "gives no logits" if model.readout is None else f"is read as {model.readout.described}"
    raise UsageError(f"--threshold {threshold:g} is for a multi-label model (problem_type "
                     f"multi_label_classification: a sigmoid per label); the "
                     f"{model.head_kind} head of {args.model} {reads}")


def _model_labels(model):
    return None if model is None else model.labels


def _split_files(args) -> dict[str, Path]:
    files = {}
    for item in getattr(args, "split_file", None) or []:
        split, sep, path = item.partition("=")
        split = {"validation": "dev", "valid": "dev"}.get(split, split)
        if not sep or split not in SPLITS:
            raise UsageError(f"--split-file {item!r}: expected SPLIT=PATH with SPLIT one of {SPLITS}")
        if not path.strip():
            raise UsageError(f"--split-file {item!r} gives no path; expected SPLIT=PATH")
        if split in files:  # a dict would keep the last one and drop the other silently
            raise UsageError(f"--split-file gives the {split} split twice ({files[split]} and "
                             f"{path}); expected one file per split")
        files[split] = Path(path)
    if files and getattr(args, "data", None) is not None:
        raise UsageError("give --data FILE (split with --seed) or --split-file SPLIT=PATH for each "
                         "split, not both")
    return files


def _variants(args) -> list[Variant]:
    names = [p.strip() for p in args.precision.split(",")]
    if not any(names):
        raise UsageError(f"--precision {args.precision!r} names no preset or map file")
    if not all(names):
        raise UsageError(f"--precision {args.precision!r} has an empty item; separate presets "
                         "and map files with single commas")
    check_precision_items(names)
    return [Variant(name, ACTIVATIONS[args.activation], args.calibration, args.smoothing)
            for name in names]


def _say(args, text: str) -> None:
    if not args.json:
        print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- commands
def _eval(args) -> int:
    variants = _variants(args)
    _start_distributed(args)
    if not is_primary():  # every process computes; process 0 alone reports
        args.json, quiet = True, True
    else:
        quiet = False
    model, tokenizer, description = resolve_model(args, progress=False if args.json else None)
    task = resolve_task(args, model)
    warn_if_named_two_classes(model, task)  # search and finetune: run_search, finetune
    if not quiet:
        warn_if_trained_on(args, task, ("test",))
    for v in variants:  # validate every map before the slow part
        v.precision_map(model.config.num_layers)
    evaluator = make_evaluator(task, tokenizer, model, max_examples=args.max_examples,
                               seed=args.seed, batch_size=args.batch_size)
    if not quiet:
        say_truncation("eval", {"test": evaluator.truncation})
    progress = None if args.json else (lambda row: print(f"  done: {row['variant']}", file=sys.stderr))
    rows = accuracy_table(model, evaluator, variants, progress=progress)
    if quiet:
        return 0
    warn_if_at_chance("eval", evaluator, rows[0]["value"])
    warn_non_finite("eval", rows, "test")
    if not rows[0].get("non_finite_rows"):  # NaN from finite outputs: a metric undefined
        warn_if_undefined("eval", evaluator, rows[0]["value"])
    queries = rows[0].get("queries")
    warn_if_coarse("eval", evaluator, queries or rows[0]["examples"],
                   "queries" if queries else "rows")
    threshold = task.decision_threshold
    if args.json:
        print(strict_json.dumps({
            "model": description, "task": task.name, "task_type": task.task_type.name,
            "data": task.source, "split_seed": args.seed,
            "metric": evaluator.metric, "label_threshold": threshold,
            "max_length": evaluator.max_length,
            "truncation": as_dicts({"test": evaluator.truncation}),
            "split": "test", "examples": rows[0]["examples"], "rows": rows} | run_record(),
            indent=1))
    else:
        at = "" if threshold is None else f" at label threshold {threshold:g}"
        print(f"{description} on {task.name}; {evaluator.metric or 'no metric'}{at} on the test "
              f"split ({rows[0]['examples']} examples{_in_queries(rows[0])}, cut at "
              f"{evaluator.max_length} tokens)")
        print(format_table(rows, metric=evaluator.metric or "metric", agreement=evaluator.agreement))
    return 0


def _in_queries(row: dict) -> str:
    """' in N queries' for a ranking's scores (which count them), else nothing."""
    return f" in {row['queries']} queries" if row.get("queries") is not None else ""


def _search(args) -> int:
    config = search_config(args)
    try:
        target, _ = resolve_options(config)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.measure_latency_again and args.latency_table is not None:
        raise UsageError("--measure-latency-again and --latency-table: give one (a table to "
                         "price maps with, or a table to measure now)")
    if args.measure_latency_again and not target.is_current():
        raise UsageError(f"--measure-latency-again: --target {target.name} is not this machine "
                         f"({jax.devices()[0].device_kind}), so there is no table of it to "
                         "measure here")
    out = _check_output(args.out, what="--out", folder=True, inputs=(args.model, args.data),
                        replaceable=is_search_output)  # the whole folder is one run's output
    table = None if args.latency_table is None else read_latency_table(args.latency_table)
    with kept_warnings(kept_as=as_kept) as earlier:  # the report keeps them too
        model, tokenizer, description = resolve_model(args, progress=False if args.json else None)
        if table is not None:  # another model's costs are refused before any slow step
            check_given_table(table, model.config, where=f"--latency-table {args.latency_table}",
                              warn=False)  # the search warns (no architecture, another device)
        task = resolve_task(args, model)
        try:  # an absolute tolerance against the metric's largest value, now the data names it
            check_tolerance_for_metric(config, task.task_metric)
        except ValueError as e:
            raise UsageError(f"--tolerance: {e}") from None
        queries = task.query_sizes()
        _say(args, f"{task.name} ({task.task_type.name}): split sizes {task.sizes()}"
                   + ("" if queries is None else f", in queries {queries}"))
        warn_if_trained_on(args, task, ("search", "test"))
    run = run_search(model, tokenizer, task, config, out=out, description=description,
                     max_test_examples=args.max_examples, latency_table=table,
                     command=command_line(["samp-jax", *sys.argv[1:]]), warnings_before=earlier)
    summary = run.summary
    say_truncation("search", {split: Truncation(**counts)
                              for split, counts in summary["truncation"].items()})
    with summary_after(f"the search's outputs in {out}"):
        if args.json:
            print(strict_json.dumps(summary, indent=1))
        else:
            table = run.result.latency_table
            print_summary(out, summary, _measure_command(args, target, out, summary,
                                                         (table.batch, table.seq)))
    if summary.get("tolerance_met") is False:
        print(f"samp-jax search: error: {tolerance_not_met(summary)}", file=sys.stderr, flush=True)
        return TOLERANCE_NOT_MET
    return 0


LOAD_OPTIONS = ("head", "pooling", "normalize", "prompt_name", "base_model", "adapter")
"""The options that change how `--model` loads, which `samp-jax bench` does not take."""


def _measure_command(args, target, out, summary: dict,
                     shape: tuple[int, int] | None = None) -> str | None:
    """The `samp-jax bench` command that measures the searched map against the all-default
    one here (at `shape`, the latency table's), or None: a map for another device, a built-in
    model, a model loaded with options the bench does not take, a search whose tolerance no
    map met, or a chosen map that is the all-default one (nothing to compare)."""
    if not target.is_current() or any(getattr(args, n, None) is not None for n in LOAD_OPTIONS):
        return None
    if summary.get("tolerance_met") is False or (
            summary.get("estimated_speedup_vs_default") == 1.0
            and not summary.get("int8_flop_fraction")):
        return None
    return bench_command(args.model, out, summary["default_option"], shape)


def read_latency_table(path: str) -> LatencyTable:
    """The table of `--latency-table` (checked against the model and options by the search,
    before any slow step).

    Raises:
      ValueError: the file cannot be read, or is not a latency table (naming the file).
    """
    try:
        return LatencyTable.from_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"--latency-table {path}: not a readable latency table ({e})") from None


def _calibrate(args) -> int:
    scoring = [name for name, value in (("--max-examples", args.max_examples),
                                        ("--batch-size", args.batch_size)) if value is not None]
    if scoring and not args.eval:
        raise UsageError(f"{' and '.join(scoring)} set how --eval scores the test split; give "
                         "--eval too, or leave them out (calibration reads --max-batches)")
    out = _check_output(args.out, what="--out", folder=True, inputs=(args.model, args.data),
                        replaceable=is_quantized_folder)  # what QuantizedModel.save replaces
    _refuse_a_search_outputs_model(out)
    check_precision_items([args.precision])
    variant = Variant(args.precision, ACTIVATIONS[args.activation], args.method, args.smoothing)
    model, tokenizer, description = resolve_model(args, progress=False if args.json else None)
    task = resolve_task(args, model)
    if args.eval:
        warn_if_named_two_classes(model, task)
        warn_if_trained_on(args, task, ("test",))
    pmap = variant.precision_map(model.config.num_layers)  # validates before the slow part
    evaluator = make_evaluator(task, tokenizer, model, max_examples=args.max_examples,
                               seed=args.seed, batch_size=args.batch_size,
                               ) if args.eval else None  # checked before the slow part
    rows = CALIBRATION_EXAMPLES if args.max_batches is None else min(
        CALIBRATION_EXAMPLES, args.max_batches * CALIBRATION_BATCH_SIZE)  # a random subset
    check_file_size(f"{out / WEIGHTS_FILE} (the quantized model's weights)",
                    lambda: _quantized_bytes(model, pmap))
    batches, calibration_cut = task.calibration_inputs(tokenizer, max_examples=rows)
    truncation = {"calibration": calibration_cut,
                  "test": None if evaluator is None else evaluator.truncation}
    say_truncation("calibrate", truncation)
    try:
        calibration = calibrate(model, batches, args.method, precision_map=pmap,
                                smoothing=args.smoothing, progress=False if args.json else None)
    except CalibrationError as e:
        raise ValueError(f"calibration failed: {e}") from None
    quantized = quantize(model, pmap, calibration)
    serve_as_measured(quantized, tokenizer, task)
    path = quantized.save(out)
    summary = {"model": description, "task": task.name, "data": task.source,
               "split_seed": args.seed, "precision": variant.label,
               "calibration": calibration.describe(), "saved_to": str(path),
               "memory": quantized.memory_report(), "max_length": task.length(tokenizer),
               "truncation": as_dicts(truncation)} | run_record()
    if args.eval:
        summary["test"] = evaluator.score(evaluator.outputs(quantized))
        summary["test_fp32"] = evaluator.score(evaluator.outputs(model))
        warn_non_finite("calibrate", [{"variant": variant.label, **summary["test"]},
                                      {"variant": "fp32", **summary["test_fp32"]}], "test")
    with summary_after(f"the quantized model in {path}"):
        if args.json:
            print(strict_json.dumps(summary, indent=1, default=str))
        else:
            static = any(precision.needs_calibration for _, precision in pmap.items())
            how = (f"{args.method} calibration over {len(batches)} batches" if calibration.tokens
                   else "the static clips the precision map stores (no calibration pass)"
                   if static else "no static INT8 site to calibrate")
            print(f"{description}: {variant.label}, {how}; saved the quantized model to {path}")
            if args.eval:
                print(f"  test {summary['test']['metric']}: {summary['test']['value']:.4f} "
                      f"(FP32 {summary['test_fp32']['value']:.4f})")
    return 0


def _refuse_a_search_outputs_model(out: Path) -> None:
    """Refuses `--out` at the `model` folder of a search's output: the report, map and summary
    beside it describe that model, and would then describe another."""
    target = Path(out).resolve()
    search = target.parent
    if target.name == "model" and (search / "summary.json").is_file() and \
            is_search_output(search):
        raise ValueError(f"--out {out} is the model of the search output {search}, whose "
                         "report.md, precision_map.json and summary.json describe it; replacing "
                         "it alone would leave them describing another model: write it "
                         f"elsewhere (or run samp-jax search again with --out {search})")


def _finetune(args) -> int:
    out = _check_output(args.out, what="--out", folder=True, model_folder=True,
                        inputs=(args.model, args.data))
    _refuse_a_search_outputs_model(out)
    if args.model is None:
        raise UsageError(f"--model is required: an HF model folder or {PACKAGED_MODEL!r}")
    base = minilm_path() if args.model == PACKAGED_MODEL else Path(args.model)
    task = resolve_task(args, None)
    loss = task.training_loss  # raises for data with nothing to train a head on (embeddings)
    if args.head is not None and args.head != task.head.name:
        raise UsageError(f"finetune trains the head its data needs ({task.head.name}, for "
                         f"{task.task_type.name}); --head {args.head} names another")
    config = FinetuneConfig(learning_rate=args.learning_rate, batch_size=args.batch_size,
                            epochs=args.epochs, max_train_examples=args.max_train_examples,
                            eval_every=None if args.eval_every == "auto" else int(args.eval_every),
                            seed=args.seed, min_steps=args.min_steps,
                            warmup_fraction=args.warmup_fraction, patience=args.patience,
                            max_dev_examples=(None if args.max_dev_examples == "all"
                                              else int(args.max_dev_examples)))
    model, task = _model_to_finetune(args, base, task)
    task = with_relevant_class(args, task, model)  # refused for a head made anew (one output)
    check_file_size(f"{out / WEIGHTS_FILE} (the fine-tuned model's weights)",
                    lambda: sum(a.nbytes for a in export_state_dict(model).values()))
    loss = task.training_loss_for(model)  # as the task reads the model's head: a score, classes
    tokenizer = fit_max_length(args, model, model.tokenizer, str(args.model))
    test = make_evaluator(task, tokenizer, seed=args.seed) if task.split("test") else None
    _say(args, f"fine-tuning {args.model} on {task.name} ({task.task_type.name}, "
               + (f"labels {list(task.labels)}" if task.labels else
                  _HEAD_READ.get(model.readout, _HEAD_READ[Readout.SCORE]).format(
                      task.reads_class))
               + f", {loss.name}); split sizes {task.sizes()}; data: {task.source}")
    given = _split_files(args)
    held_out = [s for s in ("calibration", "search") if s not in given]
    if "train" in given and held_out:
        _say(args, f"  the {' and '.join(held_out)} rows are carved from your train file and not "
                   "trained on, so that a search with the same --split-file options and --seed "
                   "scores rows the model never saw; give --split-file "
                   f"{' --split-file '.join(s + '=FILE' for s in held_out)} to train on every "
                   "train row")
    test_cut = {"test": None if test is None else test.truncation}
    result = finetune(model, task, tokenizer, config, progress=False if args.json else None,
                      on_encoded=lambda cut: say_truncation("finetune", cut | test_cut))
    if not result.learned:
        verdict = (result.chance.describe(result.dev_metric, "the fine-tuned model's dev") +
                   ": it has not learned the task (more rows, more --min-steps or another "
                   "--learning-rate may help)")
        if args.strict:
            raise RuntimeError(f"{verdict}; nothing saved (--strict)")
        print(f"samp-jax finetune: warning: {verdict}", file=sys.stderr, flush=True)
    truncation = result.truncation | test_cut
    metrics = None if test is None else test.score(test.outputs(result.model))
    summary = {"model": str(out), "base_model": args.model, "task": task.name,  # as given
               "task_type": task.task_type.name,
               "labels": None if task.labels is None else list(task.labels),
               "loss": loss.name, "problem_type": loss.problem_type,
               "relevant_class": task.relevant_class,
               "label_threshold": task.decision_threshold, "metric": task.metric,
               "dev_metric": result.dev_metric,
               "dev_examples_scored": result.dev_examples, "steps": result.steps,
               "seconds": result.seconds, "test": metrics, "split_sizes": task.sizes(),
               "data": task.source, "split_seed": args.seed, "learned": result.learned,
               "max_length": task.length(tokenizer), "truncation": as_dicts(truncation),
               # its margin is the noise of the best of its `evaluations` dev scores
               "dev_chance": None if result.chance is None else dataclasses.asdict(result.chance),
               "settings": dataclasses.asdict(config)} | run_record()
    keep_label_threshold(result.model, task)  # the threshold its dev checkpoint was kept at
    warn_if_trained_below_no_skill(task.metric, result.dev_metric)
    with atomic_folder(out) as staging:  # checkpoint and summary: one run, one rename
        save_pretrained(result.model, staging, tokenizer_dir=base, labels=task.labels,
                        extra=TRAINED_ROWS_CONFIG)  # says the next file belongs with it
        save_trained_rows(staging, task.split("train"))  # for warn_if_trained_on
        (staging / "finetune.json").write_text(strict_json.dumps(summary, indent=1))
    with summary_after(f"the fine-tuned model in {out}"):
        if args.json:
            print(strict_json.dumps(summary, indent=1))
        else:
            test_text = "no test split" if metrics is None else f"test {metrics['value']:.4f}"
            dev_rows = task.sizes().get("dev")
            scored = ("" if result.dev_examples == dev_rows
                      else f" on {result.dev_examples} of {dev_rows} rows")
            evaluations = result.evaluations
            best = f" (the best of {evaluations} evaluations{scored})" if evaluations > 1 else \
                f" ({scored.strip()})" if scored else ""
            print(f"fine-tuned in {result.seconds:.0f} s ({result.steps} steps): dev "
                  f"{task.metric} {result.dev_metric:.4f}{best}, {test_text}; saved to {out} "
                  f"(split seed {args.seed}: evaluate it with the same --seed, or its training "
                  "rows reach the test split)")
    return 0


_HEAD_READ = {Readout.SCORE: "one output: a score",
              Readout.CLASSES: "two classes: a score by P(class {})"}
"""How `finetune` says a head without label names is read (a score, a ranking's two classes)."""


def _model_to_finetune(args, base: Path, task: Task):
    """The model `finetune` trains and the task it trains for. A head that already reads the
    data (its kind, its outputs and its class names: a classifier fine-tuned again, a
    one-output CrossEncoder on 0/1 labels) is kept, and the task follows its class order and
    readout as `eval` reads them; a head named only with HF's generic `LABEL_<i>` is kept and
    takes the data's names. Any other head (another width, or other class names: its rows
    mean other classes) is initialised anew in memory, with a warning, from the same head
    spec (the folder's weights are read once); a CrossEncoder's new head takes
    sentence-transformers' default activation for its width."""
    options = {k: v for k, v in model_options(args).items() if k != "head"}
    model = load(base, head=task.head, allow_new_head=True, **options)  # its own width: one read
    try:  # as eval reads the data with this model: its class order, a one-output head's score
        read = resolve_task(args, model)
        if read.task_type == task.task_type or model.readout is Readout.SCORE:
            task = read  # not a head read another way (label sets of single labels): refused
    except (ValueError, UsageError):
        pass  # the data does not fit this head (other classes): the head is made anew
    names = model.labels
    if names is not None and all_generic(names):
        names = model.head.labels = None  # unnamed classes: fine-tuning names them after the data
    width = getattr(model.head, "num_labels", task.num_outputs)
    other_names = names is not None and task.labels is not None and names != task.labels
    if not task.fits_width(width, model.readout) or other_names:
        found = (f"names the classes {list(names)}, the data's are {list(task.labels)}"
                 if other_names else f"has {width} outputs, the data needs {task.num_outputs}")
        warnings.warn(f"the {model.head_kind} head of {args.model} {found}: its head is "
                      "initialised anew", UserWarning, stacklevel=2)
        activation = model.cross_encoder_activation
        spec = head_spec(model.head)["spec"] | {"labels": None, "num_labels": task.num_outputs}
        # the task's loss decides these
        for key in ("problem_type", "cross_encoder_activation", "relevant_class"):
            spec.pop(key, None)
        pretrained, model.head = model.head, make_head(task.head.name, model.config,
                                                       rngs=nnx.Rngs(args.seed), **spec)
        _keep_layers_before_the_classifier(pretrained, model.head)
        _set_default_activation(model, activation, task.num_outputs)
    return model, task


def _keep_layers_before_the_classifier(pretrained: nnx.Module, new: nnx.Module) -> None:
    """The new head keeps the weights of the old one's layers before its classifier (BERT's
    pooler; the dense layer and norm of RoBERTa's, ELECTRA's, DeBERTa's and ModernBERT's
    heads), as HF's `from_pretrained(..., num_labels=N)` keeps every weight of the checkpoint
    that fits and starts only the classifier."""
    old = {path: var for path, var in nnx.to_flat_state(nnx.state(pretrained, nnx.Param))}
    kept = [(path, var.replace(old[path].get_value()))
            for path, var in nnx.to_flat_state(nnx.state(new, nnx.Param))
            if path[0] != "classifier" and path in old
            and old[path].get_value().shape == var.get_value().shape]
    nnx.update(new, nnx.from_flat_state(kept))


def _set_default_activation(model, activation: str | None, num_outputs: int) -> None:
    """A CrossEncoder's (`activation` not None) new head: sentence-transformers' default
    activation for its width (Sigmoid for one output, Identity for more), not the old one's."""
    if activation is not None and hasattr(model.head, "cross_encoder_activation"):
        model.head.cross_encoder_activation = "Sigmoid" if num_outputs == 1 else "Identity"


def _predict(args) -> int:
    if args.model is None:
        raise UsageError("--model is required: a folder written by samp-jax, an HF model folder "
                         f"or {PACKAGED_MODEL!r}")
    if args.data is None:
        raise UsageError("--data is required: the file with the rows to predict")
    if args.data in TASKS and not Path(args.data).exists():
        raise UsageError(f"--data {args.data} is a built-in task's name; predict reads your own "
                         "rows (a CSV/TSV/JSONL/Parquet/CoNLL file, a datasets folder, or '-'); "
                         f"to score {args.data}'s test split: samp-jax eval --data {args.data}")
    # A distributed run joins first: process 0 alone writes --out (another's copy is not
    # checked: a path that exists on host 0 alone is fine), and a process that stops after
    # joining stops the others at once, where one that stopped before would leave them
    # waiting out --connect-timeout. The check still comes before any model is read.
    _start_distributed(args)
    keep = tuple(args.keep_columns)
    predictions.check_kept(keep)
    to_stdout = args.out == predictions.STDOUT
    writes = args.coordinator is None or args.process_id in (None, 0)
    out = args.out if to_stdout or not writes else _check_output(
        args.out, what="--out", folder=False, inputs=(args.model, args.data))
    if not to_stdout and writes:
        predictions.check_suffix(out)
    model = load(minilm_path() if args.model == PACKAGED_MODEL else Path(args.model),
                 **model_options(args))
    check_threshold(args, model)
    fit_max_length(args, model, model.tokenizer, str(args.model))
    columns = Columns(text=args.text_column, text_pair=args.text_pair_column,
                      tokens=args.tokens_column)
    if args.data == STDIN:  # JSON Lines, read whole before any prediction
        rows = rows_from_stdin(columns, model.head_kind, model.tokenizer.word_spans, keep)
    else:  # one process: read as predicted, a block at a time (each process of a
        # distributed run reads the rows whole, to hash them and take its own block)
        rows = predictions.read_model_inputs(args.data, columns, head=model.head_kind,
                                             word_spans=model.tokenizer.word_spans, keep=keep,
                                             stream=not is_distributed())
    scan = predictions.scan_rows(rows)  # every row converted once: its errors come now
    if scan.blank:
        warnings.warn(f"{len(scan.blank)} of {len(rows)} rows of {args.data} have an empty or "
                      f"blank text (rows {_numbers(scan.blank)}); their predictions are the "
                      "model's answer to what input there is")
    if scan.unspaced:
        warnings.warn(f"{len(scan.unspaced)} of {len(rows)} rows of {args.data} have a word of "
                      f"{predictions.UNSPACED_RUN} or more characters of a script written "
                      f"without spaces (Chinese, Japanese, Thai, ...; rows "
                      f"{_numbers(scan.unspaced)}): this model's tokenizer splits a plain text "
                      "into words where it has spaces, so each such run is one word with one "
                      "tag; give the words in a tokens column (--tokens-column) to tag each")
    if is_distributed():  # every process must predict from the same model and rows (each
        # takes its own block); hashing them costs a second or so, only worth it here
        check_same(digest([state_digest(model), json.dumps(rows, sort_keys=True)]),
                   f"the model {args.model} and the rows of {args.data}")
    if not to_stdout and writes:
        check_file_size(f"{out} (the predictions; their texts alone)", lambda: _text_bytes(rows))
    show = not args.json and len(rows) > predictions.CHUNK_ROWS
    written = predictions.write(model, rows, out, batch_size=args.batch_size,
                                progress=predict_progress if show else None,
                                label_threshold=args.threshold, max_length=args.max_length)
    if is_primary():
        say_truncation("predict", {"input": Truncation(written.max_length, written.rows,
                                                       written.truncated)})
        result = {"predictions": str(out), "rows": written.rows,
                  "max_length": written.max_length, "truncated": written.truncated}
        if written.non_finite:
            result["non_finite"] = written.non_finite
            print(f"samp-jax predict: warning: {written.non_finite} of {written.rows} rows gave "
                  "NaN or Inf outputs (values past the range of the model's precision, e.g. "
                  "above FP16's 65,504); they are written with null answers and "
                  '"non_finite": true', file=sys.stderr, flush=True)
        text = (f"wrote {written.rows} prediction{'' if written.rows == 1 else 's'} to "
                f"{'standard output' if to_stdout else out}")
        if model.readout is Readout.LABELS:  # the threshold each row's labels were read at
            result["label_threshold"] = args.threshold or model.label_threshold or LABEL_THRESHOLD
            text += f" (labels at sigmoid >= {result['label_threshold']:g})"
        # with the predictions on stdout, the summary goes to stderr
        with (contextlib.nullcontext() if to_stdout
              else summary_after(f"the predictions in {out}")):
            print(strict_json.dumps(result | run_record()) if args.json else text,
                  file=sys.stderr if to_stdout else sys.stdout)
    return 0


def check_file_size(what: str, least) -> None:
    """Refuses, before the slow work, an output file that the file size limit (`ulimit -f`)
    would cut, as a fetch of an asset is refused: `what` names the file, `least()` (asked only
    under a limit) is the fewest bytes it takes (it takes more: a header, the JSON around the
    texts), so a file refused would not fit.

    Raises:
      FileSizeLimitError: naming the file, its size, the limit and the `ulimit -f` to set.
    """
    if file_size_limit() is None:
        return
    needed = int(least())
    beyond = beyond_file_size_limit(needed, least=True)
    if beyond is not None:
        raise FileSizeLimitError(f"{what} takes at least {needed:,} bytes, and {beyond}")


def _quantized_bytes(model, pmap) -> int:
    """The bytes of the parameters of `model` quantized by `pmap` (what the quantized
    model's weights file holds), before any calibration: each static site given a stored clip
    in its place (a clip is a number: the sizes are those the calibrated model will have)."""
    clips = {key: 1.0 for key, precision in pmap.items() if precision.needs_calibration}
    clipped = pmap.with_calibration({}, clips, compute_dtype=pmap.compute_dtype)
    return state_bytes(quantize(model, clipped))


def _text_bytes(rows) -> int:
    """The UTF-8 bytes of the rows' texts (or words, where a row has no text), which their
    predictions repeat: the fewest bytes a predictions file of them takes."""
    total = 0
    for row in rows:
        texts = [str(row.get(field) or "") for field in ("text", "text_pair")]
        if "text" not in row:
            texts = [str(word) for word in row.get("tokens") or ()]
        total += sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
    return total


def _numbers(rows: list[int], shown: int = 8) -> str:
    """Row numbers for a message: the first `shown`, then '...'."""
    return ", ".join(map(str, rows[:shown])) + (", ..." if len(rows) > shown else "")


def _start_distributed(args) -> None:
    """Joins the distributed run that `--coordinator` names (before any JAX work), if any."""
    given = [name for name in ("num_processes", "process_id") if getattr(args, name) is not None]
    if args.coordinator is None:
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} needs --coordinator HOST:PORT")
        return
    results_only_on_stdout()
    process = "?" if args.process_id is None else args.process_id
    name = f"samp-jax {args.command} (process {process})"

    def stop(message: str) -> None:  # the watchdog's verdict: one line, exit 1
        print(f"{name}: error: {message}", file=sys.stderr, flush=True)
        os._exit(1)
    try:
        initialize_distributed(args.coordinator, args.num_processes, args.process_id,
                               timeout_s=args.connect_timeout,
                               heartbeat_timeout_s=args.heartbeat_timeout,
                               allow_remote=args.allow_remote_coordinator, on_failure=stop)
    except ValueError as e:
        raise UsageError(str(e).replace("num_processes", "--num-processes")
                         .replace("process_id", "--process-id")
                         .replace("allow_remote=True", "--allow-remote-coordinator")
                         .replace("coordinator=", "--coordinator ")) from None
    check_same_options(shared_options(args))


# Options each process of a distributed run may set its own way: its rank, how it joins, where
# it finds its copies of the model and data (their contents are compared when read), and what
# only process 0 does (write --out, print --json).
PER_PROCESS_OPTIONS = frozenset({
    "process_id", "coordinator", "connect_timeout", "heartbeat_timeout",
    "allow_remote_coordinator", "model", "data", "split_file", "out", "json", "debug"})


def shared_options(args) -> dict:
    """The command-line options every process of a distributed run must be given alike, by
    their option names (`--max-length`), for `check_same_options`."""
    return {("the command" if name == "command" else f"--{name.replace('_', '-')}"): value
            for name, value in vars(args).items()
            if name not in PER_PROCESS_OPTIONS and not callable(value)}


def _bench(args) -> int:
    def load_model(args):  # `--model`, read as the other commands read it
        model, _, description = resolve_model(args, progress=None)
        return model, description
    return bench.run_from_args(args, load_model)


def _demo(args) -> int:
    demo.run(tolerance=args.tolerance)
    return 0


COMMANDS = {"eval": _eval, "calibrate": _calibrate, "search": _search, "finetune": _finetune,
            "predict": _predict, "bench": _bench, "demo": _demo}  # `args.command` -> its run
UNCACHED_COMMANDS = ("bench",)
"""Commands that compile without the persistent compilation cache: the bench times
compilations."""
PLOTTING_COMMANDS = ("search", "bench", "demo")
"""Commands that draw a plot with Matplotlib (the Pareto front; the bench's figure)."""


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (0, 1 error, 2 usage, 3 a search whose tolerance
    no map met (`TOLERANCE_NOT_MET`), 130 interrupted, 141 standard output's reader gone, 143
    terminated: `samp_jax.app.entry.Terminated`)."""
    tolerate_unencodable_output()
    stdout = sys.stdout
    if stdout is not None and not isinstance(stdout, ResultsStream):
        sys.stdout = ResultsStream(stdout)
    try:
        return _main(argv)
    finally:
        if isinstance(sys.stdout, ResultsStream):  # as it was, for a caller in this process
            sys.stdout = sys.stdout.stream


OWN_MODULES = r"(?:samp_jax|calibrate)(?:\.|$)"
"""The modules whose warnings are samp-jax's own (`own_warnings_stay_warnings`)."""


def own_warnings_stay_warnings() -> None:
    """Keeps samp-jax's own warnings (advice: "calibration saw only 332 real token(s)") warning
    lines where the caller's filters turn warnings into errors (`PYTHONWARNINGS=error`,
    `python -W error`): before each "error" filter goes a "default" one for the same message
    and category from samp-jax's modules. A command fails on its input, never on its advice;
    other libraries' warnings are errors as asked, and an "ignore" filter still silences
    samp-jax's. Call it inside `warnings.catch_warnings()`."""
    def pattern(field) -> str:  # a filter's field: None (any), a regex, or a str (exactly)
        if field is None:
            return ""
        return re.escape(field) + r"\Z" if isinstance(field, str) else field.pattern

    filters = list(warnings.filters)
    warnings.resetwarnings()
    for action, message, category, module, lineno in filters:  # in order, each appended
        message, module = pattern(message), pattern(module)
        if action == "error":
            own = f"(?={OWN_MODULES})(?:{module})" if module else OWN_MODULES
            warnings.filterwarnings("default", message, category, own, lineno, append=True)
        warnings.filterwarnings(action, message, category, module, lineno, append=True)


def _main(argv: list[str] | None) -> int:
    name = "samp-jax"
    try:
        parser = build_parser()
        args = parser.parse_args(joined_negative_percents(sys.argv[1:] if argv is None else argv))
        name = f"samp-jax {args.command}"
        with warnings.catch_warnings():
            own_warnings_stay_warnings()
            if not args.debug:  # a warning is one line too, not a source line under a path
                # a distributed run's other processes stay quiet; asked only once joined, as
                # is_primary would start JAX's backend before jax.distributed could
                warnings.showwarning = warning_printer(
                    name, shown=lambda: not is_distributed() or is_primary())
            # a full compilation cache: one line, not JAX's warning per executable
            warnings.showwarning = cache_errors_once(warnings.showwarning)
            code = _run(args, name)
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not at exit, where a failure would be a traceback
    except StdoutError as e:
        print(f"{name}: error: {e}", file=sys.stderr, flush=True)
        code = 1
    except PluginError as e:  # before the parser exists: --debug read from the words
        code = plugin_failed(e, sys.argv[1:] if argv is None else argv, name)
    except Terminated:  # SIGTERM: the run has unwound, as for a Ctrl-C
        print(f"{name}: terminated", file=sys.stderr, flush=True)
        code = 143
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr, flush=True)
        code = 130
    except BrokenPipeError:  # e.g. `samp-jax eval --json | head`: the reader has gone; as a
        # killed pipe ends other tools (128 + SIGPIPE), with nothing left to flush at exit
        silence_stdout()
        code = 141
    if code and is_distributed():
        # The other processes may be stuck waiting on this one: leave now rather than in
        # jax.distributed's shutdown barrier, which would abort after its timeout.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


# Exceptions samp-jax never raises for a bad input (those are ValueError, OSError and their
# kind): one of these is a bug, and the one line says so
INTERNAL_ERRORS = (NameError, AttributeError, AssertionError, ZeroDivisionError)


def _run(args, name: str) -> int:
    try:
        if closed_at_start("stdout"):  # started with standard output closed (`>&-`)
            _closed_stdout(args)
        if getattr(args, "split_file", None):
            _split_files(args)  # checked before any command loads its model
        model_options(args)  # a --head that --pooling contradicts, likewise
        if getattr(args, "data", None) == STDIN and args.command != "predict":
            raise UsageError(f"--data {STDIN}: standard input is read by predict only (rows "
                             f"without gold); {args.command} needs a file or a folder")
        if getattr(args, "data", None) == STDIN and closed_at_start("stdin"):
            raise UsageError(f"--data {STDIN} reads the rows from standard input, which is "
                             "closed (<&-): give them on it (< FILE, or a pipe), or give --data "
                             "FILE")
        if args.command not in UNCACHED_COMMANDS:  # a command run again loads, not compiles
            default_compilation_cache(_default_xla_folder())
        with _matplotlib_in_cache(args.command in PLOTTING_COMMANDS):
            return COMMANDS[args.command](args)
    except UsageError as e:
        print(args.command_usage(), file=sys.stderr, end="")
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    except (BrokenPipeError, StdoutError):  # standard output's, said by main
        raise
    except Exception as e:  # noqa: BLE001  one line, never a traceback (unless --debug)
        if args.debug:
            traceback.print_exc()
        explained = (describe_failure(e) or jax_platforms.explain(e) or _full_disk(e, args)
                     or _out_of_memory(e, args))
        message = explained or str(e) or type(e).__name__
        if explained is None and isinstance(e, INTERNAL_ERRORS):  # not the input's: say so
            message = (f"{type(e).__name__}: {message} (an internal error of samp-jax, not of "
                       "your input: --debug shows the traceback to report)")
        message = one_line(message)
        if is_distributed():
            silence_watchdog()  # this error is the one line, not the watchdog's
            name = f"{name} (process {jax.process_index()})"
        print(f"{name}: error: {message}", file=sys.stderr)
        return 1


def _default_xla_folder() -> Path | None:
    """`<asset cache>/xla`, or None when no cache folder is known (no $SAMP_JAX_CACHE and no
    home folder: a container's user without a passwd entry): the command then runs without a
    persistent compilation cache unless $SAMP_JAX_XLA_CACHE names one."""
    try:
        return cache_dir() / "xla"
    except NoCacheFolderError:
        return None


@contextlib.contextmanager
def _matplotlib_in_cache(plotting: bool = True) -> Iterator[None]:
    """While a command that plots runs: Matplotlib's config and font cache (`$MPLCONFIGDIR`,
    unless set) in samp-jax's cache folder, so that a plot writes nothing outside it, and
    Matplotlib's own WARNING lines not shown (a read-only or missing home folder makes it say
    in several lines that it uses a temporary folder). Both as they were afterwards, for a
    caller of `main` in its own process."""
    if not plotting:
        yield
        return
    logger = logging.getLogger("matplotlib")
    level, folder = logger.level, None
    logger.setLevel(logging.ERROR)
    if "MPLCONFIGDIR" not in os.environ:
        try:
            folder = cache_dir() / "matplotlib"
            folder.mkdir(parents=True, exist_ok=True)
            os.environ["MPLCONFIGDIR"] = str(folder)
        except (NoCacheFolderError, OSError):  # no home folder, a read-only one: its own
            folder = None
    try:
        yield
    finally:
        logger.setLevel(level)
        if folder is not None:
            os.environ.pop("MPLCONFIGDIR", None)


def _closed_stdout(args) -> None:
    """A command started with standard output closed: refused when it writes its results
    there (its JSON or table, `predict --out -`); `predict --out FILE` writes them to the file,
    and its one summary line goes nowhere.

    Raises:
      UsageError: the results would be lost.
    """
    if args.command == "predict" and args.out != predictions.STDOUT and not args.json:
        sys.stdout = open(os.devnull, "w")
        return
    raise UsageError("standard output is closed (>&-), and this command writes its results "
                     "there: redirect it to a file (> FILE), or to /dev/null to drop them")


def _full_disk(error: Exception, args) -> str | None:
    """A full disk, a quota or the file size limit (`ulimit -f`), said with where it struck:
    the place the error's file is in (`--out`'s folder, the cache or the temporary folder:
    the innermost that holds it) and the file as it is named once written (not the temporary
    name it was being written under: `committed_path`); where the error names no file
    (Python's writes name none), every place the command writes. Finding those folders raises
    nothing (a full disk may leave no usable temporary folder, and no home folder be known)."""
    if not (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)):
        return None
    remedy = ("raise the file size limit (ulimit -f) or write smaller files"
              if error.errno == errno.EFBIG else "free space there and run again")
    places = _write_places(args)
    written = error.filename2 or error.filename  # a copy names its source first
    if not written:
        where = ", ".join(place for place, _ in places)
        return f"{error.strerror} while writing ({where}): {remedy}"
    file = committed_path(os.fsdecode(written))
    real = Path(os.path.realpath(file))
    holding = [(len(folder.parts), place) for place, folder in places
               if real == folder or folder in real.parents]
    where = f" ({max(holding, key=lambda found: found[0])[1]})" if holding else ""
    return f"{error.strerror} while writing {file}{where}: {remedy}"


def _write_places(args) -> list[tuple[str, Path]]:
    """Where a command writes, each as its name in a message and the real folder it writes in:
    `--out`'s (beside the output, where its temporary copy goes), the cache, the temporary
    folder; a place that cannot be found is left out."""
    places = []
    out = getattr(args, "out", None)
    if out not in (None, predictions.STDOUT):
        with contextlib.suppress(OSError):  # a symlink loop: refused before any work
            places.append((f"--out {out}", Path(os.path.realpath(resolve_output(out).parent))))
    for place, folder in (("the cache", cache_dir), ("the temporary folder", tempfile.gettempdir)):
        try:
            found = folder()
        except (OSError, NoCacheFolderError):  # no usable temporary folder; no home folder
            continue
        places.append((f"{place} {found}", Path(os.path.realpath(found))))
    return places


# XLA's message for an allocation that failed (a device's memory; the host's on a CPU)
_DEVICE_OUT_OF_MEMORY = "RESOURCE_EXHAUSTED: Out of memory"
_CPU_KERNEL_FAILED = "YNNPACK operation failed"


def _out_of_memory(error: Exception, args) -> str | None:
    """An allocation that failed, said as such, with what may help: on a GPU its own memory
    (XLA's RESOURCE_EXHAUSTED), on the host a memory limit."""
    text = str(error) or type(error).__name__
    scores = "batch_size" in vars(args) and (args.command != "calibrate" or args.eval)
    smaller = "pass a smaller --batch-size, " if scores else ""
    on_device = _DEVICE_OUT_OF_MEMORY in text and jax.default_backend() != "cpu"
    if on_device:
        return (f"out of memory on the {jax.default_backend().upper()} ({text}): "
                f"{smaller}a smaller --max-length, or a device with more memory")
    if out_of_host_memory(error) or _DEVICE_OUT_OF_MEMORY in text:
        return (f"out of memory ({text}): {smaller}free memory, or raise the limit (ulimit -v, "
                "a container's)")
    if _CPU_KERNEL_FAILED in text:  # XLA:CPU's kernels say no more when a buffer was refused
        return (f"XLA's CPU runtime failed ({text}); where the lines above say that an allocate "
                f"failed, it ran out of memory: {smaller}a smaller --max-length, or free memory")
    return None


if __name__ == "__main__":
    sys.exit(main())
