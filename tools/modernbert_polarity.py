"""Trains a small ModernBERT from random weights on the polarity task (no ModernBERT checkpoint
ships in a package the project installs), so its precisions can be compared on a real task.

The model has ModernBERT's architecture (pre-LN, rotary positions with two bases, local
attention every other layer, a gated FFN, no biases, a mean-pooled `head.dense → GELU →
head.norm → classifier`) at a small size, and borrows MiniLM's WordPiece tokenizer. It is
written as an HF ModernBERT folder (`save_pretrained`), which `samp-jax eval --model DIR`
then scores at each precision.

Usage: python tools/modernbert_polarity.py OUT_DIR
"""

import json
import sys
import time
from pathlib import Path

from flax import nnx

from samp_jax.core.assets import minilm_path
from samp_jax.models import EncoderConfig, EncoderModel, make_head
from samp_jax.models.checkpoint import save_pretrained
from samp_jax.models.tokenizer import Tokenizer
from samp_jax.tasks.task import evaluate, get_task
from samp_jax.training.finetuning import FinetuneConfig, finetune

CONFIG = EncoderConfig(
    model_type="modernbert", vocab_size=30522, hidden_size=128, num_layers=4, num_heads=4,
    intermediate_size=192, max_position_embeddings=512, type_vocab_size=0, layer_norm_eps=1e-5,
    hidden_act="gelu", pad_token_id=0, rotary_theta=160000.0, local_rotary_theta=10000.0,
    local_attention=16, global_attn_every_n_layers=2, norm_first=True, gated_ffn=True,
    attention_bias=False, mlp_bias=False, norm_bias=False, classifier_bias=False)
TRAINING = FinetuneConfig(learning_rate=1e-3, batch_size=32, epochs=4.0, eval_every=100,
                          patience=4, warmup_fraction=0.1, max_dev_examples=None, min_steps=0)


def main(out: Path) -> None:
    task = get_task("polarity", seed=TRAINING.seed)
    tokenizer = Tokenizer.from_pretrained(minilm_path(), max_length=128, sentence_transformers=False)
    rngs = nnx.Rngs(0)
    head = make_head("sequence_classification", CONFIG, labels=task.labels, activation="gelu",
                     pooling="mean", norm=True, rngs=rngs)
    model = EncoderModel(CONFIG, head, rngs=rngs)
    start = time.perf_counter()
    result = finetune(model, task, tokenizer, TRAINING)
    test = evaluate(result.model, task, "test", tokenizer=tokenizer)
    save_pretrained(result.model, out, tokenizer_dir=minilm_path())
    record = {"dev": result.dev_metric, "test": test, "steps": result.steps,
              "train_seconds": round(time.perf_counter() - start, 1)}
    (out / "training.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
