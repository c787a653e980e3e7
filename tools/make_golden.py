"""Writes tests/golden/ with Hugging Face's own code (torch + transformers 4.57, Flax for msgpack).

Run through `make golden` (tools/make_golden.sh), which builds the separate Python 3.11 venv
this needs; torch never becomes a dependency of samp-jax itself.

Usage: python tools/make_golden.py --minilm MODEL_DIR --out tests/golden
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
)

SENTENCES = [
    "A man is playing a guitar.",
    "Two dogs run across a snowy field while their owner watches from the porch.",
    "Hi",
    "The stock market fell sharply on Tuesday after the central bank raised interest rates.",
    "A woman is slicing tomatoes in a small kitchen.",
    "Children are playing soccer in the park.",
    "Quantization makes inference cheaper without retraining.",
    "The quick brown fox jumps over the lazy dog.",
    "Nobody is outside.",
    "An old photograph of a crowded train station in the rain, taken from a balcony above the tracks, black and white.",
    "She didn't like the movie at all; it was far too long and rather dull.",
    "Élodie's café serves crème brûlée — naïve façade!",
    "1234 5678 90",
    "What time does the museum open on Sundays?",
    "A cat sleeps.",
    "Researchers measured the latency of the encoder on a GPU.",
]
PAIRS = [
    ("A man is playing a guitar.", "A person plays an instrument."),
    ("A man is playing a guitar.", "Nobody is playing music."),
    ("Two women are walking on the beach.", "Two people are outdoors."),
    ("A child is eating ice cream.", "A kid sleeps in his bed at night, dreaming of a long trip."),
    ("A dog catches a frisbee.", "An animal is playing."),
    ("The sky is blue.", "The sky is green."),
]


def minilm(model_dir: Path, out: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    arrays = {}
    for name, batch in (
        ("single", tokenizer(SENTENCES, padding=True, return_tensors="pt")),
        ("pair", tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True,
                           return_tensors="pt")),
    ):
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        # sentence-transformers' Pooling(mean) + Normalize modules, written out.
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        embedding = torch.nn.functional.normalize(pooled, p=2, dim=1)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            arrays[f"{name}_{key}"] = batch[key].numpy().astype(np.int32)
        arrays[f"{name}_hidden"] = hidden.numpy().astype(np.float32)
        arrays[f"{name}_embedding"] = embedding.numpy().astype(np.float32)
    try:  # cross-check the written-out pooling against sentence-transformers itself
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer(str(model_dir), device="cpu")
        st_emb = st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
        assert np.allclose(st_emb, arrays["single_embedding"], atol=1e-5), "ST disagrees"
        print("sentence-transformers agrees with the written-out pooling")
    except ImportError:
        print("sentence-transformers not installed; skipped its cross-check")
    np.savez_compressed(out / "minilm.npz", **arrays)
    (out / "minilm_texts.json").write_text(
        json.dumps({"sentences": SENTENCES, "pairs": PAIRS}, indent=1, ensure_ascii=False))


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random weights large enough that every parameter visibly moves the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if "LayerNorm.weight" in name:
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(0.2 * noise)


def tiny_head(cls, flax_cls_name: str, num_labels: int, out: Path, seed: int) -> None:
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=40, type_vocab_size=2,
                        num_labels=num_labels, hidden_act="gelu", attn_implementation="eager")
    torch.manual_seed(seed)
    model = cls(config).eval()
    randomize(model, seed)
    st_dir, mp_dir = out / "safetensors", out / "msgpack"
    for d in (st_dir, mp_dir):
        shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(st_dir, safe_serialization=True)
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1, config.vocab_size, size=(4, 12)).astype(np.int64)
    lengths = np.array([12, 9, 5, 1])
    attention_mask = (np.arange(12)[None] < lengths[:, None]).astype(np.int64)
    token_type_ids = ((np.arange(12)[None] >= (lengths[:, None] // 2)) & (attention_mask == 1)).astype(np.int64)
    input_ids = np.where(attention_mask == 1, input_ids, 0)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(attention_mask),
                       token_type_ids=torch.tensor(token_type_ids)).logits.numpy()
    # The HF Flax class converts the torch weights and writes flax_model.msgpack.
    flax_cls = getattr(transformers, flax_cls_name)
    flax_model = flax_cls.from_pretrained(st_dir, from_pt=True)
    flax_logits = np.asarray(flax_model(input_ids=input_ids, attention_mask=attention_mask,
                                        token_type_ids=token_type_ids).logits)
    assert np.allclose(flax_logits, logits, atol=1e-4), np.abs(flax_logits - logits).max()
    flax_model.save_pretrained(mp_dir)
    (mp_dir / "model.safetensors").unlink(missing_ok=True)
    np.savez(out / "golden.npz", input_ids=input_ids.astype(np.int32),
             attention_mask=attention_mask.astype(np.int32),
             token_type_ids=token_type_ids.astype(np.int32), logits=logits.astype(np.float32))
    print(f"{out.name}: logits {logits.shape}, |logits| max {np.abs(logits).max():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minilm", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("tests/golden"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    minilm(args.minilm, args.out)
    for cls, flax_name, labels, name, seed in (
        (BertForSequenceClassification, "FlaxBertForSequenceClassification", 3, "tiny_seqcls", 1),
        (BertForTokenClassification, "FlaxBertForTokenClassification", 5, "tiny_tokcls", 2),
    ):
        folder = args.out / name
        folder.mkdir(exist_ok=True)
        tiny_head(cls, flax_name, labels, folder, seed)
    (args.out / "VERSIONS.json").write_text(json.dumps(
        {"torch": torch.__version__, "transformers": transformers.__version__,
         "generator": "tools/make_golden.py"}, indent=1))


if __name__ == "__main__":
    main()
