"""Latency model of an encoder forward under a precision map.

`latency(map) = other_ms + Σ_{layer, site} site_ms[site, precision] + Σ_layer attention_ms[layer,
kind]`, for one (batch, seq) shape, `kind` the map's attention of the layer (`float` unless its
`attn_scores` / `attn_context` are INT8: `attention_kind`). `site_ms` and `attention_ms` come
from one of two sources, and a table says which:

- **measured**: each GEMM site (its shape, its precision, its epilogue) is timed on the current
  device through `samp_jax.gemm` (`samp_jax.serving.timing`: warm-up, then the median of many
  back-to-back runs, the precisions taken in turns so that a machine's drift hits them alike), and
  `other_ms` is the measured FP16 forward minus its GEMM sites and its float attention. Each
  layer's attention (scores, softmax and context, with the quantize passes INT8 adds) is timed
  the same way, float and INT8 in turns (`_time_attention`). Tables are cached as JSON keyed
  by device kind and shape.
  A measured table records the implementation that ran each timed GEMM (`executed`: Pallas
  Mosaic, Pallas Triton or XLA), so a table whose INT8 sites fell back to XLA says so.
- **estimated**: a roofline from FLOPs and bytes on a device's spec sheet
  (`calibrate.search.targets`: H100, A100, L4). Used when the search plans for a device other than
  the one it runs on (`table_for_target`). Attention is priced as it would run there
  (`_estimate_attention_ms`): float attention fused (flash, no scores in memory) where cuDNN
  takes it, INT8 attention as XLA runs it, its INT32 scores and INT8 probabilities in memory.

A table without `attention_ms` (built by hand, or written before tables priced attention) keeps
attention inside `other_ms` and prices every map's attention as float: the search then does not
offer INT8 attention (`LatencyTable.prices_attention`), and says so.

`check_against_forward` compares the model with real end-to-end timings on this device.

A table records the architecture it was made for (`architecture`: the readable dims of
`ARCHITECTURE_DIMS` and the digest of the whole `EncoderConfig` that names a cached table's
file): costs are of one model's GEMM shapes and attention. A table given to a search
(`--latency-table`, `search(latency_table=...)`) is checked against the model before any slow
step (`check_given_table`): another architecture is refused, naming the fields that differ. A
table without one (written before tables recorded it, or built by hand) is used with a warning
that it could not be checked: unlike a cached table, a given one may have been measured on a
machine the user no longer has, and its `num_layers` is still checked. A measured table of
another device than this process's is used (the report names its device), with a warning.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from calibrate.calibration.api import calibrate
from calibrate.search.targets import H100, DeviceSpec, Target, resolve_target
from samp_jax.core.assets import cache_dir as default_cache
from samp_jax.core.atomic import write_cache_text
from samp_jax.core.errors import SampJaxError
from samp_jax.core.host_memory import cpu_buffers_kept
from samp_jax.models.config import EncoderConfig
from samp_jax.models.layers import attention as run_attention
from samp_jax.ops import gemm, implementation_digest, record_executions
from samp_jax.core.precision import SITES, AttentionPrecision, PrecisionMap, SitePrecision
from samp_jax.core.primitives import quantize_weight_fp8, quantize_weight_int8
from samp_jax.ptq.quantized import quantize
from samp_jax.serving.forward import jit_forward
from samp_jax.serving.timing import device_description, device_file_stem, time_interleaved, time_ms
from samp_jax.core.version import __version__


H100_SXM = H100  # the default spec of `estimate_table`


def site_shapes(config: EncoderConfig) -> dict[str, tuple[int, int]]:
    """(K, N) of each GEMM site (`EncoderConfig.site_shapes`: the model's own)."""
    return config.site_shapes


def site_flops(config: EncoderConfig, tokens: int) -> dict[str, int]:
    return {site: 2 * tokens * k * n for site, (k, n) in site_shapes(config).items()}


def attention_flops(config: EncoderConfig, layer: int, seq_len: int) -> int:
    """FLOPs per query token of one attention matmul of layer `layer` (the scores `Q K^T` and
    the context `P V` cost the same): `2 * keys * heads * head_dim`, the `2 b h t s d` of a
    batch over its `b t` tokens, with `keys` the row's `seq_len`, or the `window + 1` keys a
    local layer's query sees when fewer."""
    keys = seq_len
    if config.is_local_layer(layer):
        keys = min(seq_len, 2 * (config.local_attention // 2) + 1)
    return 2 * keys * config.num_heads * config.head_dim


def relative_term_flops(config: EncoderConfig, seq_len: int) -> int:
    """FLOPs per query token of DeBERTa's disentangled relative terms in one layer (0 for
    other families): each term (`c2p`, `p2c`) multiplies a token's query or key, in float32,
    with the rows of the relative position table its row reaches (`2 seq_len - 1`, at most
    the `2 span` rows of the table): `2 * rows * heads * head_dim`. The per-layer projections
    of the table itself cost the same whatever the batch, so they are not counted per token."""
    if not config.disentangled_attention:
        return 0
    rows = min(2 * seq_len - 1, 2 * config.relative_span)
    return len(config.pos_att_type) * 2 * rows * config.num_heads * config.head_dim


def flops_by_precision(pmap: PrecisionMap, config: EncoderConfig, seq_len: int) -> dict[str, int]:
    """The encoder's matmul FLOPs per token for rows of `seq_len` tokens, by the precision that
    runs them (`str(SitePrecision)`: `int8-dynamic`, `int8-static`, `fp8_e4m3`, `fp16`, ...;
    `float`: the compute dtype, whichever it is).

    Counted: every GEMM site of every layer at the map's precision; an ELECTRA-style embedding
    projection (`embedding_size` to `hidden_size`) at the map's `embedding_project`, else
    `float`; and the two attention matmuls of every layer (`attention_flops`) at the map's
    `attn_scores` / `attn_context`, else `float` (a map that does not name them runs attention
    in the compute dtype: its attention FLOPs are float FLOPs); DeBERTa's relative score terms
    (`relative_term_flops`) as `float`, as they run."""
    flops = site_flops(config, 1)
    out: dict[str, int] = {}

    def add(precision: SitePrecision | None, count: int) -> None:
        key = "float" if precision is None else str(precision)
        out[key] = out.get(key, 0) + count

    for (_, site), p in pmap.items():
        add(p, flops[site])
    if config.embedding_size is not None:  # a projection to hidden_size
        add(pmap.embedding_project, 2 * config.embedding_size * config.hidden_size)
    for layer in range(pmap.num_layers):
        pair = pmap.attention(layer)
        per = attention_flops(config, layer, seq_len)
        add(pair.scores, per)
        add(pair.context, per)
        if relative := relative_term_flops(config, seq_len):
            add(None, relative)
    return out


def int8_flop_fraction(pmap: PrecisionMap, config: EncoderConfig, *, seq_len: int) -> float:
    """Share of the encoder's matmul FLOPs (per token, rows of `seq_len` tokens) that run in
    INT8 (`flops_by_precision`): the map's GEMM sites, an ELECTRA-style embedding projection,
    and the attention matmuls, which count as float FLOPs unless the map puts them in INT8
    (so `fully_quant` alone is below 1, by attention's share, which grows with `seq_len`);
    DeBERTa's relative score terms always count as float."""
    counts = flops_by_precision(pmap, config, seq_len)
    return sum(n for key, n in counts.items() if key.startswith("int8")) / sum(counts.values())


# The kinds of one layer's attention a table prices (`LatencyTable.attention_ms` keys
# "<layer>/<kind>"): in the float of the map's compute dtype, or both products INT8.
ATTENTION_FLOAT, ATTENTION_INT8 = "float", "int8-dynamic"
ATTENTION_KINDS = (ATTENTION_FLOAT, ATTENTION_INT8)
# The precisions of a layer's attention the search offers besides float (`PrecisionMap` rules).
INT8_ATTENTION = AttentionPrecision(SitePrecision("int8"), SitePrecision("int8"))


def attention_kind(pair: AttentionPrecision) -> dict[str, float]:
    """`{kind: share}` of one layer's attention as a table prices it: a float precision named
    at a site is priced as `float` (the table times attention in its compute dtype), and a
    layer with one product INT8 and the other float as half of each."""
    int8 = sum(p is not None and p.is_quantized for p in (pair.scores, pair.context))
    return {ATTENTION_FLOAT: (2 - int8) / 2, ATTENTION_INT8: int8 / 2}


_ACT_BYTES = {"int8": 1, "fp8_e4m3": 1, "fp16": 2, "bf16": 2, "fp32": 4}


# Sites whose input comes from a LayerNorm: the fused LayerNorm+quantize kernel emits INT8 and
# the per-row scales in the same pass, so even dynamic scales cost no extra pass there.
LAYERNORM_FED = ("qkv", "ffn_in")
# Part of a measured table's cache name; raised when the code it times changes (2: the
# head-major XLA attention and the division-free GELU; 3: the summed row finiteness and the
# attention scale on q; 4: site entries scaled to whole forwards; 5: the precisions of a site,
# and the whole forwards, timed in turns; 6: the time outside the sites fitted to every
# forward; 7: a gated `ffn_in` timed at its real width; 8: each layer's attention, float and
# INT8, timed apart from `other_ms`).
TABLE_VERSION = 8


def _estimate_site_ms(site: str, tokens: int, k: int, n: int, precision: SitePrecision,
                      spec: DeviceSpec) -> float:
    """Roofline of one GEMM site with its epilogue.

    Float sites read and write their own width. Quantized sites read 1-byte activations when
    their producer hands them over quantized: a fused LayerNorm (`LAYERNORM_FED`, static or
    per-row dynamic scales), or, with a static scale, the previous op's requantizing epilogue.
    Per-token dynamic scales elsewhere (`attn_out`, `ffn_out`) need each row's max first: the
    16-bit activations are read twice (reduce, then quantize) with one more kernel launch.
    Quantized sites write 16-bit outputs.
    """
    p = precision.precision
    if p not in spec.peak_ops:
        raise ValueError(f"{spec.name} has no {p} GEMMs (peak_ops covers {sorted(spec.peak_ops)})")
    dynamic = precision.is_quantized and not precision.needs_calibration
    if dynamic and site not in LAYERNORM_FED:
        act_bytes, launches = 2 * tokens * k * 2, 2
    else:
        act_bytes, launches = tokens * k * _ACT_BYTES[p], 1
    nbytes = act_bytes + k * n * _ACT_BYTES[p] + tokens * n * 2
    seconds = max(2 * tokens * k * n / spec.peak_ops[p], nbytes / spec.bandwidth)
    return 1e3 * seconds + launches * spec.launch_us * 1e-3


def fused_float_attention(config: EncoderConfig, layer: int, float_precision: str) -> bool:
    """Whether a layer's float attention runs fused on a GPU target (cuDNN flash attention,
    `samp_jax.models.layers.resolve_attention_impl`): a 16-bit float, no bias (MPNet's,
    DeBERTa's relative terms) and a global layer; else XLA, its scores in memory."""
    biased = config.relative_attention_num_buckets > 0 or config.disentangled_attention
    return float_precision in ("fp16", "bf16") and not biased and not config.is_local_layer(layer)


def _estimate_attention_ms(config: EncoderConfig, layer: int, batch: int, seq: int, kind: str,
                           float_precision: str, spec: DeviceSpec) -> float:
    """Roofline of one layer's attention (scores, softmax, context) as samp-jax runs it.

    FLOPs: both products (`attention_flops` each, per token), at the float's peak or INT8's.
    Float, fused (`fused_float_attention`): Q, K, V read and the context written, one launch;
    float on XLA: also the float32 logits written and read, the probabilities in the float
    written and read, three launches. INT8 (always XLA): Q, K and V read, quantized and read
    again at 1 byte, the INT32 scores written and read, the INT8 probabilities written and
    read, five launches.
    """
    tokens, hidden = batch * seq, config.num_heads * config.head_dim
    keys = attention_flops(config, layer, seq) // (2 * hidden)  # the keys a query sees
    cells = batch * config.num_heads * seq * keys  # entries of the [b, n, t, s] scores
    flops = 2 * tokens * attention_flops(config, layer, seq)
    width = _ACT_BYTES[float_precision]
    if kind == ATTENTION_FLOAT:
        peak = spec.peak_ops[float_precision]
        nbytes, launches = 4 * tokens * hidden * width, 1
        if not fused_float_attention(config, layer, float_precision):
            nbytes, launches = nbytes + cells * (4 + 4 + width + width), 3
    else:
        peak = spec.peak_ops["int8"]
        nbytes = 3 * tokens * hidden * (width + 1 + 1) + tokens * hidden * width + cells * (4 + 4 + 1 + 1)
        launches = 5
    seconds = max(flops / peak, nbytes / spec.bandwidth)
    return 1e3 * seconds + launches * spec.launch_us * 1e-3


@dataclasses.dataclass(frozen=True)
class LatencyTable:
    """Per-site GEMM latencies (ms) for one shape, and the non-GEMM remainder.

    Attributes:
      device: device kind the numbers describe.
      source: 'measured' or 'estimated'.
      batch, seq: the input shape.
      site_ms: {"site/precision": ms} with precision as `str(SitePrecision)`.
      other_ms: LayerNorms, embeddings, head, what else no site accounts for in the whole
        forward, and attention when `attention_ms` is empty.
      num_layers: layers of the model the table was made for.
      forward_ms: measured tables only: {"precision": ms} of the whole forward with every site
        at that precision, which the precision's site entries were scaled to reproduce.
      executed: measured tables only: {"site/precision": implementation} that ran each timed
        GEMM, and {"forward/precision": "impl xN, ..."} over the sites of each whole forward
        (`pallas_mosaic`, `pallas_triton`, `xla`; `samp_jax.ops.record_executions`).
      measured_at: measured tables: when (UTC, `YYYY-MM-DD HH:MM`); a search that reads a
        cached table shows it, so an old measurement is seen as one.
      load_per_core: measured on a CPU: the load of other work per core as the timing began
        (the 1-minute load average less this process's own use; above 1, other work shared
        the cores and the table may misprice maps).
      architecture: the model the costs are of (`architecture_of`: `ARCHITECTURE_DIMS` and
        `digest`), or None: a table written before tables recorded it, which cannot be checked.
      attention_ms: {"<layer>/<kind>": ms} of each layer's attention (scores, softmax and
        context) at `kind` (`ATTENTION_KINDS`: `float`, the table's compute dtype, or
        `int8-dynamic`, both products INT8 with their quantize passes); empty: attention is in
        `other_ms`, priced as float whatever a map says (`prices_attention`).
    """

    device: str
    source: str
    batch: int
    seq: int
    num_layers: int
    site_ms: dict[str, float]
    other_ms: float
    forward_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    executed: dict[str, str] = dataclasses.field(default_factory=dict)
    measured_at: str = ""
    load_per_core: float | None = None
    architecture: dict | None = None
    attention_ms: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def prices_attention(self) -> bool:
        """Whether the table prices each layer's attention, float and INT8 (`attention_ms`)."""
        return bool(self.attention_ms)

    def attention(self, layer: int, kind: str) -> float:
        """The ms of layer `layer`'s attention at `kind` (`ATTENTION_KINDS`).

        Raises:
          KeyError: the table prices no attention, or not this layer at this kind."""
        key = f"{layer}/{kind}"
        if key not in self.attention_ms:
            raise KeyError(f"latency table has no attention entry {key!r}"
                           + ("; it prices no attention (attention is in other_ms)"
                              if not self.attention_ms else ""))
        return self.attention_ms[key]

    @property
    def fixed_ms(self) -> float:
        """The ms a map's GEMM sites leave out when its attention is float: `other_ms` plus
        every layer's float attention where the table prices attention."""
        if not self.prices_attention:
            return self.other_ms
        return self.other_ms + sum(self.attention(layer, ATTENTION_FLOAT)
                                   for layer in range(self.num_layers))

    def attention_gains(self) -> dict[int, float]:
        """{layer: ms saved by INT8 attention there} (float minus INT8; negative: INT8 is priced
        slower); empty when the table prices no attention."""
        if not self.prices_attention:
            return {}
        return {layer: self.attention(layer, ATTENTION_FLOAT) - self.attention(layer, ATTENTION_INT8)
                for layer in range(self.num_layers)}

    def describe(self) -> str:
        """`source (device, BxS[, measured at ..., load ... per core])` for reports."""
        when = [f"measured {self.measured_at} UTC"] if self.measured_at else []
        if self.load_per_core is not None:
            when.append(f"load {self.load_per_core:.2g} per core"
                        + (": busy, --measure-latency-again when idle"
                           if self.load_per_core > 1 else ""))
        return f"{self.source} ({', '.join([self.device, f'{self.batch}x{self.seq}', *when])})"

    def executed_by_precision(self) -> dict[str, list[str]]:
        """{precision: the implementations that ran its timed site GEMMs} (empty: estimated)."""
        out: dict[str, set[str]] = {}
        for key, implementation in self.executed.items():
            kind, _, precision = key.partition("/")
            if kind != "forward":
                out.setdefault(precision, set()).add(implementation)
        return {precision: sorted(names) for precision, names in sorted(out.items())}

    def site(self, site: str, precision: SitePrecision) -> float:
        key = f"{site}/{precision}"
        if key not in self.site_ms:
            raise KeyError(f"latency table has no entry {key!r}; it covers {sorted(self.site_ms)}")
        return self.site_ms[key]

    def map_ms(self, pmap: PrecisionMap) -> float:
        """Estimated forward latency of `pmap` in milliseconds."""
        if pmap.num_layers != self.num_layers:
            raise ValueError(f"map has {pmap.num_layers} layers, the table {self.num_layers}")
        total = self.other_ms + sum(self.site(s, p) for (_, s), p in pmap.items())
        if self.prices_attention:
            total += sum(share * self.attention(layer, kind) for layer in range(self.num_layers)
                         for kind, share in attention_kind(pmap.attention(layer)).items() if share)
        return total

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str, *, num_layers: int | None = None) -> "LatencyTable":
        """The table `to_json` wrote, checked by `validate_table` (for `num_layers` when given).

        Raises:
          ValueError: `text` is not JSON, or not a table the latency model can use.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON: {e}") from None
        return validate_table(data, num_layers=num_layers)


_FIELDS = {field.name: field for field in dataclasses.fields(LatencyTable)}
_REQUIRED = tuple(name for name, field in _FIELDS.items()
                  if field.default is dataclasses.MISSING
                  and field.default_factory is dataclasses.MISSING)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_entries(name: str, entries) -> None:
    """`validate_table`'s check of one dict field: site keys in `site_ms`, ms or strings."""
    if not isinstance(entries, dict):
        raise ValueError(f"{name} is a {type(entries).__name__}; expected an object")
    for key, value in entries.items():
        if name == "site_ms" and not (isinstance(key, str) and key.partition("/")[0] in SITES):
            raise ValueError(f"site_ms has the key {key!r}; expected '<site>/<precision>' with "
                             f"a site of {SITES}")
        if name == "executed":
            if not isinstance(value, str):
                raise ValueError(f"executed entry {key!r} is {value!r}; expected a string")
        elif name == "attention_ms":  # 0 where a fit left nothing outside the sites
            if not (_is_number(value) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} entry {key!r} is {value!r}; expected a number of ms, "
                                 "0 or more")
        elif not (_is_number(value) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} entry {key!r} is {value!r}; expected a positive number of ms")


def validate_table(data, *, options: Iterable[SitePrecision] = (), num_layers: int | None = None
                   ) -> LatencyTable:
    """`data` (a `LatencyTable`, or the dict `to_json` writes) as a table the latency model can
    use, or an error saying what is wrong with it: the fields of `LatencyTable` and no others;
    `batch`, `seq`, `num_layers` positive integers; every `site_ms` and `forward_ms` entry a
    finite positive number of ms under a `"<site>/<precision>"` (`SITES`) or precision key;
    `other_ms` finite and not negative; `executed` strings; `attention_ms` empty (a table
    written before tables priced attention) or every layer's `"<layer>/<kind>"` for each of
    `ATTENTION_KINDS`, finite ms, 0 or more (0 where a measured fit left nothing outside the
    sites: `_take_attention_out`).

    Args:
      options: precisions every site must have an entry for.
      num_layers: the layers the table must be for (the model's), when given.

    Raises:
      ValueError: naming the first field or entry that is wrong, and what was expected.
    """
    if isinstance(data, LatencyTable):
        data = dataclasses.asdict(data)
    if not isinstance(data, dict):
        raise ValueError(f"a {type(data).__name__}, not an object; expected an object with "
                         f"{', '.join(_FIELDS)}")
    unknown = sorted(set(data) - set(_FIELDS))
    missing = [name for name in _REQUIRED if name not in data]
    if unknown or missing:
        raise ValueError(f"fields {missing} are missing and {unknown} unknown; expected "
                         f"{', '.join(_REQUIRED)} (and optionally forward_ms, executed, "
                         "measured_at, load_per_core, architecture, attention_ms)")
    for name in ("device", "source"):
        if not isinstance(data[name], str):
            raise ValueError(f"{name} is {data[name]!r}; expected a string")
    for name in ("batch", "seq", "num_layers"):
        if not (isinstance(data[name], int) and not isinstance(data[name], bool) and data[name] > 0):
            raise ValueError(f"{name} is {data[name]!r}; expected a positive integer")
    if num_layers is not None and data["num_layers"] != num_layers:
        raise ValueError(f"num_layers is {data['num_layers']}; expected {num_layers} (the model's)")
    if not (_is_number(data["other_ms"]) and math.isfinite(data["other_ms"])
            and data["other_ms"] >= 0):
        raise ValueError(f"other_ms is {data['other_ms']!r}; expected a number of ms, 0 or more")
    for name in ("site_ms", "forward_ms", "executed", "attention_ms"):
        _check_entries(name, data.get(name, {}))
    _check_attention_entries(data.get("attention_ms", {}), data["num_layers"])
    _check_architecture_entry(data.get("architecture"))
    if not isinstance(data.get("measured_at", ""), str):
        raise ValueError(f"measured_at is {data['measured_at']!r}; expected a string")
    load = data.get("load_per_core")
    if load is not None and not (_is_number(load) and math.isfinite(load) and load >= 0):
        raise ValueError(f"load_per_core is {load!r}; expected a number, 0 or more, or null")
    for key in (f"{site}/{p}" for p in options for site in SITES):
        if key not in data["site_ms"]:
            raise ValueError(f"site_ms has no entry {key!r}; the search's options need it")
    return LatencyTable(**data)


def _check_attention_entries(entries: dict, num_layers) -> None:
    """`validate_table`'s check of `attention_ms`' keys: none, or exactly each layer's
    `"<layer>/<kind>"` for every kind of `ATTENTION_KINDS`."""
    if not entries:
        return
    expected = {f"{layer}/{kind}" for layer in range(num_layers) for kind in ATTENTION_KINDS}
    if set(entries) != expected:
        missing, unknown = sorted(expected - set(entries)), sorted(set(entries) - expected)
        raise ValueError(f"attention_ms has {len(entries)} entries: {missing[:4]} missing and "
                         f"{unknown[:4]} unknown; expected '<layer>/<kind>' for every layer "
                         f"below {num_layers} and kind of {ATTENTION_KINDS}, or none")


# The readable fields of the architecture a table records, beside the digest of all of it.
ARCHITECTURE_DIMS = ("model_type", "num_layers", "hidden_size", "intermediate_size", "num_heads",
                     "embedding_size")


class LatencyTableMismatch(SampJaxError, ValueError):
    """A latency table given to a search was made for another model architecture."""


def architecture_digest(config: EncoderConfig) -> str:
    """A digest of the whole architecture (every `EncoderConfig` field but the HF token ids,
    which time nothing): the time outside the GEMM sites differs between families of one shape."""
    architecture = dataclasses.asdict(config)
    del architecture["token_ids"]  # metadata for HF: it times nothing
    architecture = json.dumps(architecture, sort_keys=True, default=list)
    return hashlib.sha256(architecture.encode()).hexdigest()[:10]


def architecture_of(config: EncoderConfig) -> dict:
    """What a table records of the model it was made for: `ARCHITECTURE_DIMS` and `digest`."""
    return {**{name: getattr(config, name) for name in ARCHITECTURE_DIMS},
            "digest": architecture_digest(config)}


def _check_architecture_entry(architecture) -> None:
    """`validate_table`'s check of `architecture`: None, or an object of `ARCHITECTURE_DIMS` and
    `digest` (`check_given_table` compares it with a model's)."""
    if architecture is None:
        return
    keys = (*ARCHITECTURE_DIMS, "digest")
    if not isinstance(architecture, dict) or set(architecture) != set(keys):
        found = sorted(architecture) if isinstance(architecture, dict) \
            else type(architecture).__name__
        raise ValueError(f"architecture is {found}; expected an object of {', '.join(keys)}")
    for name, value in architecture.items():
        if name in ("model_type", "digest"):
            good = isinstance(value, str) and value
        else:
            good = (isinstance(value, int) and not isinstance(value, bool) and value > 0) or \
                (name == "embedding_size" and value is None)
        if not good:
            raise ValueError(f"architecture.{name} is {value!r}; expected "
                             + ("a string" if name in ("model_type", "digest") else
                                "a positive integer"))


def check_given_table(table: LatencyTable, config: EncoderConfig, *,
                      where: str = "the latency table given", warn: bool = True) -> None:
    """Refuses a table made for another architecture than `config`'s, naming `where` (the file)
    and each readable field that differs, found vs expected (the digest when only fields
    beyond them differ). With `warn`: a warning when the table records no architecture (it
    cannot be checked), and when it was measured on another device than this one.

    Raises:
      LatencyTableMismatch: the table's architecture is not the model's.
    """
    expected = architecture_of(config)
    shown = ", ".join(f"{name} {expected[name]}" for name in ARCHITECTURE_DIMS)
    found = table.architecture
    if found is not None and found != expected:
        differ = [name for name in ARCHITECTURE_DIMS
                  if found.get(name) != expected[name]] or ["digest"]
        listed = "; ".join(f"{name} {found.get(name)!r}, expected {expected[name]!r}"
                           for name in differ)
        raise LatencyTableMismatch(
            f"{where} was made for another model: {listed} (this model: {shown}); its costs "
            "would price another model's maps: give a table made for this model, or none (the "
            "search then uses this model's own)")
    if not warn:
        return
    if found is None:
        warnings.warn(f"{where} records no architecture (a table written before tables recorded "
                      f"one): it cannot be checked against this model ({shown}); measure it "
                      "again for this model to have it checked", UserWarning, stacklevel=3)
    if table.source == "measured" and table.device != (here := device_description()):
        warnings.warn(f"{where} was measured on {table.device!r}, not on this machine ({here!r}): "
                      "its latencies price the maps for that device", UserWarning, stacklevel=3)


DEFAULT_PRECISIONS = (SitePrecision("fp16"), SitePrecision("int8", "per_token_dynamic"),
                      SitePrecision("int8", "per_tensor_static"), SitePrecision("fp8_e4m3"),
                      SitePrecision("bf16"), SitePrecision("fp32"))


def estimate_table(config: EncoderConfig, batch: int, seq: int, *, spec: DeviceSpec = H100_SXM,
                   precisions: Iterable[SitePrecision] | None = None) -> LatencyTable:
    """A roofline estimate from FLOPs and bytes on `spec` (no timing involved); by default for
    every `DEFAULT_PRECISIONS` entry the spec has GEMMs for. Each layer's attention is priced
    float (in the first float precision of `precisions`, else FP16) and INT8
    (`_estimate_attention_ms`); `other_ms` holds the rest."""
    if precisions is None:
        precisions = [p for p in DEFAULT_PRECISIONS if p.precision in spec.peak_ops]
    precisions = list(precisions)
    tokens = batch * seq
    site_ms = {f"{site}/{p}": _estimate_site_ms(site, tokens, k, n, p, spec)
               for site, (k, n) in site_shapes(config).items() for p in precisions}
    float_precision = next((p.precision for p in precisions if not p.is_quantized
                            and p.precision in spec.peak_ops), "fp16")
    attention_ms = {f"{layer}/{kind}": _estimate_attention_ms(config, layer, batch, seq, kind,
                                                              float_precision, spec)
                    for layer in range(config.num_layers) for kind in ATTENTION_KINDS}
    # Non-GEMM work per layer besides attention: about eight passes of element-wise traffic
    # over [tokens, hidden] (LayerNorms, residuals, activations), four launches.
    elementwise_bytes = 8 * tokens * config.hidden_size * 2
    other = config.num_layers * (1e3 * elementwise_bytes / spec.bandwidth + 4 * spec.launch_us * 1e-3)
    return LatencyTable(device=spec.name, source="estimated", batch=batch, seq=seq,
                        num_layers=config.num_layers, site_ms=site_ms, other_ms=other,
                        architecture=architecture_of(config), attention_ms=attention_ms)


def measure_table(model, batch: int, seq: int, *,
                  precisions: Iterable[SitePrecision] = DEFAULT_PRECISIONS,
                  implementation: str | None = None, repeats: int = 20,
                  dtype=jnp.float16) -> LatencyTable:
    """Times every (site, precision) GEMM with its epilogue on this device, and the rest.

    Inputs, residuals and outputs are `dtype` (the dtype between sites). The forward of
    `model` at this shape is timed too, with every site at each of `precisions` in turn
    (`forward_ms`), and the table is fitted to those forwards (`_fit_to_forwards`): `other_ms`
    is the time they share that no site accounts for, and each precision's site entries are
    scaled by one factor so that the table reproduces its forward exactly. A GEMM timed alone
    pays for reading and writing its own operands, which a compiled forward fuses away, and
    runs on a machine that is not running the rest of the forward. The relative cost of the
    sites within a precision stays as timed. A site's precisions, and the whole forwards, are
    timed in turns (`time_interleaved`), so their order is not the machine's drift.

    Each layer's attention is timed float and INT8 in turns (`_time_attention`), and the float
    attention of every layer is taken out of `other_ms` (`_take_attention_out`).
    """
    precisions = tuple(precisions)
    config = model.config
    measured_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    load = _load_per_core()
    site_ms, executed = _time_sites(config, batch, seq, precisions, implementation=implementation,
                                    repeats=repeats, dtype=dtype)
    forward_ms, forward_executed = _time_forwards(model, batch, seq, precisions,
                                                  implementation=implementation, repeats=repeats,
                                                  dtype=dtype)
    executed.update(forward_executed)
    other = _fit_to_forwards(site_ms, forward_ms, precisions, config.num_layers)
    attention_ms = _time_attention(model, batch, seq, repeats=repeats, dtype=dtype)
    other, attention_ms = _take_attention_out(other, attention_ms, config.num_layers)
    return LatencyTable(device=device_description(), source="measured", batch=batch, seq=seq,
                        num_layers=config.num_layers, site_ms=site_ms, other_ms=other,
                        forward_ms=forward_ms, executed=executed, measured_at=measured_at,
                        load_per_core=load, architecture=architecture_of(config),
                        attention_ms=attention_ms)


_STARTED = time.monotonic()  # about when this process started (this module is imported early)


def _load_per_core() -> float | None:
    """The load of other work per core when timing on a CPU: the 1-minute load average less
    this process's own average use of cores (its CPU time over its life so far: the search's
    compiling and calibrating count in the load average too). None on an accelerator, or
    where the system has no load average."""
    if jax.default_backend() != "cpu":
        return None
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    own = time.process_time() / max(time.monotonic() - _STARTED, 1e-3)
    return round(max(load - own, 0.0) / (os.cpu_count() or 1), 2)


def _time_sites(config: EncoderConfig, batch: int, seq: int, precisions: tuple[SitePrecision, ...],
                *, implementation: str | None, repeats: int,
                dtype) -> tuple[dict[str, float], dict[str, str]]:
    """`({"<site>/<precision>": ms}, {"<site>/<precision>": implementation})`: each site's GEMM
    with its epilogue on random `[batch, seq, K]` inputs, a site's precisions timed in turns."""
    rng = np.random.default_rng(0)
    site_ms, executed = {}, {}
    for site, (k, n) in site_shapes(config).items():
        x = jnp.asarray(rng.normal(size=(batch, seq, k)), dtype)
        w = rng.normal(size=(k, n)).astype(np.float32) * 0.05
        bias = jnp.zeros((n,), jnp.float32)
        activation = "gelu" if site == "ffn_in" else None
        residual = jnp.zeros((batch, seq, n), dtype) if site in ("attn_out", "ffn_out") else None
        timed = {}
        for p in precisions:
            weight = (quantize_weight_int8(w) if p.precision == "int8" else
                      quantize_weight_fp8(w) if p.precision == "fp8_e4m3" else jnp.asarray(w, p.float_dtype))
            act_scale = jnp.float32(0.05) if p.needs_calibration else None
            fn = jax.jit(lambda x, weight=weight, p=p, act_scale=act_scale: gemm(
                x, weight, precision=p, bias=bias, activation=activation, residual=residual,
                act_scale=act_scale, out_dtype=dtype, implementation=implementation,
                site=f"{site}/{p}"))
            timed[f"{site}/{p}"] = lambda fn=fn, x=x: fn(x)
        with record_executions() as records:  # the warm-up traces each GEMM once
            site_ms.update(time_interleaved(timed, repeats=repeats))
        executed.update((r.site, r.executed) for r in records)
    return site_ms, executed


def _time_attention(model, batch: int, seq: int, *, repeats: int, dtype) -> dict[str, float]:
    """`{"<layer>/<kind>": ms}`: each layer's attention (`samp_jax.models.layers.attention`:
    scores, mask, softmax, context) on random `[batch, seq, heads, head_dim]` Q, K, V in
    `dtype`, float and INT8 (its quantize passes included) timed in turns; layers alike (the
    same window, bias and attention implementation) are timed once."""
    config = model.config
    rng = np.random.default_rng(1)
    shape = (batch, seq, config.num_heads, config.head_dim)
    q, k, v = (jnp.asarray(rng.normal(size=shape), dtype) for _ in range(3))
    mask = jnp.ones((batch, seq), jnp.int32)
    biased = config.relative_attention_num_buckets > 0 or config.disentangled_attention
    # a biased family's float attention runs on XLA, as its real bias would put it
    bias = jnp.zeros((1, config.num_heads, seq, seq), jnp.float32) if biased else None
    kinds = {ATTENTION_FLOAT: None, ATTENTION_INT8: INT8_ATTENTION}
    by_layout: dict[tuple, dict[str, float]] = {}
    out = {}
    for index, layer in enumerate(model.encoder.layers):
        # INT8 attention runs on XLA (`quantize` refuses it under a pinned cuDNN): a layer
        # pinned to cuDNN is timed float as pinned, INT8 on XLA
        layout = (layer.window, layer.attention_impl)
        if layout not in by_layout:
            timed = {}
            for kind, precision in kinds.items():
                implementation = None if precision is not None and layout[1] == "cudnn" \
                    else layout[1]
                fn = jax.jit(lambda q, k, v, precision=precision, window=layout[0],
                             implementation=implementation: run_attention(
                    q, k, v, mask, bias=bias, implementation=implementation, window=window,
                    precision=precision))
                timed[kind] = lambda fn=fn: fn(q, k, v)
            by_layout[layout] = time_interleaved(timed, repeats=repeats)
        out.update((f"{index}/{kind}", ms) for kind, ms in by_layout[layout].items())
    return out


def _take_attention_out(other: float, attention_ms: dict[str, float],
                        num_layers: int) -> tuple[float, dict[str, float]]:
    """`(other_ms, attention_ms)` with every layer's float attention taken out of the time
    outside the sites, which held it: when `other` holds less than the timed float attention
    (attention timed alone runs slower than inside a compiled forward), every attention entry
    is scaled by one factor so that the float attention fits it, INT8's ratio to float kept
    (and `other_ms` is then 0). A fit that left nothing outside the sites (they hold the whole
    forward) prices every attention entry at 0: the forwards are still reproduced, and no
    layer's INT8 attention is priced cheaper than its float one."""
    total = sum(attention_ms[f"{layer}/{ATTENTION_FLOAT}"] for layer in range(num_layers))
    factor = min(1.0, other / total) if total > 0 else 0.0
    attention_ms = {key: ms * factor for key, ms in attention_ms.items()}
    return max(other - factor * total, 0.0), attention_ms


def _time_forwards(model, batch: int, seq: int, precisions: tuple[SitePrecision, ...], *,
                   implementation: str | None, repeats: int,
                   dtype) -> tuple[dict[str, float], dict[str, str]]:
    """`({"<precision>": ms}, {"forward/<precision>": implementations})`: the forward of
    `model` with every site at one precision, for each of `precisions`, timed in turns."""
    inputs = {"input_ids": np.ones((batch, seq), np.int32), "attention_mask": np.ones((batch, seq), np.int32),
              "token_type_ids": np.zeros((batch, seq), np.int32)}
    calibration = None
    if any(p.needs_calibration for p in precisions[1:]):
        with warnings.catch_warnings():  # scales do not change the timing; few tokens are fine
            warnings.simplefilter("ignore")
            calibration = calibrate(model, [inputs], "minmax")
    forwards = {}  # every site at one precision, the default first; timed in turns
    for p in dict.fromkeys(precisions):
        uniform = PrecisionMap.from_table({}, model.config.num_layers, default=p)
        forward = jit_forward(quantize(model, uniform, calibration if p.needs_calibration else None,
                                       dtype=dtype, implementation=implementation))
        forwards[str(p)] = lambda forward=forward: forward(inputs)
    with record_executions() as records:
        forward_ms = time_interleaved(forwards, repeats=repeats)
    return forward_ms, _forward_executions(records, precisions, model.config.num_layers)


# `other_ms` is at most this share of the fastest measured forward, so that every precision's
# sites keep a positive part of their forward.
OTHER_SHARE_MAX = 0.9


def _fit_to_forwards(site_ms: dict[str, float], forward_ms: dict[str, float],
                     precisions: tuple[SitePrecision, ...], num_layers: int) -> float:
    """Scales each precision's site entries in place so that the table reproduces its measured
    forward exactly (see `measure_table`); returns `other_ms`.

    `other_ms`, the time of a forward that no site accounts for, is the same for every
    precision: the intercept of the least-squares line through the points (the precision's
    timed sites, its measured forward), so that a gap between timed sites and forwards is
    shared by the sites in proportion (GEMMs timed alone may run faster or slower than inside
    a compiled forward) rather than put on `other_ms` alone. With one precision, or a line
    that does not rise, it is the first (default) forward minus its sites. Either way it is
    kept within `[0, OTHER_SHARE_MAX * the fastest forward]`.
    """
    names = list(dict.fromkeys(str(p) for p in precisions))
    timed = np.array([sum(site_ms[f"{s}/{p}"] for s in SITES) * num_layers for p in names])
    forwards = np.array([forward_ms[p] for p in names])
    other = forwards[0] - timed[0]
    if len(names) > 1 and np.ptp(timed) > 0:
        slope, intercept = np.polyfit(timed, forwards, 1)
        if slope > 0:
            other = intercept
    other = float(np.clip(other, 0.0, OTHER_SHARE_MAX * forwards.min()))
    for p, sites, forward in zip(names, timed, forwards):
        factor = (forward - other) / sites
        for s in SITES:
            site_ms[f"{s}/{p}"] *= factor
    return other


def _forward_executions(records, precisions, num_layers: int) -> dict[str, str]:
    """{"forward/<precision>": "impl xN, ..."}: the encoder GEMMs of each whole forward, traced
    in the order the forwards were (one uniform forward per precision, 4 sites per layer)."""
    layer_sites = [r for r in records if r.site and r.site.split(".")[0].isdigit()]
    per_forward = len(SITES) * num_layers
    out = {}
    for index, p in enumerate(dict.fromkeys(precisions)):
        counts: dict[str, int] = {}
        for r in layer_sites[index * per_forward:(index + 1) * per_forward]:
            counts[r.executed] = counts.get(r.executed, 0) + 1
        out[f"forward/{p}"] = ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()))
    return out


