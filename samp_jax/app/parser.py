"""The `samp-jax` argument parser: the global options, one subcommand per command, and the
option groups the commands share (data, model, distributed, training).

Parsing checks every value it can (`samp_jax.app.arguments`' number types, tolerances, search
options, choices), so a bad one exits with code 2 naming the argument before anything slow
runs. `args.command` names the command; `samp_jax.app.cli` runs it.

Building the parser loads no JAX (nor Flax or transformers), so that `--help` and a usage
error are answered at once (`samp_jax.app.entry` parses before it imports the CLI): the names
it lists from the library's registries are `samp_jax.app.choices`' (copies of the built-in
entries; a registry a program can add to, once loaded, is read itself), and the two checks of
a value that need the library (a tolerance, a label threshold) import it when a value is
checked.
"""

from __future__ import annotations

import argparse
import re

from samp_jax.app import bench_options
from samp_jax.app.arguments import (column_names, label_threshold, non_negative_int,
                                     path_or_name, positive_float, positive_int, unit_interval)
from samp_jax.app.choices import (ATTENTION_MODES, AUTO_METHODS, AUTO_TARGET, CALIBRATION_EXAMPLES,
                                  CALIBRATORS, DEFAULT_STRATEGY, LABEL_THRESHOLD, OPTION_NAMES,
                                  SENTENCE_EMBEDDING, SPLITS, TASK_TYPES, TASKS, head_kinds,
                                  metric_choices, strategies, targets)
from samp_jax.app.plugins import load_plugins
from samp_jax.core.version import __version__

ACTIVATIONS = {"dynamic": "per_token_dynamic", "static": "per_tensor_static"}
PACKAGED_MODEL = "minilm"


def build_parser() -> argparse.ArgumentParser:
    """The `samp-jax` parser; `args.command` names the subcommand parsed and
    `args.command_usage()` gives that subcommand's usage line (for errors found after parsing).

    The plugins are loaded first (`samp_jax.app.plugins`), so the choices offer what they register.

    Raises:
      samp_jax.app.plugins.PluginError: a plugin could not be loaded.
    """
    load_plugins()
    parser = argparse.ArgumentParser(prog="samp-jax", description="Mixed-precision BERT inference in JAX.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_eval, _add_calibrate, _add_search, _add_finetune, _add_predict, _add_bench,
                _add_demo):
        add(sub)
    for command in sub.choices.values():
        command.set_defaults(command_usage=command.format_usage)
    return parser


def version_line() -> str:
    """`samp-jax --version`: this package's version and the versions it computes with."""
    import flax
    import jax

    return f"samp-jax {__version__} (jax {jax.__version__}, flax {flax.__version__})"


class _Version(argparse._VersionAction):  # argparse's own `action="version"`: the same help
    """`--version`, its line made only when asked for: it imports JAX and Flax."""

    def __call__(self, parser, namespace, values, option_string=None):
        self.version = version_line()
        super().__call__(parser, namespace, values, option_string)


NEGATIVE_PERCENT = re.compile(r"-(\d+\.?\d*|\.\d+)%")


def joined_negative_percents(argv: list[str]) -> list[str]:
    """`argv` with an option and a negative percentage after it joined (`--tolerance -1%` as
    `--tolerance=-1%`): argparse reads a word that starts with '-' and is not a plain number
    as an option, and would say only "expected one argument" instead of what is wrong with
    the value."""
    joined: list[str] = []
    for word in argv:
        if (joined and joined[-1].startswith("--") and "=" not in joined[-1]
                and NEGATIVE_PERCENT.fullmatch(word)):
            joined[-1] = f"{joined[-1]}={word}"
        else:
            joined.append(word)
    return joined


def _add_eval(sub) -> None:
    """`samp-jax eval`: precision variants scored on the test split against FP32."""
    calibrators = sorted(CALIBRATORS)
    ev = sub.add_parser("eval", help="evaluate precision variants on the test split against FP32")
    _add_data(ev)
    ev.add_argument("--precision", default="fp16",
                    help="comma-separated presets (fp32, fp16, bf16, fp8, quant_ffn_only, "
                         "fully_quant) or precision-map JSON files")
    ev.add_argument("--activation", default="dynamic", choices=sorted(ACTIVATIONS),
                    help="INT8 activation scheme for presets")
    ev.add_argument("--calibration", default="percentile", choices=calibrators,
                    help="calibrator of the static sites whose map rule names none (a searched "
                         "map names each site's and stores its clip)")
    ev.add_argument("--smoothing", type=unit_interval, default=None, help="SmoothQuant alpha in [0, 1]")
    ev.add_argument("--max-examples", type=positive_int, default=None,
                    help="score a fixed seeded subset of the test split")
    _add_batch_size(ev)
    _add_threshold(ev, "F1 and the label-set agreement are measured at it")
    _add_metric(ev, "the test split is scored by")
    _add_distributed(ev)


