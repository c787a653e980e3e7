"""Writes tests/golden/peft: PEFT LoRA adapters over the tiny family checkpoints of
tests/golden/families, saved by PEFT's own code, with what HF's `PeftModel` outputs.

Each case wraps a family base with a LoRA config of its own kind (targets, rank and alpha
patterns, rsLoRA, bias modes, embeddings, saved modules, a .bin file), initialises it as PEFT
does and then perturbs every trainable tensor (lora_B included, which PEFT starts at zero), saves
the adapter, loads it back with `PeftModel.from_pretrained` over a fresh base (as a user runs
it) and records that model's outputs on the family's texts. Run by tools/make_golden.sh (the
golden venv, with peft); the tests read the adapters and golden.npz without torch.

Usage: python tools/golden_peft.py [--out tests/golden/peft]
"""

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model

FAMILIES = Path(__file__).resolve().parent.parent / "tests" / "golden" / "families"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
AUTO = {"SEQ_CLS": transformers.AutoModelForSequenceClassification,
        "TOKEN_CLS": transformers.AutoModelForTokenClassification,
        "FEATURE_EXTRACTION": transformers.AutoModel}

# name -> (family, base folder under tests/golden/families/FAMILY, classes, LoraConfig kwargs,
#          extras). extras: `base_name` (what adapter_config.json states instead of the relative
#          path: a hub name), `tokenizer` (copy the tokenizer into the adapter), `bin` (save
#          adapter_model.bin), `edit` (keys written into adapter_config.json after saving),
#          `labels` (a config.json with id2label in the adapter folder).
CASES = {
    # attention Q/K/V and output, FFN, the pooler; biases trained and saved (bias="all")
    "bert_seqcls": ("bert", "base", 3, dict(
        task_type="SEQ_CLS", r=4, lora_alpha=8, bias="all",
        target_modules=["query", "key", "value", "dense"]), {}),
    # rsLoRA, per-module rank and alpha; a hub name for a base (tests pass base_model=)
    "bert_tokcls_rslora": ("bert", "base", 5, dict(
        task_type="TOKEN_CLS", r=8, lora_alpha=4, use_rslora=True,
        rank_pattern={"encoder.layer.1.output.dense": 2, "layer.0.attention.self.value": 3},
        alpha_pattern={"query": 12},
        target_modules=["query", "value", "intermediate.dense", "output.dense"]),
        {"base_name": "google-bert/bert-base-uncased", "tokenizer": True}),
    # over a fine-tuned classifier (its labels kept), embeddings too; fan_in_fan_out stated
    # true by hand, which PEFT reads as false for a Linear
    "roberta_seqcls": ("roberta", "seqcls", 3, dict(
        task_type="SEQ_CLS", r=4, lora_alpha=16,
        target_modules=["query", "value", "output.dense", "intermediate.dense", "word_embeddings"]),
        {"edit": {"fan_in_fan_out": True}}),
    # DeBERTa's *_proj, the ContextPooler saved whole, labels
    # from a config.json in the adapter folder
    "deberta_seqcls": ("deberta-v2", "base", 2, dict(
        task_type="SEQ_CLS", r=4, lora_alpha=8, bias="lora_only",
        target_modules=["query_proj", "key_proj", "value_proj", "dense"],
        modules_to_save=["pooler"]), {"labels": {0: "no", 1: "yes"}}),
    # the fused Wqkv, the gated Wi, the token embeddings, the head saved whole, a .bin file
    "modernbert_tokcls": ("modernbert", "base", 4, dict(
        task_type="TOKEN_CLS", r=4, lora_alpha=8,
        target_modules=["Wqkv", "Wo", "Wi", "tok_embeddings"], modules_to_save=["head"]),
        {"bin": True}),
    # a sentence-transformers base (pooling, Normalize) embedding through the adapter
    "distilbert_feature": ("distilbert", "sentence", None, dict(
        task_type="FEATURE_EXTRACTION", r=4, lora_alpha=8,
        target_modules=["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"]), {}),
}


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.3) -> int:
    """Random values for every trainable tensor (LoRA pairs, saved modules, trained biases)."""
    gen = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for _, param in model.named_parameters():
            if param.requires_grad:
                param.copy_(scale * torch.randn(param.shape, generator=gen))
                count += 1
    return count


