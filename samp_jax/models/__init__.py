"""Encoder models: config, families, Flax NNX layers and heads (each declaring its `HeadKind`),
HF checkpoint import/export (PEFT LoRA adapters merged into their base), sentence-transformers
folders, tokenizer (and the conversion of a slow tokenizer's files)."""

from samp_jax.models.checkpoint import CheckpointError, detect_head, load_pretrained, save_pretrained
from samp_jax.models.config import ConfigError, EncoderConfig
from samp_jax.models.families import FAMILIES, Family, KeyRule, get_family, register_family
from samp_jax.models.layers import Embeddings, Encoder, EncoderLayer, GemmSite, LayerNorm, attention
from samp_jax.models.head_kinds import (
    LABEL_THRESHOLD,
    NO_HEAD,
    SENTENCE_EMBEDDING,
    SEQUENCE_CLASSIFICATION,
    TOKEN_CLASSIFICATION,
    PROBLEM_TYPES,
    HeadKind,
    HeadOutput,
    Readout,
    check_label_threshold,
)
from samp_jax.models.heads import (
    DENSE_ACTIVATIONS,
    HEAD_KINDS,
    POOLING_MODES,
    DenseLayer,
    SentenceEmbedder,
    SequenceClassifier,
    TokenClassifier,
    cosine_similarity,
    get_head_kind,
    head_kinds,
    make_head,
    register_head,
)
from samp_jax.models.model import EncoderModel, check_ids, check_inputs, checked
from samp_jax.models.peft_adapter import find_adapter, load_adapter
from samp_jax.models.slow_tokenizer import convert_slow_tokenizer
from samp_jax.models.st_folder import read_pooling
from samp_jax.models.tokenizer import Tokenizer, check_fits

__all__ = ["DENSE_ACTIVATIONS", "FAMILIES", "HEAD_KINDS", "LABEL_THRESHOLD", "NO_HEAD",
           "POOLING_MODES", "PROBLEM_TYPES", "SENTENCE_EMBEDDING", "SEQUENCE_CLASSIFICATION",
           "TOKEN_CLASSIFICATION", "CheckpointError", "ConfigError", "DenseLayer", "Embeddings",
           "Encoder", "EncoderConfig", "EncoderLayer", "EncoderModel", "Family", "GemmSite",
           "HeadKind", "HeadOutput", "KeyRule", "LayerNorm", "Readout", "SentenceEmbedder",
           "SequenceClassifier", "TokenClassifier", "Tokenizer", "attention", "check_fits",
           "check_ids", "check_inputs", "check_label_threshold", "checked",
           "convert_slow_tokenizer", "cosine_similarity", "detect_head", "find_adapter", "get_family",
           "get_head_kind", "head_kinds", "load_adapter", "load_pretrained", "make_head", "read_pooling",
           "register_family", "register_head", "save_pretrained"]
