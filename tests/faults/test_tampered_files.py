"""Damaged or tampered model folders: each case gives a clear error naming the file, the tensor
or key, what was found and what was expected; none loads and computes something else.

The quantized folder mixes every kind of site (static INT8 with smoothing, dynamic INT8, FP8,
FP16, BF16) and carries a tokenizer, so each tensor kind and each manifest entry is tried.
"""

import json
import re
import shutil

import numpy as np
import pytest
from safetensors.flax import load_file as load_flax, save_file as save_flax
from safetensors.numpy import load_file, save_file

import samp_jax
from samp_jax import CheckpointError, ConfigError, PrecisionMap, QuantizedModel, quantize
from samp_jax.models import read_pooling
from samp_jax.models.st_folder import write_st_files
from samp_jax.ptq.folder import SEAL_KEY, SidecarNotSealedWarning, seal_text
from samp_jax.core.digests import file_digest as _file_digest
from samp_jax.ptq.quantized import SiteCalibration
from tests.helpers import GOLDEN

HF = GOLDEN / "families" / "bert" / "seqcls"  # a tiny BERT (2 layers, hidden 30) with a tokenizer
TEXTS = ["hello there", "a second test sentence"]

L0 = "encoder.layers.0"
INT8_KERNEL, INT8_SCALE = f"{L0}.ffn_in.kernel", f"{L0}.ffn_in.kernel_scale"  # dynamic INT8
STATIC_KERNEL, ACT_SCALE, INPUT_SCALE = f"{L0}.qkv.kernel", f"{L0}.qkv.act_scale", f"{L0}.qkv.input_scale"
FP8_KERNEL, FP8_SCALE = f"{L0}.ffn_out.kernel", f"{L0}.ffn_out.kernel_scale"
FP16_KERNEL, BF16_KERNEL = f"{L0}.attn_out.kernel", "encoder.layers.1.attn_out.kernel"


class _Calibration:
    """Just what `quantize` reads from a `calibrate.Calibration`."""

    sites = {(0, "qkv"): SiteCalibration(4.0, 3.0, np.linspace(0.5, 2.0, 30).astype(np.float32)),
             (0, "ffn_out"): SiteCalibration(4.0, 3.0)}

    def describe(self):
        return {"method": "test"}


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    model = samp_jax.load(HF)
    pmap = PrecisionMap.from_table({(0, "qkv"): "int8-static", (0, "ffn_in"): "int8-dynamic",
                                    (0, "ffn_out"): "fp8_e4m3", (1, "attn_out"): "bf16"}, 2)
    q = quantize(model, pmap, _Calibration())
    return q, q.save(tmp_path_factory.mktemp("tamper") / "q")


@pytest.fixture
def folder(original, tmp_path):
    return shutil.copytree(original[1], tmp_path / "q")


def test_the_untampered_folder_loads_bit_exactly(original, folder):
    q, _ = original
    batch = q.tokenizer(TEXTS)
    np.testing.assert_array_equal(np.asarray(samp_jax.load(folder)(**batch)), np.asarray(q(**batch)))


@pytest.mark.parametrize("keep_manifest", [False, True])
def test_a_v1_sidecar_is_refused_even_with_an_edited_scale(folder, keep_manifest):
    """format_version 1 had no file manifest: set back to 1, a folder whose scale was edited
    would load unverified. It is refused, naming the file, the version and what is expected."""
    arrays = load_file(str(folder / "model.safetensors"))
    arrays[INT8_SCALE] = arrays[INT8_SCALE] * np.float32(1.5)
    save_file(arrays, str(folder / "model.safetensors"))
    _sidecar(folder, lambda d: (d.update(format_version=1),
                                None if keep_manifest else d.pop("files")), seal=False)
    message = r".*/q/quantization\.json: format_version 1 is the format without a file manifest.*" \
              r"Expected format_version 3"
    with pytest.raises(ValueError, match=message):
        QuantizedModel.load(folder)
    with pytest.raises(ValueError, match=message):
        samp_jax.load(folder)


