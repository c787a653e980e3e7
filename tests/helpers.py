"""Helpers shared by tests (fixtures live in `conftest.py`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from samp_jax import EncoderConfig

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
# The tiny BERT with MiniLM's vocabulary that CLI-level tests save with MiniLM's tokenizer.
TINY_MINILM_VOCAB = dict(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4,
                         intermediate_size=64, max_position_embeddings=64)


def xla_flags(*flags: str) -> str:
    """`XLA_FLAGS` for a process a test starts: this process's (tests/conftest.py sets the
    suite's own) and `flags`, which come last and so take precedence."""
    import os
    return " ".join(filter(None, (os.environ.get("XLA_FLAGS"),) + flags))


def tiny_classifier(num_labels: int = 2, seed: int = 5):
    """A random `TINY_MINILM_VOCAB` sequence classifier (an `EncoderModel`)."""
    from flax import nnx

    from samp_jax import EncoderModel
    from samp_jax.models import make_head
    config = EncoderConfig(**TINY_MINILM_VOCAB)
    rngs = nnx.Rngs(seed)
    return EncoderModel(config, make_head("sequence_classification", config,
                                          num_labels=num_labels, rngs=rngs), rngs=rngs)


# A tiny random architecture (3 layers, hidden 32) for tests that need a model, not weights.
TINY_CONFIG = EncoderConfig(vocab_size=64, hidden_size=32, num_layers=3, num_heads=4,
                            intermediate_size=64, max_position_embeddings=32)


def without_architectures(source: Path, folder: Path, **changes) -> Path:
    """A copy of checkpoint folder `source` whose config.json has no `architectures` (as older
    and converted hub checkpoints), with `changes` applied (a None value removes the key)."""
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("architectures")
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def golden_inputs(golden, name):
    """`(input_ids, attention_mask, token_type_ids)` of golden batch `name`."""
    return tuple(golden[f"{name}_{key}"] for key in ("input_ids", "attention_mask", "token_type_ids"))


