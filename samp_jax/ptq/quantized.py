"""Post-training quantization of an `EncoderModel` under a precision map.

`quantize(model, precision_map, calibration)` returns a `QuantizedModel`: a copy of the model
whose GEMM sites are `QuantizedGemmSite`s holding INT8 / FP8 weights with their scales (the
float copies are dropped) or 16/32-bit float weights, as the map says. Embeddings, LayerNorm
outputs, attention (unless the map names its `attn_scores` / `attn_context`) and the
activations between sites run in the compute `dtype` (FP16 by default, as deployed on GPU); heads stay in FP32. The copy keeps the source's tokenizer and
class names, and `QuantizedModel.save` writes them too, so a saved folder is self-contained:
`samp_jax.load(dir)` gives back a model ready to serve. Writing and reading the folder's files
is `samp_jax.ptq.saved`; its format and checks, `samp_jax.ptq.folder`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pallas_kernels.numerics import INT8_MAX, SCALE_EPS
from samp_jax.models.config import EncoderConfig
from samp_jax.models.layers import Embeddings, GemmSite
from samp_jax.models.head_kinds import HeadKind, Readout
from samp_jax.models.heads import head_spec, make_head
from samp_jax.models.model import EncoderModel, is_concrete
from samp_jax.models.tokenizer import Tokenizer
from samp_jax.models.unfused import unfused_parts
from samp_jax.ops.dispatch import Activation, check_implementation, gemm, record_executions, site_implementation
from samp_jax.ops.pallas import interpreting
from samp_jax.ops.handoff import Int8Input
from samp_jax.core.precision import SITES, PrecisionMap, PrecisionMapError, SitePrecision, precision_of_dtype
from samp_jax.core.transfers import own_transfers
from samp_jax.core.primitives import FP8_E4M3_MAX, QArray, quantize_weight_fp8, quantize_weight_int8
from samp_jax.ptq.folder import SIDECAR_FILE
from samp_jax.ptq.site_calibration import (ForeignClipsError, SiteCalibration,
                                           check_calibration_fits, clips_for_model,
                                           foreign_calibration, model_fingerprint,
                                           site_calibrations)
from samp_jax.ptq.saved import (SavedFolder, head_from_sidecar, read_saved, restore_weights,
                                saved_tokenizer, write_folder)

PROJECT_LABEL = "embedding_project"  # the ELECTRA-style projection's site label


class QuantizedVariable(nnx.Variable):
    """Weights and scales of a quantized model: stored, never trained."""


class QuantizedGemmSite(nnx.Module):
    """A GEMM site whose weights are stored at its precision-map precision.

    Same call interface as `GemmSite`. Quantized sites keep `kernel` as INT8 (per-channel
    `kernel_scale [out]`) or FP8 (per-tensor `kernel_scale []`); float sites keep `kernel` in
    their float dtype. Static activation schemes carry `act_scale`; smoothed sites carry
    `input_scale [in]`, which multiplies the input inside the quantize step. A site without a
    bias (`use_bias=False`, ModernBERT) has `bias` None. `label` names the site in execution
    records and fallback logs (`"3.ffn_in"`; default: `site`).
    """

    observer = None

    def __init__(self, in_features: int, out_features: int, *, site: str,
                 precision: SitePrecision, dtype=jnp.float16, smoothed: bool = False,
                 implementation: str | None = None, use_bias: bool = True,
                 label: str | None = None):
        if precision.precision == "int8":
            self.kernel = QuantizedVariable(jnp.zeros((in_features, out_features), jnp.int8))
            self.kernel_scale = QuantizedVariable(jnp.ones((out_features,), jnp.float32))
        elif precision.precision == "fp8_e4m3":
            self.kernel = QuantizedVariable(jnp.zeros((in_features, out_features), jnp.float8_e4m3fn))
            self.kernel_scale = QuantizedVariable(jnp.ones((), jnp.float32))
        else:
            self.kernel = QuantizedVariable(jnp.zeros((in_features, out_features), precision.float_dtype))
            self.kernel_scale = None
        self.bias = QuantizedVariable(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        self.act_scale = QuantizedVariable(jnp.ones((), jnp.float32)) if precision.needs_calibration else None
        smoothed = smoothed and precision.is_quantized
        self.input_scale = QuantizedVariable(jnp.ones((in_features,), jnp.float32)) if smoothed else None
        self.site = site
        self.precision = precision
        self.dtype = dtype
        # a model pinned to a kernel that does not run this precision keeps this site on XLA
        self.implementation = site_implementation(implementation, precision)
        self.label = label or site

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.kernel.shape)

    @classmethod
    def from_float(cls, source: GemmSite, precision: SitePrecision, *, dtype,
                   calibration: SiteCalibration | None = None,
                   implementation: str | None = None, label: str | None = None) -> "QuantizedGemmSite":
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
                   smoothed=smoothed, implementation=implementation,
                   use_bias=source.bias is not None, label=label)
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
        if source.bias is not None:
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

    def dense_weight(self) -> tuple[jax.Array, jax.Array]:
        """`(kernel [in, out], bias [out])` in float32: the stored weights dequantized, with any
        smoothing undone, so `x @ kernel + bias` is this site's GEMM on an unquantized input
        (DeBERTa's relative-position projections reuse the `qkv` weights this way)."""
        weight = self.weight()
        kernel = weight.dequantize() if isinstance(weight, QArray) else weight.astype(jnp.float32)
        if self.input_scale is not None:  # the kernel holds W * s; the input is multiplied by 1/s
            kernel = kernel * self.input_scale[...][:, None]
        return kernel, self.bias[...].astype(jnp.float32)

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
        says. `out_dtype=int8` with `out_scale` requantizes the output for the next GEMM, from
        the values rounded to this site's float dtype: the numbers that GEMM would quantize
        itself from this site's float output."""
        if self.observer is not None:
            self.observer(x)
        return gemm(
            x, self.weight(), precision=self.precision,
            bias=None if self.bias is None else self.bias[...],
            activation=activation, residual=residual,
            act_scale=None if self.act_scale is None else self.act_scale[...],
            input_scale=None if self.input_scale is None else self.input_scale[...],
            out_dtype=out_dtype or self.dtype, out_scale=out_scale, requantize_from=self.dtype,
            implementation=self.implementation, site=self.label)


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
    for table in (emb.word, emb.position, emb.token_type, emb.task_type):
        if table is not None:
            table.set_value(table[...].astype(dtype))
    modules = [emb.norm, model.encoder.final_norm]
    for layer in model.encoder.layers:
        modules += [layer.attn_norm, layer.ffn_norm]
    for module in modules:
        if module is not None:  # pre-LN: no attn_norm in layer 0; post-LN: no final norm
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
            copy.embeddings.project, precision, dtype=dtype, implementation=implementation,
            label=PROJECT_LABEL)
    return copy