def cached_table(model, batch: int, seq: int, *, cache_dir: Path | None = None) -> LatencyTable:
    """The measured table for this GPU (cached as JSON), or an H100 estimate on CPU.

    The search's default before targets; `table_for_target` is the target-aware version."""
    if jax.default_backend() == "cpu":
        return estimate_table(model.config, batch, seq)
    return table_for_target(model, resolve_target("auto"), batch, seq, cache_dir=cache_dir)


def table_name(config: EncoderConfig, target: Target, batch: int, seq: int) -> str:
    """The cache file name of a measured table.

    The versions, the processor, the host-memory mode and a digest of `XLA_FLAGS` (when set)
    are in the name: a new jax, new model code, another CPU, unkept host buffers or other XLA
    flags time differently (a cache folder may be shared between machines and programs).
    TABLE_VERSION moves when samp-jax's timings do. Besides
    the readable shape, the family and a digest of the whole architecture are in it: the time
    outside the GEMM sites (attention with MPNet's bias or DeBERTa's relative terms, an
    embedding projection) differs between families of the same shape. So do GEMM
    implementations other than samp-jax's own (one registered, replaced or put first: a
    digest of `samp_jax.ops.implementation_key()`), whose table records them as what ran.
    """
    device = device_file_stem()
    memory = "kept" if cpu_buffers_kept() else "system"
    digest = architecture_digest(config)
    flags = os.environ.get("XLA_FLAGS", "").strip()  # threading and codegen flags time differently
    flags = f"-xla_{hashlib.sha256(flags.encode()).hexdigest()[:8]}" if flags else ""
    gemms = implementation_digest()  # '' for samp-jax's own implementations
    flags += f"-impl_{gemms}" if gemms else ""
    return (f"v{TABLE_VERSION}-jax{jax.__version__}-samp{__version__}-"
            f"{device}-malloc_{memory}{flags}-{target.name}-L{config.num_layers}-H{config.hidden_size}"
            f"-I{config.intermediate_size}-{config.model_type}-{digest}-{batch}x{seq}-"
            f"{jnp.dtype(target.dtype).name}.json")


