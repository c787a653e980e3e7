"""Data-parallel inference on 8 simulated CPU devices, against one device in the same process.

`tests/test_sharding.py` runs this in a subprocess, because pytest's process has already
started JAX with one CPU device:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \\
        python -m tests.samp_jax.serving.sharding_worker OUT_DIR

It computes, and writes to OUT_DIR/results.npz (arrays) and OUT_DIR/results.json (the rest):
- `echo_*`: a tiny model that returns each row's id and its shard index, on ragged batches, on
  a 2-D mesh and on an `Auto` mesh (which rows went where, padding dropped);
- `task_*`: the real MiniLM with a random SequenceClassifier head on 75 polarity test examples
  (metric and per-example logits), `predict` / `evaluate` / `run_batched` / a direct call with a
  ragged batch (19 rows, padded to 24 inside; its shapes are the ones already compiled);
- `quant_*`: the fully-INT8 model through the Pallas kernel (interpret mode) under shard_map.
The assertions live in the test file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.extend import core as jax_core
from jax.sharding import AxisType

from samp_jax import PrecisionMap, Tokenizer, load_pretrained, minilm_path, ops, quantize
from samp_jax.serving.batching import run_batched
from samp_jax.serving.forward import jit_forward
from samp_jax.serving.sharding import data_mesh, sharded_forward
from samp_jax.tasks.task import evaluate, get_task, predict

EXAMPLES = 75      # 3 full batches of 24 and a last one with 3 real rows
BATCH_SIZE = 20    # rounded up to 24 = 3 rows per device on 8 devices
QUANT_EXAMPLES = 13  # one batch of 16 (2 rows per device), 3 of them padding


class RowEcho(nnx.Module):
    """Returns `[id of the row's first token * weight, real tokens, shard index]` per row."""

    def __init__(self):
        self.weight = nnx.Param(jnp.ones((), jnp.float32))  # replicated like real weights

    def __call__(self, input_ids, attention_mask, token_type_ids):
        shard = jnp.full(input_ids.shape[:1], jax.lax.axis_index("data"), jnp.float32)
        return jnp.stack([input_ids[:, 0].astype(jnp.float32) * self.weight[...],
                          attention_mask.sum(axis=1).astype(jnp.float32), shard], axis=1)


def echo_batch(rows: int, seq: int = 4) -> dict[str, np.ndarray]:
    ids = np.repeat(np.arange(1, rows + 1, dtype=np.int32)[:, None], seq, axis=1)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _eqns(jaxpr):
    """Every equation of `jaxpr` and of the jaxprs nested in it (jit, loops, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax_core.jaxprs_in_params(eqn.params):
            yield from _eqns(sub)


def main(out_dir: Path) -> None:
    arrays, info = {}, {"devices": jax.device_count(), "seconds": {}}
    start = time.perf_counter()

    mesh = data_mesh()
    info["mesh_shape"] = dict(mesh.shape)
    echo = sharded_forward(RowEcho(), mesh)
    for rows in (11, 16, 3):
        arrays[f"echo_{rows}"] = echo(echo_batch(rows))
    grid = jax.make_mesh((4, 2), ("data", "replica"))  # 4 shards of rows, 2 replicas each
    arrays["echo_grid_11"] = sharded_forward(RowEcho(), grid)(echo_batch(11))
    auto = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))
    arrays["echo_auto_11"] = sharded_forward(RowEcho(), auto)(echo_batch(11))

    tokenizer = Tokenizer.from_pretrained(minilm_path())
    task = get_task("polarity")
    examples = list(task.split("test"))[:EXAMPLES]
    encoded = task.encode(tokenizer, examples)
    model = load_pretrained(minilm_path(), head=task.head, num_labels=len(task.labels),
                            allow_new_head=True)
    info["seconds"]["setup"] = time.perf_counter() - start

    t = time.perf_counter()
    forward, single = sharded_forward(model, mesh), jit_forward(model)
    info["task_num_shards"] = forward.num_shards
    arrays["task_sharded"] = predict(forward, encoded, batch_size=BATCH_SIZE, mesh=mesh)
    arrays["task_single"] = predict(single, encoded, batch_size=24)
    info["task_metric_sharded"] = evaluate(model, task, encoded=encoded, batch_size=BATCH_SIZE, mesh=mesh)
    info["task_metric_single"] = evaluate(model, task, encoded=encoded, batch_size=24,
                                          mesh=data_mesh(jax.devices()[:1]))
    # mesh=None: all devices when there are several (here 8), the same numbers again
    info["task_metric_default"] = evaluate(model, task, encoded=encoded, batch_size=BATCH_SIZE)
    # a ragged batch straight into the sharded function: 19 rows, padded to 24 inside it
    rows, batch = next(encoded.batches(19))
    arrays["ragged_rows"] = rows
    arrays["ragged_sharded"] = forward({k: v for k, v in batch.items() if k != "labels"})
    texts = [e["text"] for e in examples[:30]]
    arrays["run_batched_sharded"] = run_batched(forward, tokenizer, texts, batch_size=BATCH_SIZE, mesh=mesh)
    arrays["run_batched_single"] = run_batched(single, tokenizer, texts, batch_size=24)
    info["seconds"]["task"] = time.perf_counter() - t

    t = time.perf_counter()
    interpret_kernels = ops.interpret()  # on for the rest of this process
    interpret_kernels.__enter__()
    # implementation="pallas" names the kernel: a site it could not run would raise, not fall back
    quantized = quantize(model, PrecisionMap.preset("fully_quant", model.config.num_layers),
                         implementation="pallas")
    small = encoded.subset(np.arange(QUANT_EXAMPLES))
    q_forward = sharded_forward(quantized, mesh)
    arrays["quant_sharded"] = predict(q_forward, small, batch_size=16, mesh=mesh)
    arrays["quant_single"] = predict(jit_forward(quantized), small, batch_size=16)
    _, batch = next(small.batches(16))
    jaxpr = q_forward.trace({k: v for k, v in batch.items() if k != "labels"}).jaxpr
    (shard_map,) = [e for e in jaxpr.eqns if e.primitive.name == "shard_map"]
    info["quant_top_level_primitives"] = sorted({e.primitive.name for e in jaxpr.eqns})
    info["quant_kernels_inside_shard_map"] = [
        str(e.params["name"]) for e in _eqns(shard_map.params["jaxpr"])
        if e.primitive.name == "pallas_call"]
    in_specs = [str(s) for s in shard_map.params["in_specs"]]  # weights..., then the 3 inputs
    info["quant_in_specs"] = {"weights": sorted(set(in_specs[:-3])), "inputs": in_specs[-3:]}
    info["seconds"]["quant"] = time.perf_counter() - t
    info["seconds"]["total"] = time.perf_counter() - start

    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "results.npz", **arrays)
    (out_dir / "results.json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    from tests import small_programs
    small_programs.install()  # as in the pytest process that starts this one
    main(Path(sys.argv[1]))