def _add_calibrate(sub) -> None:
    """`samp-jax calibrate`: static scales calibrated, the quantized model saved."""
    calibrators = sorted(CALIBRATORS)
    ca = sub.add_parser("calibrate", help="calibrate static scales and save a quantized model")
    _add_data(ca)
    ca.add_argument("--precision", default="fully_quant",
                    help="a preset (fp32, fp16, bf16, fp8, quant_ffn_only, fully_quant) or a map JSON file")
    ca.add_argument("--activation", default="static", choices=sorted(ACTIVATIONS),
                    help="INT8 activation scheme for presets")
    ca.add_argument("--method", default="percentile", choices=calibrators,
                    help="calibrator of the static sites whose map rule names none (a searched "
                         "map names each site's and stores its clip)")
    ca.add_argument("--smoothing", type=unit_interval, default=None, help="SmoothQuant alpha in [0, 1]")
    ca.add_argument("--max-batches", type=positive_int, default=None,
                    help="calibrate on N batches of 64 rows (the split's first N x 64 rows, "
                         "at most 512) instead of all 512")
    ca.add_argument("--max-examples", type=positive_int, default=None, help="test examples scored with --eval")
    ca.add_argument("--out", default="quantized_model",
                    help="folder for the saved QuantizedModel (default: ./quantized_model, "
                         "replaced by a later run that leaves --out out)")
    ca.add_argument("--eval", action="store_true", help="also score the test split (quantized and FP32)")
    _add_batch_size(ca, "with --eval, ")


def _add_batch_size(command, when: str = "") -> None:
    """`--batch-size` of a command that scores the test split."""
    command.add_argument("--batch-size", type=positive_int, default=None,
                         help=f"{when}rows per batch of the test split scored (default: 64; "
                              "128 for embedding pairs); rows past 512 tokens go fewer to a "
                              "batch, and several devices share each batch")


