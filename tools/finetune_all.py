"""Fine-tunes MiniLM on every task with the default CPU settings (cached), then prints metrics.

Usage: .venv/bin/python tools/finetune_all.py [TASK ...]
"""

import json
import sys
import time

from samp_jax.training import DEFAULT_CONFIGS, finetuned_model
from samp_jax.tasks import evaluate


def main() -> None:
    for task in sys.argv[1:] or list(DEFAULT_CONFIGS):
        start = time.perf_counter()
        model, tokenizer, info = finetuned_model(task)
        test = evaluate(model, task, "test", tokenizer=tokenizer)
        print(json.dumps({"task": task, "dev": info["dev_metric"], "test": test,
                          "train_seconds": info["seconds"], "steps": info["steps"],
                          "examples_per_second": info["examples_per_second"],
                          "wall_seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    main()
