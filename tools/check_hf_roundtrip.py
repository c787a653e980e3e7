"""Checks that HF transformers (and sentence-transformers) load what samp-jax's `save_pretrained`
writes, for every family and head, and compute what samp-jax computes.

Two steps in two venvs, run by `make golden` after the goldens are written:

    .venv/bin/python tools/check_hf_roundtrip.py export --out DIR   # samp-jax: load, re-save
    .golden-venv/bin/python tools/check_hf_roundtrip.py verify DIR  # HF: load, compare

`export` loads each folder under tests/golden/families (and tests/golden/st_dense's sentence
model with Dense projections), writes it back with `save_pretrained`
and stores samp-jax's outputs on the golden inputs; `verify` loads each written folder with the
HF class its `architectures` names (or SentenceTransformer) and compares.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ROOT / "tests" / "golden" / "families"
# A sentence-transformers folder with Dense projections (only its `sentence/` head).
ST_DENSE = ROOT / "tests" / "golden" / "st_dense"
HEADS = ("base", "seqcls", "tokcls", "sentence")
# Extra checkpoint folders a family may carry, without a tokenizer: DeBERTa's v2-style encoder
# (`variant/`) and its classifier without relative attention (`nonrelative/`).
VARIANTS = ("variant", "nonrelative")
KEYS = ("input_ids", "attention_mask", "token_type_ids")


def export(out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from samp_jax import load, load_pretrained
    from samp_jax.models import save_pretrained

    sources = [(family, HEADS + tuple(v for v in VARIANTS if (family / v).is_dir()))
               for family in sorted(p for p in FAMILIES.iterdir() if p.is_dir())]
    for family, heads in sources + [(ST_DENSE, ("sentence",))]:
        golden = np.load(family / "golden.npz")
        texts = json.loads((family / "texts.json").read_text())
        for head in heads:  # variants carry no tokenizer: only `sentence` encodes texts
            model = load(family / head) if head in HEADS else load_pretrained(family / head)
            folder = out / family.name / head
            save_pretrained(model, folder)
            arrays = {}
            for batch in ("single", "pair"):
                if head == "sentence":  # SentenceTransformer encodes texts: the pairs' first texts
                    rows = texts["single"] if batch == "single" else texts["pair_sentence_texts"]
                    encoded = model.tokenizer(rows, truncation=True)
                    inputs = [encoded[key] for key in KEYS]
                else:
                    inputs = [golden[f"{batch}_{key}"] for key in KEYS]
                arrays |= {f"{batch}_{key}": value for key, value in zip(KEYS, inputs)}
                arrays[f"{batch}_ours"] = np.asarray(model(*inputs), np.float32)
            np.savez(folder / "ours.npz", **arrays)
            (folder / "texts.json").write_text(json.dumps(texts))
            print(f"exported {family.name}/{head}")


def verify(out: Path) -> None:
    import torch
    import transformers

    failures = []
    for folder in sorted(out.glob("*/*")):
        ours = np.load(folder / "ours.npz")
        config = json.loads((folder / "config.json").read_text())
        head = folder.name
        if head == "sentence":
            from sentence_transformers import SentenceTransformer
            texts = json.loads((folder / "texts.json").read_text())
            st = SentenceTransformer(str(folder), device="cpu")
            got = {"single": st.encode(texts["single"]),
                   "pair": st.encode(texts["pair_sentence_texts"])}
            for batch, value in got.items():
                cosine = np.sum(value * ours[f"{batch}_ours"], -1) / (
                    np.linalg.norm(value, axis=-1) * np.linalg.norm(ours[f"{batch}_ours"], axis=-1))
                ok = cosine.min() >= 1 - 1e-6
                print(f"{folder.parent.name}/{head} {batch}: SentenceTransformer cosine min "
                      f"{cosine.min():.8f}, max |diff| {np.abs(value - ours[f'{batch}_ours']).max():.2e} "
                      f"{'ok' if ok else 'MISMATCH'}")
                failures += [] if ok else [f"{folder} {batch}"]
            continue
        cls = getattr(transformers, config["architectures"][0])
        model = cls.from_pretrained(folder, attn_implementation="eager").eval()
        for batch in ("single", "pair"):
            kwargs = {key: torch.tensor(ours[f"{batch}_{key}"]).long() for key in KEYS}
            if config.get("type_vocab_size", 0) <= 1:  # HF's tokenizers send no token types
                kwargs.pop("token_type_ids")
            with torch.no_grad():
                output = model(**kwargs)
            base = cls.__name__.endswith("Model")  # an encoder: its last hidden state
            value = (output.last_hidden_state if base else output.logits).numpy()
            mask = ours[f"{batch}_attention_mask"].astype(bool)
            diff = np.abs(value - ours[f"{batch}_ours"])
            diff = diff[mask] if value.ndim == 3 else diff
            ok = diff.max() <= (1e-4 if base else 1e-5)
            print(f"{folder.parent.name}/{head} {batch}: {cls.__name__} max |diff| {diff.max():.2e} "
                  f"{'ok' if ok else 'MISMATCH'}")
            failures += [] if ok else [f"{folder} {batch}"]
    if failures:
        raise SystemExit(f"HF disagrees with samp-jax on {failures}")
    print("HF transformers loads every folder samp-jax wrote and computes the same outputs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("export").add_argument("--out", type=Path, required=True)
    sub.add_parser("verify").add_argument("out", type=Path)
    args = parser.parse_args()
    export(args.out) if args.step == "export" else verify(args.out)


if __name__ == "__main__":
    main()
