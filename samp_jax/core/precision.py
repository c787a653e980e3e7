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
`activation` is only allowed with `int8` and defaults to `per_token_dynamic`. An optional
`"embedding_project": {"precision": ...}` sets the precision of ELECTRA-style embedding
projections (a float precision or dynamic INT8; default: the compute dtype).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import jax.numpy as jnp

from samp_jax.core.atomic import write_text_atomic
# The GEMM sites of an encoder layer, in execution order.
SITES = ("qkv", "attn_out", "ffn_in", "ffn_out")
FLOAT_PRECISIONS = ("fp32", "bf16", "fp16")
PRECISIONS = FLOAT_PRECISIONS + ("int8", "fp8_e4m3")
ACTIVATION_SCHEMES = ("per_tensor_static", "per_token_dynamic")
PRESETS = ("fp32", "fp16", "bf16", "fully_quant", "quant_ffn_only", "fp8")
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


class PrecisionMapError(ValueError):
    """A precision map is malformed; the message names the offending entry."""


@dataclasses.dataclass(frozen=True)
class SitePrecision:
    """The precision of one GEMM site.

    Attributes:
      precision: one of `PRECISIONS`.
      activation: for `int8`, the activation scheme (one of `ACTIVATION_SCHEMES`); else None.
    """

    precision: str
    activation: str | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise PrecisionMapError(f"precision={self.precision!r} is not one of {PRECISIONS}")
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

    def to_dict(self) -> dict[str, str]:
        out = {"precision": self.precision}
        if self.activation is not None:
            out["activation"] = self.activation
        return out

    def __str__(self) -> str:
        if self.precision == "int8":
            return "int8-" + ("static" if self.activation == "per_tensor_static" else "dynamic")
        return self.precision


@dataclasses.dataclass(frozen=True)
class Rule:
    """Assigns `precision` to the (layer, site) cells it selects; None selects all."""

    layers: tuple[int, ...] | None
    sites: tuple[str, ...] | None
    precision: SitePrecision

    def matches(self, layer: int, site: str) -> bool:
        return (self.layers is None or layer in self.layers) and (self.sites is None or site in self.sites)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": "*" if self.layers is None else list(self.layers),
                "sites": "*" if self.sites is None else list(self.sites),
                **self.precision.to_dict()}