# ------------------------------------------------------------------------------ tampering
def _sidecar(folder, edit, *, seal=True):
    """Edits the sidecar; with `seal`, also its copy in the weights' header and the weights'
    manifest entry (a consistent forgery, so that the field checks, not the seal, must catch
    it)."""
    data = json.loads((folder / "quantization.json").read_text())
    edit(data)
    if seal:
        _save_weights(folder, load_file(str(folder / "model.safetensors")), data)
    (folder / "quantization.json").write_text(json.dumps(data))


def _save_weights(folder, arrays, sidecar, *, manifest=True):
    """Writes `arrays` with `sidecar`'s copy in the header (as `save` does); with `manifest`,
    records their new hash in `sidecar`."""
    save_file(arrays, str(folder / "model.safetensors"), metadata={SEAL_KEY: seal_text(sidecar)})
    files = sidecar.get("files")
    if manifest and isinstance(files, dict) and "model.safetensors" in files:
        files["model.safetensors"] = _file_digest(folder / "model.safetensors")


def _claim(key, dtype):
    """The sidecar says `key` has `dtype` (the weights' tensors untouched)."""
    return lambda f: _sidecar(f, lambda d: d["dtypes"].update({key: dtype}))


def _field(key, value):
    return lambda f: _sidecar(f, lambda d: d.update({key: value}))


def _weights(edit, *, manifest=True):
    """Edits the stored tensors; with `manifest`, rewrites the manifest to match (a consistent
    forgery, so that the value checks, not the hash, must catch it)."""
    def tamper(folder):
        arrays = load_file(str(folder / "model.safetensors"))
        edit(arrays)
        sidecar = json.loads((folder / "quantization.json").read_text())
        _save_weights(folder, arrays, sidecar, manifest=manifest)
        (folder / "quantization.json").write_text(json.dumps(sidecar))
    return tamper


def _set(key, value):
    """Sets the first element of `key` (a whole row of an embedding table) to `value`, in the
    stored type (bfloat16 / float8 tensors are stored as their uint16 / uint8 bits)."""
    def edit(arrays):
        a = arrays[key].copy()
        if a.ndim == 2 and key.startswith("embeddings"):
            a[0] = value
        else:
            a.reshape(-1)[0] = value
        arrays[key] = a
    return edit


def _store(key, convert):
    def edit(arrays):
        arrays[key] = convert(arrays[key])
    return edit


def _flip_byte(name, at=0.5):
    def tamper(folder):
        data = bytearray((folder / name).read_bytes())
        data[int(len(data) * at)] ^= 0xFF
        (folder / name).write_bytes(bytes(data))
    return tamper


def _truncate(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])


def _manifest(edit):
    return lambda f: _sidecar(f, lambda d: edit(d["files"]))


def _repeat_key(field, pair):
    """Writes `pair` (`"key": value`) first into the sidecar's object `field`, which then holds
    that key twice, the saved value last."""
    def tamper(folder):
        path = folder / "quantization.json"
        text, count = re.subn(rf'"{field}":\s*\{{', lambda m: m.group(0) + pair + ", ",
                              path.read_text(), count=1)
        assert count == 1
        path.write_text(text)
    return tamper


W = r".*/q/model\.safetensors"  # CheckpointError messages start "checkpoint <path>"
S = r".*/q/quantization\.json"


def _tensor(key, text):
    return rf"{W} tensor {re.escape(key)}: {text}"


