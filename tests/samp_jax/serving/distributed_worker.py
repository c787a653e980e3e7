"""One process of a distributed `samp_jax.evaluate` (run by test_distributed.py):

    python distributed_worker.py MODEL DATA PROCESS_ID NUM_PROCESSES PORT

prints `{"process", "devices", "metric", "outputs"}` as JSON: the test split's metric from
`sj.evaluate`, and the per-row logits that `evaluate` scores (`predict` over `data_mesh()`, as
`evaluate` runs it on several devices) of every row of DATA, for the FP32 model and its INT8 (per-token dynamic)
copy. NUM_PROCESSES 1 runs without jax.distributed.
"""

import json
import sys

import samp_jax as sj
from samp_jax.serving.sharding import data_mesh
from samp_jax.tasks import SPLITS
from samp_jax.tasks.files import load_task
from samp_jax.serving.forward import jit_forward
from samp_jax.tasks.task import predict
from samp_jax.workflows.experiments import Variant

model_dir, data, process_id, processes, port = sys.argv[1:]
if int(processes) > 1:
    sj.initialize_distributed(f"127.0.0.1:{port}", num_processes=int(processes),
                              process_id=int(process_id), heartbeat_timeout_s=20)

import jax  # noqa: E402  (after joining the run)

model = sj.load(model_dir)
task = load_task(data, labels=model.labels, head=model.head_kind)
metric = sj.evaluate(model, task, tokenizer=model.tokenizer, batch_size=16)
encoded = task.encode(model.tokenizer, [row for split in SPLITS for row in task.split(split)])
int8 = sj.quantize(model, Variant("fully_quant").precision_map(model.config.num_layers))
mesh = data_mesh() if jax.device_count() > 1 else None
outputs = {name: predict(m if mesh else jit_forward(m), encoded, batch_size=16,
                         mesh=mesh).tolist() for name, m in (("fp32", model), ("int8", int8))}
print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(),
                  "metric": metric, "outputs": outputs}))
