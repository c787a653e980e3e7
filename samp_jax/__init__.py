"""samp-jax: self-adaptive mixed-precision inference for BERT-family encoders in JAX."""

from samp_jax.assets import minilm_path
from samp_jax.checkpoint import CheckpointError, load_pretrained
from samp_jax.config import ConfigError, EncoderConfig
from samp_jax.dispatch import gemm, implementations, register_gemm_implementation
from samp_jax.engine import Engine, compile
from samp_jax.layers import SITES, Embeddings, Encoder, EncoderLayer, GemmSite
from samp_jax.model import (EncoderModel, SentenceEmbedder, SequenceClassifier, TokenClassifier,
                            cosine_similarity)
from samp_jax.precision import PrecisionMap, PrecisionMapError, SitePrecision
from samp_jax.quant import QArray
from samp_jax.quantized import QuantizedModel, quantize
from samp_jax.sharding import data_mesh, sharded_forward
from samp_jax.tasks import evaluate, get_task
from samp_jax.tokenizer import Tokenizer
from samp_jax.training import FinetuneConfig, finetune, finetuned_model

__version__ = "0.1.0"

__all__ = [
    "SITES", "CheckpointError", "ConfigError", "Embeddings", "Encoder", "EncoderConfig",
    "EncoderLayer", "EncoderModel", "GemmSite", "SentenceEmbedder", "SequenceClassifier",
    "TokenClassifier", "Tokenizer", "cosine_similarity", "load_pretrained", "minilm_path",
    "PrecisionMap", "PrecisionMapError", "SitePrecision", "QArray", "QuantizedModel", "quantize",
    "gemm", "implementations", "register_gemm_implementation",
    "FinetuneConfig", "evaluate", "finetune", "finetuned_model", "get_task",
    "Engine", "compile", "data_mesh", "sharded_forward",
]

import pallas_kernels as _pallas_kernels  # noqa: E402,F401  registers the 'pallas' GEMM