@dataclasses.dataclass(frozen=True, eq=False)
class PrecisionMap:
    """Ordered rules plus a default, expanded to a per-(layer, site) table.

    Build one with `PrecisionMap(num_layers, rules, default)`, `preset(...)`,
    `from_table(...)` or `from_json(...)`. Index it as `pmap[layer, site]`.
    """

    num_layers: int
    rules: tuple[Rule, ...] = ()
    default: SitePrecision = SitePrecision("fp32")
    # ELECTRA-style models' embedding projection (`embeddings.project`), outside the layer
    # grid; None: the compute dtype. Dynamic INT8 or a float: it has no calibration.
    embedding_project: SitePrecision | None = None

    def __post_init__(self):
        if self.embedding_project is not None:
            object.__setattr__(self, "embedding_project", as_precision(self.embedding_project))
            if self.embedding_project.needs_calibration:
                raise PrecisionMapError(
                    f"embedding_project={self.embedding_project}: the embedding projection takes a "
                    "float precision or dynamic INT8 (it is not calibrated)")
        if not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise PrecisionMapError(f"num_layers={self.num_layers!r} must be a positive integer")
        object.__setattr__(self, "rules", tuple(self.rules))
        claimed: set[tuple[int, str]] = set()
        for index, rule in enumerate(self.rules):
            for layer in rule.layers or ():
                if not 0 <= layer < self.num_layers:
                    raise PrecisionMapError(
                        f"rule {index}: layer={layer} is out of range for num_layers={self.num_layers}")
            for site in rule.sites or ():
                if site not in SITES:
                    raise PrecisionMapError(f"rule {index}: site={site!r} is not one of {SITES}")
            cells = {(l, s) for l, s in self._cells() if rule.matches(l, s)}
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

    def _cells(self) -> Iterator[tuple[int, str]]:
        return ((layer, site) for layer in range(self.num_layers) for site in SITES)

    # ------------------------------------------------------------------------- access
    def __getitem__(self, key: tuple[int, str]) -> SitePrecision:
        layer, site = key
        if site not in SITES:
            raise PrecisionMapError(f"{site=} is not one of {SITES}")
        if not 0 <= layer < self.num_layers:
            raise PrecisionMapError(f"{layer=} is out of range for num_layers={self.num_layers}")
        return self._table[layer][SITES.index(site)]

    def items(self) -> Iterator[tuple[tuple[int, str], SitePrecision]]:
        """((layer, site), precision) for every cell, layer-major."""
        for layer, site in self._cells():
            yield (layer, site), self[layer, site]

    @property
    def table(self) -> tuple[tuple[SitePrecision, ...], ...]:
        """`table[layer][SITES.index(site)]`."""
        return self._table

    def __eq__(self, other) -> bool:
        return (isinstance(other, PrecisionMap) and self._table == other._table
                and self.embedding_project == other.embedding_project)

    def __hash__(self) -> int:
        return hash((self._table, self.embedding_project))

    def needs_calibration(self) -> bool:
        return any(p.needs_calibration for _, p in self.items())

    def summary(self) -> str:
        """One line per layer: `layer 0: qkv=int8-dynamic attn_out=fp16 ...`."""
        return "\n".join(
            f"layer {layer}: " + " ".join(f"{s}={self[layer, s]}" for s in SITES)
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
        """A map from explicit cells; cells absent from `table` take `default`.

        Writes one rule per layer that differs from the default, so the JSON stays short.
        """
        default = as_precision(default)
        rules = []
        for layer in range(num_layers):
            groups: dict[SitePrecision, list[str]] = {}
            for site in SITES:
                p = as_precision(table.get((layer, site), default))
                if p != default:
                    groups.setdefault(p, []).append(site)
            rules += [Rule((layer,), tuple(sites), p) for p, sites in groups.items()]
        unknown = [key for key in table if key[1] not in SITES or not 0 <= key[0] < num_layers]
        if unknown:
            raise PrecisionMapError(f"cells {unknown} are not (layer < {num_layers}, site in {SITES})")
        return cls(num_layers, tuple(rules), default)

    # ---------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        out = {"num_layers": self.num_layers, "default": self.default.to_dict(),
               "rules": [rule.to_dict() for rule in self.rules]}
        if self.embedding_project is not None:
            out["embedding_project"] = self.embedding_project.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PrecisionMap":
        _check_keys(data, {"num_layers", "default", "rules", "embedding_project"}, {"num_layers"},
                    "precision map")
        rules = []
        for index, raw in enumerate(data.get("rules", [])):
            where = f"rule {index}"
            _check_keys(raw, {"layers", "sites", "precision", "activation"}, {"precision"}, where)
            try:
                precision = SitePrecision(raw["precision"], raw.get("activation"))
            except PrecisionMapError as e:
                raise PrecisionMapError(f"{where}: {e}") from None
            rules.append(Rule(_selector(raw.get("layers", "*"), int, where, "layers"),
                              _selector(raw.get("sites", "*"), str, where, "sites"), precision))
        default = data.get("default", {"precision": "fp32"})
        _check_keys(default, {"precision", "activation"}, {"precision"}, "default")
        project = data.get("embedding_project")
        if project is not None:
            _check_keys(project, {"precision", "activation"}, {"precision"}, "embedding_project")
            project = SitePrecision(project["precision"], project.get("activation"))
        return cls(data["num_layers"], tuple(rules),
                   SitePrecision(default["precision"], default.get("activation")), project)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "PrecisionMap":
        """Parses JSON text, or reads a `.json` file when given a path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            if not path.is_file():
                raise FileNotFoundError(f"no precision map at {path}")
            text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PrecisionMapError(f"precision map is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Writes the map as JSON to `path` (atomically: never a half-written file)."""
        write_text_atomic(path, self.to_json() + "\n")


def as_precision(value: SitePrecision | str) -> SitePrecision:
    """A `SitePrecision` from itself or its name ('fp16', 'int8-dynamic', 'int8-static', ...)."""
    if isinstance(value, SitePrecision):
        return value
    aliases = {"int8-dynamic": SitePrecision("int8", "per_token_dynamic"),
               "int8-static": SitePrecision("int8", "per_tensor_static")}
    return aliases.get(value) or SitePrecision(value)


def _check_keys(data: Any, allowed: set[str], required: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise PrecisionMapError(f"{where} must be a JSON object, got {type(data).__name__}")
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
