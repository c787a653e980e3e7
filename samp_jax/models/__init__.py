"""Encoder models: config, families, Flax NNX layers and heads, HF checkpoint import/export,
sentence-transformers folders, tokenizer."""

from samp_jax.models.checkpoint import CheckpointError, detect_head, load_pretrained, save_pretrained
from samp_jax.models.config import ConfigError, EncoderConfig
from samp_jax.models.families import FAMILIES, Family, KeyRule, get_family, register_family
from samp_jax.models.layers import Embeddings, Encoder, EncoderLayer, GemmSite, LayerNorm, attention
from samp_jax.models.model import (
    HEAD_KINDS,
    POOLING_MODES,
    EncoderModel,
    SentenceEmbedder,
    SequenceClassifier,
    TokenClassifier,
    check_ids,
    check_inputs,
    checked,
    cosine_similarity,
    head_kinds,
    make_head,
    register_head,
)
from samp_jax.models.st_folder import read_pooling
from samp_jax.models.tokenizer import Tokenizer, check_fits

__all__ = ["FAMILIES", "HEAD_KINDS", "POOLING_MODES", "CheckpointError", "ConfigError", "Embeddings",
           "Encoder", "EncoderConfig", "EncoderLayer", "EncoderModel", "Family", "GemmSite", "KeyRule",
           "LayerNorm", "SentenceEmbedder", "SequenceClassifier", "TokenClassifier", "Tokenizer",
           "attention", "check_fits", "check_ids", "check_inputs", "checked", "cosine_similarity", "detect_head", "get_family",
           "head_kinds", "load_pretrained", "make_head", "read_pooling", "register_family",
           "register_head", "save_pretrained"]
