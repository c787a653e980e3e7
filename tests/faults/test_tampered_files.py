"""Damaged or tampered model folders: each gives a clear error naming the file, the tensor or
key, what was found and what was expected; none loads and computes something else."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import samp_jax
from samp_jax import CheckpointError, ConfigError, QuantizedModel
from samp_jax.quant.quantized import _file_digest
from tests.faults.save_child import model
from tests.helpers import GOLDEN

KERNEL = "encoder.layers.0.ffn_in.kernel"
SCALE = "encoder.layers.0.ffn_in.kernel_scale"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return model(1).save(tmp_path_factory.mktemp("tamper") / "q")


@pytest.fixture
def folder(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "q")


def _sidecar(folder, edit):
    data = json.loads((folder / "quantization.json").read_text())
    edit(data)
    (folder / "quantization.json").write_text(json.dumps(data))


def _weights(folder, edit, *, manifest=True):
    """Edits a tensor; with `manifest`, rewrites the manifest to match (a consistent forgery)."""
    arrays = load_file(str(folder / "model.safetensors"))
    edit(arrays)
    save_file(arrays, str(folder / "model.safetensors"))
    if manifest:
        _sidecar(folder, lambda d: d["files"].update({"model.safetensors": _file_digest(folder / "model.safetensors")}))


def _set(key, value):
    def edit(arrays):
        arrays[key] = arrays[key].copy()
        arrays[key].reshape(-1)[0] = value
    return edit


CASES = {
    # sidecar claims
    "int8 kernel said to be uint8": (lambda f: _sidecar(f, lambda d: d["dtypes"].update({KERNEL: "uint8"})),
                                     CheckpointError, rf"{KERNEL}: the sidecar says dtype 'uint8', expected 'int8'"),
    "int8 kernel said to be float8": (lambda f: _sidecar(f, lambda d: d["dtypes"].update({KERNEL: "float8_e4m3fn"})),
                                      CheckpointError, r"says dtype 'float8_e4m3fn', expected 'int8'"),
    "scale said to be float16": (lambda f: _sidecar(f, lambda d: d["dtypes"].update({SCALE: "float16"})),
                                 CheckpointError, rf"{SCALE}: the sidecar says dtype 'float16', expected 'float32'"),
    "sidecar not JSON": (lambda f: (f / "quantization.json").write_text("{not json"), ValueError,
                         r"quantization.json is not valid JSON"),
    "sidecar a list": (lambda f: (f / "quantization.json").write_text("[1, 2]"), ValueError,
                       r"quantization.json is not a samp-jax-quantized sidecar"),
    "no manifest": (lambda f: _sidecar(f, lambda d: d.pop("files")), CheckpointError, r"has no file manifest"),
    # consistent forgeries: the values are checked
    "scale 0": (lambda f: _weights(f, _set(SCALE, 0.0)), CheckpointError, rf"{SCALE}: scale 0.0 found, expected >= 1e-12"),
    "scale 1e-30": (lambda f: _weights(f, _set(SCALE, 1e-30)), CheckpointError, rf"{SCALE}: scale 1\.0+\d*e-30 found"),
    "scale negative": (lambda f: _weights(f, _set(SCALE, -0.5)), CheckpointError, rf"{SCALE}: scale -0.5 found"),
    "scale NaN": (lambda f: _weights(f, _set(SCALE, np.nan)), CheckpointError, rf"{SCALE}: non-finite values"),
    "scale inf": (lambda f: _weights(f, _set(SCALE, np.inf)), CheckpointError, rf"{SCALE}: non-finite values"),
    "int8 value -128": (lambda f: _weights(f, _set(KERNEL, -128)), CheckpointError,
                        rf"{KERNEL}: INT8 value -128 found, expected \[-127, 127\]"),
    "NaN embedding row": (lambda f: _weights(f, _set("embeddings.word", np.nan)), CheckpointError,
                          r"embeddings.word: non-finite values found, expected finite"),
    "NaN bias": (lambda f: _weights(f, _set("encoder.layers.1.qkv.bias", np.nan)), CheckpointError,
                 r"encoder.layers.1.qkv.bias: non-finite"),
    "kernel stored as float32": (lambda f: _weights(f, lambda a: a.update({KERNEL: a[KERNEL].astype(np.float32)})),
                                 CheckpointError, rf"{KERNEL}: stored as float32, expected int8"),
    # changes the manifest catches
    "plausible altered scale": (lambda f: _weights(f, _set(SCALE, 0.01), manifest=False), CheckpointError,
                                r"model.safetensors does not match the manifest"),
    "flipped byte": (lambda f: _flip_byte(f / "model.safetensors"), CheckpointError,
                     r"model.safetensors does not match the manifest"),
    "truncated weights": (lambda f: _truncate(f / "model.safetensors"), CheckpointError,
                          r"model.safetensors does not match the manifest: found \d+ bytes"),
    "tokenizer file removed": (lambda f: (f / "tokenizer.json").unlink(missing_ok=True) or _manifest_lists(f, "gone.json"),
                               CheckpointError, r"gone.json is listed in the manifest but missing"),
}


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-1000])


def _manifest_lists(folder, name):
    _sidecar(folder, lambda d: d["files"].update({name: {"sha256": "0" * 64, "bytes": 1}}))


@pytest.mark.parametrize("case", CASES)
def test_tampered_quantized_folder_is_refused(folder, case):
    tamper, error, message = CASES[case]
    tamper(folder)
    with pytest.raises(error, match=message):
        QuantizedModel.load(folder)


HF = GOLDEN / "families" / "bert" / "seqcls"


def _hf_tensor(value_fn):
    def tamper(folder):
        arrays = load_file(str(folder / "model.safetensors"))
        key = "bert.encoder.layer.0.output.dense.weight"
        arrays[key] = value_fn(arrays[key])
        save_file(arrays, str(folder / "model.safetensors"))
    return tamper


def _hf_config(change):
    def tamper(folder):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | change))
    return tamper


def _with_nan(a):
    a = a.copy()
    a[0, 0] = np.nan
    return a


HF_CASES = {
    "int32 tensor": (_hf_tensor(lambda a: a.astype(np.int32)), CheckpointError,
                     r"output.dense.weight has dtype int32, expected a float dtype"),
    "bool tensor": (_hf_tensor(lambda a: a > 0), CheckpointError, r"output.dense.weight has dtype bool"),
    "NaN tensor": (_hf_tensor(_with_nan), CheckpointError, r"output.dense.weight has non-finite values"),
    "negative layer_norm_eps": (_hf_config({"layer_norm_eps": -1e-12}), ConfigError,
                                r"config.json: layer_norm_eps=-1e-12 must be a positive number"),
    "heads do not divide hidden": (_hf_config({"num_attention_heads": 7}), ConfigError,
                                   r"hidden_size=30 must be divisible by num_heads=7"),
    "config not JSON": (lambda f: (f / "config.json").write_text("{"), ConfigError, r"config.json is not valid JSON"),
    "config a list": (lambda f: (f / "config.json").write_text("[]"), ConfigError,
                      r"config.json must hold a JSON object, got list"),
}


@pytest.mark.parametrize("case", HF_CASES)
def test_tampered_hf_checkpoint_is_refused(tmp_path, case):
    folder = shutil.copytree(HF, tmp_path / "hf")
    tamper, error, message = HF_CASES[case]
    tamper(folder)
    with pytest.raises(error, match=message):
        samp_jax.load(folder)


def test_a_bfloat16_hf_checkpoint_loads(tmp_path):
    """bfloat16 is a float dtype (numpy alone does not say so): such checkpoints load."""
    import ml_dtypes

    folder = shutil.copytree(HF, tmp_path / "hf")
    arrays = load_file(str(folder / "model.safetensors"))
    save_file({k: v.astype(ml_dtypes.bfloat16) for k, v in arrays.items()}, str(folder / "model.safetensors"))
    model = samp_jax.load(folder)
    assert model.head_kind == "sequence_classification"