CASES = {
    # -- the sidecar's dtype claims (resealed: the weights' tensors untouched)
    "int8 kernel said uint8": (_claim(INT8_KERNEL, "uint8"), CheckpointError,
                               _tensor(INT8_KERNEL, r"the sidecar \(quantization.json\) says dtype 'uint8', "
                                                    r"expected 'int8'")),
    "int8 kernel said float8": (_claim(INT8_KERNEL, "float8_e4m3fn"), CheckpointError,
                                _tensor(INT8_KERNEL, r".*says dtype 'float8_e4m3fn', expected 'int8'")),
    "int8 kernel said float32": (_claim(INT8_KERNEL, "float32"), CheckpointError,
                                 _tensor(INT8_KERNEL, r".*says dtype 'float32', expected 'int8'")),
    "static int8 kernel said int16": (_claim(STATIC_KERNEL, "int16"), CheckpointError,
                                      _tensor(STATIC_KERNEL, r".*says dtype 'int16', expected 'int8'")),
    "fp8 kernel said int8": (_claim(FP8_KERNEL, "int8"), CheckpointError,
                             _tensor(FP8_KERNEL, r".*says dtype 'int8', expected 'float8_e4m3fn'")),
    "fp8 kernel said uint8": (_claim(FP8_KERNEL, "uint8"), CheckpointError,
                              _tensor(FP8_KERNEL, r".*says dtype 'uint8', expected 'float8_e4m3fn'")),
    "fp16 kernel said float32": (_claim(FP16_KERNEL, "float32"), CheckpointError,
                                 _tensor(FP16_KERNEL, r".*says dtype 'float32', expected 'float16'")),
    "bf16 kernel said float16": (_claim(BF16_KERNEL, "float16"), CheckpointError,
                                 _tensor(BF16_KERNEL, r".*says dtype 'float16', expected 'bfloat16'")),
    "scale said float16": (_claim(INT8_SCALE, "float16"), CheckpointError,
                           _tensor(INT8_SCALE, r".*says dtype 'float16', expected 'float32'")),
    "embeddings said float32": (_claim("embeddings.word", "float32"), CheckpointError,
                                _tensor("embeddings.word", r".*says dtype 'float32', expected 'float16'")),
    "dtype entry removed": (lambda f: _sidecar(f, lambda d: d["dtypes"].pop(INT8_KERNEL)), CheckpointError,
                            _tensor(INT8_KERNEL, r".*says dtype None, expected 'int8'")),
    # -- consistent forgeries: the manifest matches, the values are checked
    "int8 kernel stored as float32": (_weights(_store(INT8_KERNEL, lambda a: a.astype(np.float32))),
                                      CheckpointError, _tensor(INT8_KERNEL, r"stored as float32, expected int8")),
    "int8 kernel stored as uint8": (_weights(_store(INT8_KERNEL, lambda a: a.view(np.uint8))),
                                    CheckpointError, _tensor(INT8_KERNEL, r"stored as uint8, expected int8")),
    "fp8 kernel stored as int8": (_weights(_store(FP8_KERNEL, lambda a: a.view(np.int8))), CheckpointError,
                                  _tensor(FP8_KERNEL, r"stored as int8, expected uint8 \(the bits of float8_e4m3fn\)")),
    "bf16 kernel stored as float16": (_weights(_store(BF16_KERNEL, lambda a: a.view(np.float16))), CheckpointError,
                                      _tensor(BF16_KERNEL, r"stored as float16, expected uint16 \(the bits of bfloat16\)")),
    "kernel of the wrong shape": (_weights(_store(INT8_KERNEL, lambda a: a[:, :-1].copy())), CheckpointError,
                                  rf"{W} does not match the model:\n  wrong shape: {re.escape(INT8_KERNEL)} has "
                                  r"\(30, 36\), expected \(30, 37\)"),
    "tensor missing": (_weights(lambda a: a.pop(ACT_SCALE)), CheckpointError,
                       rf"{W} does not match the model:\n  missing keys \(1\): \['{re.escape(ACT_SCALE)}'\]"),
    "tensor added": (_weights(lambda a: a.update({"extra.kernel": np.zeros(3, np.float32)})), CheckpointError,
                     rf"{W} does not match the model:\n  unexpected keys \(1\): \['extra.kernel'\]"),
    "int8 value -128": (_weights(_set(INT8_KERNEL, -128)), CheckpointError,
                        _tensor(INT8_KERNEL, r"INT8 value -128 found, expected \[-127, 127\]")),
    "static int8 value -128": (_weights(_set(STATIC_KERNEL, -128)), CheckpointError,
                               _tensor(STATIC_KERNEL, r"INT8 value -128 found, expected \[-127, 127\]")),
    **{f"kernel scale {name}": (_weights(_set(INT8_SCALE, value)), CheckpointError,
                                _tensor(INT8_SCALE, text))
       for name, value, text in [
           ("0", 0.0, r"scale 0.0 found, expected a finite scale >= 1e-12"),
           ("1e-30", 1e-30, r"scale 1\.0\d*e-30 found, expected a finite scale >= 1e-12"),
           ("negative", -0.5, r"scale -0.5 found, expected a finite scale >= 1e-12"),
           ("NaN", np.nan, r"non-finite values found, expected finite"),
           ("inf", np.inf, r"non-finite values found, expected finite"),
           ("-inf", -np.inf, r"non-finite values found, expected finite")]},
    "act scale 0": (_weights(_set(ACT_SCALE, 0.0)), CheckpointError, _tensor(ACT_SCALE, r"scale 0.0 found")),
    "act scale NaN": (_weights(_set(ACT_SCALE, np.nan)), CheckpointError, _tensor(ACT_SCALE, r"non-finite")),
    "fp8 scale 1e-30": (_weights(_set(FP8_SCALE, 1e-30)), CheckpointError, _tensor(FP8_SCALE, r"scale 1\.0\d*e-30 found")),
    "smoothing scale 0": (_weights(_set(INPUT_SCALE, 0.0)), CheckpointError, _tensor(INPUT_SCALE, r"scale 0.0 found")),
    "NaN embedding row": (_weights(_set("embeddings.word", np.nan)), CheckpointError,
                          _tensor("embeddings.word", r"non-finite values found, expected finite")),
    "Inf position embedding": (_weights(_set("embeddings.position", np.inf)), CheckpointError,
                               _tensor("embeddings.position", r"non-finite values")),
    "NaN fp16 kernel": (_weights(_set(FP16_KERNEL, np.nan)), CheckpointError, _tensor(FP16_KERNEL, r"non-finite")),
    "NaN bf16 kernel": (_weights(_set(BF16_KERNEL, 0x7FC0)), CheckpointError,  # the bits of a bfloat16 NaN
                        _tensor(BF16_KERNEL, r"non-finite")),
    "NaN fp8 kernel": (_weights(_set(FP8_KERNEL, 0x7F)), CheckpointError,  # the bits of a float8_e4m3fn NaN
                       _tensor(FP8_KERNEL, r"non-finite")),
    "NaN LayerNorm scale": (_weights(_set(f"{L0}.attn_norm.scale", np.nan)), CheckpointError,
                            _tensor(f"{L0}.attn_norm.scale", r"non-finite")),
    "NaN bias": (_weights(_set("encoder.layers.1.qkv.bias", np.nan)), CheckpointError,
                 _tensor("encoder.layers.1.qkv.bias", r"non-finite")),
    "Inf head kernel": (_weights(_set("head.classifier.kernel", np.inf)), CheckpointError,
                        _tensor("head.classifier.kernel", r"non-finite")),
    # -- what the manifest catches
    "plausible altered scale": (_weights(lambda a: a.update({INT8_SCALE: a[INT8_SCALE] * np.float32(1.01)}),
                                         manifest=False), CheckpointError,
                                rf"{W} does not match the manifest: found \d+ bytes, sha256 [0-9a-f]{{16}}\.\.\., "
                                r"expected \d+ bytes, sha256 [0-9a-f]{16}\.\.\."),
    "flipped byte in weights": (_flip_byte("model.safetensors"), CheckpointError, rf"{W} does not match the manifest"),
    "flipped byte in header": (_flip_byte("model.safetensors", at=0.001), CheckpointError,
                               rf"{W} does not match the manifest"),
    "truncated weights": (_truncate, CheckpointError, rf"{W} does not match the manifest: found \d+ bytes"),
    "weights removed": (lambda f: (f / "model.safetensors").unlink(), FileNotFoundError,
                        r"/q has no model\.safetensors"),
    "tokenizer file removed": (lambda f: (f / "tokenizer.json").unlink(), CheckpointError,
                               r".*/q/tokenizer\.json is listed in the manifest but missing"),
    "tokenizer file altered": (_flip_byte("tokenizer.json"), CheckpointError,
                               r".*/q/tokenizer\.json does not match the manifest"),
    "vocab altered": (_flip_byte("vocab.txt"), CheckpointError, r".*/q/vocab\.txt does not match the manifest"),
    "weights left out of the manifest": (_manifest(lambda files: files.pop("model.safetensors")), CheckpointError,
                                         rf"{S} has no file manifest entry for model\.safetensors"),
    "tokenizer left out of the manifest": (_manifest(lambda files: files.pop("tokenizer.json")), CheckpointError,
                                           rf"{S} has no file manifest entry for tokenizer\.json"),
    "manifest names a path outside": (_manifest(lambda files: files.update({"../x": {"sha256": "0", "bytes": 1}})),
                                      CheckpointError,
                                      rf"{S} lists '\.\./x' in its file manifest, expected a plain file name"),
    "manifest entry not an object": (_manifest(lambda files: files.update({"vocab.txt": "abc"})), CheckpointError,
                                     r".*/q/vocab\.txt does not match the manifest: .* expected 'abc'"),
    # -- the sidecar's structure
    "sidecar not JSON": (lambda f: (f / "quantization.json").write_text("{not json"), ValueError,
                         rf"{S[2:]} is not valid JSON"),
    "sidecar not UTF-8": (lambda f: (f / "quantization.json").write_bytes(b"\xff\xfe{}"), ValueError,
                          rf"{S[2:]} is not valid JSON"),
    "sidecar a list": (lambda f: (f / "quantization.json").write_text("[1, 2]"), ValueError,
                       rf"{S[2:]} is not a samp-jax-quantized sidecar .*: found list, expected a JSON object"),
    "sidecar of another format": (_field("format", "other"), ValueError,
                                  rf"{S[2:]} is not a samp-jax-quantized sidecar .*: found format 'other'"),
    "sidecar of a future version": (_field("format_version", 99), ValueError, r"found format .* version 99"),
    "manifest missing": (lambda f: _sidecar(f, lambda d: d.pop("files")), ValueError,
                         rf"{S[2:]}: field 'files' is missing or null, expected an object"),
    "dtypes a list": (_field("dtypes", []), ValueError, rf"{S[2:]}: field 'dtypes' is a list, expected an object"),
    "config missing": (lambda f: _sidecar(f, lambda d: d.pop("config")), ValueError,
                       rf"{S[2:]}: field 'config' is missing or null, expected an object"),
    "compute dtype int8": (_field("dtype", "int8"), ValueError,
                           rf"{S[2:]}: field 'dtype' is 'int8', expected one of \('float16', 'bfloat16', 'float32'\)"),
    "config heads do not divide": (lambda f: _sidecar(f, lambda d: d["config"].update(num_attention_heads=7)),
                                   ValueError, rf"{S[2:]}: field 'config': .*hidden_size=30 must be divisible"),
    "precision map malformed": (_field("precision_map", {"rules": 3}), ValueError,
                                rf"{S[2:]}: field 'precision_map': "),
    # a key given twice: JSON keeps the last value, the one saved, so the seal matches
    "precision map key given twice": (_repeat_key("precision_map", '"num_layers": 5'), ValueError,
                                      rf"{S[2:]}: key 'num_layers' appears more than once in "
                                      r"precision_map; expected each key once"),
    "precision map for other layers": (lambda f: _sidecar(f, lambda d: d["precision_map"].update(num_layers=3)),
                                       ValueError, rf"{S[2:]}: field 'precision_map' has num_layers=3, expected 2"),
    "unknown head kind": (_field("head", {"kind": "nonsense", "spec": {}}), ValueError,
                          rf"{S[2:]}: field 'head' or 'precision_map' does not build a model: .*nonsense"),
    "tokenizer field a list": (_field("tokenizer", ["tokenizer.json"]), ValueError,
                               rf"{S[2:]}: field 'tokenizer' is a list, expected a file name or null"),
    "unknown GEMM implementation": (
        lambda f: _sidecar(f, lambda d: d["info"].update(implementation="cublas-fp4")), ValueError,
        rf"{S[2:]}: field 'info.implementation'='cublas-fp4' is not a registered GEMM "
        r"implementation; expected None or one of \("),
    "source fingerprint not a sha256": (
        lambda f: _sidecar(f, lambda d: d["info"].update(source_fingerprint="abc")), ValueError,
        rf"{S[2:]}: field 'info.source_fingerprint' is 'abc', expected a sha256 \(64 lowercase "
        r"hex digits"),
    "source fingerprint a list": (
        lambda f: _sidecar(f, lambda d: d["info"].update(source_fingerprint=["0" * 64])),
        ValueError, rf"{S[2:]}: field 'info.source_fingerprint' is a list, expected a sha256"),
}


