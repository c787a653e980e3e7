"""Long rows through the families without a position table (run in the golden venv).

DeBERTa-v3 (relative positions only) and ModernBERT (rotary positions) have no table of
absolute positions, and HF runs them at any length: a row past `max_position_embeddings` is
not an error there. This records, for the sequence classifier of each such family folder
(`OUT/families/<family>/seqcls`), HF's logits on two rows longer than its
`max_position_embeddings` (and than its tokenizer's `model_max_length`), tokenized whole (no
truncation, as HF's pipelines call the tokenizer), padded to the longer one, into
`OUT/families/<family>/long_rows.npz` (`input_ids`, `attention_mask`, `logits`) with the texts.

    python tools/golden_long_rows.py --out tests/golden
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import transformers

FAMILIES = ("deberta-v2", "modernbert")


def long_texts(single: list[str]) -> list[str]:
    """Two texts built from the family's golden sentences: all of them, then every other one
    twice over (different lengths, so the shorter row is padded)."""
    return [" ".join(single), " ".join(single[::2] * 2)]


def record(folder: Path) -> dict:
    """HF's logits on the long texts for `folder/seqcls`, written to `folder/long_rows.npz`."""
    texts = long_texts(json.loads((folder / "texts.json").read_text())["single"])
    model_dir = folder / "seqcls"
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        model_dir, attn_implementation="eager").eval()
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    lengths = enc["attention_mask"].sum(1).tolist()
    limit = model.config.max_position_embeddings
    assert min(lengths) > max(limit, tokenizer.model_max_length), (lengths, limit)
    with torch.no_grad():
        logits = model(**enc).logits.numpy().astype(np.float32)
    np.savez_compressed(folder / "long_rows.npz", input_ids=enc["input_ids"].numpy().astype(np.int32),
                        attention_mask=enc["attention_mask"].numpy().astype(np.int32),
                        logits=logits)
    (folder / "long_rows.json").write_text(json.dumps(
        {"texts": texts, "lengths": lengths, "max_position_embeddings": limit,
         "transformers": transformers.__version__, "torch": torch.__version__}, indent=1))
    return {"lengths": lengths, "limit": limit, "|logits|": float(np.abs(logits).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("tests/golden"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    for family in FAMILIES:
        print(family, record(args.out / "families" / family))


if __name__ == "__main__":
    main()