def embedding_project_precision(precision_map: PrecisionMap, dtype) -> SitePrecision:
    """The precision of an ELECTRA-style embedding projection: the map's `embedding_project`,
    else the compute dtype."""
    return precision_map.embedding_project or SitePrecision(precision_of_dtype(dtype))


def state_bytes(module: nnx.Module) -> int:
    """The bytes of `module`'s state (its parameters, quantized or not, and buffers)."""
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
        """Provenance: source parameter bytes and fingerprint, calibration summary, GEMM
        implementation (and what `record` added, e.g. the data a command calibrated and scored
        it on)."""
        return json.loads(self._info)

    @property
    def source_fingerprint(self) -> str | None:
        """The `model_fingerprint` of the float model this one was quantized from (a sha256 of
        its parameters' names, dtypes, shapes and values, whatever file they were read from):
        `q.source_fingerprint == samp_jax.model_fingerprint(samp_jax.load(folder))` tells
        whether `folder` holds that model (loaded with the same dtype and head options). None
        for a folder saved without one, or a model quantized from parameters this host could
        not read (traced, or sharded over other processes)."""
        return self.info.get("source_fingerprint")

    def record(self, **provenance: Any) -> None:
        """Adds JSON-serialisable `provenance` to `info`, which `save` writes into the sidecar."""
        self._info = json.dumps(self.info | provenance, sort_keys=True)

    @property
    def config(self) -> EncoderConfig:
        return self.model.config

    @property
    def head_kind(self) -> str:
        return self.model.head_kind

    @property
    def head_declaration(self) -> HeadKind | None:
        """The head's `HeadKind` (`EncoderModel.head_declaration`)."""
        return self.model.head_declaration

    @property
    def readout(self) -> Readout | None:
        """How the head's logits are read (`EncoderModel.readout`)."""
        return self.model.readout

    def output_shape(self, batch: int, seq: int) -> tuple[int, ...]:
        """The shape it returns for `[batch, seq]` inputs (`EncoderModel.output_shape`)."""
        return self.model.output_shape(batch, seq)

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The head's class names, or None."""
        return self.model.labels

    @property
    def cross_encoder_activation(self) -> str | None:
        """A CrossEncoder's activation (`EncoderModel.cross_encoder_activation`), or None."""
        return self.model.cross_encoder_activation

    @property
    def label_threshold(self) -> float | None:
        """A multi-label head's own decision threshold (`EncoderModel.label_threshold`)."""
        return self.model.label_threshold

    @property
    def relevant_class(self) -> int | None:
        """A two-class head's own relevant class (`EncoderModel.relevant_class`)."""
        return self.model.relevant_class

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
        after = state_bytes(self.model)
        before = self.info["source_bytes"]
        return {"source_bytes": before, "quantized_bytes": after, "saved_bytes": before - after,
                "ratio": after / before}

    def executed_implementations(self, batch: dict | None = None) -> dict[str, Any]:
        """What runs each GEMM site in this process: the model traced once (no compilation)
        on `batch` (default: one row of 8 tokens), as `{"device", "backend", "interpret",
        "sites": {label: implementation}, "precisions": {label: precision}}` (what ran each
        site, and at which precision: `int8-static`, `fp16`, ...).

        Labels are `"<layer>.<site>"`, `embedding_project`, the head's sites, and
        `"<layer>.attn_scores"` / `"<layer>.attn_context"` where the map names them; an
        implementation is `pallas_mosaic`, `pallas_triton` or `xla` (or another registered
        one), as `samp_jax.ops.record_executions` saw it. The Pallas kernels run on a GPU, or
        anywhere in interpret mode (`samp_jax.ops.interpret()`); elsewhere every site is `xla`.
        """
        if batch is None:
            token = (self.config.pad_token_id + 1) % self.config.vocab_size
            ids = jnp.full((1, min(8, self.config.max_sequence_length)), token, jnp.int32)
            batch = {"input_ids": ids, "attention_mask": jnp.ones_like(ids),
                     "token_type_ids": jnp.zeros_like(ids)}
        inputs = [batch.get(key) for key in ("input_ids", "attention_mask", "token_type_ids")]
        with record_executions() as records:
            jax.eval_shape(lambda *a: self(*a), *inputs)  # a fresh function: traced, not cached
        return {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
                "interpret": interpreting(),
                "sites": {r.site or f"unnamed{i}": r.executed for i, r in enumerate(records)},
                "precisions": {r.site or f"unnamed{i}": r.precision
                               for i, r in enumerate(records)}}

    # ---------------------------------------------------------------------- save / load
    def save(self, directory: str | Path) -> Path:
        """Writes `model.safetensors`, the tokenizer's files (when the model has a tokenizer)
        and `quantization.json` into `directory`; returns the folder.

        `quantization.json` (format v3) holds `format`, `format_version`, `config`, `head`,
        `tokenizer`, `dtype` (compute dtype), `precision_map`, `info` (with
        `source_fingerprint`: which float model it was made from), `dtypes` (every tensor's
        dtype) and `versions`, and is the manifest: `files` maps every other file's name to
        `{"sha256", "bytes"}`; `executed` records what ran each GEMM site in the saving
        process (`executed_implementations`: device, interpret mode, implementation and
        precision per site; informational, `load` does not use it). The sidecar is sealed: `model.safetensors`'
        header holds a copy of it (all but the weights' own manifest entry), so the manifest's
        hash of the weights covers every field, and `load` refuses a sidecar edited after
        saving (`samp_jax.ptq.folder.check_seal`).

        Atomic (`samp_jax.core.atomic`): the folder is written beside `directory` and renamed into
        place, so a crash leaves the previous model whole. Saving over an earlier quantized
        model replaces the whole folder (files `save` does not write are not kept); a float
        checkpoint (`config.json` without `quantization.json`: perhaps the one this model was
        made from) and a non-empty folder that holds no model are refused before writing.

        Raises:
          FileExistsError: `directory` is a file, a float checkpoint, or a non-empty folder
            that holds no model.
          ValueError: the head is a kind nothing could load back.
        """
        directory = Path(directory)
        head = head_spec(self.model.head)  # refuses a head nothing could load back, before writing
        executed = self.executed_implementations()  # what runs each site where it was saved
        return write_folder(directory, self.model, head=head,
                            precision_map=self.precision_map, info=self.info, executed=executed)

    @classmethod
    def load(cls, directory: str | Path, *, tokenizer: Tokenizer | None = None,
             prompt_name: str | None = None) -> "QuantizedModel":
        """Reads a model written by `save`, with its class names and tokenizer.

        Checks, all before anything is assigned (nothing is half-loaded):

        - format v3 or v2 (v1 had no file manifest and is refused): every file the manifest
          (`files` in `quantization.json`) lists exists with its sha256 and size. Files it does
          not list (a tokenizer copied in later) are not checked. Each file is read once,
          through one handle on the folder, and the bytes hashed are the bytes parsed
          (`samp_jax.ptq.folder`): a save replacing the folder meanwhile gives the model as it
          was, or an error saying the folder was replaced while it was read.
        - the sidecar: a JSON object with every field `load` uses, of the right type; the GEMM
          implementation it names is registered; every field equals the copy in the weights'
          header (v3). A v2 folder has no copy: it loads with a `SidecarNotSealedWarning`, as
          an edit to its sidecar cannot be detected.
        - every tensor: the dtype the sidecar records is the one the precision map and head
          imply (int8 kernels at INT8 sites, float8_e4m3fn at FP8 sites, the site's float dtype
          at float sites, float32 scales and biases, the compute dtype for embeddings and
          LayerNorms) and the stored bits have that width; the shape; INT8 values in
          [-127, 127]; every scale finite and at least `SCALE_EPS`; every float finite.

        Args:
          directory: the folder `save` wrote.
          tokenizer: attach this tokenizer instead of the folder's `tokenizer.json`. Without
            either, the model has no tokenizer (`samp_jax.load` insists on one).
          prompt_name: a sentence embedder's prompt to put before every text, one of those its
            folder's `config_sentence_transformers.json` names ('' for none; default: the one
            the model was saved with). For the folder's own tokenizer only.

        Raises:
          FileNotFoundError: no weights or no sidecar; when the folder is missing because a
            save was interrupted between its two renames, the message says where the previous
            model is (`samp_jax.core.atomic`); the folder was replaced while it was read.
          ValueError: the sidecar is not valid JSON, not this format (or format_version 1),
            or a field is missing or malformed (the message names the file and the field), or
            differs from the copy saved in the weights' header (it names each field, found and
            saved);
            `prompt_name` with a `tokenizer`.
          ConfigError: `prompt_name` is not one of the folder's prompts.
          CheckpointError: a file differs from the manifest, or a tensor does not match the
            layout, dtypes and value ranges the sidecar describes (the message names the file,
            the tensor, what was found and what was expected).
        """
        directory = Path(directory)
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a samp_jax.Tokenizer, got {type(tokenizer).__name__}")
        if tokenizer is not None and prompt_name is not None:
            raise ValueError("prompt_name picks a prompt of the folder's own tokenizer; give the "
                             "tokenizer you pass its prompt (Tokenizer.from_pretrained(..., "
                             "prompt_name=...)) instead")
        saved = read_saved(directory, own_tokenizer=tokenizer is None)
        model = _skeleton(saved)
        restore_weights(model, saved)
        model.tokenizer = saved_tokenizer(saved, tokenizer, prompt_name)
        return cls(model, saved.precision_map, info=saved.sidecar["info"])


