"""`make demo`: the most complete pipeline that exists, on the real all-MiniLM-L6-v2.

fetch MiniLM → the fine-tuned SNLI cross-encoder from the cache (or, when it is not cached,
the zero-shot SNLI bi-encoder) → calibrate → search for the precision map at 1% tolerance →
report → compare the chosen map with the presets on the held-out test split → serve the chosen
quantized model with `samp_jax.compile` (ahead-of-time compiled length buckets).
"""

from __future__ import annotations

import time

import jax

from calibrate.search.config import SearchConfig
from samp_jax.app.outputs import check_output
from samp_jax.workflows.experiments import relative_change
from samp_jax.workflows.pipeline import ZERO_SHOT, builtin_model, is_search_output, run_search
from samp_jax.serving.engine import CompileCounter
from samp_jax.serving.engine import compile as compile_engine
from samp_jax.tasks.task import get_task
from samp_jax.training.finetuning import DEFAULT_CONFIGS, finetuned_dir

OUT = "demo_out"


# Search rows per task: the zero-shot bi-encoder's ROC-AUC changes a little on every pair, so
# 256 pairs bound it; the fine-tuned cross-encoder's accuracy changes by whole rows, and its
# 95% margin needs about 2.3 / allowed drop rows before any map that changes one can pass
# (1% of an accuracy near 0.8: about 290), so it is searched on 1,000.
SEARCH_EXAMPLES = {ZERO_SHOT: 256, "snli": 1000}


def run(*, tolerance: float = 0.01, max_search_examples: int | None = None,
        max_test_examples: int = 2000) -> dict:
    start = time.perf_counter()
    cached = (finetuned_dir("snli", DEFAULT_CONFIGS["snli"]) / "finetune.json").is_file()
    max_search_examples = max_search_examples or SEARCH_EXAMPLES["snli" if cached else ZERO_SHOT]
    config = SearchConfig(tolerance=tolerance, max_search_examples=max_search_examples)  # checks
    task = "snli" if cached else ZERO_SHOT
    print(f"device: {jax.devices()[0].device_kind}; task: {task}"
          + ("" if cached else " (no fine-tuned SNLI model in the cache: `samp-jax eval --data snli` "
                               "fine-tunes one into it; the zero-shot bi-encoder is used instead)"))
    print(f"the same as: samp-jax search --data {task} --tolerance {100 * tolerance:g}% --out {OUT} "
          f"--max-search-examples {max_search_examples} --max-examples {max_test_examples}")
    check_output(OUT, what="the demo's output folder", folder=True,
                 replaceable=is_search_output)  # before the model loads
    model, tokenizer, description = builtin_model(task)
    searched = run_search(model, tokenizer, get_task(task), config, description=description,
                          out=OUT, command="make demo", max_test_examples=max_test_examples)
    summary = searched.summary
    test = summary["test"]
    metric = summary["metric"]
    print(f"\nmodel: {summary['model']}")
    print(f"search: {summary['maps_run']} maps in {summary['search_seconds']:.0f} s, "
          f"{summary['compilations']} compilation(s); latency model: {summary['latency_source']}")
    print(f"\n{'map':<16} {metric + ' (test)':>16}  rel. to FP32   "
          f"({summary['test_examples']} held-out test examples, fixed seeded subset)")
    for name in [n for n in test if not n.endswith("relative_change")]:
        change = relative_change(test[name], test["fp32"])
        shown = "–" if change is None else f"{100 * change:+.2f}%"
        print(f"{name:<22} {test[name]:>16.4f}  {shown}")
    chosen_ms, speedup = summary["estimated_latency_ms"], summary["estimated_speedup_vs_default"]
    print(f"\nchosen map ({summary['chosen_from']}): {100 * summary['int8_flop_fraction']:.0f}% of "
          f"matmul FLOPs in INT8 (attention's included); {chosen_ms:.1f} ms against {chosen_ms * speedup:.1f} ms for the "
          f"all-{summary['default_option']} map ({speedup:.2f}x; latency model: "
          f"{summary['latency_source']}); target {summary['target']}")
    serve(searched.quantized, searched.tokenizer, task)
    print(f"report: {OUT}/report.md, {OUT}/pareto.png, {OUT}/precision_map.json, the "
          f"Pareto-front maps in {OUT}/pareto/, the latency table in {OUT}/latency_table.json "
          f"(--latency-table repeats the search) (total {time.perf_counter() - start:.0f} s)")
    return summary


PAIRS = [("A man is playing a guitar on stage.", "A musician is performing."),
         ("A man is playing a guitar on stage.", "The man is asleep in his bed."),
         ("Two dogs run through a snowy field.", "Animals are outside.")]


def serve(quantized, tokenizer, task: str) -> None:
    """Compiles the chosen model once per bucket and serves a few SNLI pairs with it."""
    engine = compile_engine(quantized, tokenizer=tokenizer, seq_buckets=(32, 64), batch_buckets=(1, 4))
    seconds = sum(r["seconds"] for r in engine.compile_report)
    with CompileCounter() as serving:
        if task == ZERO_SHOT:  # bi-encoder: cosine of the two sentence embeddings
            left = engine([p for p, _ in PAIRS]).embeddings
            right = engine([h for _, h in PAIRS]).embeddings
            answers = [f"cosine {float(a @ b):.3f}" for a, b in zip(left, right)]
        else:
            labels = get_task(task).labels
            answers = [labels[i] for i in engine(PAIRS).labels]
    print(f"\nserving the chosen map: {engine.num_compilations} executables compiled ahead of time "
          f"({seconds:.1f} s); XLA compilations while serving: {serving.count}")
    for (premise, hypothesis), answer in zip(PAIRS, answers):
        print(f"  {premise!r} / {hypothesis!r} -> {answer}")