@pytest.mark.parametrize("case", CASES)
def test_tampered_quantized_folder_is_refused(folder, case):
    tamper, error, message = CASES[case]
    tamper(folder)
    with pytest.raises(error, match=message):
        QuantizedModel.load(folder)
    with pytest.raises(error, match=message):  # and through the one-call loader
        samp_jax.load(folder, tokenizer=samp_jax.Tokenizer.from_pretrained(HF))


# ------------------------------------------------------------------ the sealed sidecar
def _unsealed(edit):
    """Edits the sidecar alone, as a hand edit would (its copy in the weights' header kept)."""
    return lambda f: _sidecar(f, edit, seal=False)


def _edit_tokenizer_config(folder):
    """`do_lower_case` flipped, and the file dropped from the manifest so no hash covers it."""
    path = folder / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "do_lower_case": False}))
    _sidecar(folder, lambda d: d["files"].pop("tokenizer_config.json"), seal=False)


EDITED = r".*/q/quantization\.json was edited after saving: "
SIDECAR_EDITS = {  # each still parses and builds a model: only the seal refuses it
    "hidden_act": (_unsealed(lambda d: d["config"].update(hidden_act="relu")),
                   r'config\.hidden_act is "relu", saved as "gelu"'),
    "layer_norm_eps": (_unsealed(lambda d: d["config"].update(layer_norm_eps=1e-3)),
                       r"config\.layer_norm_eps is 0\.001, saved as 1e-12"),
    "attention heads": (_unsealed(lambda d: d["config"].update(num_attention_heads=5)),
                        r"config\.num_attention_heads is 5, saved as 3"),
    "labels swapped": (_unsealed(lambda d: d["head"]["spec"]["labels"].reverse()),
                       r"head\.spec\.labels\[0\] is \S+, saved as \S+; head\.spec\.labels\[\d\]"),
    "pooler activation": (_unsealed(lambda d: d["head"]["spec"].update(activation="relu")),
                          r'head\.spec\.activation is "relu", saved as "tanh"'),
    "cross-encoder activation added": (
        _unsealed(lambda d: d["head"]["spec"].update(cross_encoder_activation="Sigmoid")),
        r'head\.spec\.cross_encoder_activation "Sigmoid" was added'),
    "map clip added": (_unsealed(lambda d: d["precision_map"]["rules"][0].update(clip=100.0)),
                       r"precision_map\.rules\[0\]\.clip 100\.0 was added"),
    "map rule removed": (_unsealed(lambda d: d["precision_map"]["rules"].pop()),
                         r"precision_map\.rules is \[.*, saved as \[.*"),
    "bool for an int": (_unsealed(lambda d: d["config"].update(type_vocab_size=True)),
                        r"config\.type_vocab_size is true, saved as 2"),
    "implementation pinned": (_unsealed(lambda d: d["info"].update(implementation="xla")),
                              r'info\.implementation is "xla", saved as null'),
    "tokenizer file dropped from the manifest": (
        _edit_tokenizer_config, r"files\.tokenizer_config\.json is missing, saved as \{"),
    "set back to version 2": (_unsealed(lambda d: d.update(format_version=2)),
                              r"format_version is 2, saved as 3"),
}


