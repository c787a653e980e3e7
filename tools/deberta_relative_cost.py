"""The cost of disentangled attention: median FP32 forward time of DeBERTa-v3-xsmall's shape
(12 layers, hidden 384, 6 heads, FFN 1536, 256 log buckets, both relative terms) against the
same shape with BERT's attention (no relative terms), at batch 8 x 128 tokens. Both models
are warmed up, then timed in turns on this machine.

Usage: PYTHONPATH=. python tools/deberta_relative_cost.py [--runs 15]
"""

import argparse
import statistics
import time

import jax
import numpy as np
from flax import nnx

from samp_jax.models import EncoderConfig, EncoderModel
from samp_jax.serving.forward import jit_forward

SHAPE = dict(vocab_size=128100, hidden_size=384, num_layers=12, num_heads=6, intermediate_size=1536,
             max_position_embeddings=512, layer_norm_eps=1e-7, type_vocab_size=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    configs = {
        "bert-attention": EncoderConfig(**SHAPE),
        "deberta-v3-xsmall": EncoderConfig(
            model_type="deberta-v2", **SHAPE, position_biased_input=False,
            disentangled_attention=True, pos_att_type=("p2c", "c2p"), position_buckets=256,
            share_att_key=True, norm_rel_ebd="layer_norm"),
    }
    batch = {"input_ids": np.ones((8, 128), np.int32), "attention_mask": np.ones((8, 128), np.int32),
             "token_type_ids": np.zeros((8, 128), np.int32)}
    forwards = {}
    for name, config in configs.items():
        forward = jit_forward(EncoderModel(config, rngs=nnx.Rngs(0)))
        for _ in range(3):  # compile and warm up
            jax.block_until_ready(forward(batch))
        forwards[name] = forward
    times = {name: [] for name in forwards}
    for _ in range(args.runs):
        for name, forward in forwards.items():
            start = time.perf_counter()
            jax.block_until_ready(forward(batch))
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{name}: median {1000 * statistics.median(values):.1f} ms over {len(values)} runs")


if __name__ == "__main__":
    main()
