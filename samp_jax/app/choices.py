"""What the argument parser lists from the library's registries, as plain data, so that
`samp-jax --help`, a subcommand's `--help` and a usage error are answered without importing
JAX, Flax and transformers.

The registries themselves load JAX when imported (the calibrators, strategies and targets sit
behind `calibrate`'s front door, the head kinds and task types behind `samp_jax.models`' and
`samp_jax.tasks`', and the targets' and task types' modules import JAX themselves), so these
are copies of their built-in entries: `tests/samp_jax/app/test_help.py` checks each against
its registry, and a strategy, target, task type, metric, head kind or bench contender added
there fails that test until it is added here too. The three registries a program can add to
(`register_strategy`, `register_target`, `register_head`) and the task types' metrics
(`register_metric`) are read themselves once loaded (`strategies()`, `targets()`,
`head_kinds()`, `metric_choices()`): a program that registered its own and runs the CLI
in-process, or a plugin (`samp_jax.app.plugins`), sees it listed and accepted. Standard
library only.
"""

from __future__ import annotations

import sys

# `calibrate.calibration.calibrators.CALIBRATORS`, sorted
CALIBRATORS = ("entropy", "minmax", "mse", "percentile")
# `calibrate.AUTO_METHODS`: the calibrators `search --calibration auto` tries, in order
AUTO_METHODS = ("mse", "percentile", "minmax")
# `calibrate.search.strategy.STRATEGIES`' built-ins: name -> description
BUILTIN_STRATEGIES = {
    "greedy": "decay-aware greedy: moves by harm per ms saved, accepted while the map passes",
    "knapsack": "minimum summed harm under a latency budget (MILP), budget bracketed by evaluation",
    "revert": "all sites fastest, most harmful reverted to the default until the map passes",
}
# `calibrate.search.config.DEFAULT_STRATEGY`: objective -> strategy
DEFAULT_STRATEGY = {"latency": "knapsack", "int8_fraction": "greedy"}
# `calibrate.search.config.ATTENTION_MODES`: `search --attention` -> what it does
ATTENTION_MODES = {
    "auto": "try the chosen map with INT8 attention (scores and context) in the layers the "
            "latency table prices it cheaper than float, kept when within the tolerance",
    "float": "keep every layer's attention float",
}
# `calibrate.search.targets`: `AUTO`, the names of the built-in `TARGETS` and of
# `OPTION_NAMES`, in order
AUTO_TARGET = "auto"
BUILTIN_TARGETS = ("h100", "a100", "l4", "cpu")
OPTION_NAMES = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-static", "fp8", "fp8_e4m3")
# `samp_jax.models.heads.head_kinds()` of the built-in heads; `samp_jax.models.head_kinds`'
# `SENTENCE_EMBEDDING.name` and `LABEL_THRESHOLD`
BUILTIN_HEAD_KINDS = ("none", "sequence_classification", "token_classification", "sentence_embedding")
SENTENCE_EMBEDDING = "sentence_embedding"
LABEL_THRESHOLD = 0.5
# `samp_jax.tasks`: `SPLITS`; the names of `TASKS` and `TASK_TYPES`, sorted;
# `samp_jax.tasks.task.CALIBRATION_EXAMPLES`
SPLITS = ("train", "dev", "calibration", "search", "test")
CALIBRATION_EXAMPLES = 512
TASKS = ("polarity", "snli", "snli-embed", "wnut16")
TASK_TYPES = ("embedding_pairs", "embedding_ranking", "embedding_texts", "text_classification",
              "text_multi_label", "text_pair_classification", "text_pair_multi_label",
              "text_pair_ranking", "text_pair_scoring", "text_scoring", "token_classification")
# `samp_jax.tasks.TASK_TYPES` that offer more than one metric, in registry order: task type ->
# (its default metric, the others)
METRIC_CHOICES = {
    "text_classification": ("accuracy", ("class_macro_f1",)),
    "text_pair_classification": ("accuracy", ("class_macro_f1",)),
    "token_classification": ("entity_f1", ("word_accuracy",)),
    "text_multi_label": ("micro_f1", ("macro_f1",)),
    "text_pair_multi_label": ("micro_f1", ("macro_f1",)),
    "text_pair_ranking": ("mrr@10", ("ndcg@10", "map", "recall@1", "recall@5", "recall@10",
                                     "recall@100")),
    "embedding_ranking": ("mrr@10", ("ndcg@10", "map", "recall@1", "recall@5", "recall@10",
                                     "recall@100")),
}
# `samp_jax.app.bench`: the names of `MODELS`, and `contender_names()`
BENCH_MODELS = ("bert-base", "minilm", "tiny")
BENCH_CONTENDERS = ("torch_sdpa_fp16", "torch_eager_fp16", "torch_compile_fp16", "samp_fp16",
                    "samp_quant_ffn_only_xla", "samp_quant_ffn_only_pallas", "samp_fully_quant_xla",
                    "samp_fully_quant_pallas", "samp_fp8", "samp_search_snli_1pct")


def _loaded(module: str, name: str):
    """`module.name` when `module` is loaded (a program may have registered its own entries
    there), else None: looked up, never imported."""
    return getattr(sys.modules.get(module), name, None)


def strategies() -> dict[str, str]:
    """Strategy name -> description: `calibrate.search.strategy.STRATEGIES` once loaded,
    else the built-ins'."""
    registry = _loaded("calibrate.search.strategy", "STRATEGIES")
    if registry is None:
        return dict(BUILTIN_STRATEGIES)
    return {name: strategy.description for name, strategy in registry.items()}


def targets() -> tuple[str, ...]:
    """The target names: `calibrate.search.targets.TARGETS`' once loaded, else the built-ins'."""
    registry = _loaded("calibrate.search.targets", "TARGETS")
    return BUILTIN_TARGETS if registry is None else tuple(registry)


def metric_choices() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Task type -> (its default metric, the others), for those offering more than one:
    `samp_jax.tasks.types.TASK_TYPES`' once loaded (`register_metric` adds to them), else
    `METRIC_CHOICES`."""
    registry = _loaded("samp_jax.tasks.types", "TASK_TYPES")
    if registry is None:
        return dict(METRIC_CHOICES)
    return {t.name: (t.metrics[0].name, tuple(m.name for m in t.other_metrics))
            for t in registry.values() if t.other_metrics}


def head_kinds() -> tuple[str, ...]:
    """`samp_jax.models.heads.head_kinds()` once loaded, else the built-in heads'."""
    registered = _loaded("samp_jax.models.heads", "head_kinds")
    return BUILTIN_HEAD_KINDS if registered is None else tuple(registered())