def _skeleton(saved: SavedFolder) -> EncoderModel:
    """The model `saved` describes, each GEMM site a `QuantizedGemmSite` at its precision, with
    abstract weights (shapes and dtypes, for `restore_weights` to fill); a head or map that
    does not build raises a ValueError naming the sidecar."""
    try:  # shapes and dtypes only (no random draws): `restore_weights` assigns every variable
        return nnx.eval_shape(lambda: _quantized_model(
            saved.config, saved.sidecar["head"], saved.precision_map, saved.dtype, saved.smoothed,
            saved.implementation))
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{saved.directory / SIDECAR_FILE}: field 'head' or 'precision_map' does "
                         f"not build a model: {type(e).__name__}: {e}") from None


def _quantized_model(config, head_info, pmap, dtype, smoothed, implementation) -> EncoderModel:
    """An `EncoderModel` of `config` with the sidecar's head, set up as `quantize` leaves one:
    compute dtype `dtype`, each site a `QuantizedGemmSite` at `pmap`'s precision (`smoothed`:
    the sites stored with a SmoothQuant input scale)."""
    rngs = nnx.Rngs(0)
    kind, spec = head_from_sidecar(head_info)
    model = EncoderModel(config, make_head(kind, config, rngs=rngs, **spec), dtype=jnp.float32,
                         rngs=rngs)
    set_compute_dtype(model, dtype)
    project = model.embeddings.project
    if project is not None:
        model.embeddings.project = QuantizedGemmSite(
            *project.shape, site=project.site, precision=embedding_project_precision(pmap, dtype),
            dtype=dtype, implementation=implementation, label=PROJECT_LABEL)
    set_attention_precisions(model, pmap)
    for index, layer in enumerate(model.encoder.layers):
        for site in SITES:
            n_in, n_out = getattr(layer, site).shape
            key = f"encoder.layers.{index}.{site}"
            setattr(layer, site, QuantizedGemmSite(
                n_in, n_out, site=site, precision=pmap[index, site], dtype=dtype,
                smoothed=key in smoothed, implementation=implementation,
                use_bias=getattr(layer, site).bias is not None, label=f"{index}.{site}"))
    return model


