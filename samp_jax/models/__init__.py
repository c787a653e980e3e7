"""Encoder models: config, Flax NNX layers and heads, HF checkpoint import/export, tokenizer."""

from samp_jax.models.checkpoint import CheckpointError, detect_head, load_pretrained, save_pretrained
from samp_jax.models.config import ConfigError, EncoderConfig
from samp_jax.models.layers import Embeddings, Encoder, EncoderLayer, GemmSite, LayerNorm, attention
from samp_jax.models.model import (
    HEAD_KINDS,
    EncoderModel,
    SentenceEmbedder,
    SequenceClassifier,
    TokenClassifier,
    check_inputs,
    cosine_similarity,
    make_head,
)
from samp_jax.models.tokenizer import Tokenizer

__all__ = ["HEAD_KINDS", "CheckpointError", "ConfigError", "Embeddings", "Encoder", "EncoderConfig",
           "EncoderLayer", "EncoderModel", "GemmSite", "LayerNorm", "SentenceEmbedder",
           "SequenceClassifier", "TokenClassifier", "Tokenizer", "attention", "check_inputs",
           "cosine_similarity", "detect_head", "load_pretrained", "make_head", "save_pretrained"]
