"""Data-parallel inference (`samp_jax.serving.sharding`): 8 simulated devices against one.

The 8-device checks run `tests/sharding_worker.py` once in a subprocess (pytest's JAX already
has one CPU device) and assert on what it wrote. Equality is exact, not within a tolerance:
every device runs the same per-row computation as the single-device path (the INT8 kernel's
int32 accumulator is exact, and XLA:CPU's float GEMMs gave bit-identical rows for the per-device
row counts used here), so a tolerance would only hide a row that went to the wrong place.
The ties test runs `tests/samp_jax/serving/ties_worker.py` on 4 devices the same way: per-token
INT8 of rows on .5 ties, quantized alike under `jit` and inside `shard_map`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from pallas_kernels.int8_matmul import KERNEL_NAME
from samp_jax import Tokenizer
from samp_jax.serving.batching import run_batched
from samp_jax.serving.forward import jit_forward
from samp_jax.serving.sharding import ShardedForward, as_sharded, data_mesh, round_batch_size, sharded_forward
from samp_jax.tasks.task import get_task, predict
from tests.helpers import xla_flags

ROOT = Path(__file__).resolve().parents[3]
DEVICES = 8


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding")
    env = {**os.environ, "XLA_FLAGS": xla_flags(f"--xla_force_host_platform_device_count={DEVICES}"),
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.samp_jax.serving.sharding_worker", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    info = json.loads((out / "results.json").read_text())
    with np.load(out / "results.npz") as arrays:
        return info, dict(arrays)


@pytest.mark.slow
def test_worker_ran_on_eight_devices(eight_devices):
    info, _ = eight_devices
    assert info["devices"] == DEVICES and info["mesh_shape"] == {"data": DEVICES}
    assert info["task_num_shards"] == DEVICES


@pytest.mark.slow
def test_every_row_is_computed_once_on_its_shard_and_padding_is_dropped(eight_devices):
    _, arrays = eight_devices
    # RowEcho returns [row id, real tokens, shard index]; rows are split in contiguous blocks
    for name, rows, per_device in (("echo_11", 11, 2), ("echo_16", 16, 2), ("echo_3", 3, 1),
                                   ("echo_auto_11", 11, 2)):  # 11 and 3 rows are padded inside
        echo = arrays[name]
        assert echo.shape == (rows, 3)
        np.testing.assert_array_equal(echo[:, 0], np.arange(1, rows + 1))  # in order, no row twice
        np.testing.assert_array_equal(echo[:, 1], 4)  # no padding row came back
        np.testing.assert_array_equal(echo[:, 2], np.arange(rows) // per_device)
    # a 4 x 2 mesh: rows split 4 ways along 'data', each shard replicated on 'replica'
    grid = arrays["echo_grid_11"]
    np.testing.assert_array_equal(grid[:, 0], np.arange(1, 12))
    np.testing.assert_array_equal(grid[:, 2], np.arange(11) // 3)


@pytest.mark.slow
def test_task_evaluation_matches_one_device_exactly(eight_devices):
    info, arrays = eight_devices
    # batch_size 20 on 8 devices is rounded up to 24: the same batches as the 1-device run
    assert info["task_metric_sharded"] == info["task_metric_single"] == info["task_metric_default"]
    assert info["task_metric_sharded"]["examples"] == 75
    for name in ("task", "run_batched"):
        sharded, single = arrays[f"{name}_sharded"], arrays[f"{name}_single"]
        assert sharded.shape == single.shape and np.all(np.isfinite(sharded)), name
        np.testing.assert_array_equal(sharded, single, err_msg=name)
    assert arrays["task_sharded"].shape == (75, 2)
    # 19 rows called directly (5 padding rows added and dropped inside) give those rows' logits
    ragged = arrays["ragged_sharded"]
    assert ragged.shape == (19, 2)
    np.testing.assert_array_equal(ragged, arrays["task_single"][arrays["ragged_rows"]])
    # every example was predicted (gather_rows leaves a row it never saw at exactly 0)
    assert np.all(np.any(arrays["task_sharded"] != 0, axis=1))


@pytest.mark.slow
def test_int8_pallas_model_runs_per_shard_and_matches_one_device(eight_devices):
    info, arrays = eight_devices
    # one shard_map at the top (so every pallas_call runs per shard), and all 24 INT8 GEMM
    # sites (6 layers x 4) are the Pallas kernel inside it
    assert info["quant_top_level_primitives"] == ["shard_map"]
    assert info["quant_kernels_inside_shard_map"].count(KERNEL_NAME) == 24
    assert info["quant_in_specs"] == {"weights": ["P()"], "inputs": ["P('data',)"] * 3}
    assert arrays["quant_sharded"].shape == (13, 2)
    np.testing.assert_array_equal(arrays["quant_sharded"], arrays["quant_single"])


def test_int8_ties_quantize_alike_under_jit_and_inside_shard_map(tmp_path):
    """Per-token dynamic INT8 is one computation wherever it is compiled. XLA:CPU rewrites
    `x / broadcast(s)` as `x * broadcast(1 / s)` only while `s` has no other use, and the
    multi-device program's common-subexpression pass gives the scale a second one (the
    dequantization), so a plain division quantizes these rows, all on a .5 tie, differently under
    `jit` and inside `shard_map`. The quantization is `round(x * fl(1 / s))` in both
    (`numerics.divide_by_scale`)."""
    env = {**os.environ, "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=4"),
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.samp_jax.serving.ties_worker", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(tmp_path / "ties.npz") as arrays:
        out = dict(arrays)
    rows = out["rows"].astype(np.float32)
    assert len(rows) > 100
    np.testing.assert_array_equal(out["scale_sharded"], out["scale_jit"])
    reciprocal = np.float32(1) / out["scale_jit"]
    # every row is a tie: a true division would give its half the other INT8 value
    assert np.all(np.round(rows[:, 1:] / out["scale_jit"]) != np.round(rows[:, 1:] * reciprocal))
    for program in ("jit", "sharded"):
        np.testing.assert_array_equal(out[f"q_{program}"], np.round(rows * reciprocal), err_msg=program)
    np.testing.assert_array_equal(out["y_sharded"], out["y_jit"])


# ----------------------------------------------------------------- in process, one device
@pytest.fixture(scope="module")
def polarity(minilm_dir):
    tokenizer = Tokenizer.from_pretrained(minilm_dir)
    task = get_task("polarity")
    examples = list(task.split("test"))[:12]
    return tokenizer, examples, task.encode(tokenizer, examples)


@pytest.mark.slow
def test_one_device_mesh_gives_the_same_as_no_mesh(minilm, polarity):
    tokenizer, examples, encoded = polarity
    mesh = data_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    single, forward = jit_forward(minilm), sharded_forward(minilm, mesh)
    assert forward.num_shards == 1
    np.testing.assert_array_equal(predict(forward, encoded, batch_size=8, mesh=mesh),
                                  predict(single, encoded, batch_size=8))
    texts = [e["text"] for e in examples]  # the same two batch shapes: nothing new to compile
    np.testing.assert_array_equal(run_batched(forward, tokenizer, texts, batch_size=8, mesh=mesh),
                                  run_batched(single, tokenizer, texts, batch_size=8))


def test_batch_size_rounding():
    assert [round_batch_size(b, 8) for b in (1, 8, 20, 24, 25)] == [8, 8, 24, 24, 32]
    assert round_batch_size(5, 1) == 5
    with pytest.raises(ValueError, match="batch_size=0 must be positive"):
        round_batch_size(0, 8)


def test_errors(minilm):
    mesh = data_mesh()
    with pytest.raises(ValueError, match=r"axis='batch' is not one of the mesh's axis names \('data',\)"):
        sharded_forward(minilm, mesh, axis="batch")
    with pytest.raises(ValueError, match="needs at least one device"):
        data_mesh([])
    with pytest.raises(TypeError, match="pass the model or a sharded_forward"):
        as_sharded(jit_forward(minilm), mesh)
    forward = sharded_forward(minilm, mesh)
    assert isinstance(forward, ShardedForward) and as_sharded(forward, mesh) is forward
    with pytest.raises(ValueError, match="forward was built for mesh"):
        as_sharded(forward, data_mesh(axis="rows"))
