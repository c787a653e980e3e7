"""Serve MiniLM with a compiled Engine, then evaluate a quantized model sharded over all devices.

Run: .venv/bin/python examples/serve_and_evaluate.py
(On one CPU device the sharded evaluation runs on that device; with several GPUs, or with
XLA_FLAGS=--xla_force_host_platform_device_count=4 on a CPU, it splits every batch over them.)
"""

import os

import numpy as np

import samp_jax as sj
from samp_jax.tasks import get_task

QUICK = os.environ.get("SAMP_JAX_EXAMPLES_QUICK") == "1"  # small subsets, as the tests run it

# 0. Before any JAX work: reuse freed host memory (on CPU each forward would otherwise
#    page-fault its temporaries in again; see samp_jax.core.host_memory).
sj.keep_cpu_buffers()

# 1. An engine: everything is compiled ahead of time, one executable per (batch, seq) bucket.
model = sj.load(sj.minilm_path())  # weights, head, pooling and tokenizer in one call
engine = sj.compile(model, seq_buckets=(16, 32, 64), batch_size=8, batch_buckets=(1, 8))
print(f"compiled {engine.num_compilations} executables:",
      [(r["batch"], r["seq"], round(r["seconds"], 2)) for r in engine.compile_report])
out = engine(["A man is playing a guitar.", "Someone plays an instrument.", "The sky is blue."])
similarity = out.embeddings @ out.embeddings.T
print("cosine similarities:\n", np.round(similarity, 3))
assert engine.num_compilations == len(engine.compile_report)  # serving compiled nothing

# 2. Sharded evaluation of an INT8 model on SNLI pairs (zero-shot heads are random: this
#    shows the mechanics, not accuracy; see docs/results/accuracy.md for fine-tuned numbers).
task = get_task("snli")
classifier = sj.load_pretrained(sj.minilm_path(), head=task.head, num_labels=len(task.labels),
                                allow_new_head=True)
quantized = sj.quantize(classifier, sj.PrecisionMap.preset("quant_ffn_only", 6))
tokenizer = sj.Tokenizer.from_pretrained(sj.minilm_path(), sentence_transformers=False)  # a classifier
encoded = task.encode(tokenizer, task.examples("test", max_examples=32 if QUICK else 200))
mesh = sj.data_mesh()
print(f"evaluating on {mesh.size} device(s):",
      sj.evaluate(quantized, task, encoded=encoded, batch_size=32, mesh=mesh))