def table_for_target(model, target: str | Target, batch: int, seq: int, *,
                     options: Iterable[SitePrecision] | None = None, cache_dir: Path | None = None,
                     repeats: int | None = None, measure_again: bool = False) -> LatencyTable:
    """The latency table of `target`: measured when this process runs on it (CPU included),
    cached as JSON per device kind, model shape, batch shape and dtype; otherwise a roofline
    from the target's spec sheet (`source == "estimated"`).

    Args:
      model: the float model (its config gives the shapes; measuring runs it).
      target: a `Target` or its name ('auto' for this device).
      batch, seq: the serving shape.
      options: the precisions to cover (default: all the target offers).
      cache_dir: where measured tables are cached (default: the asset cache).
      repeats: timed repeats per entry (default 20 on accelerators, 5 on CPU).
      measure_again: measure even when a cached table covers the options, and replace it.

    A cached table that cannot be read or fails `validate_table` is measured again and
    rewritten (a warning names the file and what is wrong); a cache that cannot be written
    (read-only, full) is a warning, and the table measured now is used.

    Raises:
      ValueError: a target without a spec sheet (CPU) that this process does not run on.
    """
    target = resolve_target(target)
    options = tuple(target.allowed() if options is None else options)
    if SitePrecision("fp32") not in options:  # the FP32 reference row of every report
        options = (*options, SitePrecision("fp32"))
    limit = model.config.position_limit  # a model with fewer positions runs shorter
    seq = seq if limit is None else min(seq, limit)
    if not target.is_current():
        if target.spec is None:
            raise ValueError(f"target {target.name!r} has no spec sheet to estimate from and this "
                             f"process runs on {jax.devices()[0].device_kind!r}: measure it by "
                             f"running the search on a {target.name} machine")
        return estimate_table(model.config, batch, seq, spec=target.spec, precisions=options)
    folder = (cache_dir or default_cache()) / "latency"
    full = folder / table_name(model.config, target, batch, seq)
    # A table of fewer options than the target offers (`--options`) is cached apart, so that
    # it never replaces the whole one; a whole one covers it.
    every = {str(p) for p in (*target.allowed(), SitePrecision("fp32"))}
    chosen = sorted(str(p) for p in options)
    path = full if set(chosen) >= every else full.with_name(
        f"{full.stem}-options_{hashlib.sha256(','.join(chosen).encode()).hexdigest()[:8]}.json")
    # of the tables that cover the options, the one measured last (a narrowed table measured
    # again is newer than the whole one it was measured beside)
    for cached in ([] if measure_again else sorted(
            {p for p in (full, path) if p.exists()}, key=lambda p: -p.stat().st_mtime_ns)):
        table = _read_cached(cached, model.config, batch, seq)
        # a table that prices no attention (hand-edited, or older) is measured again: its
        # attention in other_ms would price INT8 attention as float
        if table is not None and table.prices_attention and all(
                f"{site}/{p}" in table.site_ms and f"{site}/{p}" in table.executed
                for site in SITES for p in options):
            return table
    if repeats is None:
        repeats = 5 if jax.default_backend() == "cpu" else 20
    table = measure_table(model, batch, seq, precisions=options, repeats=repeats, dtype=target.dtype)
    write_cache_text(path, table.to_json(), what="latency table")
    return table


