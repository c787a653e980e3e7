"""How far the maps a strategy comparison chose are from FP32 on the search and on the test
split, with the paired one-sided 95% margin the search judges maps by on each.

    .venv/bin/python tools/studies/split_margins.py benchmarks/results/search-wnut16-cpu

Reads `comparison.json` and each strategy's saved model (`<dir>/<strategy>/model`, written by
`tools/compare_strategies.py`), scores it and the FP32 model on both splits (the same subsets
the comparison used), and writes `<dir>/margins.json`. For each split: the relative change, and
`bound`, the relative drop plus the one-sided 95% margin (`Objective.guarded_drop`: paired
per example for accuracy, a paired bootstrap for entity F1, ROC-AUC and Spearman). A map
whose test change is below `-tolerance` while its test bound straddles it is a miss that the
test split cannot tell from its own noise; one whose test bound is below `-tolerance` even
without the margin is a miss on any reading. The split is batched as the search batches it,
so a continuous score (ROC-AUC, Spearman) can differ from the comparison's test column in the
fourth digit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from calibrate.search.objectives import task_objective  # noqa: E402
from samp_jax import load  # noqa: E402
from samp_jax.workflows.pipeline import builtin_model  # noqa: E402
from samp_jax.serving.timing import keep_cpu_buffers_for_timing  # noqa: E402
from samp_jax.serving.forward import jit_forward  # noqa: E402


def split_scores(objective, model) -> dict:
    """The relative change of `model` against the objective's FP32 outputs, and its bound."""
    outputs = objective.evaluation.outputs(jit_forward(model))
    base, metric = objective.metric(objective.reference), objective.metric(outputs)
    drop_bound = objective.guarded_drop(outputs, objective.reference)
    return {"fp32": base, "metric": metric, "change": metric / base - 1,
            "drop_bound": drop_bound / base, "examples": objective.evaluation.num_examples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("comparison", type=Path, help="a folder tools/compare_strategies.py wrote")
    args = parser.parse_args()
    keep_cpu_buffers_for_timing("split_margins")
    data = json.loads((args.comparison / "comparison.json").read_text())
    model, tokenizer, description = builtin_model(data["data"], progress=False)
    objectives = {
        "search": task_objective(model, data["data"], tokenizer, split="search",
                                 max_examples=data.get("max_search_examples")),
        "test": task_objective(model, data["data"], tokenizer, split="test",
                               max_examples=data.get("max_examples"))}
    rows = []
    seen: dict[str, dict] = {}
    for row in data["rows"]:
        folder = args.comparison / row["strategy"]
        key = (folder / "precision_map.json").read_text()  # strategies that chose one map share it
        if key not in seen:
            quantized = load(folder / "model")
            seen[key] = {split: split_scores(obj, quantized) for split, obj in objectives.items()}
        rows.append({"strategy": row["strategy"], **seen[key]})
        print(f"{row['strategy']:20s} " + "  ".join(
            f"{split} {100 * r['change']:+.2f}% (drop bound {100 * r['drop_bound']:.2f}%)"
            for split, r in seen[key].items()), flush=True)
    record = {"command": "python " + " ".join(["tools/studies/split_margins.py", *sys.argv[1:]]),
              "model": description, "tolerance": data["tolerance"], "rows": rows}
    (args.comparison / "margins.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