@pytest.mark.parametrize("case", SIDECAR_EDITS)
def test_an_edited_sidecar_is_refused_naming_what_differs(folder, case):
    """The manifest hashes every other file; the sidecar is covered by its copy in the weights'
    header. An edit that parses and builds a model (another activation, epsilon, head count,
    label order, clip) gave other outputs or labels without a word."""
    edit, differs = SIDECAR_EDITS[case]
    edit(folder)
    with pytest.raises(CheckpointError, match=EDITED + differs):
        QuantizedModel.load(folder)
    with pytest.raises(CheckpointError, match=EDITED + differs):
        samp_jax.load(folder)


def test_sealed_weights_without_their_copy_are_refused(folder):
    """A version-3 sidecar with weights whose header holds no copy (the weights and their
    manifest entry rewritten) is refused, naming the weights and the metadata key."""
    save_file(load_file(str(folder / "model.safetensors")), str(folder / "model.safetensors"))
    _sidecar(folder, lambda d: d["files"].update({"model.safetensors": _file_digest(
        folder / "model.safetensors")}), seal=False)
    with pytest.raises(CheckpointError, match=rf"{W} has no copy of quantization\.json in its "
                       rf"header \(metadata '{SEAL_KEY}'\), expected one for format_version 3"):
        QuantizedModel.load(folder)


