"""Your own labelled CSV, end to end through the Python API: fine-tune → search → save → load →
serve. (The CLI does the same: see README, "Your own model and data".)

Run: .venv/bin/python examples/your_own_data.py     (about 6 minutes on a 2-core CPU)

The CSV here is written from 2,000 packaged movie-review snippets so that the example runs
anywhere; point `load_task` at your own file and column names instead.
SAMP_JAX_EXAMPLES_QUICK=1 uses 200 snippets, a few training steps, one calibrator and a latency
table measured at a small serving shape (as the tests run it).
"""

import csv
import os
from pathlib import Path

import samp_jax as sj
from calibrate import SearchConfig, search, write_report
from samp_jax.tasks import Columns, get_task, load_task

QUICK = os.environ.get("SAMP_JAX_EXAMPLES_QUICK") == "1"

WORK = Path("your_data_out")
WORK.mkdir(exist_ok=True)

# 1. A data file with your own column names: "review" and "sentiment" (names, not ids).
csv_path = WORK / "reviews.csv"
with open(csv_path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["review", "sentiment"])
    for example in get_task("polarity").split("train")[:200 if QUICK else 2000]:
        writer.writerow([example["text"], "positive" if example["label"] else "negative"])

# 2. The file becomes a Task: the type is inferred from the columns, the rows are split with a
#    fixed seed into train / dev / calibration / search / test, and the sizes are reported.
task = load_task(csv_path, columns=Columns(text="review", label="sentiment"))
print(f"{task.name}: {task.task_type.name}, labels {task.labels}, splits {task.sizes()}")

# 3. Fine-tune MiniLM with a new classification head (optax AdamW, early stopping on dev).
model = sj.load(sj.minilm_path(), head=task.head, num_labels=len(task.labels), allow_new_head=True)
config = sj.FinetuneConfig()  # `samp-jax finetune`'s defaults: at least 200 steps, batch 16, ...
if QUICK:
    config = sj.FinetuneConfig(max_train_examples=64, min_steps=8, eval_every=4)
tuned = sj.finetune(model, task, model.tokenizer, config, progress=False).model
print("labels learned:", tuned.head.labels)

# 4. Search the precision map on the search split at 1% tolerance for this machine
#    (target="auto", as `samp-jax search`: its options, dtype and measured latency table;
#    static scales are calibrated on the calibration split, each site's clip picked from three
#    calibrators; the test split is never touched).
search_config = SearchConfig(tolerance=0.01, target="auto", progress=False)
if QUICK:
    search_config = SearchConfig(tolerance=0.01, target="auto", progress=False, batch=8, seq=32,
                                 calibration="minmax")
result = search(tuned, task, search_config, tokenizer=tuned.tokenizer)
write_report(result, WORK / "search")
print(f"chosen map: {100 * result.chosen.int8_fraction:.0f}% of matmul FLOPs in INT8, search "
      f"{result.metric_name} {result.chosen.metric:.4f} vs FP32 {result.fp32_metric:.4f}")

# 5. Quantize with it: the map carries each static site's calibrator and clip and the dtype
#    between sites it was searched for, so it alone rebuilds the searched model. Save one
#    self-contained folder, load it back in one call and serve.
quantized = sj.quantize(tuned, result.precision_map)
quantized.save(WORK / "model")
served = sj.compile(sj.load(WORK / "model"), seq_buckets=(32, 64, 128), batch_size=16)
out = served(["A warm, funny and moving film.", "Two hours I will never get back."])
print("predictions:", out.label_names)
test = sj.evaluate(quantized, task, tokenizer=quantized.tokenizer)
print(f"held-out test {test['metric']}: {test['value']:.4f} on {test['examples']} examples")
