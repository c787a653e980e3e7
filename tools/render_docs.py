"""Renders docs/results/accuracy.md and docs/results/search.md from the JSON files beside them.

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
    fresh = load("fresh_splits_snli_embed.json")
    if fresh:
        spread = fresh["test_relative_change"]
        parts += ["## The defaults on fresh splits (test rows no decision saw)", "",
                  provenance(fresh) + f" Task: {fresh['task']} (zero-shot MiniLM bi-encoder), "
                  f"tolerance {100 * fresh['tolerance']:.0f}%, `samp-jax search` with every default "
                  "(`--target auto`). Each seed draws new calibration and search pairs; the test "
                  "pairs of the seeds are disjoint from each other and from the published test "
                  "subset ([protocol.md](../protocol.md)).", "",
                  "| seed | search pairs | test pairs | FP32 ROC-AUC (test) | chosen (test) | change | "
                  "INT8 FLOPs |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in fresh["rows"]:
            parts.append(f"| {r['seed']} | {r['search_pairs']} | {r['test_pairs']} | {r['fp32_test']:.4f} | "
                         f"{r['chosen_test']:.4f} | {100 * r['test_relative_change']:+.2f}% | "
                         f"{100 * r['int8_flop_fraction']:.0f}% |")
        parts += ["", f"Test change over the seeds: mean {100 * spread['mean']:+.2f}%, min "
                  f"{100 * spread['min']:+.2f}%, max {100 * spread['max']:+.2f}%, standard deviation "
                  f"{100 * spread['stdev']:.2f} points.", ""]
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


FAMILIES = ROOT / "docs" / "families.md"
# A table rendered into a hand-written page: `<!-- table: NAME.json -->` ... `<!-- end table -->`.
TABLE_BLOCK = re.compile(r"(<!-- table: (\S+) -->\n).*?(<!-- end table -->)", re.S)


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
    """A precision table (metric, change, agreement, parameters) and the line naming its run."""
    metric = data.get("metric", "accuracy")
    lines = [f"| variant | {metric} | vs FP32 | agreement with FP32 | parameters (MB) |",
             "|---|---:|---:|---:|---:|"]
    for r in eval_rows(data):
        mb = "—" if r.get("param_mb") is None else f"{r['param_mb']:.2f}"
        lines.append(f"| {r['variant']} | {r['value']:.4f} | {100 * r['relative_change']:+.2f}% | "
                     f"{r['agreement']:.4f} | {mb} |")
    return "\n".join(lines + ["", provenance(data)]) + "\n"


def families_page() -> str:
    """docs/families.md with each marked table rendered from its JSON in docs/results/."""
    return TABLE_BLOCK.sub(lambda m: m.group(1) + eval_table(load(m.group(2))) + m.group(3),
                           FAMILIES.read_text())


PAGES = {DOCS / "accuracy.md": accuracy_page, DOCS / "search.md": search_page,
         FAMILIES: families_page}


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
        print("docs/results pages match their JSON")
        return
    for path, render in PAGES.items():
        path.write_text(render())
    print("wrote " + ", ".join(str(path.relative_to(ROOT)) for path in PAGES))


if __name__ == "__main__":
    main()