def _outputs(model, enc, task: str, base_dir: Path) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**enc)
    if task != "FEATURE_EXTRACTION":
        return {"logits": out.logits.numpy().astype(np.float32)}
    from sentence_transformers.models import Pooling
    hidden = out.last_hidden_state
    pooling = json.loads((base_dir / "1_Pooling" / "config.json").read_text())
    pooled = Pooling(**pooling)({"token_embeddings": hidden,
                                 "attention_mask": enc["attention_mask"]})["sentence_embedding"]
    embedding = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return {"hidden": hidden.numpy().astype(np.float32),
            "embedding": embedding.numpy().astype(np.float32)}


def case(name: str, out: Path, seed: int) -> dict:
    family, base_sub, num_labels, lora, extras = CASES[name]
    base_dir = FAMILIES / family / base_sub
    texts = json.loads((FAMILIES / family / "texts.json").read_text())["single"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_dir)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=40, return_tensors="pt")
    task = lora["task_type"]
    options = {"attn_implementation": "eager"}
    if num_labels is not None:
        options["num_labels"] = num_labels

    def fresh_base():
        torch.manual_seed(seed)  # a head the base lacks starts random (then replaced)
        return AUTO[task].from_pretrained(base_dir, **options).eval()

    base = fresh_base()
    before = _outputs(base, enc, task, base_dir)
    model = get_peft_model(base, LoraConfig(**lora))
    assert _perturb(model, seed) > 0
    model.eval()
    trained = _outputs(model, enc, task, base_dir)
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=not extras.get("bin"))
    (folder / "README.md").unlink(missing_ok=True)  # PEFT's model card template
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = extras.get(
        "base_name", os.path.relpath(base_dir, folder))  # a path relative to the adapter's folder
    config |= extras.get("edit", {})
    for key in ("target_modules", "modules_to_save"):  # sets in PEFT: one order, for the diff
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
    if extras.get("tokenizer"):
        for file in TOKENIZER_FILES:
            if (base_dir / file).is_file():
                shutil.copy(base_dir / file, folder / file)
    if "labels" in extras:
        id2label = {str(i): label for i, label in extras["labels"].items()}
        (folder / "config.json").write_text(json.dumps(
            {"model_type": json.loads((base_dir / "config.json").read_text())["model_type"],
             "id2label": id2label, "label2id": {v: int(k) for k, v in id2label.items()}}, indent=2))
    # as a user runs it: a fresh base, the adapter read back from disk
    loaded = PeftModel.from_pretrained(fresh_base(), folder).eval()
    golden = _outputs(loaded, enc, task, base_dir)
    for key, value in golden.items():
        # peft 0.17.1 saves no bias under bias="lora_only" (it looks for `<module>.bias`, which
        # its LoRA layer holds as `<module>.base_layer.bias`): the trained biases are lost,
        # and the adapter read back is what users run
        if lora.get("bias") != "lora_only":
            assert np.allclose(value, trained[key], atol=1e-5), (name, key, np.abs(value - trained[key]).max())
        moved = np.abs(value - before[key]).max()
        assert moved > 0.05, (name, key, "the adapter barely moves the output", moved)
    arrays = {f"{name}_{key}": value for key, value in golden.items()}
    arrays[f"{name}_input_ids"] = enc["input_ids"].numpy().astype(np.int32)
    arrays[f"{name}_attention_mask"] = enc["attention_mask"].numpy().astype(np.int32)
    tt = enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))
    arrays[f"{name}_token_type_ids"] = tt.numpy().astype(np.int32)
    print(f"{name}: {family}/{base_sub} {task}, " + ", ".join(
        f"{k} {v.shape} |max| {np.abs(v).max():.3f}" for k, v in golden.items()))
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FAMILIES.parent / "peft")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for seed, name in enumerate(CASES, start=900):
        arrays |= case(name, args.out, seed)
    np.savez_compressed(args.out / "golden.npz", **arrays)
    (args.out / "VERSIONS.json").write_text(json.dumps(
        {"torch": torch.__version__, "transformers": transformers.__version__,
         "peft": peft.__version__, "generator": "tools/golden_peft.py"}, indent=1))


if __name__ == "__main__":
    main()
