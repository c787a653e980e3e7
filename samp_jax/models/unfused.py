"""What of an architecture runs outside the fused kernels, and why: reported, never silent.

`quantize` records `unfused_parts(config)` in the quantized model's `info["unfused"]` (and so in
its saved `quantization.json`), so a user sees which fusions a family forgoes.
"""

from __future__ import annotations

from samp_jax.models.config import EncoderConfig
from samp_jax.models.gated_ffn import UNFUSED as GATED_FFN_UNFUSED

ROTARY_EMBEDDINGS = ("the embedding gather + LayerNorm + INT8 quantize kernel adds a position "
                     "row, and a rotary model has no position table: the word gather runs in "
                     "XLA, LayerNorm + quantize stays one fused kernel")
LOCAL_ATTENTION = ("local (sliding-window) layers run XLA attention (blockwise past three "
                   "blocks of window/2 tokens), not cuDNN flash attention, unless "
                   "attention_impl='cudnn' is named")


def unfused_parts(config: EncoderConfig) -> dict[str, str]:
    """`{part: reason}` for each fusion `config`'s architecture forgoes; empty for BERT's."""
    parts: dict[str, str] = {}
    if config.rotary_theta is not None:
        parts["embedding_quant"] = ROTARY_EMBEDDINGS
    if config.gated_ffn:
        parts |= GATED_FFN_UNFUSED
    if config.has_local_layers:
        parts["local attention"] = LOCAL_ATTENTION
    return parts
