"""One process of a distributed `samp_jax.evaluate` (run by test_distributed.py):

    python distributed_worker.py MODEL DATA PROCESS_ID NUM_PROCESSES PORT

prints `{"process", "devices", "metric"}` as JSON. NUM_PROCESSES 1 runs without jax.distributed.
"""

import json
import sys

import samp_jax as sj
from samp_jax.tasks.files import load_task

model_dir, data, process_id, processes, port = sys.argv[1:]
if int(processes) > 1:
    sj.initialize_distributed(f"127.0.0.1:{port}", num_processes=int(processes),
                              process_id=int(process_id), heartbeat_timeout_s=20)

import jax  # noqa: E402  (after joining the run)

model = sj.load(model_dir)
task = load_task(data, labels=model.labels, head=model.head_kind)
metric = sj.evaluate(model, task, tokenizer=model.tokenizer, batch_size=16)
print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(), "metric": metric}))
