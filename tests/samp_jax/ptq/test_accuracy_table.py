"""`accuracy_table` (what `samp-jax eval` prints): variants share a calibration pass only when
it calibrates the same cells the same way."""

import json

import numpy as np
from flax import nnx

from samp_jax import EncoderModel
from samp_jax.serving.forward import jit_forward
from samp_jax.workflows.experiments import Variant, accuracy_table
from tests.helpers import TINY_CONFIG, random_batches


class _Evaluator:
    """The model's outputs on fixed batches, scored by their mean."""

    def __init__(self):
        self.batches = random_batches(seed=3)

    def outputs(self, model):
        forward = jit_forward(model)
        return [np.asarray(forward(batch)) for batch in self.batches]

    def score(self, outputs, reference=None):
        out = {"metric": "mean", "value": float(np.mean([o.mean() for o in outputs])), "examples": 16}
        if reference is not None:
            out["agreement"] = 1.0
        return out

    def calibration_batches(self):
        return self.batches


def test_a_map_that_stores_every_clip_does_not_lend_its_empty_calibration(tmp_path):
    """Map A stores the clip of its one static site (no pass needed); map B adds a static
    site without a clip. B, after A, gets the calibration it needs."""
    static = {"precision": "int8", "activation": "static"}
    stored = {"layers": [0], "sites": ["qkv"], **static, "clip": 2.0}
    maps = {"a.json": [stored], "b.json": [stored, {"layers": [1], "sites": ["qkv"], **static}]}
    for name, rules in maps.items():
        (tmp_path / name).write_text(json.dumps(
            {"num_layers": 3, "default": {"precision": "fp32"}, "compute_dtype": "float32",
             "rules": rules}))
    model = EncoderModel(TINY_CONFIG, rngs=nnx.Rngs(0))
    variants = [Variant(str(tmp_path / name)) for name in maps]
    rows = accuracy_table(model, _Evaluator(), variants)  # B failed: "no statistics for 1.qkv"
    assert [r["variant"] for r in rows[1:]] == [str(tmp_path / name) for name in maps]
    assert rows[1]["value"] != rows[2]["value"]


def test_a_map_files_row_is_named_by_its_path_as_given():
    """Two searches' `precision_map.json` are two rows, and a file named like a preset is not
    the preset."""
    labels = [Variant(p).label for p in ("a/precision_map.json", "b/precision_map.json",
                                         "./fully_quant", "fully_quant")]
    assert labels == ["a/precision_map.json", "b/precision_map.json", "./fully_quant",
                      "fully_quant / dynamic"]
