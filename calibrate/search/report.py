"""Search reports: precision_map.json, report.md (sensitivity heat map, chosen map, metrics)
and pareto.png (metric against estimated latency for every evaluated map)."""

from __future__ import annotations

import re
from pathlib import Path

from calibrate.search.config import allowed_drop
from calibrate.search.phases import default_preset_name
from calibrate.search.result import SearchResult, pareto_entries, pareto_file
from calibrate.search.runner import Kind
from samp_jax.core import strict_json
from samp_jax.core.atomic import atomic_file, write_text_atomic
from samp_jax.core.precision import SITES, PrecisionMap, as_precision
from samp_jax.tasks.metrics import PROXIES, get_metric
from samp_jax.tasks.truncation import Truncation, describe_all


def sensitivity_table(result: SearchResult) -> str:
    """Markdown: layer × site, each cell the proxy of quantizing only that site per option; a
    sentence saying why when no single-site map was measured."""
    if not result.sensitivity:
        why = (f"the search stopped after the presets ({result.stopped_early})"
               if result.stopped_early else "no single-site map was measured")
        return f"Not measured: {why}."
    options = [o for o in result.options[1:]]
    header = "| layer | " + " | ".join(SITES) + " |"
    lines = [f"Proxy ({PROXIES[result.proxy_name].display_name}) when only that site is "
             f"quantized; options: {', '.join(options)}.", "", header,
             "|---|" + "---:|" * len(SITES)]
    for layer in range(result.precision_map.num_layers):
        cells = []
        for site in SITES:
            values = [result.sensitivity.get(f"{layer}.{site}/{o}", {}).get("proxy") for o in options]
            cells.append(" / ".join("–" if v is None else f"{v:.2e}" for v in values))
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chosen_table(result: SearchResult) -> str:
    """Markdown: layer × site, each cell the chosen precision (quantized in bold), then the
    layer's attention matmuls (`attn_scores` / `attn_context`: float unless the map names them)."""
    pmap = result.precision_map
    lines = ["| layer | " + " | ".join(SITES) + " | attention |",
             "|---|" + "---|" * (len(SITES) + 1)]
    for layer in range(pmap.num_layers):
        pair = pmap.attention(layer)
        attention = "float" if not pair.is_set else (f"**{pair}**" if pair.is_quantized else str(pair))
        lines.append(f"| {layer} | " + " | ".join(f"**{pmap[layer, s]}**" if pmap[layer, s].is_quantized
                                                   else str(pmap[layer, s]) for s in SITES)
                     + f" | {attention} |")
    return "\n".join(lines)


def attention_line(result: SearchResult) -> str | None:
    """The report's bullet on the attention step: the layers whose attention runs INT8 and
    what the table priced, or why INT8 attention was not offered; None without a step."""
    step = result.attention
    if step is None:
        return None
    line = f"- INT8 attention: {step.note}"
    if step.offered:
        priced = ", ".join(f"layer {layer} {step.priced[layer][0]:.3g} → {step.priced[layer][1]:.3g} ms"
                           for layer in step.offered)
        line += f"; priced float → INT8: {priced}"
    if step.maps_compared:
        line += (f"; {step.maps_compared} map(s) tried"
                 + ("" if step.z is None else f", each judged at z = {step.z:.2f}"))
    return line