def _add_search(sub) -> None:
    """`samp-jax search`: the precision map that meets a tolerance or latency target."""
    calibrators = sorted(CALIBRATORS)
    se = sub.add_parser("search", help="find the precision map that meets a tolerance or latency target")
    _add_data(se)
    se.add_argument("--tolerance", type=parse_tolerance, default=None,
                    help="the largest loss of the task metric on the search split, e.g. 1%% or "
                         "0.01 (default 1%%); not with --latency-target")
    se.add_argument("--tolerance-mode", default="relative", choices=["relative", "absolute"],
                    help="relative: a share of the FP32 metric (default); absolute: metric points "
                         "(below half the metric's largest value: 0.5 for the built-in metrics)")
    se.add_argument("--latency-target", type=positive_float, default=None, metavar="MS",
                    help="reach this estimated latency instead of a tolerance: the map closest "
                         "to FP32 on the search split (by the proxy, e.g. the KL to FP32's "
                         "outputs) among the greedy's and the presets that reach it")
    se.add_argument("--objective", default="latency", choices=["latency", "int8_fraction"],
                    help="what the map is chosen for within the tolerance: the target's "
                         "latency (default), or the most matmul FLOPs in INT8 (attention's included)")
    se.add_argument("--target", default="auto", choices=[AUTO_TARGET, *targets()],
                    help="the device the map is for: its options (FP8 only where it has FP8), the "
                         "dtype between sites, and the latency model (measured when this machine "
                         "is the target, else estimated from its spec sheet); auto: this machine")
    se.add_argument("--latency-table", default=None, metavar="FILE",
                    help="price maps with this table (OUT/latency_table.json of an earlier search, "
                         "or a file of the latency cache) instead of measuring or estimating one: "
                         "a table measured on a CPU differs a little from one measurement to the "
                         "next, and near-equal maps can trade places, so this repeats a search "
                         "exactly")
    se.add_argument("--measure-latency-again", action="store_true",
                    help="measure this machine's latency table now and replace the cached one "
                         "(tables are cached per machine, versions and model shape; measure again "
                         "when the machine's load or setup changed); not with --latency-table, "
                         "and only when this machine is the --target")
    se.add_argument("--strategy", default=None, choices=sorted(strategies()),
                    help=strategy_help())
    se.add_argument("--no-selection-margin", action="store_true",
                    help="keep the fastest map that passed at the plain 95%% margin, instead of "
                         "judging the allocation's pick with the margin widened for the number "
                         "of maps it chose among (faster maps, more often outside the tolerance "
                         "on unseen data)")
    se.add_argument("--attention", default="auto", choices=list(ATTENTION_MODES),
                    help="the attention matmuls (attn_scores, attn_context) after the GEMM map "
                         "is chosen: " + "; ".join(f"{name}: {what}" for name, what in
                                                   ATTENTION_MODES.items())
                         + " (tolerance mode, objective latency, an INT8 option; default auto)")
    se.add_argument("--options", default=None, type=_option_list, metavar="OPT[,OPT]",
                    help=f"narrow the per-site options ({', '.join(OPTION_NAMES)}); a float "
                         "option is always kept: the one named (a GPU target takes fp16, bf16 "
                         "or fp32; it is then kept even if the model overflows it), else the "
                         "target's first (fp16 on a GPU, moving on to bf16, then fp32, when "
                         "the model overflows it on the search split)")
    se.add_argument("--calibration", default="auto", choices=["auto", *calibrators],
                    help="static INT8 clips: auto (default) tries "
                         f"{', '.join(AUTO_METHODS)} at every site and keeps the one that "
                         "harms the model least there; or one calibrator for every site")
    se.add_argument("--calibration-examples", type=positive_int, default=CALIBRATION_EXAMPLES,
                    help="the calibration split's first rows the static INT8 clips are "
                         f"calibrated on (default {CALIBRATION_EXAMPLES}; fewer calibrate "
                         "faster, with clips less sure to cover what the model sees)")
    se.add_argument("--max-search-examples", type=positive_int, default=None,
                    help="search on a fixed seeded subset of the search split")
    se.add_argument("--max-examples", type=positive_int, default=None,
                    help="score a fixed seeded subset of the test split")
    se.add_argument("--out", default="search_out",
                    help="report folder, the quantized model in OUT/model (default: ./search_out, "
                         "replaced by a later run that leaves --out out)")
    _add_threshold(se, "F1 is measured at it on the search and test splits")
    _add_metric(se, "the tolerance bounds (on the search split) and the test split is scored by")


def _add_finetune(sub) -> None:
    """`samp-jax finetune`: a model fine-tuned on labelled data."""
    ft = sub.add_parser("finetune", help="fine-tune a model on your labelled data (optax AdamW)")
    _add_data(ft)
    next(a for a in ft._actions if a.dest == "seed").help = (
        "seed of the data splits and subsets, and of the new head's initialisation and the "
        "training order (another seed trains another model; --split-file keeps the splits)")
    ft.add_argument("--out", required=True, help="folder for the fine-tuned HF checkpoint")
    _add_finetune_settings(ft)
    _add_threshold(ft, "the dev F1 that keeps the best checkpoint, and the test F1, are measured "
                       "at it")
    _add_metric(ft, "that keeps the best dev checkpoint, and the test split is scored by")


def _add_predict(sub) -> None:
    """`samp-jax predict`: one JSON line per input row."""
    pr = sub.add_parser("predict", help="write one JSON line per input row (label, tags and entities, or embedding)")
    _add_data(pr, inputs_only=True)
    pr.add_argument("--out", required=True,
                    help="predictions file (JSON Lines); '-' writes them to standard output (the "
                         "summary line then goes to standard error)")
    pr.add_argument("--batch-size", type=positive_int, default=32,
                    help="rows per call of the compiled model, on each device: predict "
                         "splits each call's rows over every device of its process "
                         "(default: 32)")
    pr.add_argument("--keep-columns", type=column_names, action="extend", default=[],
                    metavar="COL[,COL]",
                    help="columns of --data to copy into each row's prediction, first, as they "
                         "are (an id to join the predictions on); not one of the record's own "
                         "fields (text, label, ...)")
    _add_threshold(pr, "each row's labels are those at or above it")
    _add_distributed(pr)


