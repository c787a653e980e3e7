"""Post-training quantization of an `EncoderModel` under a precision map.

`quantize(model, precision_map, calibration)` returns a `QuantizedModel`: a copy of the model
whose GEMM sites are `QuantizedGemmSite`s holding INT8 / FP8 weights with their scales (the
float copies are dropped) or 16/32-bit float weights, as the map says. Embeddings, LayerNorm
outputs, attention and the activations between sites run in the compute `dtype` (FP16 by
default, as deployed on GPU); heads stay in FP32. The copy keeps the source's tokenizer and
class names, and `QuantizedModel.save` writes them too, so a saved folder is self-contained:
`samp_jax.load(dir)` gives back a model ready to serve.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from pallas_kernels.numerics import INT8_MAX, SCALE_EPS
from samp_jax.core.atomic import atomic_folder, check_not_interrupted
from samp_jax.models.checkpoint import CheckpointError
from samp_jax.models.config import EncoderConfig
from samp_jax.models.layers import Embeddings, GemmSite
from samp_jax.models.model import EncoderModel, head_spec, make_head
from samp_jax.models.tokenizer import TOKENIZER_FILE, Tokenizer, check_fits
from samp_jax.ops.dispatch import Activation, gemm, site_implementation
from samp_jax.ops.handoff import Int8Input
from samp_jax.core.precision import SITES, PrecisionMap, PrecisionMapError, SitePrecision, precision_of_dtype
from samp_jax.core.primitives import FP8_E4M3_MAX, QArray, quantize_weight_fp8, quantize_weight_int8
from samp_jax.core.version import __version__

FORMAT = "samp-jax-quantized"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # v1: before the file manifest (read without hash verification)
WEIGHTS_FILE = "model.safetensors"
SIDECAR_FILE = "quantization.json"
COMPUTE_DTYPES = ("float16", "bfloat16", "float32")
# How `save` stores dtypes safetensors' numpy API lacks: their bits, as unsigned integers.
_STORED_AS = {"bfloat16": "uint16", "float8_e4m3fn": "uint8"}


class QuantizedVariable(nnx.Variable):
    """Weights and scales of a quantized model: stored, never trained."""


@dataclasses.dataclass(frozen=True)
class SiteCalibration:
    """Calibrated statistics of one GEMM site's (possibly smoothed) input.

    Attributes:
      absmax: max |x| over the calibration set (the FP8 clip).
      amax: the calibrator's INT8 clip (e.g. a percentile of |x|).
      input_scale: SmoothQuant `1 / s` per input channel, or None without smoothing.
    """

    absmax: float
    amax: float
    input_scale: np.ndarray | None = None


class QuantizedGemmSite(nnx.Module):
    """A GEMM site whose weights are stored at its precision-map precision.

    Same call interface as `GemmSite`. Quantized sites keep `kernel` as INT8 (per-channel
    `kernel_scale [out]`) or FP8 (per-tensor `kernel_scale []`); float sites keep `kernel` in
    their float dtype. Static activation schemes carry `act_scale`; smoothed sites carry
    `input_scale [in]`, which multiplies the input inside the quantize step.
    """

    observer = None

    def __init__(self, in_features: int, out_features: int, *, site: str,
                 precision: SitePrecision, dtype=jnp.float16, smoothed: bool = False,
                 implementation: str | None = None):
        if precision.precision == "int8":
            self.kernel = QuantizedVariable(jnp.zeros((in_features, out_features), jnp.int8))
            self.kernel_scale = QuantizedVariable(jnp.ones((out_features,), jnp.float32))
        elif precision.precision == "fp8_e4m3":
            self.kernel = QuantizedVariable(jnp.zeros((in_features, out_features), jnp.float8_e4m3fn))
            self.kernel_scale = QuantizedVariable(jnp.ones((), jnp.float32))
        else:
            self.kernel = QuantizedVariable(jnp.zeros((in_features, out_features), precision.float_dtype))
            self.kernel_scale = None
        self.bias = QuantizedVariable(jnp.zeros((out_features,), jnp.float32))
        self.act_scale = QuantizedVariable(jnp.ones((), jnp.float32)) if precision.needs_calibration else None
        smoothed = smoothed and precision.is_quantized
        self.input_scale = QuantizedVariable(jnp.ones((in_features,), jnp.float32)) if smoothed else None
        self.site = site
        self.precision = precision
        self.dtype = dtype
        # a model pinned to a kernel that does not run this precision keeps this site on XLA
        self.implementation = site_implementation(implementation, precision)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.kernel.shape)

    @classmethod
    def from_float(cls, source: GemmSite, precision: SitePrecision, *, dtype,
                   calibration: SiteCalibration | None = None,
                   implementation: str | None = None) -> "QuantizedGemmSite":
        """Quantizes a float `GemmSite` (folding any smoothing into the weights).

        Raises:
          ValueError: a static site without calibration, or whose calibrated clip (`amax` for
            INT8, `absmax` for FP8) or SmoothQuant `input_scale` is NaN, Inf, zero or negative
            (the message names the site and the value; nothing is clamped into a number).
        """
        n_in, n_out = source.shape
        if precision.needs_calibration and calibration is None:
            raise ValueError(f"site {source.site!r} at {precision} needs calibration statistics")
        input_scale = calibration.input_scale if calibration is not None else None
        smoothed = input_scale is not None and precision.is_quantized
        if smoothed:
            _check_input_scale(source.site, precision, input_scale)
        site = cls(n_in, n_out, site=source.site, precision=precision, dtype=dtype,
                   smoothed=smoothed, implementation=implementation)
        w = jnp.asarray(source.kernel[...], jnp.float32)
        if smoothed:  # (x / s) @ (s * W): the GEMM is unchanged in exact arithmetic
            w = w / jnp.asarray(input_scale, jnp.float32)[:, None]
            site.input_scale.set_value(jnp.asarray(input_scale, jnp.float32))
        if precision.precision == "int8":
            q = quantize_weight_int8(w)
            site.kernel.set_value(q.qvalue)
            site.kernel_scale.set_value(q.scale)
        elif precision.precision == "fp8_e4m3":
            q = quantize_weight_fp8(w)
            site.kernel.set_value(q.qvalue)
            site.kernel_scale.set_value(q.scale)
        else:
            site.kernel.set_value(w.astype(precision.float_dtype))
        site.bias.set_value(jnp.asarray(source.bias[...], jnp.float32))
        if precision.needs_calibration:
            scale = _activation_scale(source.site, precision, calibration)
            site.act_scale.set_value(jnp.asarray(scale, jnp.float32))
        return site

    def recalibrate(self, calibration: SiteCalibration) -> None:
        """Sets the static activation scale from another clip of the same observation.

        Only `act_scale` changes (weights and any smoothing folded into them stay), so a
        compiled program that takes this site's state runs the new scale without recompiling.

        Raises:
          ValueError: the site has no static scale, or the clip is not finite and positive.
        """
        if self.act_scale is None:
            raise ValueError(f"site {self.site!r} at {self.precision} has no static activation scale")
        self.act_scale.set_value(jnp.asarray(
            _activation_scale(self.site, self.precision, calibration), jnp.float32))

    def weight(self) -> jax.Array | QArray:
        if self.precision.is_quantized:
            return QArray(self.kernel[...], self.kernel_scale[...], self.precision.precision)
        return self.kernel[...]

    def int8_input(self) -> Int8Input | None:
        """How this site quantizes its input when it is an INT8 site (else None): what an
        upstream kernel must do to hand it INT8 (`samp_jax.ops.handoff`)."""
        if self.precision.precision != "int8":
            return None
        return Int8Input(act_scale=None if self.act_scale is None else self.act_scale[...],
                         input_scale=None if self.input_scale is None else self.input_scale[...])

    def __call__(self, x: jax.Array | QArray, *, activation: Activation = None,
                 residual: jax.Array | None = None, out_dtype=None, out_scale=None) -> jax.Array:
        """`x` is float, or (INT8 sites) a `QArray` quantized upstream as `int8_input`
        says. `out_dtype=int8` with `out_scale` requantizes the output for the next GEMM."""
        if self.observer is not None:
            self.observer(x)
        return gemm(
            x, self.weight(), precision=self.precision, bias=self.bias[...],
            activation=activation, residual=residual,
            act_scale=None if self.act_scale is None else self.act_scale[...],
            input_scale=None if self.input_scale is None else self.input_scale[...],
            out_dtype=out_dtype or self.dtype, out_scale=out_scale,
            implementation=self.implementation)


def _activation_scale(site: str, precision: SitePrecision, calibration: SiteCalibration) -> float:
    """The static activation scale calibration gives `site`: its clip over the format's largest
    value (`absmax / 448` for FP8, `amax / 127` for INT8), at least `SCALE_EPS`.

    Raises:
      ValueError: the clip is NaN, Inf, zero or negative. `calibrate.calibrate` never gives
        one (its clips are at least 1e-8); a hand-made or damaged calibration may, and `max`
        would turn NaN, zero or a negative clip into a plausible scale.
    """
    field = "absmax" if precision.precision == "fp8_e4m3" else "amax"
    value = float(getattr(calibration, field))
    clip = value / (FP8_E4M3_MAX if field == "absmax" else INT8_MAX)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"site {site!r} at {precision}: calibration {field}={value} gives "
                         f"activation scale {clip}, expected a finite value > 0 (did the "
                         "calibration data hold NaN or Inf, or was it edited?)")
    return max(clip, SCALE_EPS)


def _check_input_scale(site: str, precision: SitePrecision, input_scale) -> None:
    """Raises ValueError unless every SmoothQuant `input_scale` entry (`1 / s` per input
    channel) is finite and positive; the message names the site, a bad channel and its value."""
    values = np.asarray(input_scale, np.float64).ravel()
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if bad.size:
        raise ValueError(f"site {site!r} at {precision}: calibration input_scale (SmoothQuant "
                         f"1/s) is {float(values[bad[0]])} at input channel {int(bad[0])} "
                         f"({bad.size} of {values.size} channels bad), expected finite values > 0")


def set_compute_dtype(model: EncoderModel, dtype) -> None:
    """Switches embeddings, LayerNorms and layers to `dtype`; stores embedding tables in it."""
    model.dtype = jnp.dtype(dtype)
    emb: Embeddings = model.embeddings
    for table in (emb.word, emb.position, emb.token_type):
        if table is not None:
            table.set_value(table[...].astype(dtype))
    modules = [emb.norm]
    for layer in model.encoder.layers:
        modules += [layer.attn_norm, layer.ffn_norm]
    for module in modules:
        module.dtype = dtype


def compute_copy(model: EncoderModel, dtype, *, embedding_project: SitePrecision | None = None,
                 implementation: str | None = None) -> EncoderModel:
    """A copy of `model` set up to run in `dtype` between GEMM sites, as `quantize` (and the
    search's candidate models) start from: embeddings and LayerNorms in `dtype`, and an
    ELECTRA-style embedding projection at `embedding_project` (default: `dtype`). The layer
    sites are left to the caller."""
    copy = nnx.clone(model)
    set_compute_dtype(copy, dtype)
    if copy.embeddings.project is not None:
        precision = embedding_project or SitePrecision(precision_of_dtype(dtype))
        copy.embeddings.project = QuantizedGemmSite.from_float(
            copy.embeddings.project, precision, dtype=dtype, implementation=implementation)
    return copy


def embedding_project_precision(precision_map: PrecisionMap, dtype) -> SitePrecision:
    """The precision of an ELECTRA-style embedding projection: the map's `embedding_project`,
    else the compute dtype."""
    return precision_map.embedding_project or SitePrecision(precision_of_dtype(dtype))


def _state_bytes(module: nnx.Module) -> int:
    leaves = jax.tree.leaves(nnx.state(module))
    return int(sum(leaf.size * leaf.dtype.itemsize for leaf in leaves))


class QuantizedModel(nnx.Module):
    """An `EncoderModel` whose GEMM sites run at the precisions of `precision_map`.

    Call it like the model it came from. `save(dir)` / `QuantizedModel.load(dir)` round-trip
    bit-exactly (safetensors plus a JSON sidecar with the map, the calibration, the head's
    kind, class names and pooling, and versions) and carry the tokenizer as its own files.
    """

    def __init__(self, model: EncoderModel, precision_map: PrecisionMap, *, info: dict[str, Any]):
        self.model = model
        self.precision_map = precision_map
        # JSON text, not a dict: static attributes must hash (the graphdef is a jit key).
        self._info = json.dumps(info, sort_keys=True)

    @property
    def info(self) -> dict[str, Any]:
        """Provenance: source parameter bytes, calibration summary, GEMM implementation."""
        return json.loads(self._info)

    @property
    def config(self) -> EncoderConfig:
        return self.model.config

    @property
    def head_kind(self) -> str:
        return self.model.head_kind

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The head's class names, or None."""
        return self.model.labels

    @property
    def tokenizer(self) -> Tokenizer | None:
        """The tokenizer travelling with the model (`EncoderModel.tokenizer`), or None."""
        return self.model.tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: Tokenizer | None) -> None:
        self.model.tokenizer = tokenizer

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.model(input_ids, attention_mask, token_type_ids)

    def encode(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.model.encode(input_ids, attention_mask, token_type_ids)

    def memory_report(self) -> dict[str, int | float]:
        """Parameter bytes before (FP32 source) and after quantization."""
        after = _state_bytes(self.model)
        before = self.info["source_bytes"]
        return {"source_bytes": before, "quantized_bytes": after, "saved_bytes": before - after,
                "ratio": after / before}

    # ---------------------------------------------------------------------- save / load
    def save(self, directory: str | Path) -> Path:
        """Writes `model.safetensors`, the tokenizer's files (when the model has a tokenizer)
        and `quantization.json` into `directory`; returns the folder.

        `quantization.json` (format v2) holds `format`, `format_version`, `config`, `head`,
        `tokenizer`, `dtype` (compute dtype), `precision_map`, `info`, `dtypes` (every tensor's
        dtype) and `versions`, and is the manifest: `files` maps every other file's name to
        `{"sha256", "bytes"}`. The sidecar itself is not hashed: `load` parses and validates
        every field it uses, and a changed field that still parses (say a dtype) must agree
        with the hashed weights, or loading refuses.

        Atomic (`samp_jax.core.atomic`): the folder is written beside `directory` and renamed into
        place, so a crash leaves the previous model whole. Saving over a model folder replaces
        the whole folder (files `save` does not write are not kept); a non-empty folder that
        holds no model (no `quantization.json` / `config.json`) is refused before writing.

        Raises:
          FileExistsError: `directory` is a file, or a non-empty folder that holds no model.
          ValueError: the head is a kind nothing could load back.
        """
        directory = Path(directory)
        head = head_spec(self.model.head)  # refuses a head nothing could load back, before writing
        arrays, dtypes = {}, {}
        for key, value in _flat_state(self.model).items():
            value = np.asarray(value)
            dtypes[key] = value.dtype.name
            # safetensors' numpy API lacks bfloat16/float8: store their bits, keep the dtype.
            if value.dtype.name in _STORED_AS:
                value = value.view(_STORED_AS[value.dtype.name])
            arrays[key] = np.array(value, order="C")  # ascontiguousarray would make scalars 1-D
        with atomic_folder(directory) as tmp:  # replaces model folders only (atomic.is_model_folder)
            save_file(arrays, str(tmp / WEIGHTS_FILE))
            if self.tokenizer is not None:
                self.tokenizer.save(tmp)
            sidecar = {
                "format": FORMAT, "format_version": FORMAT_VERSION,
                "config": self.config.to_hf_dict(),
                "head": head,
                "tokenizer": None if self.tokenizer is None else TOKENIZER_FILE,
                "dtype": jnp.dtype(self.model.dtype).name,
                "precision_map": self.precision_map.to_dict(),
                "info": self.info, "dtypes": dtypes, "versions": _versions(),
                "files": {p.name: _file_digest(p) for p in sorted(tmp.iterdir()) if p.is_file()},
            }
            (tmp / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, tokenizer: Tokenizer | None = None) -> "QuantizedModel":
        """Reads a model written by `save`, with its class names and tokenizer.

        Checks, all before anything is assigned (nothing is half-loaded):

        - format v2: every file the manifest (`files` in `quantization.json`) lists exists with
          its sha256 and size. Files it does not list (a tokenizer copied in later) are not
          checked. Format v1 folders, written before the manifest, still load, without this
          check: an altered but plausible value in a v1 file is not detected.
        - the sidecar: a JSON object with every field `load` uses, of the right type.
        - every tensor: the dtype the sidecar records is the one the precision map and head
          imply (int8 kernels at INT8 sites, float8_e4m3fn at FP8 sites, the site's float dtype
          at float sites, float32 scales and biases, the compute dtype for embeddings and
          LayerNorms) and the stored bits have that width; the shape; INT8 values in
          [-127, 127]; every scale finite and at least `SCALE_EPS`; every float finite.

        Args:
          directory: the folder `save` wrote.
          tokenizer: attach this tokenizer instead of the folder's `tokenizer.json`. Without
            either, the model has no tokenizer (`samp_jax.load` insists on one).

        Raises:
          FileNotFoundError: no weights or no sidecar; when the folder is missing because a
            save was interrupted between its two renames, the message says where the previous
            model is (`samp_jax.core.atomic`).
          ValueError: the sidecar is not valid JSON, not this format, or a field is missing
            or malformed (the message names the file and the field).
          CheckpointError: a file differs from the manifest, or a tensor does not match the
            layout, dtypes and value ranges the sidecar describes (the message names the file,
            the tensor, what was found and what was expected).
        """
        directory = Path(directory)
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a samp_jax.Tokenizer, got {type(tokenizer).__name__}")
        check_not_interrupted(directory)
        for name in (WEIGHTS_FILE, SIDECAR_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory} has no {name}")
        sidecar = _read_sidecar(directory / SIDECAR_FILE)
        if sidecar["format_version"] >= 2:
            _verify_files(directory, sidecar["files"], sidecar.get("tokenizer"))
        config, pmap, dtype, skeleton = _sidecar_model(directory / SIDECAR_FILE, sidecar)
        try:
            arrays = load_file(str(directory / WEIGHTS_FILE))
        except SafetensorError as e:  # truncated or not safetensors at all
            raise CheckpointError(directory / WEIGHTS_FILE,
                                  problem=f"is not a readable safetensors file ({e})") from None
        expected = _flat_state(skeleton)
        missing, unexpected = sorted(expected.keys() - arrays.keys()), sorted(arrays.keys() - expected.keys())
        mismatched = [(k, arrays[k].shape, tuple(expected[k].shape)) for k in expected.keys() & arrays.keys()
                      if tuple(arrays[k].shape) != tuple(expected[k].shape)]
        if missing or unexpected or mismatched:
            raise CheckpointError(directory / WEIGHTS_FILE, missing=missing, unexpected=unexpected,
                                  mismatched=mismatched)
        restored = {k: _checked_tensor(directory / WEIGHTS_FILE, k, arrays[k], sidecar["dtypes"].get(k),
                                       jnp.dtype(expected[k].dtype))
                    for k in sorted(expected)}
        _assign_flat_state(skeleton, restored)
        if tokenizer is None and (directory / TOKENIZER_FILE).is_file():
            tokenizer = Tokenizer.from_pretrained(directory)
        if tokenizer is not None:
            check_fits(tokenizer, config, str(directory))
        skeleton.tokenizer = tokenizer
        return cls(skeleton, pmap, info=sidecar["info"])


# Sidecar fields `load` uses, and their JSON types.
_SIDECAR_FIELDS = {"format": str, "format_version": int, "config": dict, "head": dict, "dtype": str,
                   "precision_map": dict, "info": dict, "dtypes": dict}


def _read_sidecar(path: Path) -> dict[str, Any]:
    """The parsed sidecar, after checking that it is this format and every field `load` uses
    is there with the right JSON type."""
    try:
        sidecar = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT \
            or type(sidecar.get("format_version")) is not int \
            or sidecar["format_version"] not in READABLE_VERSIONS:
        found = type(sidecar).__name__ if not isinstance(sidecar, dict) else \
            f"format {sidecar.get('format')!r} version {sidecar.get('format_version')!r}"
        raise ValueError(f"{path} is not a {FORMAT} sidecar of version {READABLE_VERSIONS}: found "
                         f"{found}, expected a JSON object with format {FORMAT!r}")
    fields = dict(_SIDECAR_FIELDS)
    if sidecar["format_version"] >= 2:
        fields["files"] = dict
    for key, kind in fields.items():
        if not isinstance(sidecar.get(key), kind):
            raise ValueError(f"{path}: field {key!r} is {_json_type(sidecar.get(key))}, expected "
                             f"{_json_type(kind())}")
    if sidecar["dtype"] not in COMPUTE_DTYPES:
        raise ValueError(f"{path}: field 'dtype' is {sidecar['dtype']!r}, expected one of {COMPUTE_DTYPES}")
    bad = [k for k, v in sidecar["dtypes"].items() if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{path}: field 'dtypes' has a non-string entry for {bad[0]!r}, expected a "
                         "dtype name")
    if sidecar.get("tokenizer") is not None and not isinstance(sidecar["tokenizer"], str):
        raise ValueError(f"{path}: field 'tokenizer' is {_json_type(sidecar['tokenizer'])}, expected "
                         "a file name or null")
    if not isinstance(sidecar["head"].get("kind"), str):
        raise ValueError(f"{path}: field 'head' has no 'kind' string")
    implementation = sidecar["info"].get("implementation")
    if implementation is not None and not isinstance(implementation, str):
        raise ValueError(f"{path}: field 'info.implementation' is {_json_type(implementation)}, "
                         "expected a string or null")
    return sidecar


def _json_type(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer",
             float: "a number", bool: "a boolean", type(None): "missing or null"}
    return names.get(type(value), type(value).__name__)


def _sidecar_model(path: Path, sidecar: dict[str, Any]):
    """`(config, precision_map, dtype, skeleton)` from the sidecar; a field that does not build
    raises a ValueError naming the file and the field."""
    try:
        config = EncoderConfig.from_hf_config(sidecar["config"])
    except ValueError as e:  # ConfigError
        raise ValueError(f"{path}: field 'config': {e}") from None
    try:
        pmap = PrecisionMap.from_dict(sidecar["precision_map"])
    except (PrecisionMapError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: field 'precision_map': {e}") from None
    if pmap.num_layers != config.num_layers:
        raise ValueError(f"{path}: field 'precision_map' has num_layers={pmap.num_layers}, expected "
                         f"{config.num_layers} (the config's)")
    dtype = jnp.dtype(sidecar["dtype"])
    smoothed = {key.split(".input_scale")[0] for key in sidecar["dtypes"] if key.endswith("input_scale")}
    try:
        skeleton = _skeleton(config, sidecar["head"], pmap, dtype, smoothed,
                             sidecar["info"].get("implementation"))
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: field 'head' or 'precision_map' does not build a model: "
                         f"{type(e).__name__}: {e}") from None
    return config, pmap, dtype, skeleton


def _file_digest(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def _verify_files(directory: Path, files: dict, tokenizer: str | None) -> None:
    """Every file the manifest lists exists with its size and sha256; the weights (and the
    tokenizer, when the sidecar names one) are listed."""
    for name in (WEIGHTS_FILE, tokenizer):
        if name is not None and name not in files:
            raise CheckpointError(directory / SIDECAR_FILE, problem=f"has no file manifest entry for "
                                  f"{name}, expected one for every file save wrote")
    for name, want in files.items():
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            raise CheckpointError(directory / SIDECAR_FILE, problem=f"lists {name!r} in its file "
                                  "manifest, expected a plain file name in the folder")
        path = directory / name
        if not path.is_file():
            raise CheckpointError(path, problem="is listed in the manifest but missing")
        got = _file_digest(path)
        if not isinstance(want, dict) or got != {"sha256": want.get("sha256"), "bytes": want.get("bytes")}:
            expected = f"{want.get('bytes')} bytes, sha256 {str(want.get('sha256'))[:16]}..." \
                if isinstance(want, dict) else f"{want!r:.60}"
            raise CheckpointError(path, problem=f"does not match the manifest: found {got['bytes']} bytes, "
                                  f"sha256 {got['sha256'][:16]}..., expected {expected} (the file was "
                                  "changed or damaged after saving)")


def _checked_tensor(file: Path, key: str, stored: np.ndarray, claimed: str | None, want) -> np.ndarray:
    """The stored array as `want` (the dtype the precision map implies), after checking the
    sidecar's dtype claim and the value range."""
    if claimed != want.name:
        raise CheckpointError(file, problem=f"tensor {key}: the sidecar ({SIDECAR_FILE}) says dtype "
                              f"{claimed!r}, expected {want.name!r} for this precision map")
    storage = _STORED_AS.get(want.name, want.name)
    if stored.dtype.name != storage:
        raise CheckpointError(file, problem=f"tensor {key}: stored as {stored.dtype}, expected {storage}"
                              + (f" (the bits of {want.name})" if storage != want.name else ""))
    value = _restore_dtype(stored, want.name)
    if want == jnp.int8:
        low = int(value.min()) if value.size else 0
        if low < -INT8_MAX:
            raise CheckpointError(file, problem=f"tensor {key}: INT8 value {low} found, expected "
                                  f"[-{int(INT8_MAX)}, {int(INT8_MAX)}] (symmetric quantization)")
        return value
    as_float = np.asarray(value, np.float32)
    if not np.all(np.isfinite(as_float)):
        raise CheckpointError(file, problem=f"tensor {key}: non-finite values found, expected finite")
    if key.endswith("_scale") and as_float.size and float(as_float.min()) < SCALE_EPS:
        raise CheckpointError(file, problem=f"tensor {key}: scale {float(as_float.min())!r} found, "
                              f"expected a finite scale >= {SCALE_EPS}")
    return value


def _head_from_sidecar(info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`(kind, spec)` for `make_head`, from this format's `{"kind", "spec"}` or the earlier
    `{"kind", "num_labels", "labels", "pooling"}`."""
    if "spec" in info:
        return info["kind"], dict(info["spec"])
    spec = {"num_labels": info.get("num_labels"), "labels": info.get("labels")}
    pooling = info.get("pooling") or {}
    if info["kind"] == "sentence_embedding":
        spec = {"pooling": pooling.get("mode", "mean"), "normalize": pooling.get("normalize", True)}
    return info["kind"], spec


def _restore_dtype(array: np.ndarray, name: str) -> np.ndarray:
    """Reinterprets the stored bits of bfloat16/float8 arrays (see `save`)."""
    dtype = jnp.dtype(name)
    return array if array.dtype == dtype else array.view(dtype)


def _skeleton(config, head_info, pmap, dtype, smoothed, implementation) -> EncoderModel:
    rngs = nnx.Rngs(0)
    kind, spec = _head_from_sidecar(head_info)
    model = EncoderModel(config, make_head(kind, config, rngs=rngs, **spec), dtype=jnp.float32,
                         rngs=rngs)
    set_compute_dtype(model, dtype)
    project = model.embeddings.project
    if project is not None:
        model.embeddings.project = QuantizedGemmSite(
            *project.shape, site=project.site, precision=embedding_project_precision(pmap, dtype),
            dtype=dtype, implementation=implementation)
    for index, layer in enumerate(model.encoder.layers):
        for site in SITES:
            n_in, n_out = getattr(layer, site).shape
            key = f"encoder.layers.{index}.{site}"
            setattr(layer, site, QuantizedGemmSite(
                n_in, n_out, site=site, precision=pmap[index, site], dtype=dtype,
                smoothed=key in smoothed, implementation=implementation))
    return model


def _flat_state(module: nnx.Module) -> dict[str, jax.Array]:
    flat = nnx.to_flat_state(nnx.state(module))
    return {".".join(str(p) for p in path): var.get_value() for path, var in flat}


def _assign_flat_state(module: nnx.Module, arrays: dict[str, np.ndarray]) -> None:
    flat = nnx.to_flat_state(nnx.state(module))
    updates = []
    for path, var in flat:
        updates.append((path, var.replace(jnp.asarray(arrays[".".join(str(p) for p in path)]))))
    nnx.update(module, nnx.from_flat_state(updates))


def _versions() -> dict[str, str]:
    return {"samp_jax": __version__, "jax": jax.__version__, "flax": flax.__version__}


def quantize(model: EncoderModel, precision_map: PrecisionMap, calibration=None, *,
             dtype=jnp.float16, implementation: str | None = None) -> QuantizedModel:
    """Builds a `QuantizedModel` from a float model, a precision map and calibration.

    Args:
      model: the float source model (left unchanged). The quantized copy keeps its tokenizer
        (the same object) and its head's class names.
      precision_map: one precision per (layer, site); its `num_layers` must match the model.
      calibration: a `calibrate.Calibration` (from `calibrate.calibrate`); required when any
        site uses a static activation scale (`int8` per-tensor static, `fp8_e4m3`). With
        smoothing, it also carries the per-channel migration of `qkv` / `ffn_in`.
      dtype: compute dtype between GEMM sites (float16, bfloat16 or float32).
      implementation: GEMM implementation for every site that it runs (None: try Pallas, then
        XLA); a site at a precision it does not run (an FP16 or FP8 site of a map pinned to
        `pallas`) runs on `xla` (`samp_jax.ops.site_implementation`).

    Raises:
      ValueError: the map does not fit the model, or a static site has no calibration.
    """
    if not isinstance(model, EncoderModel):
        raise TypeError(f"quantize needs an EncoderModel, got {type(model).__name__}")
    if precision_map.num_layers != model.config.num_layers:
        raise ValueError(f"precision map has num_layers={precision_map.num_layers}, "
                         f"the model has {model.config.num_layers}")
    sites = calibration.sites if calibration is not None else {}
    uncalibrated = [f"{l}.{s}" for (l, s), p in precision_map.items()
                    if p.needs_calibration and (l, s) not in sites]
    if uncalibrated:
        raise ValueError(f"sites {uncalibrated[:6]}{'...' if len(uncalibrated) > 6 else ''} use "
                         "static activation scales; pass calibration=calibrate.calibrate(...)")
    if precision_map.embedding_project is not None and model.embeddings.project is None:
        raise ValueError("the precision map sets embedding_project, but the model has no embedding "
                         "projection (only ELECTRA-style models with embedding_size != hidden_size do)")
    copy = compute_copy(model, dtype, embedding_project=precision_map.embedding_project,
                        implementation=implementation)
    for index, layer in enumerate(copy.encoder.layers):
        for site in SITES:
            setattr(layer, site, QuantizedGemmSite.from_float(
                getattr(layer, site), precision_map[index, site], dtype=dtype,
                calibration=sites.get((index, site)), implementation=implementation))
    info = {
        "source_bytes": _state_bytes(model),
        "calibration": None if calibration is None else calibration.describe(),
        "implementation": implementation,
    }
    return QuantizedModel(copy, precision_map, info=info)
