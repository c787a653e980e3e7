"""Renders docs/results/accuracy.md, docs/results/search.md and the marked blocks of
docs/families.md from the JSON files in docs/results/ (and benchmarks/results/).

Usage: .venv/bin/python tools/render_docs.py [--check]
Every figure in those pages comes from a committed JSON file whose `provenance` names the
command, the commit, the device and the date; `--check` (and tests/test_docs.py) fails when a
page differs from what its JSON renders.
"""

import argparse
import json
import re
import sys
from pathlib import Path

from samp_jax.workflows.experiments import format_table

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "results"
PROVENANCE_KEYS = ("command", "commit", "device", "date")


def provenance(data: dict) -> str:
    """The line under a table: command, device, commit and date of the run behind it."""
    p = data["provenance"]
    return f"Command: `{p['command']}` ({p['device']}; commit {p['commit']}, {p['date']})."
TASKS = [("snli_embed", "Zero-shot SNLI with all-MiniLM-L6-v2 sentence embeddings (bi-encoder)"),
         ("snli", "SNLI, fine-tuned 3-class cross-encoder"),
         ("polarity", "Movie-review polarity, fine-tuned"),
         ("wnut16", "WNUT-16 Twitter NER, fine-tuned")]


def load(name: str):
    path = DOCS / name
    return json.loads(path.read_text()) if path.is_file() else None


FRESH_STUDIES = ("snli-embed", "polarity", "wnut16", "snli", "amazon")  # tools/fresh_splits.py


def _fresh_miss(name: str, row: dict, metric: str) -> str:
    """A run outside the tolerance, with what one test row weighs for an accuracy."""
    text = f"{name} seed {row['seed']} at {100 * row['test_relative_change']:+.2f}%"
    rows = row.get("test_rows", row.get("test_pairs"))
    if metric == "accuracy":
        lost = round((row["fp32_test"] - row["chosen_test"]) * rows)
        text += (f" ({lost} of {rows} test rows; one row is "
                 f"{100 / (rows * row['fp32_test']):.2f}% of the FP32 accuracy)")
    return text


