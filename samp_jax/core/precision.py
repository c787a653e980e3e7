"""The precision map: which precision each GEMM site of each layer runs at.

A map is data that people read and edit as JSON. It is a list of rules and a default; the
first rule that matches a (layer, site) wins, as in qwix. It expands to an explicit table
with one `SitePrecision` per (layer, site). Maps are immutable and hashable, so a map can be a
static argument to `jax.jit`; two maps with the same table compare equal.

JSON form::

    {
      "num_layers": 6,
      "default": {"precision": "fp16"},
      "rules": [
        {"layers": "*", "sites": ["ffn_in", "ffn_out"],
         "precision": "int8", "activation": "per_token_dynamic"},
        {"layers": [0], "sites": "*", "precision": "fp16"}
      ]
    }

`layers` is `"*"`, an int or a list of ints; `sites` is `"*"`, a site name or a list of them;
`activation` is only allowed with `int8` and defaults to `per_token_dynamic` (`"static"` and
`"dynamic"` are accepted for `per_tensor_static` and `per_token_dynamic`). An optional
`"embedding_project": {"precision": ...}` sets the precision of ELECTRA-style embedding
projections (a float precision or dynamic INT8; default: the compute dtype).

Calibration travels with the map, as qwix's rules carry theirs. A static site's rule may name
its calibrator and carry the clip it was calibrated to::

    {"layers": [1], "sites": ["ffn_in"], "precision": "int8", "activation": "static",
     "calibration": "mse", "clip": 3.1875}

The two batched matmuls inside attention, the scores `Q K^T` and the context `P V`, are the
pseudo-sites `attn_scores` and `attn_context` (`ATTENTION_SITES`). A rule reaches them only by
naming them in `sites`; `"*"` and `default` never do, so a map without such a rule runs
attention as it always has, in the compute dtype::

    {"layers": "*", "sites": ["attn_scores", "attn_context"], "precision": "int8"}

They take `int8` (dynamic only: `activation` absent, `per_token_dynamic` or `dynamic`; Q and K
per token over `head_dim`, the probabilities at the fixed scale 1/127, V per channel over the
keys: `samp_jax.models.int8_attention`) or a float precision (the operands cast to it, float32
accumulation); `fp8_e4m3`, static activations, `calibration` and `clip` are refused there.
`attention(layer)` gives a layer's pair (`AttentionPrecision`); a rule may name GEMM sites and
attention sites together, and the first rule that names a cell wins as for any cell.

`calibration` (INT8 static sites only) is the calibrator `calibrate.calibrate` uses for that
site instead of the caller's; `clip` (any static site: the INT8 `amax`, or FP8's max |x|) is
used as it is by `samp_jax.quantize`, with no calibration pass. An optional top-level
`"compute_dtype"` (`float32`, `float16`, `bfloat16`) is the dtype between GEMM sites the map
was chosen for, which `quantize` then uses; a map without one whose cells are all one float
precision runs between sites in that precision (`uniform_float_dtype`: an all-`fp32` map in
float32), as the preset of that name does. A searched map carries all three, so the map alone
rebuilds the searched model. They describe how a cell is built, not what precision it runs:
two maps with the same table of precisions compare equal whatever their clips.

Clips are measured on one model: a map that carries them may name it, in an optional top-level
`"model_fingerprint"` (64 lowercase hex digits: `samp_jax.ptq.model_fingerprint`, a sha256 of
the float model's parameters, names and bytes). A search, and `calibrate.map_with_calibration`
of a calibration `calibrate.calibrate` made, write it. Where the map is applied to a model of
another fingerprint, its clips are not used: `quantize` takes those sites' clips from the
calibration it is given (with a warning naming the map), and without one refuses the map; the
CLI's `calibrate` and `eval` calibrate those sites on their data. A map with clips and no
fingerprint (written by hand, or before maps recorded one) is applied to any model as it is:
its writer vouches for the clips. Like the clips, the fingerprint takes no part in equality.

Reading is strict (`PrecisionMapError` naming the rule and the field): a key given twice in
any object (`strict_json.loads` remembers them), a list or object where a name goes, a
calibrator not in `CALIBRATOR_NAMES`, a `model_fingerprint` that is not 64 lowercase hex
digits, and a clip whose activation scale (`clip / 127` for
INT8, `clip / 448` for FP8, as float32) float32 cannot hold are refused. A clip whose scale
lies below `SCALE_EPS` runs at `SCALE_EPS`, as `quantize` floors every scale.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

import jax.numpy as jnp
import numpy as np

from pallas_kernels.numerics import INT8_MAX
from samp_jax.core import strict_json
from samp_jax.core.atomic import write_text_atomic
from samp_jax.core.errors import SampJaxError
from samp_jax.core.input_files import check_regular, read_text
from samp_jax.core.primitives import FP8_E4M3_MAX
# The GEMM sites of an encoder layer, in execution order.
SITES = ("qkv", "attn_out", "ffn_in", "ffn_out")
# The batched matmuls inside attention (scores `Q K^T`, context `P V`): cells a rule reaches
# only by naming them (never by `"*"` or the default); absent, attention runs as it always has.
ATTENTION_SITES = ("attn_scores", "attn_context")
FLOAT_PRECISIONS = ("fp32", "bf16", "fp16")
PRECISIONS = FLOAT_PRECISIONS + ("int8", "fp8_e4m3")
ACTIVATION_SCHEMES = ("per_tensor_static", "per_token_dynamic")
PRESETS = ("fp32", "fp16", "bf16", "fully_quant", "quant_ffn_only", "fp8")
# Short names a map may use for the activation schemes.
ACTIVATION_ALIASES = {"static": "per_tensor_static", "dynamic": "per_token_dynamic"}
# The dtypes between GEMM sites a map may name (`compute_dtype`).
COMPUTE_DTYPES = ("float32", "float16", "bfloat16")
# The calibrators a static INT8 rule may name (`calibrate.CALIBRATORS`' names; a test keeps
# the two alike: this floor cannot import calibrate).
CALIBRATOR_NAMES = ("minmax", "percentile", "mse", "entropy")
# The keys of one site's entry in a rule (or the default).
SITE_KEYS = ("precision", "activation", "calibration", "clip")
# The most layers a map (or a checkpoint's config) may state: no encoder comes near it (the
# deepest HF encoders, XLM-R XXL and DeBERTa-v2 XXLarge, have 48). A map expands to one cell
# per (layer, site), so a `num_layers` of 10^30 in a 150-byte file is refused before any
# expansion, rather than grown until memory runs out.
MAX_LAYERS = 1024
# A map's `model_fingerprint`: the sha256 (hex) of the model its clips were measured on.
FINGERPRINT = re.compile(r"[0-9a-f]{64}")
# The one table between float precisions and compute dtypes.
FLOAT_DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}


def precision_of_dtype(dtype) -> str:
    """The float precision name of a compute dtype: float32 -> 'fp32', and so on.

    Raises:
      ValueError: not float32, float16 or bfloat16.
    """
    for name, float_dtype in FLOAT_DTYPES.items():
        if jnp.dtype(dtype) == jnp.dtype(float_dtype):
            return name
    raise ValueError(f"dtype={jnp.dtype(dtype).name} must be float32, float16 or bfloat16")


class PrecisionMapError(SampJaxError, ValueError):
    """A precision map is malformed; the message names the offending entry."""


def _check_string(field: str, value: Any, choices: tuple[str, ...]) -> None:
    """Refuses a field that is set (not None) to anything but a string, before it is looked
    up (a JSON list or object is not one of `choices`, nor hashable)."""
    if value is not None and not isinstance(value, str):
        raise PrecisionMapError(f"{field}={value!r} is {_json_name(value)}, expected a string: "
                                f"one of {choices}")


@dataclasses.dataclass(frozen=True)
class SitePrecision:
    """The precision of one GEMM site.

    Attributes:
      precision: one of `PRECISIONS`.
      activation: for `int8`, the activation scheme (one of `ACTIVATION_SCHEMES`, or its short
        name in `ACTIVATION_ALIASES`); else None.
      calibration: for INT8 static sites, the calibrator that picks the clip (e.g. 'mse'), or
        None for the caller's.
      clip: for static sites, the stored clip (INT8: `amax`; FP8: max |x|), used without
        calibrating; None: calibrate.

    `calibration` and `clip` say how the site's static scale is obtained, not what it runs:
    they take no part in equality or hashing (`SitePrecision('int8', 'per_tensor_static')`
    equals the same site with a stored clip).
    """

    precision: str
    activation: str | None = None
    calibration: str | None = dataclasses.field(default=None, compare=False)
    clip: float | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        _check_string("precision", self.precision, PRECISIONS)
        _check_string("activation", self.activation, ACTIVATION_SCHEMES + tuple(ACTIVATION_ALIASES))
        _check_string("calibration", self.calibration, CALIBRATOR_NAMES)
        if self.precision not in PRECISIONS:
            raise PrecisionMapError(f"precision={self.precision!r} is not one of {PRECISIONS}")
        if self.activation in ACTIVATION_ALIASES:
            object.__setattr__(self, "activation", ACTIVATION_ALIASES[self.activation])
        self._check_activation()
        self._check_calibration()

    def _check_activation(self) -> None:
        if self.precision == "int8":
            if self.activation is None:
                object.__setattr__(self, "activation", "per_token_dynamic")
            elif self.activation not in ACTIVATION_SCHEMES:
                raise PrecisionMapError(
                    f"activation={self.activation!r} is not one of {ACTIVATION_SCHEMES}")
        elif self.activation is not None:
            raise PrecisionMapError(
                f"activation={self.activation!r} is only allowed with precision 'int8', "
                f"not {self.precision!r}")

    def _check_calibration(self) -> None:
        if self.calibration is not None:
            if not self.calibration.strip():
                raise PrecisionMapError(f"calibration={self.calibration!r} must name a calibrator")
            if self.calibration not in CALIBRATOR_NAMES:
                raise PrecisionMapError(
                    f"calibration={self.calibration!r} is not one of {CALIBRATOR_NAMES}")
            if self.activation != "per_tensor_static":
                raise PrecisionMapError(
                    f"calibration={self.calibration!r} is only for int8 sites with per_tensor_static "
                    f"activations (FP8 scales come from max |x|), not {self}")
        if self.clip is not None:
            value = self.clip
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                    not math.isfinite(_as_float(value)) or value <= 0:
                raise PrecisionMapError(f"clip={value!r} must be a positive finite number")
            if not self.needs_calibration:
                raise PrecisionMapError(f"clip={value!r} is only for static sites (int8 "
                                        f"per_tensor_static, fp8_e4m3), not {self}")
            self._check_clip_scale(float(value))
            object.__setattr__(self, "clip", float(value))

    def _check_clip_scale(self, clip: float) -> None:
        """Refuses a clip whose activation scale (`clip / 127` for INT8, `clip / 448` for FP8,
        stored as float32, as `samp_jax.quantize` makes it) float32 cannot hold: it would fail
        inside `quantize`. A clip whose scale lies below `SCALE_EPS` runs at `SCALE_EPS`, as
        `quantize` floors every scale (a calibrator gives such a clip for an input that is all
        but zero, and a search writes it)."""
        divisor = FP8_E4M3_MAX if self.precision == "fp8_e4m3" else INT8_MAX
        with np.errstate(over="ignore"):
            scale = np.float32(clip / divisor)
        if np.isfinite(scale):
            return
        high = float(np.finfo(np.float32).max) * divisor
        raise PrecisionMapError(f"clip={clip!r} gives the activation scale clip / {divisor:g} = "
                                f"{clip / divisor:.4g}, which float32 cannot hold; expected "
                                f"0 < clip <= {high:.4g} for {self}")

    @property
    def is_quantized(self) -> bool:
        return self.precision in ("int8", "fp8_e4m3")

    @property
    def needs_calibration(self) -> bool:
        """True when the activation scale is static (calibrated ahead of time)."""
        return self.precision == "fp8_e4m3" or self.activation == "per_tensor_static"

    @property
    def float_dtype(self):
        """The dot dtype of a float site."""
        if self.precision not in FLOAT_DTYPES:
            raise ValueError(f"{self.precision!r} is not a float precision")
        return FLOAT_DTYPES[self.precision]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"precision": self.precision}
        for name in ("activation", "calibration", "clip"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @property
    def built_as(self) -> tuple:
        """Everything that builds the site, calibration included (equality leaves it out)."""
        return (self.precision, self.activation, self.calibration, self.clip)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> "SitePrecision":
        """Reads `{"precision": ..., "activation": ..., "calibration": ..., "clip": ...}`.

        Raises:
          PrecisionMapError: a bad entry, named with `where`.
        """
        try:
            return cls(data["precision"], data.get("activation"), data.get("calibration"),
                       data.get("clip"))
        except PrecisionMapError as e:
            raise PrecisionMapError(f"{where}: {e}") from None

    def __str__(self) -> str:
        if self.precision == "int8":
            return "int8-" + ("static" if self.activation == "per_tensor_static" else "dynamic")
        return self.precision


@dataclasses.dataclass(frozen=True)
class AttentionPrecision:
    """The precisions of one layer's attention matmuls (`ATTENTION_SITES`); None: the compute
    dtype, as a map without attention rules runs them.

    Attributes:
      scores: `attn_scores`, the product `Q K^T`.
      context: `attn_context`, the product of the probabilities and `V`.
    """

    scores: SitePrecision | None = None
    context: SitePrecision | None = None

    def __post_init__(self):
        # built in code as well as from a map's rules: what the attention cannot run is
        # refused here too, rather than run as dynamic INT8
        for site, p in zip(ATTENTION_SITES, (self.scores, self.context)):
            if p is not None:
                _check_attention_precision(p, site)

    @property
    def is_set(self) -> bool:
        """Whether the map names either product for this layer."""
        return self.scores is not None or self.context is not None

    @property
    def is_quantized(self) -> bool:
        """Whether either product runs in INT8 (the cuDNN path cannot take it)."""
        return any(p is not None and p.is_quantized for p in (self.scores, self.context))

    def __str__(self) -> str:
        return " ".join(f"{site}={p}" for site, p in zip(ATTENTION_SITES, (self.scores, self.context))
                        if p is not None)


def _check_attention_precision(precision: SitePrecision, where: str) -> None:
    """Refuses at an attention site what it cannot run: FP8 and static INT8 (the attention
    matmuls have no calibration: their scales are dynamic or fixed)."""
    if precision.precision == "fp8_e4m3":
        raise PrecisionMapError(
            f"{where}: precision='fp8_e4m3' is not supported at the attention sites "
            f"{ATTENTION_SITES}; expected 'int8' (dynamic) or one of {FLOAT_PRECISIONS}")
    if precision.activation == "per_tensor_static":
        raise PrecisionMapError(
            f"{where}: activation='per_tensor_static' is not supported at the attention sites "
            f"{ATTENTION_SITES} (their scales are dynamic: Q, K and V from each row, the "
            "probabilities fixed at 1/127), so neither are 'calibration' or 'clip'; expected "
            "'per_token_dynamic' (or no activation)")


@dataclasses.dataclass(frozen=True)
class Rule:
    """Assigns `precision` to the (layer, site) cells it selects; None selects all layers, or
    all GEMM sites (`SITES`: never the attention sites, which a rule selects by name only)."""

    layers: tuple[int, ...] | None
    sites: tuple[str, ...] | None
    precision: SitePrecision

    def matches(self, layer: int, site: str) -> bool:
        """Whether the rule selects the cell; `sites=None` ("*") selects the GEMM sites only
        (`SITES`), never the attention sites (`ATTENTION_SITES`)."""
        if self.sites is None:
            return (self.layers is None or layer in self.layers) and site in SITES
        return (self.layers is None or layer in self.layers) and site in self.sites

    def to_dict(self) -> dict[str, Any]:
        return {"layers": "*" if self.layers is None else list(self.layers),
                "sites": "*" if self.sites is None else list(self.sites),
                **self.precision.to_dict()}


@dataclasses.dataclass(frozen=True, eq=False)
class PrecisionMap:
    """Ordered rules plus a default, expanded to a per-(layer, site) table.

    Build one with `PrecisionMap(num_layers, rules, default)`, `preset(...)`,
    `from_table(...)` or `from_json(...)`. Index it as `pmap[layer, site]` (the GEMM sites);
    `pmap.attention(layer)` gives a layer's attention matmuls (`attn_scores`, `attn_context`),
    None where no rule names them.
    """

    num_layers: int
    rules: tuple[Rule, ...] = ()
    default: SitePrecision = SitePrecision("fp32")
    # ELECTRA-style models' embedding projection (`embeddings.project`), outside the layer
    # grid; None: the compute dtype. Dynamic INT8 or a float: it has no calibration.
    embedding_project: SitePrecision | None = None
    # The dtype between GEMM sites the map was chosen for (one of `COMPUTE_DTYPES`), or None:
    # the caller's. Like the clips, it takes no part in equality.
    compute_dtype: str | None = None
    # The sha256 of the float model the stored clips were measured on (`FINGERPRINT`), or None:
    # clips vouched for by the map's writer. Like the clips, it takes no part in equality.
    model_fingerprint: str | None = None

    def __post_init__(self):
        _check_string("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
        _check_fingerprint(self.model_fingerprint)
        if self.compute_dtype is not None and self.compute_dtype not in COMPUTE_DTYPES:
            raise PrecisionMapError(f"compute_dtype={self.compute_dtype!r} is not one of {COMPUTE_DTYPES}")
        if self.embedding_project is not None:
            object.__setattr__(self, "embedding_project", as_precision(self.embedding_project))
            if self.embedding_project.needs_calibration:
                raise PrecisionMapError(
                    f"embedding_project={self.embedding_project}: the embedding projection takes a "
                    "float precision or dynamic INT8 (it is not calibrated)")
        _check_num_layers(self.num_layers)
        object.__setattr__(self, "rules", tuple(self.rules))
        claimed: set[tuple[int, str]] = set()
        for index, rule in enumerate(self.rules):
            for layer in rule.layers or ():
                if not 0 <= layer < self.num_layers:
                    raise PrecisionMapError(
                        f"rule {index}: layer={layer} is out of range for num_layers={self.num_layers}")
            for site in rule.sites or ():
                if site not in SITES + ATTENTION_SITES:
                    raise PrecisionMapError(
                        f"rule {index}: site={site!r} is not one of {SITES + ATTENTION_SITES}"
                        + ("; an ELECTRA-style embedding projection is set by the map's own "
                           '"embedding_project" key, not by a rule' if "embed" in str(site) else ""))
            named = [site for site in rule.sites or () if site in ATTENTION_SITES]
            if named:
                _check_attention_precision(rule.precision, f"rule {index} (sites {named})")
            cells = {(l, s) for l, s in self._named_cells() if rule.matches(l, s)}
            if not cells - claimed:
                raise PrecisionMapError(
                    f"rule {index} ({rule.to_dict()}) matches nothing: earlier rules already "
                    "claim every cell it selects")
            claimed |= cells
        table = tuple(
            tuple(next((r.precision for r in self.rules if r.matches(layer, site)), self.default)
                  for site in SITES)
            for layer in range(self.num_layers))
        object.__setattr__(self, "_table", table)
        attention = tuple(
            AttentionPrecision(*(next((r.precision for r in self.rules if r.matches(layer, site)), None)
                                 for site in ATTENTION_SITES))
            for layer in range(self.num_layers))
        object.__setattr__(self, "_attention", attention)

    def _cells(self) -> Iterator[tuple[int, str]]:
        return ((layer, site) for layer in range(self.num_layers) for site in SITES)

    def _named_cells(self) -> Iterator[tuple[int, str]]:
        """Every cell a rule may select: the GEMM cells, then the attention cells."""
        yield from self._cells()
        yield from ((layer, site) for layer in range(self.num_layers) for site in ATTENTION_SITES)

    # ------------------------------------------------------------------------- access
    def __getitem__(self, key: tuple[int, str]) -> SitePrecision:
        layer, site = key
        if site not in SITES:
            raise PrecisionMapError(f"{site=} is not one of {SITES}" + (
                f"; the attention matmuls are pmap.attention({layer!r})" if site in ATTENTION_SITES else ""))
        if not 0 <= layer < self.num_layers:
            raise PrecisionMapError(f"{layer=} is out of range for num_layers={self.num_layers}")
        return self._table[layer][SITES.index(site)]

    def attention(self, layer: int) -> AttentionPrecision:
        """The precisions of layer `layer`'s attention matmuls (each None unless a rule names
        its site)."""
        if not 0 <= layer < self.num_layers:
            raise PrecisionMapError(f"{layer=} is out of range for num_layers={self.num_layers}")
        return self._attention[layer]

    @property
    def sets_attention(self) -> bool:
        """Whether a rule names an attention site (`ATTENTION_SITES`) of some layer."""
        return any(a.is_set for a in self._attention)

    def items(self) -> Iterator[tuple[tuple[int, str], SitePrecision]]:
        """((layer, site), precision) for every GEMM cell (`SITES`), layer-major; the attention
        sites are `attention(layer)`."""
        for layer, site in self._cells():
            yield (layer, site), self[layer, site]

    @property
    def table(self) -> tuple[tuple[SitePrecision, ...], ...]:
        """`table[layer][SITES.index(site)]`."""
        return self._table

    def __eq__(self, other) -> bool:
        return (isinstance(other, PrecisionMap) and self._table == other._table
                and self.embedding_project == other.embedding_project
                and self._attention == other._attention)

    def __hash__(self) -> int:
        return hash((self._table, self.embedding_project, self._attention))

    def needs_calibration(self) -> bool:
        return any(p.needs_calibration for _, p in self.items())

    def uniform_float_dtype(self) -> str | None:
        """The dtype name of the one float precision of every cell (`'float32'` for an
        all-`fp32` map), or None: quantized cells, or several precisions."""
        names = {p.precision for _, p in self.items()}
        if len(names) == 1 and (name := names.pop()) in FLOAT_DTYPES:
            return jnp.dtype(FLOAT_DTYPES[name]).name
        return None

    def stored_clips(self) -> dict[tuple[int, str], float]:
        """`{(layer, site): clip}` of the static cells that carry a stored clip."""
        return {key: p.clip for key, p in self.items() if p.clip is not None}

    @property
    def source(self) -> str | None:
        """The file `from_json` read the map from, or None (built in code, or JSON text)."""
        return getattr(self, "_source", None)

    def without_clips(self) -> "PrecisionMap":
        """The same precisions, calibrators and compute dtype with no stored clip and no
        `model_fingerprint`: every static cell is calibrated again."""
        cells = {key: SitePrecision(p.precision, p.activation, p.calibration)
                 for key, p in self.items()}
        cells.update(self._attention_cells())  # no clip there
        default = self.default
        rebuilt = PrecisionMap.from_table(
            cells, self.num_layers,
            default=SitePrecision(default.precision, default.activation, default.calibration))
        return dataclasses.replace(rebuilt, embedding_project=self.embedding_project,
                                   compute_dtype=self.compute_dtype)

    def site_methods(self) -> dict[tuple[int, str], str]:
        """`{(layer, site): calibrator}` of the cells whose rule names a calibrator."""
        return {key: p.calibration for key, p in self.items() if p.calibration is not None}

    def with_calibration(self, methods: Mapping[tuple[int, str], str | None],
                         clips: Mapping[tuple[int, str], float], *,
                         compute_dtype: str | None = None,
                         model_fingerprint: str | None = None) -> "PrecisionMap":
        """The same precisions with each static cell's calibrator (`methods`, INT8 static cells)
        and stored clip (`clips`) written in, `compute_dtype` and `model_fingerprint` (of the
        model the clips were measured on); rules are rewritten per layer (`from_table`).

        Raises:
          PrecisionMapError: a method or clip on a cell that is not static, or a bad value.
        """
        cells = {}
        for key, p in self.items():
            method, clip = methods.get(key), clips.get(key)
            cells[key] = p if method is None and clip is None else \
                SitePrecision(p.precision, p.activation, method, clip)
        cells.update(self._attention_cells())
        rebuilt = PrecisionMap.from_table(cells, self.num_layers, default=self.default)
        return dataclasses.replace(rebuilt, embedding_project=self.embedding_project,
                                   compute_dtype=compute_dtype, model_fingerprint=model_fingerprint)

    def _attention_cells(self) -> dict[tuple[int, str], SitePrecision]:
        """`{(layer, attention site): precision}` of the attention cells a rule names."""
        return {(layer, site): p for layer, pair in enumerate(self._attention)
                for site, p in zip(ATTENTION_SITES, (pair.scores, pair.context)) if p is not None}

    def summary(self) -> str:
        """One line per layer: `layer 0: qkv=int8-dynamic attn_out=fp16 ...`, then the
        attention sites a rule names (`attn_scores=int8-dynamic ...`)."""
        return "\n".join(
            f"layer {layer}: " + " ".join([f"{s}={self[layer, s]}" for s in SITES]
                                          + ([str(a)] if (a := self._attention[layer]).is_set else []))
            for layer in range(self.num_layers))

    # ------------------------------------------------------------------------ builders
    @classmethod
    def preset(cls, name: str, num_layers: int, *, activation: str = "per_token_dynamic",
               float_precision: str = "fp16") -> "PrecisionMap":
        """A named map.

        - `fp32`, `fp16`, `bf16`: every site in that float precision.
        - `fully_quant`: every site INT8 with the given activation scheme.
        - `quant_ffn_only`: `ffn_in`/`ffn_out` INT8, attention sites in `float_precision` (SAMP).
        - `fp8`: every site FP8 E4M3.
        """
        if name in FLOAT_PRECISIONS:
            return cls(num_layers, (), SitePrecision(name))
        int8 = SitePrecision("int8", activation)
        if name == "fully_quant":
            return cls(num_layers, (), int8)
        if name == "quant_ffn_only":
            return cls(num_layers, (Rule(None, ("ffn_in", "ffn_out"), int8),),
                       SitePrecision(float_precision))
        if name == "fp8":
            return cls(num_layers, (), SitePrecision("fp8_e4m3"))
        raise PrecisionMapError(f"preset {name=} is not one of {PRESETS}")

    @classmethod
    def from_table(cls, table: Mapping[tuple[int, str], SitePrecision | str], num_layers: int, *,
                   default: SitePrecision | str = "fp16") -> "PrecisionMap":
        """A map from explicit cells; GEMM cells absent from `table` take `default`, attention
        cells (`ATTENTION_SITES`) absent from it stay unset (the compute dtype).

        Writes one rule per layer that differs from the default, so the JSON stays short.
        """
        _check_num_layers(num_layers)
        default = as_precision(default)
        rules = []
        for layer in range(num_layers):
            groups: dict[tuple, tuple[SitePrecision, list[str]]] = {}  # by all that builds a site
            for site in SITES + ATTENTION_SITES:
                if site in ATTENTION_SITES and (layer, site) not in table:
                    continue
                p = as_precision(table.get((layer, site), default))
                if p.built_as != default.built_as or site in ATTENTION_SITES:
                    groups.setdefault(p.built_as, (p, []))[1].append(site)
            rules += [Rule((layer,), tuple(sites), p) for p, sites in groups.values()]
        named = SITES + ATTENTION_SITES
        unknown = [key for key in table if key[1] not in named or not 0 <= key[0] < num_layers]
        if unknown:
            raise PrecisionMapError(f"cells {unknown} are not (layer < {num_layers}, site in {named})")
        return cls(num_layers, tuple(rules), default)

    # ---------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        out = {"num_layers": self.num_layers, "default": self.default.to_dict(),
               "rules": [rule.to_dict() for rule in self.rules]}
        if self.embedding_project is not None:
            out["embedding_project"] = self.embedding_project.to_dict()
        if self.compute_dtype is not None:
            out["compute_dtype"] = self.compute_dtype
        if self.model_fingerprint is not None:
            out["model_fingerprint"] = self.model_fingerprint
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PrecisionMap":
        _check_keys(data, {"num_layers", "default", "rules", "embedding_project", "compute_dtype",
                           "model_fingerprint"}, {"num_layers"}, "precision map")
        listed = data.get("rules", [])
        if not isinstance(listed, (list, tuple)):
            raise PrecisionMapError(f"precision map: rules is {_json_name(listed)}, expected a "
                                    "JSON list of rule objects ([] for none)")
        rules = []
        for index, raw in enumerate(listed):
            where = f"rule {index}"
            _check_keys(raw, {"layers", "sites", *SITE_KEYS}, {"precision"}, where)
            precision = SitePrecision.from_dict(raw, where)
            rules.append(Rule(_selector(raw.get("layers", "*"), int, where, "layers"),
                              _selector(raw.get("sites", "*"), str, where, "sites"), precision))
        default = data.get("default", {"precision": "fp32"})
        _check_keys(default, set(SITE_KEYS), {"precision"}, "default")
        project = data.get("embedding_project")
        if project is not None:
            _check_keys(project, {"precision", "activation"}, {"precision"}, "embedding_project")
            project = SitePrecision.from_dict(project, "embedding_project")
        return cls(data["num_layers"], tuple(rules), SitePrecision.from_dict(default, "default"),
                   project, data.get("compute_dtype"), data.get("model_fingerprint"))

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "PrecisionMap":
        """Parses JSON text, or reads a `.json` file when given a path (errors then name it)."""
        text = str(text_or_path)
        if not text.strip():
            raise PrecisionMapError(f"precision map is {text!r}: expected JSON text (an object) "
                                    "or the path of a .json file")
        is_file = isinstance(text_or_path, Path) or _names_a_file(text)
        if not is_file and text.lstrip().startswith(("{", "[")):  # JSON text; a list is refused
            return cls._parse(text)
        path = Path(text_or_path)
        if not check_regular(path):  # a FIFO or /dev/zero there is named, and not read
            raise FileNotFoundError(f"no precision map at {path}")
        try:
            pmap = cls._parse(read_text(path))
            object.__setattr__(pmap, "_source", str(path))  # not a field: no part in equality
            return pmap
        except UnicodeDecodeError as e:
            raise PrecisionMapError(f"{path}: precision map is not UTF-8 text ({e.reason} at "
                                    f"byte {e.start})") from None
        except PrecisionMapError as e:
            raise PrecisionMapError(f"{path}: {e}") from None

    @classmethod
    def _parse(cls, text: str) -> "PrecisionMap":
        try:
            data = strict_json.loads(text)  # its objects know their repeated keys (_check_keys)
        except strict_json.BeyondReader as e:
            raise PrecisionMapError(f"precision map: {e}") from None
        except json.JSONDecodeError as e:
            raise PrecisionMapError(f"precision map is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Writes the map as JSON to `path` (atomically: never a half-written file)."""
        write_text_atomic(path, self.to_json() + "\n")


