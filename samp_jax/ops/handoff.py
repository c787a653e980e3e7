"""The INT8 hand-off policy: when a site's INT8 input is produced upstream, in the same kernel
as the op before it, instead of by the site itself.

The float layers ask one question, `int8_handoff(consumer, via=...)`, at each hand-off point:
- `via="embedding_quant"`: the embeddings quantize for the first layer's `qkv` (SAMP's
  embedding fusion);
- `via="layernorm_quant"`: a LayerNorm quantizes for the INT8 site that reads it (`ffn_in`, the
  next layer's `qkv`; ZeroQuant-HERO's LN+quant fusion);
- `via="epilogue"`: an INT8 GEMM (`producer`, `ffn_in`) requantizes its output for the next
  INT8 GEMM (`ffn_out`).

The answer is the consumer's scales (`Int8Input`), or None: then the consumer takes float input
and quantizes it itself. Each hand-off quantizes its output rounded to the compute dtype, the
float tensor the consumer would read (`pallas_kernels.numerics.requantize`), so the numbers are
the consumer's own up to the fused kernels' float32 reduction order; and an epilogue value past
FP16's range saturates to +-127, as a value past the static clip does, where the consumer's own
quantizer makes the whole row NaN (`quantize_rows`).
"""

from __future__ import annotations

import dataclasses

import jax

from samp_jax.ops.dispatch import takes_fused_input
from samp_jax.ops.fused import any_available, fused_op

VIA = ("embedding_quant", "layernorm_quant", "epilogue")


@dataclasses.dataclass(frozen=True)
class Int8Input:
    """How an INT8 site quantizes its input.

    Attributes:
      act_scale: the static per-tensor scale, or None for per-token dynamic scales.
      input_scale: the SmoothQuant `1 / s` per input channel, or None.
    """

    act_scale: jax.Array | None
    input_scale: jax.Array | None


def int8_handoff(consumer, *, via: str, producer=None) -> Int8Input | None:
    """How `via` must quantize `consumer`'s input, or None when the consumer takes float input.

    A consumer takes INT8 from upstream when it is an INT8 site (it has `int8_input()`
    returning its scales), its GEMM implementation accepts pre-quantized input, and the
    upstream kernel can run now. `via="epilogue"` also needs `producer` to be such a site and
    the consumer's scale to be static and unsmoothed: a tiled epilogue never sees a whole row,
    so it cannot compute a per-token scale.
    """
    if via not in VIA:
        raise ValueError(f"{via=} is not one of {VIA}")
    spec = _int8_input(consumer)
    if spec is None:
        return None
    if via == "epilogue":
        if _int8_input(producer) is None or not any_available():
            return None
        return spec if spec.act_scale is not None and spec.input_scale is None else None
    return spec if fused_op(via) is not None else None


def _int8_input(site) -> Int8Input | None:
    int8_input = getattr(site, "int8_input", None)
    spec = None if int8_input is None else int8_input()
    if spec is None or not takes_fused_input(site.implementation):
        return None
    return spec
