"""samp-jax: self-adaptive mixed-precision inference for BERT-family encoders in JAX.

The library core: models (`samp_jax.models`), quantization (`samp_jax.core`), the op
registries with the Pallas kernels (`samp_jax.ops`), tasks, serving and training;
`samp_jax.load(folder)` reads any model folder it writes, tokenizer attached. Calibration
and the precision search live in the `calibrate` package, the CLI in `samp_jax.app`.

The names below are imported on first use (PEP 562), so `import samp_jax` is cheap and a
program (the CLI among them) can set itself up, e.g. handle Ctrl-C or start
`jax.distributed`, before JAX and the models load. The first use happens one thread at a time
(a lock): a service whose worker threads touch `samp_jax.load` and `samp_jax.quantize` at the
same moment would otherwise race on modules that import each other (Python's per-module import
locks end that in an ImportError or a deadlock error) and on JAX's own first import.

Every exception class samp-jax defines derives from `SampJaxError` (`except
samp_jax.SampJaxError:` catches them all) and keeps its builtin base too (`PrecisionMapError`
and `CheckpointError` are still `ValueError`s, `FolderChanged` a `FileNotFoundError`); builtin
exceptions raised as they are (most argument checks) are not `SampJaxError`s: its docstring
says what it covers.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

from samp_jax.core.version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "minilm_path": "samp_jax.core.assets",
    "SampJaxError": "samp_jax.core.errors",
    "load": "samp_jax.ptq.loading",
    **dict.fromkeys((
        "CheckpointError", "ConfigError", "DenseLayer", "Embeddings", "Encoder", "EncoderConfig",
        "EncoderLayer", "EncoderModel", "GemmSite", "HeadKind", "HeadOutput", "SentenceEmbedder",
        "SequenceClassifier", "TokenClassifier", "Tokenizer", "cosine_similarity", "load_pretrained",
        "register_family", "register_head", "save_pretrained"), "samp_jax.models"),
    **dict.fromkeys(("gemm", "implementations", "register_gemm_implementation"), "samp_jax.ops"),
    **dict.fromkeys(("SITES", "PrecisionMap", "PrecisionMapError", "QArray", "SitePrecision"),
                    "samp_jax.core"),
    **dict.fromkeys(("QuantizedModel", "quantize"), "samp_jax.ptq.quantized"),
    "model_fingerprint": "samp_jax.ptq.site_calibration",
    **dict.fromkeys(("SidecarNotSealedWarning",), "samp_jax.ptq.folder"),
    **dict.fromkeys(("Engine", "compile", "data_mesh", "sharded_forward"), "samp_jax.serving"),
    **dict.fromkeys(("initialize_distributed",), "samp_jax.serving.distributed"),
    **dict.fromkeys(("keep_cpu_buffers",), "samp_jax.core.host_memory"),
    **dict.fromkeys(("evaluate", "get_task", "register_metric"), "samp_jax.tasks"),
    **dict.fromkeys(("FinetuneConfig", "finetune", "finetuned_model"), "samp_jax.training"),
}

# the library's subpackages, reachable as attributes (`samp_jax.tasks.load_task`) on first use
_SUBPACKAGES = ("core", "data", "models", "ops", "ptq", "serving", "tasks", "training")

__all__ = sorted([*_EXPORTS, "__version__"])

# Held while a first use imports its module: one such import at a time. Only this function
# takes it; the library's own modules import one another directly, never through it.
_FIRST_USE = threading.RLock()


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        with _FIRST_USE:
            return importlib.import_module(f"samp_jax.{name}")  # the import binds it here too
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'samp_jax' has no attribute {name!r}")
    with _FIRST_USE:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBPACKAGES))


if TYPE_CHECKING:  # what static tools see; at run time the names load on first use
    from samp_jax.core.assets import minilm_path
    from samp_jax.core.errors import SampJaxError
    from samp_jax.ptq.loading import load
    from samp_jax.models import (CheckpointError, ConfigError, DenseLayer, Embeddings, Encoder, EncoderConfig,
                                 EncoderLayer, EncoderModel, GemmSite, HeadKind, HeadOutput,
                                 SentenceEmbedder, SequenceClassifier, TokenClassifier, Tokenizer,
                                 cosine_similarity,
                                 load_pretrained, register_family, register_head, save_pretrained)
    from samp_jax.ops import gemm, implementations, register_gemm_implementation
    from samp_jax.core import SITES, PrecisionMap, PrecisionMapError, QArray, SitePrecision
    from samp_jax.ptq.folder import SidecarNotSealedWarning
    from samp_jax.ptq.quantized import QuantizedModel, quantize
    from samp_jax.ptq.site_calibration import model_fingerprint
    from samp_jax.serving import Engine, compile, data_mesh, sharded_forward
    from samp_jax.serving.distributed import initialize_distributed
    from samp_jax.tasks import evaluate, get_task, register_metric
    from samp_jax.training import FinetuneConfig, finetune, finetuned_model
