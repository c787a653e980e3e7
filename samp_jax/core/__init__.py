"""The core floor: what every floor above shares, and nothing above it.

- `precision`: the precision map (rules as data, presets, `SitePrecision`);
- `primitives`: symmetric INT8 / FP8 E4M3 quantization and SmoothQuant migration;
- `atomic`: atomic file and folder writes; `assets`: the packaged model and data sets;
- `host_memory`: CPU buffer reuse; `version`: the package version;
- `errors`: `SampJaxError`, the base of every exception class samp-jax defines.

The precision and primitive names are re-exported here on first use (PEP 562), so importing
`samp_jax.core.atomic` or `samp_jax.core.version` does not load JAX.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SampJaxError": "samp_jax.core.errors",
    **dict.fromkeys(('ACTIVATION_SCHEMES', 'FLOAT_DTYPES', 'FLOAT_PRECISIONS', 'PRECISIONS', 'PRESETS', 'SITES', 'PrecisionMap', 'PrecisionMapError', 'Rule', 'SitePrecision', 'as_precision', 'precision_of_dtype'), "samp_jax.core.precision"),
    **dict.fromkeys(('FP8_E4M3_MAX', 'QArray', 'quantize_fp8', 'quantize_per_tensor_int8', 'quantize_per_token_int8', 'quantize_weight_fp8', 'quantize_weight_int8', 'smoothing_factors'), "samp_jax.core.primitives"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'samp_jax.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