def _check_fingerprint(value: Any) -> None:
    """Refuses a `model_fingerprint` that is set to anything but 64 lowercase hex digits."""
    if value is not None and not (isinstance(value, str) and FINGERPRINT.fullmatch(value)):
        raise PrecisionMapError(f"model_fingerprint={value!r} is not a sha256 (64 lowercase hex "
                                "digits, as samp_jax.ptq.model_fingerprint writes it)")


def _check_num_layers(num_layers: Any) -> None:
    """Refuses a layer count that is not a positive integer, or above `MAX_LAYERS`, before
    anything is expanded per layer."""
    # bool is an int subclass: JSON's true would be one layer
    if type(num_layers) is not int or num_layers < 1:
        found = " (a boolean is not a count)" if isinstance(num_layers, bool) else ""
        raise PrecisionMapError(f"num_layers={num_layers!r} must be a positive integer{found}")
    if num_layers > MAX_LAYERS:
        shown = num_layers if num_layers < 10**12 else f"2^{num_layers.bit_length() - 1} or more"
        raise PrecisionMapError(f"num_layers={shown} is more layers than any encoder has; "
                                f"expected the model's layer count (at most {MAX_LAYERS})")


def _names_a_file(text: str) -> bool:
    """Whether `text` is the path of an existing file (JSON text too long for a file name is
    not); a FIFO or a device there counts (`from_json` refuses it, named)."""
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # a name too long, a NUL character
        return False