def _add_bench(sub) -> None:
    """`samp-jax bench`: its options are the benchmark's own (`samp_jax.app.bench_options`)."""
    be = sub.add_parser("bench", help="end-to-end latency: samp-jax precisions vs HF PyTorch, "
                                      "or your own model at each precision (--model)",
                        description=bench_options.description(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_options.add_arguments(be)


def _add_demo(sub) -> None:
    """`samp-jax demo`: the main pipeline on the packaged model and data."""
    dm = sub.add_parser("demo", help="the main pipeline on the real MiniLM and SNLI")
    dm.add_argument("--tolerance", type=parse_relative_tolerance, default=0.01,
                    help="the largest relative drop of the demo's metric the search may take (default: 1%%)")


# ---------------------------------------------------------------------- shared options
def strategy_help() -> str:
    """`--strategy`'s help, from the registered strategies (`calibrate.search.strategy`)."""
    registered = strategies()
    entries = [f"{name} ({registered[name]})" for name in sorted(registered)]
    default = ", ".join(f"{name} with --objective {objective}"
                        for objective, name in DEFAULT_STRATEGY.items())
    return (f"allocation within the tolerance: {'; '.join(entries)}. Default: {default}; a "
            "--latency-target adds moves in the greedy order").replace("%", "%%")


def _add_metric(p: argparse.ArgumentParser, effect: str) -> None:
    choices = "; ".join(f"{task_type}: {', '.join([default + ' (default)', *others])}"
                        for task_type, (default, others) in metric_choices().items())
    p.add_argument("--metric", default=None, metavar="NAME",
                   help=f"the metric {effect}, where the task type offers another than its "
                        f"default ({choices}; macro-F1 averages over the classes or labels "
                        "that are gold or predicted at least once; a tagger whose tags are not "
                        "BIO, BIOES, BILOU or IO is scored by word_accuracy alone)")


def _add_threshold(p: argparse.ArgumentParser, effect: str) -> None:
    p.add_argument("--threshold", type=label_threshold, default=None, metavar="P",
                   help="a multi-label model's decision threshold: a label is predicted when its "
                        f"sigmoid probability is at least P, strictly between 0 and 1 (default: "
                        f"{LABEL_THRESHOLD:g}); {effect}. Refused for other models")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", default=None, choices=head_kinds(), metavar="KIND",
                   help=f"the head ({', '.join(head_kinds())}) to read an HF model folder with, "
                        "overriding its config.json's architectures: needed for a folder whose "
                        "config names none (older or converted checkpoints) while its weights "
                        "hold a head. --pooling implies "
                        f"{SENTENCE_EMBEDDING}; finetune trains its task's head. Refused for "
                        "a quantized folder")
    p.add_argument("--pooling", default=None, metavar="MODE[,MODE]",
                   help="embed with sentence-transformers pooling (cls, max, mean, mean_sqrt_len, "
                        "weightedmean, lasttoken; several are concatenated) with the "
                        f"{SENTENCE_EMBEDDING} head (--head may name only it): needed for a "
                        "model folder that declares none, overrides the one it declares. For a "
                        "folder that declares none it L2-normalises the embeddings, which "
                        "sentence-transformers does not for a plain HF folder: --no-normalize")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalise sentence embeddings or not (--no-normalize), over what the "
                        "folder declares (its Normalize module; with --pooling and none: yes)")
    p.add_argument("--base-model", default=None, type=path_or_name, metavar="DIR",
                   help="the base model's folder for a PEFT LoRA adapter folder (--model with "
                        "adapter_config.json), in place of its base_model_name_or_path (which "
                        "is read when it is a local folder, absolute or relative to the "
                        "adapter's); the adapter is merged into it as it loads")
    p.add_argument("--adapter", default=None, metavar="NAME",
                   help="which adapter of a folder that holds several (PEFT writes 'default' "
                        "at its root, the others in subfolders of their names)")
    p.add_argument("--prompt-name", default=None, metavar="NAME",
                   help="a sentence embedder's prompt, put before every text (a "
                        "sentence-transformers CrossEncoder's: before each pair's first text) as "
                        "sentence-transformers puts it: one of those its "
                        "config_sentence_transformers.json names ('' for none; default: its "
                        "default_prompt_name, or for a folder samp-jax wrote the prompt it was "
                        "saved with)")


