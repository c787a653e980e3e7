"""One process compiling a serving engine (run by test_engine.py, twice: a restart):

    python cache_worker.py TOKENIZER_DIR PRECISION

with `$SAMP_JAX_XLA_CACHE` naming the persistent compilation cache. Prints, as JSON, what
happened while the engine compiled its executables (`executables`; `cache_hits`: loaded from
the cache; `cache_misses`: compiled) and one output.
"""

import collections
import json
import sys

import jax
import numpy as np
from flax import nnx

import samp_jax as sj

tokenizer_dir, precision = sys.argv[1:]
events = collections.Counter()
jax.monitoring.register_event_listener(lambda event, **kwargs: events.update([event]))
config = sj.EncoderConfig(vocab_size=30522, hidden_size=64, num_layers=2, num_heads=4,
                          intermediate_size=128, max_position_embeddings=64)
model = sj.EncoderModel(config, rngs=nnx.Rngs(0))
if precision != "fp32":
    model = sj.quantize(model, sj.PrecisionMap.preset(precision, config.num_layers))
tokenizer = sj.Tokenizer.from_pretrained(tokenizer_dir)
events.clear()
engine = sj.compile(model, tokenizer=tokenizer, seq_buckets=(16,), batch_buckets=(1, 2))
requests = events["/jax/compilation_cache/compile_requests_use_cache"]
hits = events["/jax/compilation_cache/cache_hits"]
out = engine(["a b c", "the cat sleeps"])
print(json.dumps({"executables": engine.num_compilations, "cache_hits": hits,
                  "cache_misses": requests - hits,
                  "compile_seconds": sum(r["seconds"] for r in engine.compile_report),
                  "embeddings": np.asarray(out.hidden_states[0]).tolist()}))
