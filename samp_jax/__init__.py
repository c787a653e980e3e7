"""samp-jax: self-adaptive mixed-precision inference for BERT-family encoders in JAX.

The library core: models (`samp_jax.models`), quantization (`samp_jax.quant`), the op
registries with the Pallas kernels (`samp_jax.ops`), tasks, serving and training;
`samp_jax.load(folder)` reads any model folder it writes, tokenizer attached. Calibration
and the precision search live in the `calibrate` package, the CLI in `samp_jax.app`.
"""

from samp_jax.assets import minilm_path
from samp_jax.loading import load
from samp_jax.models import (
    CheckpointError,
    ConfigError,
    Embeddings,
    Encoder,
    EncoderConfig,
    EncoderLayer,
    EncoderModel,
    GemmSite,
    SentenceEmbedder,
    SequenceClassifier,
    TokenClassifier,
    Tokenizer,
    cosine_similarity,
    load_pretrained,
    register_family,
    register_head,
    save_pretrained,
)
from samp_jax.ops import gemm, implementations, register_gemm_implementation
from samp_jax.quant import SITES, PrecisionMap, PrecisionMapError, QArray, SitePrecision
from samp_jax.quant.quantized import QuantizedModel, quantize
from samp_jax.serving import Engine, compile, data_mesh, sharded_forward
from samp_jax.tasks import evaluate, get_task
from samp_jax.training import FinetuneConfig, finetune, finetuned_model
from samp_jax.version import __version__

__all__ = [
    "SITES", "CheckpointError", "ConfigError", "Embeddings", "Encoder", "EncoderConfig",
    "EncoderLayer", "EncoderModel", "GemmSite", "SentenceEmbedder", "SequenceClassifier",
    "TokenClassifier", "Tokenizer", "cosine_similarity", "load", "load_pretrained", "minilm_path",
    "register_family", "register_head", "save_pretrained",
    "PrecisionMap", "PrecisionMapError", "SitePrecision", "QArray", "QuantizedModel", "quantize",
    "gemm", "implementations", "register_gemm_implementation",
    "FinetuneConfig", "evaluate", "finetune", "finetuned_model", "get_task",
    "Engine", "compile", "data_mesh", "sharded_forward", "__version__",
]