# The columns of a model's inputs, and those of its gold (labels, tags, scores; a ranking's
# relevances and query ids).
INPUT_COLUMNS = ("text", "text-pair", "tokens")
GOLD_COLUMNS = ("label", "tags", "score", "relevance", "group")
COLUMN_HELP = {
    "relevance": "column holding a ranking row's relevance, 0 for not relevant (0/1 or graded "
                 "0, 1, 2, ...; default: a usual name, else the label column)",
    "group": "column holding a ranking row's query id, whose rows are ranked together and "
             "never split apart (default: a usual name, qid or query_id, else the query text)",
}


def _add_data(p: argparse.ArgumentParser, *, model_required: bool = False,
              inputs_only: bool = False) -> None:
    """`--model`, `--data` and how the data is read. `inputs_only` (`predict`): only the input
    columns, no task type, splits or seed, which such a command never uses."""
    built_in = "" if inputs_only else "; with built-in --data it may be left out"
    p.add_argument("--model", default=None, required=model_required, type=path_or_name,
                   help=f"an HF model folder, a PEFT LoRA adapter folder (merged into its base), a "
                        f"folder samp-jax wrote, or {PACKAGED_MODEL!r} (the packaged "
                        f"all-MiniLM-L6-v2){built_in}")
    _add_model_options(p)
    sources = (", or '-' for JSON Lines on standard input (your own rows: not a built-in task)"
               if inputs_only else f", or one of {list(TASKS)}")
    p.add_argument("--data", "--task", dest="data", default=None, type=path_or_name,
                   help=f"a CSV/TSV/JSONL/Parquet/CoNLL file, a datasets.save_to_disk folder{sources}")
    if not inputs_only:
        p.add_argument("--task-type", default=None, choices=TASK_TYPES,
                       help="default: inferred from the columns and the model's head")
    for field in INPUT_COLUMNS + (() if inputs_only else GOLD_COLUMNS):
        p.add_argument(f"--{field}-column", default=None, metavar="NAME",
                       help=COLUMN_HELP.get(field, f"column holding the {field.replace('-', ' ')} "
                                                   "(default: a usual name)"))
    served = ("serve rows of up to N tokens (longer ones are cut and marked \"truncated\")"
              if inputs_only else "cut every row at N tokens")
    default = "" if inputs_only else ", the length predict serves; a built-in --data keeps 128"
    p.add_argument("--max-length", type=positive_int, default=None, metavar="N",
                   help=f"{served}, special tokens included (default: the model's own "
                        f"limit, its tokenizer's max_length{default}); above that, at most "
                        "its position table (DeBERTa-v3 and ModernBERT have none: any N)")
    if not inputs_only:
        p.add_argument("--split-file", action="append", metavar="SPLIT=PATH",
                       help=f"an explicit file for one split ({', '.join(SPLITS)}); repeatable")
        p.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed of the data splits and subsets")
        p.add_argument("--relevant-class", default=None, metavar="NAME",
                       help="a ranking read from a two-class head: the class (its name in the "
                            "model's id2label, or its id 0 or 1) whose probability ranks the "
                            "rows and that fine-tuning trains as relevant (default: the class "
                            "a model fine-tuned with this option saved, else class 1, "
                            "as sentence-transformers reads a CrossEncoder; give 0 or its name "
                            "for a head whose class 0 is relevant, e.g. glue/qnli's "
                            "entailment). Refused for other heads and task types")
    p.add_argument("--json", action="store_true", help="print the JSON result alone on stdout")