def _read_cached(path: Path, config: EncoderConfig, batch: int, seq: int) -> LatencyTable | None:
    """The measured table cached at `path`, or None: absent, or unreadable or damaged (a
    warning names the file and what is wrong; the caller measures it again and rewrites it).
    A table cached without its architecture gets `config`'s: the file name's digest keys it."""
    if not path.exists():
        return None
    try:
        table = LatencyTable.from_json(path.read_text(encoding="utf-8"),
                                       num_layers=config.num_layers)
        if (table.batch, table.seq) != (batch, seq):
            raise ValueError(f"its shape is {table.batch}x{table.seq}; expected {batch}x{seq}")
        check_given_table(table, config, warn=False)
    except (OSError, ValueError) as e:  # a folder, no permission, not UTF-8 or JSON, a field
        reason = str(e)
    else:
        if table.architecture is None:
            table = dataclasses.replace(table, architecture=architecture_of(config))
        return table
    warnings.warn(f"ignoring the cached latency table {path} ({reason}); measuring it again")
    return None


def check_against_forward(model, table: LatencyTable, maps: dict[str, PrecisionMap], calibration=None,
                          *, repeats: int = 10, dtype=jnp.float16) -> list[dict]:
    """Times real forwards of `maps` on this device (`dtype` between sites, as the table was
    measured) and compares them with `table.map_ms`."""

    b, s = table.batch, table.seq
    inputs = {"input_ids": np.ones((b, s), np.int32), "attention_mask": np.ones((b, s), np.int32),
              "token_type_ids": np.zeros((b, s), np.int32)}
    rows = []
    for name, pmap in maps.items():
        forward = jit_forward(quantize(model, pmap, calibration, dtype=dtype))
        measured = time_ms(lambda: forward(inputs), repeats=repeats)
        predicted = table.map_ms(pmap)
        rows.append({"map": name, "predicted_ms": predicted, "measured_ms": measured,
                     "relative_error": predicted / measured - 1.0})
    return rows
