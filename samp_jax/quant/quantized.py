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
from samp_jax.atomic import atomic_folder, interrupted_save
from samp_jax.models.checkpoint import CheckpointError
from samp_jax.models.config import EncoderConfig
from samp_jax.models.layers import Embeddings, GemmSite
from samp_jax.models.model import EncoderModel, head_spec, make_head
from samp_jax.models.tokenizer import TOKENIZER_FILE, Tokenizer, check_fits
from samp_jax.ops.dispatch import Activation, gemm
from samp_jax.quant.handoff import Int8Input
from samp_jax.quant.precision import SITES, PrecisionMap, SitePrecision, precision_of_dtype
from samp_jax.quant.primitives import FP8_E4M3_MAX, QArray, quantize_weight_fp8, quantize_weight_int8
from samp_jax.version import __version__

FORMAT = "samp-jax-quantized"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # v1: before the file manifest
WEIGHTS_FILE = "model.safetensors"
SIDECAR_FILE = "quantization.json"


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
        self.implementation = implementation

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.kernel.shape)

    @classmethod
    def from_float(cls, source: GemmSite, precision: SitePrecision, *, dtype,
                   calibration: SiteCalibration | None = None,
                   implementation: str | None = None) -> "QuantizedGemmSite":
        """Quantizes a float `GemmSite` (folding any smoothing into the weights)."""
        n_in, n_out = source.shape
        if precision.needs_calibration and calibration is None:
            raise ValueError(f"site {source.site!r} at {precision} needs calibration statistics")
        input_scale = calibration.input_scale if calibration is not None else None
        smoothed = input_scale is not None and precision.is_quantized
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
            clip = calibration.absmax / FP8_E4M3_MAX if precision.precision == "fp8_e4m3" \
                else calibration.amax / INT8_MAX
            site.act_scale.set_value(jnp.asarray(max(clip, SCALE_EPS), jnp.float32))
        return site

    def weight(self) -> jax.Array | QArray:
        if self.precision.is_quantized:
            return QArray(self.kernel[...], self.kernel_scale[...], self.precision.precision)
        return self.kernel[...]

    def int8_input(self) -> Int8Input | None:
        """How this site quantizes its input when it is an INT8 site (else None): what an
        upstream kernel must do to hand it INT8 (`samp_jax.quant.handoff`)."""
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
        and `quantization.json` (the manifest: format version, sha256 and size of every other
        file) into `directory`, atomically: the folder is written beside it and renamed into
        place, so a crash leaves the previous model whole (`samp_jax.atomic`). An existing
        non-empty folder that is not a model folder is refused. Returns the folder."""
        directory = Path(directory)
        head = head_spec(self.model.head)  # refuses a head nothing could load back, before writing
        arrays, dtypes = {}, {}
        for key, value in _flat_state(self.model).items():
            value = np.asarray(value)
            dtypes[key] = value.dtype.name
            # safetensors' numpy API lacks bfloat16/float8: store their bits, keep the dtype.
            if value.dtype.name in ("bfloat16", "float8_e4m3fn"):
                value = value.view(np.uint16 if value.dtype.itemsize == 2 else np.uint8)
            arrays[key] = np.array(value, order="C")  # ascontiguousarray would make scalars 1-D
        with atomic_folder(directory, replaceable=is_model_folder) as tmp:
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

        Every file is checked against the manifest's sha256 and size (format v2; v1 folders,
        written before the manifest, load without it), and every tensor against what the
        precision map implies: dtype, shape, INT8 values in [-127, 127], scales finite and at
        least `SCALE_EPS`, floats finite. Nothing is assigned before all checks pass.

        Args:
          directory: the folder `save` wrote.
          tokenizer: attach this tokenizer instead of the folder's `tokenizer.json`. Without
            either, the model has no tokenizer (`samp_jax.load` insists on one).

        Raises:
          FileNotFoundError: no weights or no sidecar (naming an interrupted save's leftover).
          ValueError: the sidecar is not this format or not valid JSON.
          CheckpointError: a file differs from the manifest, or a tensor does not match the
            layout and value ranges the sidecar describes.
        """
        directory = Path(directory)
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a samp_jax.Tokenizer, got {type(tokenizer).__name__}")
        leftover = interrupted_save(directory)
        if leftover is not None:
            raise FileNotFoundError(f"{directory} does not exist: a save was interrupted while "
                                    f"replacing it, and the previous model is whole at {leftover}")
        for name in (WEIGHTS_FILE, SIDECAR_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory} has no {name}")
        try:
            sidecar = json.loads((directory / SIDECAR_FILE).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{directory / SIDECAR_FILE} is not valid JSON: {e}") from None
        if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT \
                or sidecar.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"{directory / SIDECAR_FILE} is not a {FORMAT} sidecar of version "
                             f"{READABLE_VERSIONS}")
        if sidecar["format_version"] >= 2:
            _verify_files(directory, sidecar.get("files"))
        config = EncoderConfig.from_hf_config(sidecar["config"])
        pmap = PrecisionMap.from_dict(sidecar["precision_map"])
        dtype = jnp.dtype(sidecar["dtype"])
        smoothed = {key.split(".input_scale")[0] for key in sidecar["dtypes"] if key.endswith("input_scale")}
        skeleton = _skeleton(config, sidecar["head"], pmap, dtype, smoothed,
                             sidecar["info"].get("implementation"))
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
                    for k in expected}
        _assign_flat_state(skeleton, restored)
        if tokenizer is None and (directory / TOKENIZER_FILE).is_file():
            tokenizer = Tokenizer.from_pretrained(directory)
        if tokenizer is not None:
            check_fits(tokenizer, config, str(directory))
        skeleton.tokenizer = tokenizer
        return cls(skeleton, pmap, info=sidecar["info"])