def random_batches(n: int = 2, *, width: int = 16, rows: int = 8, vocab: int = 64,
                   seed: int = 0) -> list[dict]:
    """`n` right-padded batches of random ids in [1, vocab) with random lengths in [3, width]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lengths = rng.integers(3, width + 1, size=rows)
        mask = (np.arange(width)[None] < lengths[:, None]).astype(np.int32)
        ids = np.where(mask == 1, rng.integers(1, vocab, (rows, width)), 0).astype(np.int32)
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)})
    return out


# One tiny random architecture per registered family, each exercising what differs: RoBERTa /
# XLM-R positions from padding index 1 and one token type, DistilBERT / MPNet without token
# types, ELECTRA's narrower embeddings and projection, MPNet's relative position bias, ERNIE's
# task-type table. CamemBERT and data2vec-text are RoBERTa's model under other names: their
# golden folders (tests/golden/families) cover them.
FAMILY_CONFIGS = {
    "bert": TINY_CONFIG.replace(num_layers=2),
    "roberta": TINY_CONFIG.replace(model_type="roberta", num_layers=2, type_vocab_size=1,
                                   pad_token_id=1, position_padding_idx=1,
                                   max_position_embeddings=34),
    "xlm-roberta": TINY_CONFIG.replace(model_type="xlm-roberta", num_layers=2, type_vocab_size=1,
                                       pad_token_id=1, position_padding_idx=1,
                                       max_position_embeddings=34),
    "distilbert": TINY_CONFIG.replace(model_type="distilbert", num_layers=2, type_vocab_size=0),
    "electra": TINY_CONFIG.replace(model_type="electra", num_layers=2, embedding_size=24,
                                   hidden_act="gelu_new"),
    "mpnet": TINY_CONFIG.replace(model_type="mpnet", num_layers=2, type_vocab_size=0, pad_token_id=1,
                                 position_padding_idx=1, max_position_embeddings=34,
                                 relative_attention_num_buckets=32),
    # ModernBERT: layer 0 global, layer 1 local (window 8 < the batches' 16), two RoPE bases,
    # pre-LN, a gated FFN, no biases; the golden tokenizer's ids (up to 304) fit the vocabulary
    "modernbert": TINY_CONFIG.replace(model_type="modernbert", vocab_size=320, num_layers=2,
                                      type_vocab_size=0, pad_token_id=303, layer_norm_eps=1e-5,
                                      rotary_theta=1000.0, local_rotary_theta=10.0,
                                      local_attention=8, global_attn_every_n_layers=2,
                                      norm_first=True, gated_ffn=True, attention_bias=False,
                                      mlp_bias=False, norm_bias=False, classifier_bias=False),
    # DeBERTa-v3's shape: disentangled attention through the qkv weights, log buckets over
    # the 16-token test batches, a layer-normed relative table, no absolute positions
    "deberta-v2": TINY_CONFIG.replace(model_type="deberta-v2", num_layers=2, type_vocab_size=0,
                                      position_biased_input=False, disentangled_attention=True,
                                      pos_att_type=("p2c", "c2p"), position_buckets=8,
                                      share_att_key=True, norm_rel_ebd="layer_norm",
                                      layer_norm_eps=1e-7),
    # ERNIE 3.0's shape: BERT's with a task-type table (row 0 joins every token, the fused
    # embedding kernel folds it into the position rows) and more token types
    "ernie": TINY_CONFIG.replace(model_type="ernie", num_layers=2, type_vocab_size=4,
                                 task_type_vocab_size=3, layer_norm_eps=1e-5),
}


# Families that run another family's model code under a model type of their own: XLM-R,
# CamemBERT and data2vec-text are RoBERTa's classes (samp_jax/models/families/roberta.py).
# Loading them (key prefixes, tokenizers) is checked on their golden folders in the fast tests
# (models/test_families.py, models/test_family_aliases.py); a family matrix repeats RoBERTa's
# code for them, so it runs them in `make test-full` only.
SAME_CODE_AS = {"xlm-roberta": "roberta", "camembert": "roberta", "data2vec-text": "roberta"}


def family_param(model_type: str, *, fast: tuple[str, ...] = ("bert",),
                 full: tuple[str, ...] = ()):
    """`model_type` as a case of a family matrix, marked for the tiers that run it: a family in
    `fast` runs in every tier; one in `full` or in `SAME_CODE_AS` in `make test-full` only
    (marked `slow` and `full`); any other in `make test` (marked `slow`)."""
    import pytest

    if model_type in fast:
        return pytest.param(model_type)
    if model_type in full or model_type in SAME_CODE_AS:
        return pytest.param(model_type, marks=(pytest.mark.slow, pytest.mark.full))
    return pytest.param(model_type, marks=pytest.mark.slow)


def family_head_spec(model_type: str, kind: str = "sequence_classification") -> dict:
    """The `make_head` arguments that give `model_type`'s HF head of `kind` (its activation, and
    for ModernBERT its pooling and norm), with the HF config's defaults."""
    from samp_jax.models import get_family

    layout = get_family(model_type).heads[kind]
    if layout.options is not None:
        return layout.options({})
    return {} if layout.activation is None else {"activation": layout.activation}


def family_batches(config, n: int = 2, *, width: int = 16, rows: int = 8, seed: int = 0) -> list[dict]:
    """`random_batches` for `config`'s family: padding with its pad id, real ids that avoid it
    (RoBERTa-style positions count the non-pad tokens), token types where it has them."""
    out = []
    for batch in random_batches(n, width=width, rows=rows, vocab=config.vocab_size, seed=seed):
        mask = batch["attention_mask"]
        ids = batch["input_ids"]
        ids = np.where(ids == config.pad_token_id, (config.pad_token_id + 2) % config.vocab_size, ids)
        ids = np.where(mask == 1, ids, config.pad_token_id).astype(np.int32)
        types = ((np.arange(width)[None] >= 4) & (mask == 1)).astype(np.int32) \
            if config.type_vocab_size > 1 else np.zeros_like(mask)
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    return out


def small_split_warnings(metric: str, examples: int, fp32: float,
                         evidence: np.ndarray | None = None) -> list[str]:
    """The warnings `calibrate.search.tolerance.warn_if_rows_too_few` gives for a search split
    of `examples` rows scored by `metric` (FP32's value `fp32`, tolerance 1% relative), its
    per-example `evidence` given where the warning reads it."""
    import warnings
    from types import SimpleNamespace

    from calibrate.search.tolerance import warn_if_rows_too_few
    evaluation = SimpleNamespace(num_examples=examples)
    objective = SimpleNamespace(metric_name=metric, evaluation=evaluation)
    if evidence is not None:
        evaluation.evidence = lambda outputs: evidence
        objective.reference = ["outputs"]
    session = SimpleNamespace(config=SimpleNamespace(tolerance=0.01, tolerance_mode="relative"),
                              objective=objective, reference=SimpleNamespace(metric=fp32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_rows_too_few(session)
    return [str(w.message) for w in caught]