def as_precision(value: SitePrecision | str) -> SitePrecision:
    """A `SitePrecision` from itself or its name ('fp16', 'int8-dynamic', 'int8-static', ...)."""
    if isinstance(value, SitePrecision):
        return value
    aliases = {"int8-dynamic": SitePrecision("int8", "per_token_dynamic"),
               "int8-static": SitePrecision("int8", "per_tensor_static")}
    return aliases.get(value) or SitePrecision(value)


def _json_name(value: Any) -> str:
    """How JSON spells `value`'s type: `null`, `a boolean`, `a list`, ..."""
    names = {type(None): "null", bool: "a boolean", int: "an integer", float: "a number",
             str: "a string", list: "a list", tuple: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _as_float(value: numbers.Real) -> float:
    """`float(value)`, or Inf for an integer too large for a float (JSON reads 1 followed by
    400 zeros as an int)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _check_keys(data: Any, allowed: set[str], required: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise PrecisionMapError(f"{where} must be a JSON object, got {_json_name(data)}")
    repeated = getattr(data, "repeated", ())  # an object `strict_json.loads` read
    if repeated:
        raise PrecisionMapError(f"{where}: key {repeated[0]!r} appears more than once in the "
                                "object; expected each key once (JSON keeps only the last "
                                "value, silently)")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PrecisionMapError(f"{where}: unknown keys {unknown}; allowed {sorted(allowed)}")
    missing = sorted(required - set(data))
    if missing:
        raise PrecisionMapError(f"{where}: missing keys {missing}")


def _selector(value: Any, kind: type, where: str, field: str) -> tuple | None:
    if value == "*":
        return None
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, kind) and not isinstance(v, bool) for v in items):
        raise PrecisionMapError(
            f"{where}: {field}={value!r} must be '*', a {kind.__name__} or a non-empty list of them")
    return tuple(items)