def fresh_splits_section() -> list[str]:
    """The defaults on fresh splits: one table over every recorded study of
    tools/fresh_splits.py, the spread of the test change per study, and how many seeds held."""
    records = [r for r in (load(f"fresh_splits_{name.replace('-', '_')}.json")
                           for name in FRESH_STUDIES) if r]
    if not records:
        return []
    parts = ["## The defaults on fresh splits (test rows no decision saw)", "",
             "`tools/fresh_splits.py` runs `samp-jax search` with every default (`--target auto`, "
             "tolerance 1%) on new seeded splits, after `samp-jax finetune` with the CLI's defaults "
             "for the fine-tuned tasks (learning rate and epochs as listed for WNUT-16). The "
             "seeds' test rows are disjoint from each other and from every row that scored a "
             "design decision ([protocol.md](../protocol.md)); the Amazon review snippets are a "
             "data set the project uses nowhere else.", ""]
    for record in records:
        name = record.get("study", record.get("task"))
        parts.append(f"- {name}: {provenance(record)}"
                     + (f" Fine-tune arguments: `{' '.join(record['finetune_arguments'])}`."
                        if record.get("finetune_arguments") else ""))
    parts += ["", "| data | seed | search rows | test rows | metric | FP32 dev | FP32 (test) | "
              "chosen (test) | change | INT8 FLOPs |", "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    held, total, misses = 0, 0, []
    for record in records:
        name = record.get("study", record.get("task"))
        for r in record["rows"]:
            tuned = r.get("finetune")
            metric = r.get("metric") or ("roc_auc" if name == "snli-embed" else "")
            change = r["test_relative_change"]
            parts.append(
                f"| {name} | {r['seed']} | {r.get('search_rows', r.get('search_pairs'))} | "
                f"{r.get('test_rows', r.get('test_pairs'))} | {metric} | "
                f"{'zero-shot' if tuned is None else format(tuned['dev_metric'], '.4f')} | "
                f"{r['fp32_test']:.4f} | {r['chosen_test']:.4f} | "
                + ("fine-tune at chance" if change is None else f"{100 * change:+.2f}%")
                + f" | {100 * r['int8_flop_fraction']:.0f}%"
                + (f" (all {r['default_option']} kept)" if r.get("kept_default") else "") + " |")
            if change is not None:
                held += change >= -record["tolerance"]
                total += 1
                if change < -record["tolerance"]:
                    misses.append(_fresh_miss(name, r, metric))
    parts += ["", f"Within the 1% tolerance on the fresh test rows: {held} of {total} runs"
              + (f"; outside it: {'; '.join(misses)}." if misses else "."), ""]
    for record in records:
        spread = record["test_relative_change"]
        parts.append(f"- {record.get('study', record.get('task'))}: test change mean "
                     f"{100 * spread['mean']:+.2f}%, min {100 * spread['min']:+.2f}%, max "
                     f"{100 * spread['max']:+.2f}%, standard deviation {100 * spread['stdev']:.2f} "
                     "points" + (f" (left out: seed {', '.join(map(str, record['seeds_not_learned']))}, "
                                 "whose fine-tune stayed at chance on dev)."
                                 if record.get("seeds_not_learned") else "."))
    warned = {}
    for record in records:
        for r in record["rows"]:
            for warning in r.get("search_warnings", ()):
                warned.setdefault((record.get("study", record.get("task")), warning),
                                  []).append(str(r["seed"]))
    if warned:
        parts += ["", "What the searches warned of (their reports' first section):", ""]
        parts += [f"- {name} (seed {', '.join(seeds)}): {warning}"
                  for (name, warning), seeds in warned.items()]
    return parts + [""]


MARGIN_RECORDS = ("margin_coverage.json", "margin_coverage_scores.json")
"""tools/margin_coverage.py's records: accuracy and the F1s; ROC-AUC and Spearman (`--only`)."""


def margin_coverage_section() -> list[str]:
    """How often the guarded drop passes a map just past the tolerance: tools/margin_coverage.py."""
    records = [r for r in map(load, MARGIN_RECORDS) if r is not None]
    if not records:
        return []
    parts = ["## The margin's level when few rows change", "",
             "A map passes when its drop plus a one-sided 95% margin is within the tolerance, so a "
             "map whose drop on unseen rows is past the tolerance should pass on the search split "
             "about 5% of the time at most. A quantized map changes few rows, where a plain paired "
             "standard error or a plain bootstrap is too narrow: with no row changed its margin is "
             "zero. `tools/margin_coverage.py` draws search splits from a known population "
             f"(accuracy {records[0]['fp32_accuracy']}; sentences of a few entities each for entity F1; "
             "three classes of 80, 15 and 5% for macro-F1, the candidate costing the rarest; "
             "for ROC-AUC, scores about 0.90 with half or 5% of the rows positive, the candidate "
             "giving some positives a negative's score; for Spearman, scores about 0.89 against "
             "gold scores, the candidate scoring some rows afresh) "
             "and a candidate whose true drop is a multiple of the allowed one "
             f"({100 * records[0]['tolerance_relative']:g}% relative), and counts how often each "
             "margin passes it: at 1.05× it should pass in about 5% of draws at most; at 0.5× the "
             "share that passes is the power. "
             "The adjusted margins are the ones the search uses: Bonett and Price's for accuracy, "
             "the bootstrap with one pseudo-row lost and one gained for the F1s, ROC-AUC and "
             "Spearman.", ""]
    rows = []
    for record in records:
        parts += [", ".join(f"{count} draws per {metric} cell" for metric, count
                            in record["draws"].items()
                            if any(r["metric"] == metric for r in record["rows"]))
                  + ". " + provenance(record), "",
                  "| metric | search rows | true drop / allowed | passes, plain margin | "
                  "passes, adjusted margin |", "|---|---:|---:|---:|---:|"]
        for r in record["rows"]:
            metric = r["metric"] + (f" ({100 * r['prevalence']:g}% positive)" if "prevalence" in r
                                    else "")
            parts.append(f"| {metric} | {r['rows']} | {r['true_drop_over_allowed']}× | "
                         f"{r['plain']:.3f} | {r['adjusted']:.3f} |")
        parts.append("")
        rows += record["rows"]
    past = [r for r in rows if r["true_drop_over_allowed"] > 1]
    worst = {kind: max(past, key=lambda r: r[kind]) for kind in ("plain", "adjusted")}
    parts += ["Past the tolerance, the plain margins pass the map in up to "
              f"{100 * worst['plain']['plain']:.1f}% of the draws ({worst['plain']['metric']}, "
              f"{worst['plain']['rows']} rows), the adjusted ones in up to "
              f"{100 * worst['adjusted']['adjusted']:.1f}% ({worst['adjusted']['metric']}, "
              f"{worst['adjusted']['rows']} rows)"
              + (", above the 5% aimed at" if worst["adjusted"]["adjusted"] > 0.06 else "")
              + ": a normal approximation over a few discrete "
              "changes is near its level, not exact. The price is power at small sizes: a map "
              "half the allowed drop away passes less often there, and on accuracy one that loses as "
              "many rows as it gains passes only above roughly `2.3 / allowed drop` rows (the "
              "search warns)."]
    return parts + [""]


def scorer_section() -> list[str]:
    """A one-output head (a reranker's shape) searched through the CLI: tools/scorer_check.py."""
    record = load("scorer_polarity.json")
    if record is None:
        return []
    test = record["test"]
    presets = [k for k in test if k not in ("fp32", "chosen", "chosen_relative_change")]
    parts = ["## A head of one output (a reranker's shape)", "",
             "`tools/scorer_check.py` makes a one-output head (`num_labels=1`) as an HF user "
             f"would: the {record['model']}. It writes the seed-0 calibration, search and test "
             "rows (none trained on) as CSV files with 0/1 labels and runs `samp-jax search` on "
             "them with every default: "
             f"the task type is `{record['task_type']}`, scored by {record['metric']}. "
             + provenance(record), "",
             "| rows (calibration / search / test) | FP32 (test) | chosen (test) | change | "
             + " | ".join(presets) + " | INT8 FLOPs |",
             "|---|---:|---:|---:|" + "---:|" * len(presets) + "---:|",
             f"| {' / '.join(str(record['rows'][s]) for s in ('calibration', 'search', 'test'))} | "
             f"{test['fp32']:.4f} | {test['chosen']:.4f} | "
             f"{100 * test['chosen_relative_change']:+.2f}% | "
             + " | ".join(f"{test[k]:.4f}" for k in presets)
             + f" | {100 * record['int8_flop_fraction']:.0f}% |", ""]
    return parts


MULTILABEL_RECORDS = ("multilabel_polarity.json", "multilabel_wnut16.json")


def multilabel_section() -> list[str]:
    """Multi-label heads fine-tuned and searched through the CLI: tools/multilabel_check.py,
    one row per data set."""
    records = [r for r in map(load, MULTILABEL_RECORDS) if r is not None]
    if not records:
        return []
    first = records[0]
    parts = ["## A multi-label head (a set of labels per row)", "",
             "`tools/multilabel_check.py` makes multi-label rows of real data, fine-tunes "
             "all-MiniLM-L6-v2 on the train split with `samp-jax finetune` "
             f"({first['finetune']['loss']}, saved as `{first['finetune']['problem_type']}`; early "
             "stopping on dev), then runs `samp-jax search` with every default on the "
             f"calibration, search and test files: the task type is `{first['task_type']}`, "
             f"scored by {first['metric']} (a label is predicted where its sigmoid is at least "
             "0.5); the test rows decide nothing. The constant baseline is the best label set "
             "predicted for every test row.", ""]
    for record in records:
        tuned = record["finetune"]
        parts += [f"- **{record['data']}** ({', '.join(record['labels'])}): "
                  f"`{record['finetune_command']}`: dev {record['metric']} "
                  f"{tuned['dev_metric']:.4f} after {tuned['steps']} steps "
                  f"({tuned['seconds'] / 60:.1f} min). " + provenance(record)
                  + ("" if tuned["learned"] else
                     " The fine-tuned model does not beat the constant baseline on dev "
                     "(`finetune` says it has not learned the task, and `search` warns that FP32 "
                     "is at chance): its row shows the multi-label path running end to end on "
                     "real data, not a useful classifier, and a tolerance relative to its "
                     f"{record['metric']} means little.")]
    parts += ["", "| data | rows (train / dev / calibration / search / test) | constant (test) | "
              "FP32 (test) | chosen (test) | change | fully_quant | quant_ffn_only | "
              "INT8 FLOPs |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for record in records:
        test, rows = record["test"], record["rows"]
        parts.append(
            f"| {record.get('data_set', 'wnut16')} | "
            f"{' / '.join(str(rows[s]) for s in ('train', 'dev', 'calibration', 'search', 'test'))}"
            f" | {record['test_constant_label_set']['micro_f1']:.4f} | {test['fp32']:.4f} | "
            f"{test['chosen']:.4f} | {_change(test)} | {test['fully_quant']:.4f} | "
            f"{test['quant_ffn_only']:.4f} | {100 * record['int8_flop_fraction']:.0f}% |")
    return parts + [""]


def _change(test: dict) -> str:
    """The chosen map's relative change on test ('none' when FP32 scores 0)."""
    change = test["chosen_relative_change"]
    return "none (FP32 scores 0)" if change is None else f"{100 * change:+.2f}%"


def accuracy_page() -> str:
    parts = [(DOCS / "accuracy_intro.md").read_text().rstrip(), ""]
    finetune = load("finetune.json")
    if finetune:
        parts += ["## Fine-tuned FP32 models", "",
                  provenance(finetune) + " The CPU was shared with other jobs during these runs, so "
                  "times are upper bounds.", "",
                  "| task | metric | dev | test | test examples | target | steps | train time |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for row in finetune["rows"]:
            test = row["test"]
            parts.append(f"| {row['task']} | {test['metric']} | {row['dev']:.4f} | {test['value']:.4f} | "
                         f"{test['examples']} | {row['target']} | {row['steps']} | {row['train_seconds'] / 60:.1f} min |")
        parts += ["", (DOCS / "finetune_notes.md").read_text().rstrip(), ""]
    for key, title in TASKS:
        data = load(f"accuracy_{key}.json")
        if not data:
            parts += [f"## {title}", "", "Not measured yet.", ""]
            continue
        parts += [f"## {title}", "",
                  provenance(data) + f" {data['total_seconds'] / 60:.0f} min. "
                  f"Metric: {data['metric']} on the held-out test split ({data['examples']} examples); "
                  f"agreement: {data['agreement']}.", "",
                  format_table(data["rows"], metric=data["metric"], agreement=data["agreement"]), ""]
        notes = DOCS / f"accuracy_{key}_notes.md"
        if notes.is_file():
            parts += [notes.read_text().rstrip(), ""]
    return "\n".join(parts) + "\n"


COMPARISONS = ROOT / "benchmarks" / "results"


def _share(row) -> str:
    return (f"{100 * row['int8_static']:.0f}% / {100 * row['int8_dynamic']:.0f}% / "
            f"{100 * row['fp8']:.0f}%")


def comparison_section(path: Path) -> list[str]:
    """One task × target: the presets and FP32 on the test split, then a row per strategy."""
    data = json.loads(path.read_text())
    rows = data["rows"]
    source = rows[0]["latency_source"]
    kind = ("estimated" if source.startswith("estimated") else "predicted by the measured per-site table")
    parts = [f"### {data['data']}, target {data['target']}", "",
             f"Model: {data['model']}. " + provenance(data) + f" Latency model: {source}.", ""]
    presets = data.get("presets_on_test")
    if presets:
        search = rows[0].get("presets_on_search", {})
        parts += [f"| map | test | vs FP32 (test) | search | latency (ms, {kind}) |",
                  "|---|---:|---:|---:|---:|"]
        for name, value in presets.items():
            if name == "chosen":
                continue
            info = search.get(name, {})
            on_search = f"{info['search_metric']:.4f}" if info.get("search_metric") is not None else ""
            ms = f"{info['latency_ms']:.3f}" if "latency_ms" in info else ""
            parts.append(f"| {name} | {value:.4f} | {100 * (value / presets['fp32'] - 1):+.2f}% | {on_search} | {ms} |")
        parts.append("")
    return parts + strategy_table(rows, kind) + [""]


def strategy_table(rows: list[dict], kind: str) -> list[str]:
    """The markdown table of a strategy comparison (`tools/compare_strategies.py` rows)."""
    lines = ["| strategy | chosen by | test: FP32 → chosen | INT8 static / dynamic / FP8 FLOPs | "
             f"latency (ms, {kind}) | speed-up vs all-default ({kind}) | maps run | search (s) |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        t = r["test"]
        maps = r.get("maps_run", r.get("maps_evaluated"))
        by = r["chosen_from"] + (" (stopped after the presets)" if r.get("stopped_early") else "")
        guard = r.get("selection")
        if guard and guard["stepped_back"]:
            by += (f" ({r['strategy'].split('-')[0]}'s pick missed at the {guard['maps_compared']}-map "
                   f"margin, z = {guard['z']:.2f})")
        lines.append(f"| {r['strategy']} | {by} | {t['fp32']:.4f} → {t['chosen']:.4f} "
                     f"({100 * t['chosen_relative_change']:+.2f}%) | {_share(r)} | {r['latency_ms']:.3f} | "
                     f"{r['speedup_vs_default']:.2f}× | {maps} | {r['search_seconds']:.0f} |")
    return lines


def search_page() -> str:
    parts = [(DOCS / "search_intro.md").read_text().rstrip(), ""]
    comparisons = sorted(COMPARISONS.glob("search-*/comparison.json"))
    if comparisons:
        parts += ["## Results by task and strategy (1% relative tolerance)", ""]
        for path in comparisons:
            parts += comparison_section(path)
        if (DOCS / "search_notes.md").is_file():
            parts += [(DOCS / "search_notes.md").read_text().rstrip(), ""]
    parts += fresh_splits_section()
    parts += margin_coverage_section()
    parts += scorer_section()
    parts += multilabel_section()
    for ort_path in sorted(DOCS.glob("ort_cpu*.json")):
        ort = json.loads(ort_path.read_text())
        parts += [f"## samp-jax against ONNX Runtime INT8 (HF optimum), {ort['device']}", "",
                  provenance(ort) + " Both engines score the same "
                  f"{ort['test_examples']} held-out {ort['data']} test examples ({ort['metric']}) and are "
                  f"timed on the same {ort['shape']} batch in one run, "
                  + (f"interleaved: {ort['rounds']} rounds, each timing every variant in turn "
                     f"({ort['repeats']} samples of 5 calls after warm-up); a figure is the median over "
                     "rounds, so a drift of the shared machine's speed hits every variant alike."
                     if ort.get("rounds") else f"(median of {ort['repeats']} runs of 5 calls, after warm-up)."),
                  "",
                  f"| variant | engine | {ort['metric']} (test) | vs FP32 | ms at {ort['shape']} | "
                  "speed vs best ORT INT8 |", "|---|---|---:|---:|---:|---:|"]
        for r in ort["rows"]:
            parts.append(f"| {r['variant']} | {r['engine']} | {r['metric']:.4f} | "
                         f"{100 * r['relative_change']:+.2f}% | {r['ms']:.1f} | "
                         f"{r['speedup_vs_best_ort_int8']:.2f}× |")
        parts.append("")
    if (DOCS / "ort_notes.md").is_file():
        parts += [(DOCS / "ort_notes.md").read_text().rstrip(), ""]
    scaling = load("search_scaling.json")
    if scaling:
        parts += ["## Search time against model depth", "",
                  provenance(scaling), "",
                  "| layers | GEMM sites | sensitivity maps (on 4 batches) | greedy maps (whole search set) | "
                  "compilations | search seconds |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in scaling["rows"]:
            parts.append(f"| {r['layers']} | {r['sites']} | {r['sensitivity_maps']} | {r['greedy_maps']} | "
                         f"{r['compilations']} | {r['seconds']:.0f} |")
        parts += ["", "Sensitivity costs one map per (site, quantized option): linear in layers × sites × "
                  "options. The greedy costs about one chunk of maps per rejected move plus one per "
                  "accepted chunk, also linear in the number of sites, and each map is a forward whose "
                  "cost grows with depth, so the total grows somewhat faster than linearly. The program "
                  "compiled once per run. These runs shared the CPU with other jobs, so the seconds "
                  "are upper bounds.", ""]
    for latency in sorted(DOCS.glob("latency_check_*.json")):
        data = json.loads(latency.read_text())
        parts += [f"## Latency model against real forwards ({data['device']})", "",
                  provenance(data) + " Per-site GEMM times measured on this device, summed with "
                  "the measured non-GEMM remainder, against timed end-to-end forwards of each preset."
                  + (" Each precision's site times are scaled to its own measured all-sites forward "
                     "(`forward_ms` in the table), so the uniform presets match by construction up to "
                     "the drift between the two timings; mixed maps test the model."
                     if data["table"].get("forward_ms") else ""), "",
                  "| map | predicted by the table (ms) | measured forward (ms) | error | H100 roofline (ms, estimated) |",
                  "|---|---:|---:|---:|---:|"]
        for r in data["rows"]:
            h100 = data["h100_estimate_ms"].get(r["map"])
            parts.append(f"| {r['map']} | {r['predicted_ms']:.2f} | {r['measured_ms']:.2f} | "
                         f"{100 * r['relative_error']:+.1f}% | {'' if h100 is None else f'{h100:.4f}'} |")
        parts.append("")
    return "\n".join(parts) + "\n"


USER_DATA = DOCS / "user_data"
VARIANT_NAMES = {"fp32 (reference)": "FP32 (reference)", "fp16": "FP16",
                 "fully_quant / dynamic": "fully_quant (INT8, per-token dynamic)",
                 "precision_map.json": "chosen map (the search's)"}


def user_data_page() -> str:
    """docs/results/user_data.md: TREC through the CLI only (tools/user_data_trec.sh), from the
    JSON files of docs/results/user_data/ under a hand-written introduction."""
    runs = {name: json.loads((USER_DATA / f"{name}.json").read_text())
            for name in ("finetune", "search", "predict", "eval")}
    ft, se, pr, ev = (runs[n] for n in ("finetune", "search", "predict", "eval"))
    sizes = se["split_sizes"]
    test = se["test"]
    options = " / ".join(se["options"])
    parts = [(DOCS / "user_data_intro.md").read_text().rstrip(), "",
             f"Data: {se['data']}. Split sizes: "
             + ", ".join(f"{name} {count:,}" for name, count in sizes.items()) + ".", "",
             "| step | result | wall time |", "|---|---|---:|",
             f"| `finetune` (MiniLM + a new {len(ft['labels'])}-class head, {ft['steps']} steps, the "
             f"best dev checkpoint kept) | dev {ft['test']['metric']} {ft['dev_metric']:.4f}, test "
             f"{ft['test']['value']:.4f} | {ft['wall_seconds']} s |",
             f"| `search` ({100 * se['tolerance']:g}% {se['tolerance_mode']} tolerance, options "
             f"{options}, latency {se['latency_source']}) | {se['maps_evaluated']} maps, "
             f"{se['compilations']} compilations of the candidate program, "
             f"{se['search_seconds']:.0f} s searching | {se['wall_seconds']} s |",
             f"| `predict` from `trec_out/search/model` alone ({pr['rows']:,} rows, AOT-compiled "
             f"buckets) | one JSON line per row | {pr['wall_seconds']} s |",
             f"| `eval` (FP32, FP16, fully_quant, the chosen map on the test split) | the table "
             f"below | {ev['wall_seconds']} s |", "",
             f"{ev['metric'].capitalize()} on the held-out test split ({ev['examples']:,} rows; "
             f"`samp-jax eval`, compute dtype {se['compute_dtype']} between GEMM sites):", "",
             f"| map | {ev['metric']} (test) | rel. to FP32 | same prediction as FP32 | "
             "parameters (MB) |", "|---|---:|---:|---:|---:|"]
    for row in ev["rows"]:
        mb = "–" if row["param_mb"] is None else f"{row['param_mb']:.1f}"
        name = VARIANT_NAMES.get(row["variant"].rsplit("/", 1)[-1], row["variant"])
        parts.append(f"| {name} | {row['value']:.4f} | "
                     f"{100 * row['relative_change']:+.2f}% | {row['agreement']:.3f} | {mb} |")
    estimated = se["latency_source"].startswith("estimated")
    stopped = f" (it stopped after the presets: {se['stopped_early']})" if se.get("stopped_early") else ""
    parts += ["", f"The search chose `{se['chosen_from']}`{stopped}: {100 * se['int8_flop_fraction']:.0f}% "
              f"of the GEMM FLOPs in INT8 (`precision_map.json`, `search_report.md`), "
              f"{100 * test['chosen_relative_change']:+.2f}% against FP32 on test. Its "
              "latency and speed-up are "
              + ("an **estimate** from the target's spec-sheet roofline, not a measurement: the "
                 "search priced maps for another device than the one it ran on. With `--target "
                 "auto` (the default) the same commands price maps by a table measured on the "
                 "machine they run on." if estimated else "priced by a table measured on the "
                 "machine the search ran on."), "",
              provenance(se) + " Each JSON records its own.", "",
              "Files: `docs/results/user_data/finetune.json`, `search.json` (the search summary "
              "with the test figures), `eval.json`, `predict.json`, `predictions_head.jsonl` (the "
              "first three predictions), `search_report.md`, `precision_map.json`."]
    return "\n".join(parts) + "\n"


FAMILIES = ROOT / "docs" / "families.md"
# A block of a hand-written page rendered from a JSON in docs/results/, up to `<!-- end render -->`:
# `<!-- render: NAME.json -->` is a precision table (`eval_table`), `<!-- render: NAME.json#SECTION -->`
# the section's renderer in `SECTIONS`.
RENDER_BLOCK = re.compile(r"(<!-- render: ([^\s#]+)(?:#(\S+))? -->\n).*?(<!-- end render -->)", re.S)


def eval_rows(data: dict) -> list[dict]:
    """The rows of a `samp-jax eval --json` result, or of several runs (`runs`) with the
    reference row once."""
    if "rows" in data:
        return data["rows"]
    rows, seen = [], set()
    for run in data["runs"].values():
        for row in run["rows"]:
            if row["variant"] not in seen:
                seen.add(row["variant"])
                rows.append(row)
    return rows


def eval_table(data: dict) -> str:
    """A precision table (metric, change, agreement, parameters), the largest change from FP32
    in test examples, the training run when recorded, and the line naming the run."""
    metric = data.get("metric", "accuracy")
    rows = eval_rows(data)
    lines = [f"| variant | {metric} | vs FP32 | agreement with FP32 | parameters (MB) |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        mb = "—" if r.get("param_mb") is None else f"{r['param_mb']:.2f}"
        lines.append(f"| {r['variant']} | {r['value']:.4f} | {100 * r['relative_change']:+.2f}% | "
                     f"{r['agreement']:.4f} | {mb} |")
    lines.append("")
    reference = rows[0]["value"] / (1 + rows[0]["relative_change"])
    change = max(abs(r["value"] - reference) for r in rows)
    if metric == "accuracy" and data.get("examples"):
        count = round(change * data["examples"])
        lines.append(f"The largest {metric} change from FP32 is {count} of the {data['examples']:,} test "
                     f"examples ({100 * change:.2f} points).")
    training = data.get("training")
    if training:
        lines.append(f"Training: {training['steps']} steps in {training['train_seconds'] / 60:.0f} min; FP32 "
                     f"{training['test']['metric']} {training['dev']:.4f} on dev, "
                     f"{training['test']['value']:.4f} on test.")
    return "\n".join(lines + ["", provenance(data)]) + "\n"


def figure(value: float) -> str:
    """A difference as the page prints it: `3.8e-6` below 0.01, `0.53` or `3.51` above."""
    if value == 0:
        return "0"
    if abs(value) >= 0.01:
        return f"{value:.2f}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def timing_conditions(data: dict) -> str:
    """Where a family timing ran: the device, and on a CPU that other work shared (a 1-minute
    load average of 1 or more when the run began) that it did."""
    c = data["conditions"]
    where = f"on {data['provenance']['device']}"
    if c["platform"] != "cpu":
        return where
    load = (f"1-minute load average {c['load_average_at_start']:.1f} when the run began, "
            f"{c['load_average_after_timings']:.1f} after the timings")
    if c["load_average_at_start"] >= 1:
        return f"{where} (a CPU shared with other work, {load}: the times are upper bounds, the ratio noisy)"
    return f"{where} ({load})"


def parity_table(rows: list[dict], header: str) -> list[str]:
    return [f"| {header} | max abs difference |", "|---|---:|",
            *(f"| {r['check']} | {figure(r['max_abs'])} |" for r in rows)]


def modernbert_parity(data: dict) -> str:
    """ModernBERT against HF's goldens, the config changes the goldens must see, a long row."""
    lines = parity_table(data["parity"]["modernbert"], "ModernBERT against HF's outputs")
    lines += ["", "| config changed (must miss the goldens) | hidden states' max abs difference |", "|---|---:|",
              *(f"| {r['change']} | {figure(r['max_abs'])} |" for r in data["sensitivity"])]
    long = data["long_input"]
    rows = " and a ".join(f"{n:,}-token" for n in long["row_tokens"])
    lines += ["", f"A {rows} row through the engine (default buckets {', '.join(map(str, long['seq_buckets']))}) "
              f"against direct calls, on the golden sequence classifier given {long['positions']:,} positions: "
              f"logits within {figure(long['max_abs'])}."]
    return "\n".join(lines + ["", provenance(data)]) + "\n"


def deberta_parity(data: dict) -> str:
    lines = parity_table(data["parity"]["deberta-v2"], "DeBERTa-v2 against HF's outputs")
    return "\n".join(lines + ["", provenance(data)]) + "\n"


def local_attention(data: dict) -> str:
    """The band mask against the query blocks, one ModernBERT local layer."""
    t = data["local_attention"]
    return (f"One local layer's attention at {t['seq']:,} tokens (batch {t['batch']}, {t['heads']} heads of "
            f"{t['head_dim']}, window {t['window']}, {t['dtype']}, jitted; both forms in one run, warmed up, "
            f"then timed in turns, median of {t['runs']} runs each), {timing_conditions(data)}: the band mask "
            f"over `[seq, seq]` logits took {t['band_mask_ms']:.0f} ms, the query blocks "
            f"{t['query_blocks_ms']:.0f} ms ({t['ratio']:.1f}× less), outputs equal to {figure(t['max_abs'])}.\n\n"
            + provenance(data) + "\n")


def relative_cost(data: dict) -> str:
    """DeBERTa-v3-xsmall's forward against the same shape with BERT's attention."""
    t = data["relative_cost"]
    return (f"**Cost.** FP32 forwards at batch {t['batch']} × {t['seq']} tokens, both models in one run, "
            f"warmed up, then timed in turns, median of {t['runs']} runs each, {timing_conditions(data)}. "
            f"DeBERTa-v3-xsmall's shape ({t['layers']} layers, hidden {t['hidden']}, {t['position_buckets']} "
            f"log buckets, both terms) takes {t['deberta_ms'] / 1000:.2f} s. The same shape with BERT's "
            f"attention takes {t['bert_attention_ms'] / 1000:.2f} s, so the relative terms cost about "
            f"{t['ratio']:.1f}× the forward on this device.\n\n" + provenance(data) + "\n")


# tools/variant_sweep.py's statuses, as the table's columns (and its `differ` cells) say them.
SWEEP_COLUMNS = {"refused": "refused by samp-jax", "hf_error": "HF fails too"}
SWEEP_DIFFER = {"mismatch": "other outputs", "tokenizer_mismatch": "other input ids",
                "labels_mismatch": "other class names"}


def variant_sweep(data: dict) -> str:
    """Per family: the folders that match HF within the tolerance (and the largest
    difference), and the variants samp-jax refuses, HF fails on, or that differ."""
    families: dict[str, dict] = {}
    for row in data["rows"]:
        f = families.setdefault(row["family"], {"folders": 0, "match": 0, "worst": 0.0, "other": {}})
        f["folders"] += 1
        if row["status"] == "match":
            f["match"] += 1
            f["worst"] = max(f["worst"], row["max_abs_diff"])
        else:
            name = row["variant"] if row["head"] in ("base", "seqcls") else f"{row['variant']} ({row['head']})"
            f["other"].setdefault(row["status"], []).append(name)
    v = data["hf_versions"]
    lines = [f"| family | folders | match HF (max abs difference) | {' | '.join(SWEEP_COLUMNS.values())} "
             "| differ |", "|---|---:|---:|---|---|---|"]
    for family, f in families.items():
        cells = [", ".join(dict.fromkeys(f["other"].get(status, []))) or "–" for status in SWEEP_COLUMNS]
        differ = [f"{n}: {SWEEP_DIFFER.get(status, status)}" for status, names in f["other"].items()
                  if status not in SWEEP_COLUMNS for n in names]
        lines.append(f"| {family} | {f['folders']} | {f['match']} ({figure(f['worst'])}) | "
                     f"{' | '.join(cells)} | {', '.join(differ) or '–'} |")
    lines += ["", f"{len(data['rows'])} folders, float32 on both sides, matched within "
              f"{figure(data['tolerance'])}; HF: transformers {v['transformers']}, torch {v['torch']}, "
              f"sentence-transformers {v['sentence_transformers']}."]
    return "\n".join(lines + ["", provenance(data)]) + "\n"


SECTIONS = {"modernbert_parity": modernbert_parity, "deberta_parity": deberta_parity,
            "local_attention": local_attention, "relative_cost": relative_cost,
            "variant_sweep": variant_sweep}


def render_block(match: re.Match) -> str:
    """One `RENDER_BLOCK` with its text rendered from its JSON."""
    name, section = match.group(2), match.group(3)
    data = load(name)
    if data is None:
        raise FileNotFoundError(f"{FAMILIES.name} renders {name}, which {DOCS} does not hold")
    if section is not None and section not in SECTIONS:
        raise KeyError(f"{FAMILIES.name}: {section=} is not one of {sorted(SECTIONS)}")
    text = eval_table(data) if section is None else SECTIONS[section](data)
    return match.group(1) + text + match.group(4)


def families_page() -> str:
    """docs/families.md with each marked block rendered from its JSON in docs/results/."""
    return RENDER_BLOCK.sub(render_block, FAMILIES.read_text())


PAGES = {DOCS / "accuracy.md": accuracy_page, DOCS / "search.md": search_page,
         DOCS / "user_data.md": user_data_page, FAMILIES: families_page}


def stale_pages() -> list[str]:
    """The pages whose committed text differs from what their JSON files render."""
    return [path.name for path, render in PAGES.items() if path.read_text() != render()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a page differs from its render")
    if parser.parse_args().check:
        stale = stale_pages()
        if stale:
            sys.exit(f"stale: {', '.join(stale)} (run python tools/render_docs.py)")
        print("rendered pages match their JSON")
        return
    for path, render in PAGES.items():
        path.write_text(render())
    print("wrote " + ", ".join(str(path.relative_to(ROOT)) for path in PAGES))


if __name__ == "__main__":
    main()