def set_attention_precisions(model: EncoderModel, precision_map: PrecisionMap) -> None:
    """Gives each layer the map's `attn_scores` / `attn_context` (`PrecisionMap.attention`); a
    layer the map names neither of keeps None (attention in the compute dtype).

    Raises:
      PrecisionMapError: INT8 attention in a layer pinned to cuDNN attention (`attention_impl`),
        which cannot run it.
    """
    check_attention_implementation(model, precision_map)
    for index, layer in enumerate(model.encoder.layers):
        pair = precision_map.attention(index)
        layer.attention_precision = pair if pair.is_set else None
        layer.attention_label = str(index) if pair.is_set else None


def check_attention_implementation(model: EncoderModel, precision_map: PrecisionMap,
                                   dtype=None) -> None:
    """Refuses (`PrecisionMapError`) in a layer pinned to cuDNN attention what cuDNN cannot run:
    INT8 attention, and products that would not both be one 16-bit float (cuDNN takes q, k and v
    of one dtype, float16 or bfloat16); a product the map does not name runs in `dtype`, the
    compute dtype (None: not checked then)."""
    for index, layer in enumerate(model.encoder.layers):
        pair = precision_map.attention(index)
        if layer.attention_impl != "cudnn" or not pair.is_set:
            continue
        if pair.is_quantized:
            problem = "which only the XLA attention runs"
        else:
            compute = None if dtype is None else precision_of_dtype(dtype)
            runs = {compute if p is None else p.precision for p in (pair.scores, pair.context)}
            if None in runs or (len(runs) == 1 and runs <= {"fp16", "bf16"}):
                continue
            problem = f"products in {' and '.join(sorted(runs))}, where cuDNN takes one of fp16 or bf16"
        raise PrecisionMapError(
            f"the precision map puts layer {index}'s attention at {pair}, {problem}, and the "
            "model is pinned to attention_impl='cudnn'; build it with attention_impl=None or "
            "'xla', or give these sites the compute dtype's precision")