def _add_distributed(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "distributed run", "run one job over several processes or hosts: start the same command "
        "on each, with the same --coordinator and --num-processes and its own --process-id; "
        "process 0 prints and writes the result (docs/design.md: Several hosts). Process 0 listens "
        "on HOST:PORT only (not on every interface); JAX's coordination service there has no "
        "authentication, so a HOST that is not loopback needs --allow-remote-coordinator")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT|auto",
                   help="process 0's address, or 'auto' to read the layout from the cluster "
                        "environment (SLURM, Open MPI, Kubernetes); with 'auto' JAX listens on "
                        "every interface and needs --allow-remote-coordinator")
    g.add_argument("--allow-remote-coordinator", action="store_true",
                   help="accept a --coordinator other processes reach over the network (a "
                        "non-loopback HOST, or 'auto'): anyone who reaches it can join or "
                        "disturb the run, so only on a network you trust")
    g.add_argument("--num-processes", type=positive_int, default=None, metavar="N",
                   help="how many processes take part (each given the same N)")
    g.add_argument("--process-id", type=non_negative_int, default=None, metavar="I",
                   help="this process's rank, 0 .. N-1 (0 prints and writes the result)")
    g.add_argument("--connect-timeout", type=positive_int, default=300, metavar="S",
                   help="seconds to wait for every process to connect (default: %(default)s); "
                        "then every process stops with one line")
    g.add_argument("--heartbeat-timeout", type=positive_int, default=60, metavar="S",
                   help="seconds after which a silent process counts as dead and the run stops "
                        "(default: %(default)s); a process that dies stops the others within seconds")


def _add_finetune_settings(p: argparse.ArgumentParser) -> None:
    """Defaults that fit a few hundred rows as well as many thousands (docs/results/finetune_small_data.md)."""
    g = p.add_argument_group("training", "AdamW (weight decay 0.01 on matrices, not on biases "
                             "or LayerNorms) with a linear warm-up then linear decay, no dropout "
                             "and no gradient clipping; the best dev checkpoint is kept")
    g.add_argument("--learning-rate", type=positive_float, default=1e-4,
                   help="peak learning rate (default: %(default)s)")
    g.add_argument("--batch-size", type=positive_int, default=16,
                   help="rows per step (default: %(default)s)")
    g.add_argument("--epochs", type=positive_float, default=2.0,
                   help="passes over the training rows, but see --min-steps (default: %(default)s)")
    g.add_argument("--min-steps", type=non_negative_int, default=200,
                   help="at least this many optimizer steps whatever the data size: more epochs "
                        "on small data, and no early stop before them (default: %(default)s)")
    g.add_argument("--warmup-fraction", type=unit_interval, default=0.1,
                   help="share of the steps with a linear warm-up (default: %(default)s)")
    g.add_argument("--max-train-examples", type=positive_int, default=None,
                   help="a seeded subsample of the training rows (default: all)")
    g.add_argument("--max-dev-examples", type=_all_or_positive, default="1000",
                   help="dev rows scored at each evaluation (which choose the checkpoint kept): "
                        "a seeded subsample of a larger dev split, or 'all' (default: %(default)s)")
    g.add_argument("--eval-every", type=_eval_every, default="auto",
                   help="steps between dev evaluations; 'auto': ten per run (default: %(default)s)")
    g.add_argument("--patience", type=positive_int, default=5,
                   help="dev evaluations without improvement before stopping, counted once the "
                        "dev metric beats always predicting the most frequent class "
                        "(default: %(default)s)")
    g.add_argument("--strict", action="store_true",
                   help="fail (exit 1, nothing saved) when the dev metric is no better than "
                        "always predicting the most frequent class; without it, a warning")


# ------------------------------------------------------------------- argument types
def parse_tolerance(text: str, mode: str = "absolute") -> float:
    """'1%' -> 0.01; '0.01' -> 0.01. Refuses what `validate_tolerance` refuses in `mode`
    (negative or non-finite; relative: half the metric or more). `samp-jax search` checks its
    `--tolerance` in the `--tolerance-mode` given (`search_command.search_config`), and an
    absolute one against the metric's largest value once the data names the metric."""
    text = text.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tolerance {text!r} is not a number or a percentage") from None
    from calibrate.search.config import validate_tolerance  # JAX: only once a value is given
    try:  # the range the search accepts: a usage error, before any work
        validate_tolerance(value, mode)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    return value


def parse_relative_tolerance(text: str) -> float:
    """`parse_tolerance` of a tolerance that is a share of the FP32 metric (`samp-jax demo`)."""
    return parse_tolerance(text, "relative")


def _option_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item")
    unknown = [name for name in names if name not in OPTION_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"{unknown} not among {list(OPTION_NAMES)}")
    return names


def _eval_every(text: str) -> str:
    return text if text == "auto" else str(positive_int(text))


def _all_or_positive(text: str) -> str:
    return text if text == "all" else str(positive_int(text))
