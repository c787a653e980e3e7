"""Renders docs/accuracy.md and docs/search.md from the measured JSON files in docs/.

Usage: .venv/bin/python tools/render_docs.py
Every figure in those pages comes from a JSON file written by a command the page names.
"""

import json
from pathlib import Path

from samp_jax.workflows.experiments import format_table

DOCS = Path("docs")
TASKS = [("snli_embed", "Zero-shot SNLI with all-MiniLM-L6-v2 sentence embeddings (bi-encoder)"),
         ("snli", "SNLI, fine-tuned 3-class cross-encoder"),
         ("polarity", "Movie-review polarity, fine-tuned"),
         ("wnut16", "WNUT-16 Twitter NER, fine-tuned")]


def load(name: str):
    path = DOCS / name
    return json.loads(path.read_text()) if path.is_file() else None


def accuracy_page() -> str:
    parts = [(DOCS / "accuracy_intro.md").read_text().rstrip(), ""]
    finetune = load("finetune.json")
    if finetune:
        parts += ["## Fine-tuned FP32 models", "",
                  f"Command: `{finetune['command']}` ({finetune['device']}; the CPU was shared with "
                  "other jobs during these runs, so times are upper bounds).", "",
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
                  f"Command: `{data['command']}` ({data['device']}, {data['total_seconds'] / 60:.0f} min). "
                  f"Metric: {data['metric']} on the held-out test split ({data['examples']} examples); "
                  f"agreement: {data['agreement']}.", "",
                  format_table(data["rows"], metric=data["metric"], agreement=data["agreement"]), ""]
        notes = DOCS / f"accuracy_{key}_notes.md"
        if notes.is_file():
            parts += [notes.read_text().rstrip(), ""]
    return "\n".join(parts) + "\n"


COMPARISONS = Path("benchmarks/results")


def _share(row) -> str:
    return (f"{100 * row['int8_static']:.0f}% / {100 * row['int8_dynamic']:.0f}% / "
            f"{100 * row['fp8']:.0f}%")


def comparison_section(path: Path) -> list[str]:
    """One task × target: the presets and FP32 on the test split, then a row per strategy."""
    data = json.loads(path.read_text())
    rows = data["rows"]
    first = rows[0]
    source = first["latency_source"]
    estimated = source.startswith("estimated")
    kind = ("estimated" if estimated else "measured") + " latency"
    if data.get("latency_table"):
        kind += f", table from {data['latency_table']}"
    parts = [f"### {data['data']}, target {data['target']} ({kind})", "",
             f"Model: {data['model']}. Command: `python tools/compare_strategies.py --data {data['data']} "
             f"--target {data['target']}"
             + (f" --max-search-examples {data['max_search_examples']}" if data.get("max_search_examples") else "")
             + (f" --max-examples {data['max_examples']}" if data.get("max_examples") else "")
             + (f" --latency-table {data['latency_table']}" if data.get("latency_table") else "")
             + f" --strategies {','.join(r['strategy'] for r in rows)} --out {path.parent}` "
             f"(2-core CPU). Latency model: {source}." + (f" {data['note']}" if data.get("note") else ""), ""]
    presets = data.get("presets_on_test")
    if presets:
        search = first.get("presets_on_search", {})
        parts += ["| map | test | vs FP32 (test) | search | latency (ms) |", "|---|---:|---:|---:|---:|"]
        for name, value in presets.items():
            if name == "chosen":
                continue
            info = search.get(name, {})
            on_search = f"{info['search_metric']:.4f}" if info.get("search_metric") is not None else ""
            ms = f"{info['latency_ms']:.3f}" if "latency_ms" in info else ""
            parts.append(f"| {name} | {value:.4f} | {100 * (value / presets['fp32'] - 1):+.2f}% | {on_search} | {ms} |")
        parts.append("")
    return parts + strategy_table(rows) + [""]