def is_model_folder(folder: Path) -> bool:
    """A folder samp-jax may replace when saving: a quantized model or an HF checkpoint."""
    return (folder / SIDECAR_FILE).is_file() or (folder / "config.json").is_file()


def _file_digest(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def _verify_files(directory: Path, files) -> None:
    """Every file the manifest lists exists with its size and sha256."""
    if not isinstance(files, dict) or WEIGHTS_FILE not in files:
        raise CheckpointError(directory / SIDECAR_FILE, problem=f"has no file manifest listing {WEIGHTS_FILE}")
    for name, want in files.items():
        path = directory / name
        if Path(name).name != name or not path.is_file():
            raise CheckpointError(path, problem="is listed in the manifest but missing")
        got = _file_digest(path)
        if not isinstance(want, dict) or got != {"sha256": want.get("sha256"), "bytes": want.get("bytes")}:
            raise CheckpointError(path, problem=f"does not match the manifest: found {got['bytes']} bytes, "
                                  f"sha256 {got['sha256'][:16]}..., expected {want!r:.120} (the file "
                                  "was changed or damaged after saving)")


def _checked_tensor(file: Path, key: str, stored: np.ndarray, claimed: str | None, want) -> np.ndarray:
    """The stored array as `want` (the dtype the precision map implies), after checking the
    sidecar's dtype claim and the value range."""
    if claimed != want.name:
        raise CheckpointError(file, problem=f"tensor {key}: the sidecar says dtype {claimed!r}, "
                              f"expected {want.name!r} for this precision map")
    try:
        value = _restore_dtype(stored, claimed)
    except ValueError as e:
        raise CheckpointError(file, problem=f"tensor {key}: stored as {stored.dtype}, which cannot "
                              f"hold {claimed} ({e})") from None
    if value.dtype != want or value.shape != stored.shape:
        raise CheckpointError(file, problem=f"tensor {key}: stored as {stored.dtype}, expected {want.name}")
    if want == jnp.int8:
        low = int(value.min()) if value.size else 0
        if low < -INT8_MAX:
            raise CheckpointError(file, problem=f"tensor {key}: INT8 value {low} found, expected "
                                  f"[-{int(INT8_MAX)}, {int(INT8_MAX)}] (symmetric quantization)")
        return value
    as_float = np.asarray(value, np.float32)
    if not np.all(np.isfinite(as_float)):
        raise CheckpointError(file, problem=f"tensor {key}: non-finite values found, expected finite")
    if key.endswith(("_scale", ".act_scale")) and as_float.size and float(as_float.min()) < SCALE_EPS:
        raise CheckpointError(file, problem=f"tensor {key}: scale {float(as_float.min())!r} found, "
                              f"expected >= {SCALE_EPS}")
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
      implementation: GEMM implementation for every site (None: try Pallas, then XLA).

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