def test_a_version_2_folder_loads_with_a_warning(original, folder):
    """Folders written before the seal (version 2: no copy in the weights' header) still load,
    bit-exactly, with a warning that an edit to their sidecar cannot be detected."""
    q, _ = original
    save_file(load_file(str(folder / "model.safetensors")), str(folder / "model.safetensors"))
    _sidecar(folder, lambda d: (d.update(format_version=2), d["files"].update(
        {"model.safetensors": _file_digest(folder / "model.safetensors")})), seal=False)
    batch = q.tokenizer(TEXTS)
    with pytest.warns(SidecarNotSealedWarning, match=r"/q/quantization\.json is format_version 2, "
                      r"whose fields .* no hash covers.* Save the model again"):
        loaded = samp_jax.load(folder)
    np.testing.assert_array_equal(np.asarray(loaded(**batch)), np.asarray(q(**batch)))


# ------------------------------------------------------------------------- HF checkpoints
HF_KEY = "bert.encoder.layer.0.output.dense.weight"
HF_W = r".*/hf/model\.safetensors tensor encoder\.layer\.0\.output\.dense\.weight"
HF_C = r".*/hf/config\.json"


def _hf_tensor(value_fn):
    def tamper(folder):
        arrays = load_file(str(folder / "model.safetensors"))
        arrays[HF_KEY] = value_fn(arrays[HF_KEY])
        save_file(arrays, str(folder / "model.safetensors"))
    return tamper