def tolerance_table(result: SearchResult) -> str:
    """Markdown: what "within tolerance" measured for each preset and the chosen map on the
    search split: the metric drop against FP32, the 95% margin, their sum and the allowed drop
    (or the proxy and the allowed proxy, without a metric)."""
    checks = result.tolerance_checks
    fmt = lambda v: "–" if v is None else f"{v + 0.0:.4g}"  # noqa: E731  (+ 0.0: -0 is 0)
    verdict = lambda c: "yes" if c.passes else "**no**"  # noqa: E731
    if result.metric_name is None:
        proxy = PROXIES[result.proxy_name].display_name
        lines = [f"Without a metric the tolerance bounds the proxy ({proxy}) on the search split.",
                 "", "| map | proxy | allowed | within tolerance |", "|---|---:|---:|---|"]
        lines += [f"| {c.map_name} | {fmt(c.bounded)} | {fmt(c.allowed)} | {verdict(c)} |"
                  for c in checks]
        return "\n".join(lines)
    scored = get_metric(result.metric_name)
    metric = scored.display_name + ("" if scored.higher_is_better else " (lower is better)")
    lines = [f"The tolerance bounds the {metric} drop against FP32 on the search split plus a "
             "one-sided 95% margin for the noise of its examples (a gain is a negative drop).",
             "", "| map | drop | margin | drop + margin | allowed | within tolerance |",
             "|---|---:|---:|---:|---:|---|"]
    margin = lambda c: fmt(c.margin) + ("" if c.z is None else f" (z {c.z:.3g})")  # noqa: E731
    lines += [f"| {c.map_name} | {fmt(c.drop)} | {margin(c)} | {fmt(c.bounded)} | "
              f"{fmt(c.allowed)} | {verdict(c)} |" for c in checks]
    if any(c.z is not None for c in checks):
        lines += ["", "A margin marked with z was widened for the number of maps the allocation "
                      "and the attention step compared (`selection_z`): the chosen map was "
                      "judged there."]
    return "\n".join(lines)


def pareto_table(result: SearchResult) -> str:
    """Markdown: the maps on the Pareto front of estimated latency against the search-split
    metric (the proxy without one), fastest first; `summary.json` holds each one's map."""
    metric = ("proxy" if result.metric_name is None
              else get_metric(result.metric_name).display_name)
    entries = {e.name: e for e in result.evaluated}
    lines = ["No other map the search recorded (presets, allocation maps, the chosen map) is both "
             "faster and better on the search split than a map here. Its precision map is in the "
             "file named (`samp-jax eval --precision FILE` scores it on the test split). The "
             "front is on the raw metric: a map here may miss the tolerance, whose check adds a "
             "margin for the split's noise (the chosen map is the one that met it).", "",
             f"| map | {metric} (search) | INT8 FLOP fraction | est. latency (ms) | file |",
             "|---|---:|---:|---:|---|"]
    for index, name in enumerate(result.pareto_maps):
        e = entries[name]
        value = e.proxy if result.metric_name is None else e.metric
        lines.append(f"| {name} | {value:.4g} | {e.int8_fraction:.2f} | {e.latency_ms:.3f} | "
                     f"`{pareto_file(index)}` |")
    return "\n".join(lines)


def tolerance_edge(result: SearchResult) -> float:
    """The search-split metric at the edge of the tolerance: FP32's less the allowed drop
    (`allowed_drop`: a share of |FP32| when relative), or plus it for a lower-is-better metric.
    Needs a metric and its FP32 value."""
    sign = get_metric(result.metric_name).direction
    return result.fp32_metric - sign * allowed_drop(result.tolerance, result.tolerance_mode,
                                                    result.fp32_metric)


