"""Renders docs/accuracy.md and docs/search.md from the measured JSON files in docs/.

Usage: .venv/bin/python tools/render_docs.py
Every figure in those pages comes from a JSON file written by a command the page names.
"""

import json
from pathlib import Path

from samp_jax.app.experiments import format_table

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


def search_page() -> str:
    parts = [(DOCS / "search_intro.md").read_text().rstrip(), ""]
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
        parts += ["## Results at 1% relative tolerance", "",
                  "| task | metric | FP32 (search) | chosen (search) | FP32 (test) | chosen (test) | "
                  "chosen vs FP32 (test) | quant_ffn_only (test) | fully_quant (test) | INT8 FLOP fraction | "
                  "est. speed-up vs FP16 | maps (+48 sensitivity) | compilations | search time | report |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"] + rows + [""]
        parts += [(DOCS / "search_notes.md").read_text().rstrip(), ""] if (DOCS / "search_notes.md").is_file() else []
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
                  "the measured non-GEMM remainder, against timed end-to-end forwards of each preset.", "",
                  "| map | predicted (ms) | measured (ms) | error | H100 roofline estimate (ms, not measured) |",
                  "|---|---:|---:|---:|---:|"]
        for r in data["rows"]:
            parts.append(f"| {r['map']} | {r['predicted_ms']:.2f} | {r['measured_ms']:.2f} | "
                         f"{100 * r['relative_error']:+.1f}% | {data['h100_estimate_ms'][r['map']]:.4f} |")
        parts.append("")
    return "\n".join(parts) + "\n"


def main() -> None:
    (DOCS / "accuracy.md").write_text(accuracy_page())
    (DOCS / "search.md").write_text(search_page())
    print("wrote docs/accuracy.md and docs/search.md")


if __name__ == "__main__":
    main()