def compute_dtype_of(precision_map: PrecisionMap, dtype=None):
    """The dtype between sites: `dtype`, else the map's `compute_dtype`, else the one float
    precision of all its cells (`PrecisionMap.uniform_float_dtype`), else float16.

    Raises:
      ValueError: `dtype` differs from the `compute_dtype` the map was chosen for.
    """
    if precision_map.compute_dtype is None:
        if dtype is not None:
            return dtype
        return jnp.dtype(precision_map.uniform_float_dtype() or jnp.float16).type
    if dtype is not None and jnp.dtype(dtype).name != precision_map.compute_dtype:
        raise ValueError(f"dtype={jnp.dtype(dtype).name} is not the compute_dtype="
                         f"{precision_map.compute_dtype} the precision map was chosen for; pass "
                         "dtype=None (or a map without compute_dtype)")
    return jnp.dtype(precision_map.compute_dtype).type


@own_transfers
def quantize(model: EncoderModel, precision_map: PrecisionMap, calibration=None, *,
             dtype=None, implementation: str | None = None) -> QuantizedModel:
    """Builds a `QuantizedModel` from a float model, a precision map and calibration.

    Args:
      model: the float source model (left unchanged). The quantized copy keeps its tokenizer
        (the same object) and its head's class names.
      precision_map: one precision per (layer, site); its `num_layers` must match the model.
      calibration: a `calibrate.Calibration` (from `calibrate.calibrate`); required when a
        site uses a static activation scale (`int8` per-tensor static, `fp8_e4m3`) and the map
        stores no clip for it (a stored clip is used as it is, over the calibration's), or
        stores clips measured on another model (its `model_fingerprint` is not this model's:
        those sites then take the calibration's clips, with a warning naming the map). With
        smoothing, it also carries the per-channel migration of `qkv` / `ffn_in`.
      dtype: compute dtype between GEMM sites (float16, bfloat16 or float32); None: the map's
        `compute_dtype`, else the one float precision of all its cells, else float16.
      implementation: GEMM implementation for every site that it runs (None: try Pallas, then
        XLA); a site at a precision it does not run (an FP16 or FP8 site of a map pinned to
        `pallas`) runs on `xla` (`samp_jax.ops.site_implementation`).

    Warns:
      UserWarning: the map's clips were measured on another model, and the calibration's
        replace them (the warning names the map and both fingerprints); the calibration's
        statistics that the model takes were measured on another model (a fine-tune of the
        one calibrated, another checkpoint: the warning names both fingerprints and the
        sites).

    Raises:
      TypeError: an argument is of the wrong kind (a path or a dict for the model or the map).
      ForeignClipsError: the map's clips were measured on another model and no calibration is
        given (names the map, both fingerprints, and how to calibrate this model).
      ValueError: the map does not fit the model, a static site has neither a stored clip nor
        calibration, a stored clip meets a smoothed calibration, `dtype` is not the map's
        `compute_dtype`, or `implementation` is not registered.
    """
    _check_quantize_arguments(model, precision_map, calibration, implementation)
    if precision_map.num_layers != model.config.num_layers:
        raise ValueError(f"precision map has num_layers={precision_map.num_layers}, "
                         f"the model has {model.config.num_layers}")
    dtype = compute_dtype_of(precision_map, dtype)
    check_attention_implementation(model, precision_map, dtype)
    precision_map = _own_clips(model, precision_map, calibration)
    check_calibration_fits(model, calibration)
    sites = site_calibrations(precision_map, calibration)
    _warn_if_foreign(model, precision_map, calibration)
    uncalibrated = [f"{l}.{s}" for (l, s), p in precision_map.items()
                    if p.needs_calibration and (l, s) not in sites]
    if uncalibrated:
        listed = f"{uncalibrated[:6]}{'...' if len(uncalibrated) > 6 else ''}"
        if calibration is None:
            raise ValueError(f"sites {listed} use static activation scales; pass "
                             "calibration=calibrate.calibrate(...)")
        raise ValueError(f"sites {listed} use static activation scales, and the calibration "
                         "given has no statistics for them (made for another model or map?); "
                         "calibrate this model with this map: calibrate.calibrate(model, "
                         "batches, precision_map=precision_map)")
    if precision_map.embedding_project is not None and model.embeddings.project is None:
        raise ValueError("the precision map sets embedding_project, but the model has no embedding "
                         "projection (only ELECTRA-style models with embedding_size != hidden_size do)")
    copy = compute_copy(model, dtype, embedding_project=precision_map.embedding_project,
                        implementation=implementation)
    set_attention_precisions(copy, precision_map)
    for index, layer in enumerate(copy.encoder.layers):
        for site in SITES:
            setattr(layer, site, QuantizedGemmSite.from_float(
                getattr(layer, site), precision_map[index, site], dtype=dtype,
                calibration=sites.get((index, site)), implementation=implementation,
                label=f"{index}.{site}"))
    info = {
        "source_bytes": state_bytes(model),
        "source_fingerprint": _source_fingerprint(model),
        "calibration": None if calibration is None else calibration.describe(),
        "implementation": implementation,
    }
    unfused = unfused_parts(model.config)
    if unfused:  # fusions the architecture forgoes, with the reason (ModernBERT's gated FFN, ...)
        info["unfused"] = unfused
    return QuantizedModel(copy, precision_map, info=info)


