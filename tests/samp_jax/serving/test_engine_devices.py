"""The engine on chosen devices (`samp_jax.compile(..., devices=...)`): data parallel over 4
simulated CPU devices, or on one chosen device, against JAX's default device.

The 4-device checks run `engine_devices_worker.py` once in a subprocess (pytest's JAX has one
CPU device). Labels are equal, and per-token INT8 logits bit for bit (the INT8 accumulator is
exact, and the float16 rest of the model gave identical rows). Float32 logits may differ in
the last bits (measured: 1.2e-6 on logits of about 1), as XLA:CPU reduces a batch of 2 rows
(a device's share) otherwise than one of 6; a row come back in the wrong place is off by far
more (rows differ in class).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import samp_jax
from samp_jax.serving.engine import CompileCounter
from samp_jax.serving.sharding import local_devices
from tests.helpers import tiny_classifier, xla_flags

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("engine_devices")
    env = {**os.environ, "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=4"),
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.samp_jax.serving.engine_devices_worker",
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(out / "engine_devices.npz") as arrays:
        return json.loads((out / "engine_devices.json").read_text()), dict(arrays)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["float", "int8"])
def test_an_engine_on_four_devices_serves_every_row_as_one_device_does(four_devices, model):
    info, arrays = four_devices
    assert info["devices"] == 4
    one = arrays[f"{model}_default_logits"]
    assert len(set(arrays[f"{model}_default_labels"].tolist())) == 3  # rows differ in class
    tolerance = {"float": 5e-6, "int8": 0}[model]
    for where in ("all", "third"):
        np.testing.assert_allclose(arrays[f"{model}_{where}_logits"], one, rtol=0,
                                   atol=tolerance, err_msg=where)
        np.testing.assert_array_equal(arrays[f"{model}_{where}_labels"],
                                      arrays[f"{model}_default_labels"], err_msg=where)
    # samp-jax predict's records run on every device of the process, and agree too
    assert info[f"{model}_records_labels"] == ["abc"[i] for i in arrays[f"{model}_default_labels"]]
    probabilities = np.exp(one - one.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    np.testing.assert_allclose(arrays[f"{model}_records_probabilities"], probabilities,
                               rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["float", "int8"])
def test_the_weights_and_rows_go_where_the_devices_say(four_devices, model):
    info, _ = four_devices
    default, every, third = (info[f"{model}_{w}"] for w in ("default", "all", "third"))
    assert default["weights_on"] == default["outputs_on"] == [0]
    assert every["weights_on"] == every["outputs_on"] == [0, 1, 2, 3]
    assert third["weights_on"] == third["outputs_on"] == [2]
    # batch size 6 and the buckets (1, 6) round up to multiples of 4: (4, 8)
    assert (every["batch_size"], every["batch_buckets"]) == (8, [4, 8])
    assert (third["batch_size"], third["batch_buckets"]) == (6, [1, 6])
    assert sum(int(k.split("x")[0]) * n for k, n in every["calls"].items()) >= 23
    assert "devices=4" in every["repr"] and "devices=1" in third["repr"]
    assert "devices" not in default["repr"]
    assert info["predict_batch"] == [24, 8]  # 6 rows per device; 5 rows padded to 8


def test_one_chosen_device_serves_as_the_default_one(minilm_dir):
    model = tiny_classifier(num_labels=3)
    model.tokenizer = samp_jax.Tokenizer.from_pretrained(minilm_dir)
    texts = ["a short one", "and a somewhat longer row of text than that " * 2]
    default = samp_jax.compile(model, seq_buckets=(32,), batch_buckets=(2,))
    chosen = samp_jax.compile(model, seq_buckets=(32,), batch_buckets=(2,),
                              devices=jax.local_devices())
    np.testing.assert_array_equal(chosen(texts).logits, default(texts).logits)
    assert chosen.devices == tuple(jax.local_devices())


@pytest.mark.parametrize("devices, error, match", [
    ([], ValueError, "devices is empty"),
    ("cpu", TypeError, "sequence of jax.Device"),
    (jax.devices()[0], TypeError, "sequence of jax.Device"),
    ([0], TypeError, "holds 0, a int, not a jax.Device"),
    (jax.devices() * 2, ValueError, "names a device twice"),
])
def test_devices_that_cannot_serve_are_refused_before_compiling(minilm_dir, devices, error, match):
    with pytest.raises(error, match=match):
        local_devices(devices)
    model = tiny_classifier()
    model.tokenizer = samp_jax.Tokenizer.from_pretrained(minilm_dir)
    with CompileCounter() as compiled, pytest.raises(error, match=match):
        samp_jax.compile(model, seq_buckets=(16,), devices=devices)
    assert compiled.count == 0
