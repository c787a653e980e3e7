"""Fine-tunes MiniLM on every task with the default CPU settings (cached), scores the test split,
and records the results in docs/results/finetune.json.

Usage: .venv/bin/python tools/finetune_all.py [TASK ...]
"""

import json
import sys
import time
from pathlib import Path

import jax

from samp_jax.tasks.task import evaluate
from samp_jax.training.finetuning import DEFAULT_CONFIGS, finetuned_model

TARGETS = {"snli": "accuracy ≥ 0.80", "polarity": "accuracy ≥ 0.80", "wnut16": "entity F1 ≥ 0.30"}
RECORD = Path("docs/results/finetune.json")


def main() -> None:
    record = json.loads(RECORD.read_text()) if RECORD.is_file() else {"rows": []}
    for task in sys.argv[1:] or list(DEFAULT_CONFIGS):
        start = time.perf_counter()
        model, tokenizer, info = finetuned_model(task)
        test = evaluate(model, task, "test", tokenizer=tokenizer)
        row = {"task": task, "dev": info["dev_metric"], "test": test, "target": TARGETS[task],
               "train_seconds": info["seconds"], "steps": info["steps"], "config": info["config"],
               "examples_per_second": info["examples_per_second"], "wall_seconds": time.perf_counter() - start}
        print(json.dumps(row), flush=True)
        record["rows"] = [r for r in record["rows"] if r["task"] != task] + [row]
        record["rows"].sort(key=lambda r: list(TARGETS).index(r["task"]))
        record |= {"command": "python tools/finetune_all.py snli polarity wnut16",
                   "device": jax.devices()[0].device_kind}
        RECORD.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