def plot_pareto(result: SearchResult, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = None if result.metric_name is None else get_metric(result.metric_name)
    use_metric = metric is not None
    value = (lambda e: e.metric) if use_metric else (lambda e: -e.proxy)
    ylabel = (f"{metric.display_name} (search split)" if use_metric else
              f"− proxy, {PROXIES[result.proxy_name].display_name} (higher is better)")
    evaluated = [e for e in result.evaluated if e.kind != Kind.REFERENCE and value(e) is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {Kind.GREEDY: ("#4c72b0", "o", 22), Kind.PRESET: ("#dd8452", "s", 60),
              Kind.ATTENTION: ("#8172b3", "D", 30), Kind.CHOSEN: ("#c44e52", "*", 220)}
    for kind, (color, marker, size) in styles.items():
        pts = [e for e in evaluated if e.kind == kind]
        if pts:
            ax.scatter([e.latency_ms for e in pts], [value(e) for e in pts], c=color, marker=marker,
                       s=size, label=kind.value, zorder=3 if kind in (Kind.PRESET, Kind.CHOSEN) else 2)
    for e in evaluated:
        if e.kind in (Kind.PRESET, Kind.CHOSEN):
            offset = (5, -12) if e.kind == Kind.CHOSEN else (5, 5)  # presets often share its spot
            ax.annotate(e.name, (e.latency_ms, value(e)), textcoords="offset points", xytext=offset, fontsize=8)
    front = pareto_entries(result.evaluated, result.metric_name)
    ax.plot([e.latency_ms for e in front], [value(e) for e in front], "--", c="#55a868",
            label="Pareto front", zorder=1)
    if use_metric and result.fp32_metric is not None:
        ax.axhline(result.fp32_metric, c="k", lw=0.8, ls=":", label="FP32")
    if result.latency_target_ms is not None:
        ax.axvline(result.latency_target_ms, c="#c44e52", lw=0.8, ls=":", label="latency target")
    elif use_metric and result.fp32_metric is not None:
        ax.axhline(tolerance_edge(result), c="#c44e52", lw=0.8, ls=":", label="tolerance")
    table = result.latency_table
    ax.set_xlabel(f"estimated latency, ms ({table.source}: {table.device}, {table.batch}×{table.seq})")
    ax.set_ylabel(ylabel)
    ax.set_title(f"samp-jax search: {result.objective_name}")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write_report(result: SearchResult, out: str | Path, *, test_metrics: dict | None = None,
                 command: str | None = None, extra: dict | None = None) -> dict:
    """Writes precision_map.json, summary.json, report.md, pareto.png and each Pareto-front map
    (`pareto/NN.json`, fastest first) into `out`.

    Returns the summary written to summary.json (`result.summary()`, the test metrics, the
    command and `extra`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.precision_map.save(out / "precision_map.json")
    write_pareto_maps(result, out)
    summary = result.summary() | {"test": test_metrics, "command": command} | (extra or {})
    write_text_atomic(out / "summary.json", strict_json.dumps(summary, indent=1))
    plot_pareto(result, out / "pareto.png")
    write_text_atomic(out / "report.md", report_markdown(result, summary, test_metrics=test_metrics,
                                                         command=command))
    return summary


def write_pareto_maps(result: SearchResult, out: Path) -> None:
    """Writes each Pareto-front map to `out/pareto/NN.json` (`pareto_file`), and removes the
    `NN.json` maps an earlier report left there that this front does not name."""
    named = [out / pareto_file(index) for index in range(len(result.pareto_maps))]
    folder = out / pareto_file(0).split("/")[0]
    if folder.is_dir():
        for stale in folder.glob("*.json"):
            if re.fullmatch(r"\d+\.json", stale.name) and stale not in named:
                stale.unlink()
    for path, pmap in zip(named, result.pareto_maps.values()):
        path.parent.mkdir(exist_ok=True)
        pmap.save(path)


def report_markdown(result: SearchResult, summary: dict, *, test_metrics: dict | None = None,
                    command: str | None = None) -> str:
    """report.md: the settings, the result table (search and test split), the chosen map, the
    sensitivity table and the Pareto plot."""
    lines = [f"# samp-jax search report: {result.objective_name}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    if summary.get("warnings"):  # what the run warned of, first, for a reader of the report alone
        lines += ["## Warnings", "", *(f"- {one_line(w)}" for w in summary["warnings"]), ""]
    lines += _settings_lines(result, summary)
    lines.append("")
    if result.tolerance_met is False:
        lines += [f"**The tolerance is not met:** even the most precise candidate (all "
                  f"{result.default_option.upper()}) loses "
                  "more than the tolerance on the search split; the map below is the closest, "
                  "not a map within tolerance.", ""]
    lines += _result_lines(result, test_metrics)
    lines += _held_out_proxy_lines(result, summary.get("test_proxy"))
    if result.tolerance_checks:
        lines += ["", "## Tolerance", "", tolerance_table(result)]
    lines += ["", "## Chosen map", "", chosen_table(result), "", "## Sensitivity", "",
              sensitivity_table(result), "", "## Pareto front", "", pareto_table(result), "",
              "![Pareto front](pareto.png)", ""]
    return "\n".join(lines)


def one_line(message: str) -> str:
    """A warning of several lines as one bullet's text."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def _moved_a_site(result: SearchResult) -> bool:
    """Whether the chosen map runs some GEMM site off the all-default precision, or INT8
    attention in some layer (the attention step's)."""
    if result.attention is not None and result.attention.int8_layers:
        return True
    default = PrecisionMap.from_table({}, result.precision_map.num_layers,
                                      default=result.default_option)
    return dict(result.precision_map.items()) != dict(default.items())


def _settings_lines(result: SearchResult, s: dict) -> list[str]:
    """The report's bullet list: target, tolerance, latency model, search effort, selection
    margin, a multi-label task's threshold and static clips (`s`: the summary)."""
    tol = f"{100 * result.tolerance:g}% relative" if result.tolerance_mode == "relative" else f"{result.tolerance:g} absolute"
    if result.stopped_early:
        chosen_from = f" (search stopped after the presets: {result.stopped_early})"
    elif result.chosen_from == result.strategy:
        chosen_from = ("" if _moved_a_site(result) else
                       " (no site moved off the default: no faster map passed)")
    elif result.latency_target_ms is not None:
        chosen_from = (f" (the preset {result.chosen_from}: it reaches the latency target and is "
                       f"closer to FP32 by the proxy than the {result.strategy} map)")
    elif result.search_objective == "int8_fraction":
        chosen_from = (f" (the preset {result.chosen_from}: more matmul FLOPs in INT8 than the "
                       f"{result.strategy} strategy's map, or as many and closer to FP32, and "
                       "within tolerance)")
    else:
        chosen_from = (f" (the preset {result.chosen_from}: faster than the {result.strategy} "
                       "strategy's map, and within tolerance)")
    lines = [f"- target: {result.target or 'none given'}; chosen by: {result.chosen_from}{chosen_from}",
             f"- mode: {result.mode}"
             + (f"; tolerance: {tol}" if result.latency_target_ms is None else
                f"; latency target: {result.latency_target_ms:g} ms (the map closest to FP32 by "
                "the proxy among the greedy's and the presets that reach it)")
             + f"; options per site: {', '.join(result.options)}",
             *[f"- float option: {o.describe()}; "
               + (f"the search moved on to {nxt}" if nxt != o.float_option else "it is kept")
               for o, nxt in zip(result.float_overflows,
                                 [x.float_option for x in result.float_overflows[1:]]
                                 + [result.default_option])],
             f"- latency model: {s['latency_source']}",
             f"- maps run on the search split: {s['maps_run']} on all of it and "
             f"{s.get('subset_maps_run', 0)} single-site maps on a subset (static clips, "
             f"sensitivity), in {s['search_seconds']:.0f} s with {s['compilations']} "
             "compilation(s) of the candidate program"]
    if result.selection is not None:
        guard = result.selection
        if guard.allocation_pick is None:
            verdict = "none of its maps passed"
        elif not guard.stepped_back:
            verdict = "it holds there"
        else:
            verdict = (f"it misses there, so {guard.kept} is kept" if guard.kept else
                       "it misses there, and so does every other map it measured")
        lines.append(f"- selection margin: the {result.strategy} strategy's pick "
                     f"({guard.allocation_pick or 'none'}) judged at z = {guard.z:.2f} for the "
                     f"{guard.maps_compared} maps it chose among; {verdict}")
    if s.get("label_threshold") is not None:
        lines.append(f"- label sets: every label whose sigmoid is at least "
                     f"{s['label_threshold']:g} (the metric is measured at this threshold)")
    if s.get("split_sizes"):  # what the verdicts rest on: the rows scored, of each split's
        sizes = ", ".join(f"{split} {n}" for split, n in s["split_sizes"].items() if n)
        scored = [f"{split} {counts['rows']}" for split, counts in (s.get("truncation") or {}).items()
                  if counts and counts.get("rows") is not None]
        lines.append(f"- rows per split: {sizes}" + (f" (split seed {s['split_seed']})"
                                                     if s.get("split_seed") is not None else "")
                     + (f"; scored: {', '.join(scored)}" if scored else ""))
    if s.get("max_length") is not None:
        cut = describe_all({split: Truncation(**counts)
                            for split, counts in (s.get("truncation") or {}).items()})
        lines.append(f"- rows cut at {s['max_length']} tokens: "
                     f"{cut or 'no search or test row is longer'}")
    if (line := attention_line(result)) is not None:
        lines.append(line)
    if result.static_calibration is not None:
        counts = result.static_calibration.counts()
        listed = ", ".join(f"{m} at {n}" for m, n in counts.items())
        lines.append(f"- static INT8 clips: each site's from the calibrator whose single-site "
                     f"map harmed the model least ({listed} of {sum(counts.values())} sites)")
    elif result.calibration is not None and result.calibration.sites:
        lines.append(f"- static clips: {result.calibration.method} at every site")
    return lines


def _held_out_proxy_lines(result: SearchResult, test_proxy: dict | None) -> list[str]:
    """Without a metric: the chosen map's proxy on the held-out test split beside the search
    split's (the figure the tolerance bounded there)."""
    if not test_proxy:
        return []
    name = PROXIES[test_proxy["proxy"]].display_name
    lines = ["", f"On the held-out test split the chosen map's {name} is "
                 f"{test_proxy['chosen']:.4g} (search split: {result.chosen.proxy:.4g})."]
    others = {k: v for k, v in test_proxy.items() if k not in ("proxy", "chosen")}
    if others:
        lines[-1] += " Presets: " + ", ".join(f"{k} {v:.4g}" for k, v in others.items()) + "."
    return lines


def _result_lines(result: SearchResult, test_metrics: dict | None) -> list[str]:
    """The result table: the reference, the presets and the chosen map on the search split
    (metric, INT8 FLOP fraction, estimated latency and speed-up), then the test metrics."""
    default = default_preset_name(as_precision(result.default_option))
    metric = "metric" if result.metric_name is None else get_metric(result.metric_name).display_name
    lines = ["## Result", "", f"| | {metric} | INT8 FLOP fraction | est. latency (ms) | est. speed-up vs {default} |",
             "|---|---:|---:|---:|---:|"]
    fp16 = next(e for e in result.evaluated if e.name == default)
    fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
    for e in [x for x in result.evaluated if x.kind in (Kind.REFERENCE, Kind.PRESET)] + [result.chosen]:
        lines.append(f"| {e.name} (search) | {fmt(e.metric)} | {e.int8_fraction:.2f} | {e.latency_ms:.3f} | "
                     f"{fp16.latency_ms / e.latency_ms:.2f}× |")
    if test_metrics:
        for name, value in test_metrics.items():
            if not name.endswith("relative_change"):
                lines.append(f"| {name} (test) | {fmt(value)} | | | |")
        if test_metrics.get("chosen_relative_change") is not None:
            lines += ["", f"On the held-out test split the chosen map changes the metric by "
                          f"{100 * test_metrics['chosen_relative_change']:+.2f}% relative to FP32."]
    dtype = result.precision_map.compute_dtype
    if result.default_option != "fp16" or (dtype is not None and dtype != "float16"):
        lines += ["", f"The presets are the target's ({result.target}): the sites they leave in "
                      f"float run {result.default_option}, and activations between sites are "
                      f"{dtype or 'float16'}; `samp-jax eval --precision NAME` builds the FP16 "
                      "presets, so its figures for the same name differ."]
    return lines
