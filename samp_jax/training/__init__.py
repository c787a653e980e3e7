"""Fine-tuning with optax, and a cache of fine-tuned models."""

from samp_jax.training.finetuning import (
    DEFAULT_CONFIGS,
    CachedModelError,
    FinetuneConfig,
    FinetuneResult,
    finetune,
    finetuned_dir,
    finetuned_model,
)

__all__ = ["DEFAULT_CONFIGS", "CachedModelError", "FinetuneConfig", "FinetuneResult", "finetune", "finetuned_dir",
           "finetuned_model"]
