"""What `samp-jax bench` times: its own contenders on its own models (`SAMP_CONTENDERS`, the
torch ones by name), and, with `--model`, the user's model at the precisions `--precision`
names (`own_contenders`)."""

from __future__ import annotations

import dataclasses
import importlib.resources
from pathlib import Path
from typing import Any, Sequence

import jax.numpy as jnp

from calibrate.search.targets import AUTO, resolve_target
from samp_jax.core.errors import SampJaxError
from samp_jax.core.precision import FLOAT_PRECISIONS, PRESETS, PrecisionMap
from samp_jax.ptq.quantized import QuantizedModel

# The map the search chose for SNLI at 1% on MiniLM (docs/results/search.md), shipped as package data.
SEARCH_MAP = importlib.resources.files("samp_jax.app") / "maps" / "minilm_snli_1pct.json"
TORCH_CONTENDERS = ("torch_sdpa_fp16", "torch_eager_fp16", "torch_compile_fp16")
SAVED = "saved"
"""The contender of a quantized folder given to `--model`: the model as it was saved."""


class SkipContender(SampJaxError):
    """A contender that cannot run here; the message says why."""


@dataclasses.dataclass(frozen=True)
class SampContender:
    """A samp-jax variant: a precision-map preset (or a map file) and a GEMM implementation.

    Attributes:
      name: the contender's name in the results.
      preset: a `PrecisionMap.preset` name, or None for a map file or a saved model.
      implementation: the GEMM implementation pinned at every site it runs, or None (Pallas
        where its kernels run, else XLA).
      map_path: a precision-map JSON file, or None.
      activation: the INT8 activation scheme of a preset.
      float_precision: `quant_ffn_only`'s float sites.
      dtype: the dtype between sites (a dtype name), or None for `quantize`'s own choice (the
        map's `compute_dtype`, else its one float precision, else float16).
      saved: a loaded `QuantizedModel`, timed as it is (nothing is quantized), or None.
    """

    name: str
    preset: str | None
    implementation: str | None
    map_path: Path | None = None
    activation: str = "per_token_dynamic"
    float_precision: str = "fp16"
    dtype: str | None = None
    saved: Any = dataclasses.field(default=None, compare=False, repr=False)

    def precision_map(self, num_layers: int) -> PrecisionMap:
        if self.saved is not None:
            return self.saved.precision_map
        if self.map_path is not None:
            pmap = PrecisionMap.from_json(Path(self.map_path))  # a file: its errors name it
            if pmap.num_layers != num_layers:
                raise SkipContender(f"the map was searched for {pmap.num_layers} layers, "
                                    f"this model has {num_layers}")
            return pmap
        return PrecisionMap.preset(self.preset, num_layers, activation=self.activation,
                                   float_precision=self.float_precision)

    def unscaled_static_sites(self, num_layers: int) -> int:
        """How many static-scale sites of this contender's map carry no stored clip (their
        scales come from the bench's calibration on random ids: timing only)."""
        if self.saved is not None:
            return 0
        pmap = self.precision_map(num_layers)
        stored = pmap.stored_clips()
        return sum(p.needs_calibration and cell not in stored for cell, p in pmap.items())


SAMP_CONTENDERS = (
    SampContender("samp_fp16", "fp16", "xla"),
    SampContender("samp_quant_ffn_only_xla", "quant_ffn_only", "xla"),
    SampContender("samp_quant_ffn_only_pallas", "quant_ffn_only", "pallas"),
    SampContender("samp_fully_quant_xla", "fully_quant", "xla"),
    SampContender("samp_fully_quant_pallas", "fully_quant", "pallas"),
    SampContender("samp_fp8", "fp8", "xla"),
    SampContender("samp_search_snli_1pct", None, None, SEARCH_MAP),
)


def contender_names() -> list[str]:
    """The bench's own contenders, in the order its tables list them."""
    return list(TORCH_CONTENDERS) + [c.name for c in SAMP_CONTENDERS]


def default_precisions() -> list[str]:
    """`--model`'s precisions when `--precision` names none: this device's float option (FP32
    on a CPU, FP16 on a GPU), `quant_ffn_only`, `fully_quant`, and `fp8` where the device runs
    FP8 GEMMs."""
    target = resolve_target(AUTO)
    return [target.float_option, "quant_ffn_only", "fully_quant"] + (["fp8"] if target.has_fp8 else [])


def own_contenders(model, precisions: Sequence[str] | None,
                   activation: str | None = None) -> tuple[SampContender, ...]:
    """The contenders of a `--model`: a quantized model as it was saved (`SAVED`), or a float
    model at each of `precisions` (presets and precision-map files; `default_precisions()`
    when None), the first the baseline of the ratios.

    A preset with INT8 or FP8 sites is built for this device as the search builds its presets:
    the device's float option at its float sites and between sites (FP32 on a CPU, where FP16
    is emulated). A float preset runs in its own precision. A map file runs as `quantize` builds
    it (its `compute_dtype`, else its one float precision, else FP16).

    `activation`: the INT8 presets' scheme (None: per-token dynamic).

    Raises:
      ValueError: precisions or an activation given with a quantized model (it runs as it was
        saved), or no precision.
    """
    if isinstance(model, QuantizedModel):
        given = [name for name, value in (("--precision", precisions), ("--activation", activation))
                 if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to a "
                             "float model; a quantized folder is timed as it was saved (to compare "
                             "it with other precisions, give the float model it came from, with "
                             "the precision_map.json its search wrote or the map it was "
                             "quantized with, to --precision)")
        return (SampContender(SAVED, None, None, saved=model),)
    activation = activation or "per_token_dynamic"
    names = list(dict.fromkeys(default_precisions() if precisions is None else precisions))
    if not names:
        raise ValueError("--precision names no preset or map file")
    target = resolve_target(AUTO)
    contenders = []
    for name in names:
        if name not in PRESETS:
            contender = SampContender(name, None, None, map_path=Path(name))
            layers = model.config.num_layers
            pmap = PrecisionMap.from_json(Path(name))
            if pmap.num_layers != layers:  # asked for by name: refused, not skipped
                raise ValueError(f"--precision {name}: the map has num_layers={pmap.num_layers}; "
                                 f"the model has {layers} layers")
            contenders.append(contender)
        elif name in FLOAT_PRECISIONS:
            contenders.append(SampContender(name, name, None))
        else:
            scheme = ("" if name == "fp8" else
                      " / static" if activation == "per_tensor_static" else " / dynamic")
            contenders.append(SampContender(f"{name}{scheme}", name, None, activation=activation,
                                            float_precision=target.float_option,
                                            dtype=jnp.dtype(target.dtype).name))
    return tuple(contenders)
