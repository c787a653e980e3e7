"""The engine on 4 simulated CPU devices (`compile(devices=...)`) against JAX's default device,
in one process (`test_engine_devices.py` runs this in a subprocess: pytest's JAX has one
device):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu \\
        python -m tests.samp_jax.serving.engine_devices_worker OUT_DIR

A tiny random 3-way classifier with MiniLM's tokenizer, in float32 and per-token dynamic INT8,
serves 23 texts of mixed lengths (some cut) through an engine on the default device, one on all
4 devices and one on device 2 alone; `samp-jax predict`'s `records` serves them too. Writes
OUT_DIR/engine_devices.npz (every engine's logits and labels) and OUT_DIR/engine_devices.json
(the buckets, the calls per bucket, and the devices holding the weights and the outputs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

import samp_jax
from samp_jax import PrecisionMap, Tokenizer, minilm_path, quantize
from samp_jax.app import predictions
from samp_jax.app.predictions import records
from tests.helpers import tiny_classifier

WORDS = ("river", "green", "quickly", "seven", "paper", "stone", "music", "cold", "bright", "window")
TEXTS = [" ".join(np.random.default_rng(i).choice(WORDS, 2 + (i * 7) % 37)) for i in range(23)]
SEQ_BUCKETS = (16, 32)
BATCH_SIZE = 6  # 8 on 4 devices


def devices_of(tree) -> list[int]:
    return sorted({d.id for leaf in jax.tree.leaves(tree) for d in leaf.sharding.device_set})


def varied_classifier(tokenizer: Tokenizer):
    """A tiny random classifier whose class differs from row to row on `TEXTS`: its kernels
    drawn 20x wider and its bias centred on these rows' logits (a tiny random encoder gives
    nearly the same state to every row otherwise)."""
    model = tiny_classifier(num_labels=3, seed=3)
    model.head.labels = ("a", "b", "c")
    for path, param in nnx.iter_graph(model):
        if isinstance(param, nnx.Param) and path[-1] == "kernel":
            param.set_value(param.get_value() * 20)
    encoded = tokenizer(TEXTS, max_length=SEQ_BUCKETS[-1], truncation=True)
    logits = np.asarray(model(*(np.asarray(encoded[k]) for k in ("input_ids", "attention_mask",
                                                                  "token_type_ids"))))
    bias = model.head.classifier.bias
    bias.set_value(bias.get_value() - logits.mean(axis=0))
    return model


def main(out_dir: Path) -> None:
    tokenizer = Tokenizer.from_pretrained(minilm_path())
    float_model = varied_classifier(tokenizer)
    int8_model = quantize(float_model, PrecisionMap.preset("fully_quant", float_model.config.num_layers,
                                                           activation="per_token_dynamic"))
    arrays, info = {}, {"devices": jax.device_count()}
    for name, model in (("float", float_model), ("int8", int8_model)):
        model.tokenizer = tokenizer
        for where, devices in (("default", None), ("all", jax.local_devices()),
                               ("third", jax.local_devices()[2:3])):
            engine = samp_jax.compile(model, seq_buckets=SEQ_BUCKETS, batch_size=BATCH_SIZE,
                                      truncate=True, devices=devices, precompile=False)
            out = engine(TEXTS)
            arrays[f"{name}_{where}_logits"] = out.logits
            arrays[f"{name}_{where}_labels"] = out.labels
            pending = engine._run(engine._inputs.read(TEXTS[:3]))
            info[f"{name}_{where}"] = {
                "batch_size": engine.batch_size, "batch_buckets": list(engine.batch_buckets),
                "calls": {f"{b}x{s}": n for (b, s), n in sorted(engine.bucket_calls.items())},
                "weights_on": devices_of(engine._state), "outputs_on": devices_of(pending[0][1]),
                "repr": repr(engine)}
        predicted = records(model, [{"text": t} for t in TEXTS], batch_size=BATCH_SIZE,
                            max_length=SEQ_BUCKETS[-1])
        info[f"{name}_records_labels"] = [r["label"] for r in predicted]
        arrays[f"{name}_records_probabilities"] = np.array(
            [[r["probabilities"][label] for label in "abc"] for r in predicted])
    # predict's engine: BATCH_SIZE rows per device, fewer when the rows are fewer
    info["predict_batch"] = [predictions._engine(float_model, count, BATCH_SIZE, None, None).batch_size
                             for count in (100, 5)]
    np.savez(out_dir / "engine_devices.npz", **arrays)
    (out_dir / "engine_devices.json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    from tests import small_programs
    small_programs.install()  # as in the pytest process that starts this one
    main(Path(sys.argv[1]))
