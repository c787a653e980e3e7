"""Quantization: INT8/FP8 primitives, the precision map, the INT8 hand-off policy and PTQ.

Only the leaf modules are imported here (`primitives`, `precision`), because `samp_jax.ops`
builds on them. `handoff` (which the model layers consult) and `quantized` (`quantize`,
`QuantizedModel`, which build on the model) sit above `samp_jax.ops` and `samp_jax.models`:
import them by path, or use `samp_jax.quantize` / `samp_jax.QuantizedModel`.
"""

from samp_jax.quant.precision import (
    ACTIVATION_SCHEMES,
    FLOAT_DTYPES,
    FLOAT_PRECISIONS,
    PRECISIONS,
    PRESETS,
    SITES,
    PrecisionMap,
    PrecisionMapError,
    Rule,
    SitePrecision,
    as_precision,
    precision_of_dtype,
)
from samp_jax.quant.primitives import (
    FP8_E4M3_MAX,
    QArray,
    quantize_fp8,
    quantize_per_tensor_int8,
    quantize_per_token_int8,
    quantize_weight_fp8,
    quantize_weight_int8,
    smoothing_factors,
)

__all__ = ["ACTIVATION_SCHEMES", "FLOAT_DTYPES", "FLOAT_PRECISIONS", "FP8_E4M3_MAX", "PRECISIONS",
           "PRESETS", "SITES", "PrecisionMap", "PrecisionMapError", "QArray", "Rule",
           "SitePrecision", "as_precision", "precision_of_dtype", "quantize_fp8",
           "quantize_per_tensor_int8", "quantize_per_token_int8", "quantize_weight_fp8",
           "quantize_weight_int8", "smoothing_factors"]
