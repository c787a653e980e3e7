"""Serving: the one length-bucket batcher, the one forward wrapper, data-parallel sharding and
the ahead-of-time compiled `Engine`."""

from samp_jax.serving.batching import DEFAULT_BUCKETS, bucket_batches, bucket_for, length_batches, run_batched
from samp_jax.serving.engine import CompileCounter, Engine, EngineOutput, compile
from samp_jax.serving.forward import INPUT_KEYS, batch_inputs, jit_forward, merged_call
from samp_jax.core.host_memory import keep_cpu_buffers
from samp_jax.serving.sharding import ShardedForward, as_sharded, data_mesh, sharded_forward

__all__ = ["DEFAULT_BUCKETS", "INPUT_KEYS", "CompileCounter", "Engine", "EngineOutput",
           "ShardedForward", "as_sharded", "batch_inputs", "bucket_batches", "bucket_for",
           "compile", "data_mesh", "jit_forward", "keep_cpu_buffers", "length_batches", "merged_call", "run_batched",
           "sharded_forward"]