def _source_fingerprint(model: EncoderModel) -> str | None:
    """`model_fingerprint(model)`, or None where its parameters cannot be read on this host
    (traced, or sharded over other processes' devices)."""
    if not all(is_concrete(leaf) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))):
        return None
    return model_fingerprint(model)


def _own_clips(model: EncoderModel, precision_map: PrecisionMap, calibration) -> PrecisionMap:
    """`precision_map` without the clips it stores when they were measured on another model
    (`clips_for_model`): the calibration's take their place, with a warning; without a
    calibration, `ForeignClipsError`."""
    applied, note = clips_for_model(precision_map, model)
    if note is None:
        return precision_map
    if calibration is None:
        raise ForeignClipsError(
            f"{note}: they would scale this model's activations wrongly. Calibrate this model "
            "with the map: quantize(model, pmap, calibrate.calibrate(model, batches, "
            "precision_map=pmap)) (the CLI's calibrate and eval do so on their data)")
    warnings.warn(f"{note}: those sites take the clips of this model's calibration instead",
                  UserWarning, stacklevel=4)
    return applied


def _warn_if_foreign(model: EncoderModel, precision_map: PrecisionMap, calibration) -> None:
    """Warns when the calibration's statistics that the model takes (a static site's clip the
    map does not store, a smoothed site's migration) were measured on another model."""
    if calibration is None:
        return
    stored = precision_map.stored_clips()
    used = [key for key, site in calibration.sites.items()
            if site.input_scale is not None
            or (precision_map[key].needs_calibration and key not in stored)]
    note = foreign_calibration(calibration, model, used)
    if note is not None:
        warnings.warn(f"{note}: they may clip or waste this model's quantized range. "
                      "Calibrate this model: quantize(model, pmap, calibrate.calibrate(model, "
                      "batches, precision_map=pmap))", UserWarning, stacklevel=4)


def _check_quantize_arguments(model, precision_map, calibration, implementation) -> None:
    """`quantize`'s arguments are of the kinds it takes (the message says how to get one)."""
    if not isinstance(model, EncoderModel):
        hint = " (load a model folder first: samp_jax.load(path))" \
            if isinstance(model, (str, Path)) else ""
        raise TypeError(f"quantize: model is a {type(model).__name__}{hint}; expected an "
                        "EncoderModel")
    if not isinstance(precision_map, PrecisionMap):
        raise TypeError(f"quantize: precision_map is a {type(precision_map).__name__}; expected "
                        "a PrecisionMap (PrecisionMap.from_dict(d), PrecisionMap.from_json(path) "
                        "or PrecisionMap.preset(name, num_layers))")
    if calibration is not None and not isinstance(getattr(calibration, "sites", None), Mapping):
        raise TypeError(f"quantize: calibration is a {type(calibration).__name__}; expected "
                        "None or a calibrate.Calibration (calibrate.calibrate(model, batches))")
    check_implementation(implementation, where="quantize: implementation")