def _hf_config(change):
    def tamper(folder):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | change))
    return tamper


def _truncate(name, length):
    def tamper(folder):
        (folder / name).write_bytes((folder / name).read_bytes()[:length])
    return tamper


def _with(value):
    def edit(a):
        a = a.copy()
        a[0, 0] = value
        return a
    return edit


HF_CASES = {
    "int32 tensor": (_hf_tensor(lambda a: a.astype(np.int32)), CheckpointError,
                     rf"{HF_W} has dtype int32, expected a float dtype \(float32, float16 or bfloat16\)"),
    "int8 tensor": (_hf_tensor(lambda a: a.astype(np.int8)), CheckpointError, rf"{HF_W} has dtype int8, expected a float"),
    "bool tensor": (_hf_tensor(lambda a: a > 0), CheckpointError, rf"{HF_W} has dtype bool, expected a float"),
    "NaN tensor": (_hf_tensor(_with(np.nan)), CheckpointError,
                   rf"{HF_W} has non-finite values \(NaN or Inf\), expected finite"),
    "Inf tensor": (_hf_tensor(_with(np.inf)), CheckpointError, rf"{HF_W} has non-finite values"),
    "-Inf tensor": (_hf_tensor(_with(-np.inf)), CheckpointError, rf"{HF_W} has non-finite values"),
    "negative layer_norm_eps": (_hf_config({"layer_norm_eps": -1e-12}), ConfigError,
                                rf"{HF_C}: layer_norm_eps=-1e-12 must be a positive number"),
    "zero layer_norm_eps": (_hf_config({"layer_norm_eps": 0}), ConfigError,
                            rf"{HF_C}: layer_norm_eps=0 must be a positive number"),
    "heads do not divide hidden": (_hf_config({"num_attention_heads": 7}), ConfigError,
                                   rf"{HF_C}: hidden_size=30 must be divisible by num_heads=7"),
    "config not JSON": (lambda f: (f / "config.json").write_text("{"), ConfigError, rf"{HF_C} is not valid JSON"),
    "config a list": (lambda f: (f / "config.json").write_text("[]"), ConfigError,
                      rf"{HF_C} must hold a JSON object, got list"),
    "tokenizer.json truncated": (_truncate("tokenizer.json", 300), ValueError,
                                 r".*/hf/tokenizer\.json is not a readable fast tokenizer \(.*\); "
                                 r"expected the tokenizer\.json an HF tokenizer saves"),
    "tokenizer_config.json not JSON": (_truncate("tokenizer_config.json", 20), ValueError,
                                       r".*/hf/tokenizer_config\.json is not valid JSON \(.*, line "
                                       r"\d+\); expected a JSON object"),
    "tokenizer_config.json a list": (lambda f: (f / "tokenizer_config.json").write_text("[1]"),
                                     ValueError, r".*/hf/tokenizer_config\.json holds a JSON list; "
                                     "expected an object"),
    "tokenizer.json not UTF-8": (lambda f: (f / "tokenizer.json").write_bytes(b"\xff\xfe{"),
                                 ValueError, r".*/hf/tokenizer\.json is not UTF-8 text"),
}


