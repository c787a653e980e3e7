"""What the argument parser lists from the library's registries, as plain data, so that
`samp-jax --help`, a subcommand's `--help` and a usage error are answered without importing
JAX (a second or more of the two seconds a command takes to start).

The registries themselves load JAX when imported (the calibrators, strategies and targets sit
behind `calibrate`'s front door, the head kinds and task types behind `samp_jax.models`' and
`samp_jax.tasks'`, and the targets' and task types' modules import JAX themselves), so these
are copies: `tests/samp_jax/app/test_help.py` checks each against its registry, and a
strategy, target, task type, metric or head kind added there fails that test until it is added
here too. Standard library only.
"""

from __future__ import annotations

# `calibrate.calibration.calibrators.CALIBRATORS`, sorted
CALIBRATORS = ("entropy", "minmax", "mse", "percentile")
# `calibrate.AUTO_METHODS`: the calibrators `search --calibration auto` tries, in order
AUTO_METHODS = ("mse", "percentile", "minmax")
# `calibrate.search.strategy.STRATEGIES`: name -> description
STRATEGIES = {
    "greedy": "decay-aware greedy: moves by harm per ms saved, accepted while the map passes",
    "knapsack": "minimum summed harm under a latency budget (MILP), budget bracketed by evaluation",
    "revert": "all sites fastest, most harmful reverted to the default until the map passes",
}
# `calibrate.search.config.DEFAULT_STRATEGY`: objective -> strategy
DEFAULT_STRATEGY = {"latency": "knapsack", "int8_fraction": "greedy"}
# `calibrate.search.targets`: `AUTO`, the names of `TARGETS` and of `OPTION_NAMES`, in order
AUTO_TARGET = "auto"
TARGETS = ("h100", "a100", "l4", "cpu")
OPTION_NAMES = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-static", "fp8", "fp8_e4m3")
# `samp_jax.models.heads.head_kinds()`; `samp_jax.models.head_kinds`' `SENTENCE_EMBEDDING.name`
# and `LABEL_THRESHOLD`
HEAD_KINDS = ("none", "sequence_classification", "token_classification", "sentence_embedding")
SENTENCE_EMBEDDING = "sentence_embedding"
LABEL_THRESHOLD = 0.5
# `samp_jax.tasks`: `SPLITS`; the names of `TASKS` and `TASK_TYPES`, sorted
SPLITS = ("train", "dev", "calibration", "search", "test")
TASKS = ("polarity", "snli", "snli-embed", "wnut16")
TASK_TYPES = ("embedding_pairs", "embedding_ranking", "embedding_texts", "text_classification",
              "text_multi_label", "text_pair_classification", "text_pair_multi_label",
              "text_pair_ranking", "text_pair_scoring", "text_scoring", "token_classification")
# `samp_jax.tasks.TASK_TYPES` that offer more than one metric, in registry order: task type ->
# (its default metric, the others)
METRIC_CHOICES = {
    "text_classification": ("accuracy", ("class_macro_f1",)),
    "text_pair_classification": ("accuracy", ("class_macro_f1",)),
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
