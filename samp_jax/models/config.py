"""Encoder architecture configuration.

`EncoderConfig` describes the shape of a BERT-family encoder and nothing else: run-time
choices such as the compute dtype or the precision map are passed separately, so one config
serves every precision.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

SUPPORTED_MODEL_TYPES = ("bert",)
# HF activation names and the GELU form each one means.
SUPPORTED_ACTIVATIONS = {
    "gelu": "erf",
    "gelu_python": "erf",
    "gelu_new": "tanh",
    "gelu_pytorch_tanh": "tanh",
}


class ConfigError(ValueError):
    """A checkpoint config asks for something samp-jax does not implement."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """Shape of a BERT-style encoder.

    Attributes:
      vocab_size: Rows of the word-embedding table.
      hidden_size: Model width; must be a multiple of `num_heads`.
      num_layers: Number of encoder layers.
      num_heads: Attention heads per layer.
      intermediate_size: Width of the FFN's inner projection.
      max_position_embeddings: Longest sequence the position table covers.
      type_vocab_size: Number of token-type (segment) embeddings.
      layer_norm_eps: LayerNorm epsilon.
      hidden_act: HF activation name; one of `SUPPORTED_ACTIVATIONS`.
      pad_token_id: Id of the padding token.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(
                f"hidden_act={self.hidden_act!r} is not one of {sorted(SUPPORTED_ACTIVATIONS)}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def gelu_approximate(self) -> bool:
        """True for the tanh approximation of GELU, False for the exact erf form."""
        return SUPPORTED_ACTIVATIONS[self.hidden_act] == "tanh"

    def replace(self, **changes: Any) -> "EncoderConfig":
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------- presets
    @classmethod
    def bert_base(cls) -> "EncoderConfig":
        """BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072."""
        return cls()

    @classmethod
    def minilm_l6(cls) -> "EncoderConfig":
        """all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, FFN 1536."""
        return cls(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536)

    # --------------------------------------------------------------------------- HF import
    @classmethod
    def from_hf_config(cls, source: str | os.PathLike | Mapping[str, Any] | Any) -> "EncoderConfig":
        """Builds a config from a Hugging Face BERT config.

        Args:
          source: a checkpoint folder or `config.json` path (read as plain JSON), a dict with
            the HF keys, or a `transformers.PretrainedConfig` (read through `to_dict()`).

        Raises:
          FileNotFoundError: the folder has no `config.json`.
          ConfigError: the model type or an option is not supported, or a key is missing.
        """
        hf = _hf_config_dict(source)
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(
                f"model_type={model_type!r} is not supported; samp-jax imports {SUPPORTED_MODEL_TYPES}")
        position = hf.get("position_embedding_type", "absolute")
        if position != "absolute":
            raise ConfigError(
                f"position_embedding_type={position!r} is not supported; only 'absolute' is")
        for flag in ("is_decoder", "add_cross_attention"):
            if hf.get(flag):
                raise ConfigError(f"{flag}=True is not supported: samp-jax runs encoders only")
        mapping = {
            "vocab_size": "vocab_size",
            "hidden_size": "hidden_size",
            "num_layers": "num_hidden_layers",
            "num_heads": "num_attention_heads",
            "intermediate_size": "intermediate_size",
            "max_position_embeddings": "max_position_embeddings",
            "type_vocab_size": "type_vocab_size",
            "layer_norm_eps": "layer_norm_eps",
            "hidden_act": "hidden_act",
            "pad_token_id": "pad_token_id",
        }
        required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size")
        missing = [key for key in required if key not in hf]
        if missing:
            raise ConfigError(f"HF config lacks required keys {missing}")
        kwargs = {ours: hf[theirs] for ours, theirs in mapping.items()
                  if theirs in hf and hf[theirs] is not None}
        return cls(**kwargs)

    def to_hf_dict(self) -> dict[str, Any]:
        """The HF `config.json` keys for this architecture (model_type 'bert')."""
        return {
            "model_type": "bert",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": self.hidden_act,
            "pad_token_id": self.pad_token_id,
            "position_embedding_type": "absolute",
        }


def _hf_config_dict(source: Any) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    if hasattr(source, "to_dict") and callable(source.to_dict):
        return source.to_dict()
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no HF config at {path}")
    with open(path) as f:
        return json.load(f)