def strategy_table(rows: list[dict]) -> list[str]:
    """The markdown table of a strategy comparison (`tools/compare_strategies.py` rows)."""
    lines = ["| strategy | chosen by | test: FP32 → chosen | INT8 static / dynamic / FP8 FLOPs | "
             "latency (ms) | speed-up vs all-default | maps run | search (s) |",
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
    comparisons = sorted(COMPARISONS.glob("search-*/comparison.json")) + \
        sorted(COMPARISONS.glob("replay-*/comparison.json"))
    if comparisons:
        parts += ["## Results by task and strategy (1% relative tolerance)", ""]
        for path in comparisons:
            parts += comparison_section(path)
        if (DOCS / "search_notes.md").is_file():
            parts += [(DOCS / "search_notes.md").read_text().rstrip(), ""]
    ort = load("ort_cpu.json")
    if ort:
        parts += ["## samp-jax against ONNX Runtime INT8 (HF optimum) on this CPU", "",
                  f"Command: `{ort['command']}` ({ort['device']}). Both engines score the same "
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
    rows = []
    for folder in sorted((DOCS / "search").glob("*/summary.json")):
        s = json.loads(folder.read_text())
        t = s["test"]
        rows.append(f"| {s['task']} | {s['metric']} | {s['fp32_search_metric']:.4f} | {s['chosen_search_metric']:.4f} | "
                    f"{t['fp32']:.4f} | {t['chosen']:.4f} | {100 * t['chosen_relative_change']:+.2f}% | "
                    f"{t['quant_ffn_only']:.4f} | {t['fully_quant']:.4f} | {s['int8_flop_fraction']:.2f} | "
                    f"{s['estimated_speedup_vs_fp16']:.2f}× | {s['maps_evaluated']} | {s['compilations']} | "
                    f"{s['search_seconds'] / 60:.1f} min | [report](search/{folder.parent.name}/report.md) |")
    if rows:
        parts += ["## Before issue 15: H100 estimate, options FP16 / INT8 dynamic / FP8, greedy only", "",
                  "The runs issue 15 started from (`samp-jax search --data TASK --tolerance 1% --out "
                  "docs/search/TASK`), kept for comparison.", "",
                  "| task | metric | FP32 (search) | chosen (search) | FP32 (test) | chosen (test) | "
                  "chosen vs FP32 (test) | quant_ffn_only (test) | fully_quant (test) | INT8 FLOP fraction | "
                  "est. speed-up vs FP16 | maps (+48 sensitivity) | compilations | search time | report |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"] + rows + [""]
    scaling = load("search_scaling.json")
    if scaling:
        parts += ["## Search time against model depth", "",
                  f"Command: `{scaling['command']}` ({scaling['device']}).", "",
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
                  f"Command: `{data['command']}`. Per-site GEMM times measured on this device, summed with "
                  "the measured non-GEMM remainder, against timed end-to-end forwards of each preset."
                  + (" Each precision's site times are scaled to its own measured all-sites forward "
                     "(`forward_ms` in the table), so the uniform presets match by construction up to "
                     "the drift between the two timings; mixed maps test the model."
                     if data["table"].get("forward_ms") else ""), "",
                  "| map | predicted (ms) | measured (ms) | error | H100 roofline estimate (ms, not measured) |",
                  "|---|---:|---:|---:|---:|"]
        for r in data["rows"]:
            h100 = data["h100_estimate_ms"].get(r["map"])
            parts.append(f"| {r['map']} | {r['predicted_ms']:.2f} | {r['measured_ms']:.2f} | "
                         f"{100 * r['relative_error']:+.1f}% | {'' if h100 is None else f'{h100:.4f}'} |")
        parts.append("")
    return "\n".join(parts) + "\n"


def main() -> None:
    (DOCS / "accuracy.md").write_text(accuracy_page())
    (DOCS / "search.md").write_text(search_page())
    print("wrote docs/accuracy.md and docs/search.md")


if __name__ == "__main__":
    main()
