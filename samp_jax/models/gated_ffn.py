"""The gated FFN's activation (GeGLU when the activation is GELU).

A gated `ffn_in` GEMM site is `[hidden, 2 * intermediate]`: its output's first half goes
through the activation and multiplies its second half (the gate), as HF's `ModernBertMLP`
(`input, gate = Wi(x).chunk(2); act(input) * gate`).

The gating runs in XLA after the site's GEMM, not in the GEMM's epilogue: a tiled epilogue
sees only its own block of output columns, and a column's gate lies `intermediate` columns
away, in another tile. So a gated `ffn_in` runs its GEMM (Pallas INT8 where it applies) without
an epilogue activation, and it never requantizes its output for `ffn_out` (the INT8 epilogue
hand-off): `ffn_out` quantizes the gated product itself. `UNFUSED` records this.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.numerics import apply_activation

# What runs outside the fused kernels for gated FFNs, and why (reported, not silent).
UNFUSED = {
    "ffn_in.gate": "the activation-times-gate product runs in XLA after the ffn_in GEMM: a "
                   "tiled GEMM epilogue holds only its own output columns, and each column's "
                   "gate lies intermediate_size columns away",
    "ffn_in->ffn_out int8 hand-off": "ffn_in cannot requantize its output for ffn_out in its "
                                     "epilogue (the gate is applied after it); ffn_out "
                                     "quantizes its input itself",
}


def gated_activation(y: jax.Array, activation: str) -> jax.Array:
    """`act(y[..., :n]) * y[..., n:]` with `n = y.shape[-1] // 2`, in float32; returns y's dtype."""
    if y.shape[-1] % 2:
        raise ValueError(f"a gated FFN needs an even ffn_in width, got {y.shape[-1]}")
    half = y.shape[-1] // 2
    yf = y.astype(jnp.float32)
    return (apply_activation(yf[..., :half], activation) * yf[..., half:]).astype(y.dtype)
