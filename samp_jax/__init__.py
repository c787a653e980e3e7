"""samp-jax: self-adaptive mixed-precision inference for BERT-family encoders in JAX."""

from samp_jax.assets import minilm_path
from samp_jax.checkpoint import CheckpointError, load_pretrained
from samp_jax.config import ConfigError, EncoderConfig
from samp_jax.layers import SITES, Embeddings, Encoder, EncoderLayer, GemmSite
from samp_jax.model import (EncoderModel, SentenceEmbedder, SequenceClassifier, TokenClassifier,
                            cosine_similarity)
from samp_jax.tokenizer import Tokenizer

__version__ = "0.1.0"

__all__ = [
    "SITES", "CheckpointError", "ConfigError", "Embeddings", "Encoder", "EncoderConfig",
    "EncoderLayer", "EncoderModel", "GemmSite", "SentenceEmbedder", "SequenceClassifier",
    "TokenClassifier", "Tokenizer", "cosine_similarity", "load_pretrained", "minilm_path",
]