@pytest.mark.parametrize("case", HF_CASES)
def test_tampered_hf_checkpoint_is_refused(tmp_path, case):
    folder = shutil.copytree(HF, tmp_path / "hf")
    tamper, error, message = HF_CASES[case]
    tamper(folder)
    with pytest.raises(error, match=message):
        samp_jax.load(folder)


def test_a_bfloat16_hf_checkpoint_still_loads(tmp_path):
    """The float check accepts bfloat16 (an ml_dtypes type numpy does not call floating)."""
    folder = shutil.copytree(HF, tmp_path / "hf")
    arrays = load_flax(str(folder / "model.safetensors"))
    save_flax({k: v.astype("bfloat16") for k, v in arrays.items()}, str(folder / "model.safetensors"))
    model = samp_jax.load(folder)
    reference = samp_jax.load(HF)
    batch = reference.tokenizer(TEXTS)
    np.testing.assert_allclose(np.asarray(model(**batch)), np.asarray(reference(**batch)), atol=0.05)


# --------------------------------------------------------------- sentence-transformers
@pytest.mark.parametrize("key, value", [
    ("pooling_mode_cls_token", "false"), ("pooling_mode_mean_tokens", "true"),
    ("pooling_mode_max_tokens", 0), ("pooling_mode_cls_token", None), ("include_prompt", "true"),
])
def test_pooling_flags_that_are_not_booleans_are_refused(tmp_path, key, value):
    """`"false"` is a non-empty string, so truthy: read as true it doubled the embedding."""
    write_st_files(tmp_path, hidden_size=8, modes=("mean",), normalize=False)
    config_file = tmp_path / "1_Pooling" / "config.json"
    config = json.loads(config_file.read_text())
    config[key] = value
    config_file.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=rf".*/1_Pooling/config\.json: {key} is {re.escape(repr(value))} "
                                          r"\(\w+\); expected true or false"):
        read_pooling(tmp_path)


def test_boolean_pooling_flags_read_as_declared(tmp_path):
    write_st_files(tmp_path, hidden_size=8, modes=("cls", "mean"), normalize=True)
    assert read_pooling(tmp_path).modes == ("cls", "mean") and read_pooling(tmp_path).normalize
