"""Differential sweep: tiny random HF checkpoints over valid config variations
(`tools/variant_grid.py`), run by Hugging Face's own code, then loaded by samp-jax and compared.

Two steps in two venvs, as `tools/check_hf_roundtrip.py`:

    .golden-venv/bin/python tools/variant_sweep.py build --out DIR    # HF: write + run
    .venv/bin/python tools/variant_sweep.py compare DIR [--record FILE]  # samp-jax: load + compare

`build` writes one folder per (variant, head): the checkpoint (saved by `save_pretrained`, in the
variant's storage), the family's golden tokenizer, and `expected.npz`: HF's input ids and
outputs on fixed texts (single sentences with padding, and text pairs), computed by the model
as HF reloads it from that folder. `DIR/manifest.json` lists the folders, with HF's own error
where HF cannot build or run a variant. `compare` loads each folder with `samp_jax.load`
(float32, its tokenizer attached), tokenizes the same texts with samp-jax's tokenizer (the ids
must be HF's), runs the model and prints one row per folder: matched (max |diff|), mismatch,
tokenizer or label mismatch, refused (samp-jax's error), or HF error. `--record` writes the rows
with their provenance and HF's versions (docs/results/variant_sweep.json, rendered into
docs/families.md by tools/render_docs.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))
from variant_grid import GRID, HEADS, Variant  # noqa: E402

# max |samp-jax - HF| for a match: float32 on both sides (the goldens measure about 4e-6).
TOLERANCE = 5e-5


# ---------------------------------------------------------------------------------- build
def build(out: Path, only: str | None) -> None:
    import torch

    import make_golden

    torch.set_num_threads(2)
    out.mkdir(parents=True, exist_ok=True)
    tokenizers: dict[str, Path] = {}
    manifest = []
    for variant in GRID:
        if only and only not in variant.key:
            continue
        if variant.family not in tokenizers:
            tokenizers[variant.family] = _tokenizer_dir(make_golden, variant.family, out / "_tokenizers")
        for head in variant.heads:
            folder = out / variant.family / variant.name / head
            entry = {"family": variant.family, "variant": variant.name, "head": head,
                     "folder": str(folder.relative_to(out))}
            try:
                entry |= _build_one(make_golden, variant, head, tokenizers[variant.family], folder)
            except Exception as e:  # noqa: BLE001  HF refusing a variant is a result, not a crash
                entry["hf_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            manifest.append(entry)
            print(f"{variant.key}/{head}: {entry.get('hf_error', 'built')}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (out / "texts.json").write_text(json.dumps(
        {"single": make_golden.SENTENCES, "pairs": make_golden.PAIRS}, ensure_ascii=False))
    import sentence_transformers
    import transformers
    (out / "versions.json").write_text(json.dumps(
        {"torch": torch.__version__, "transformers": transformers.__version__,
         "sentence_transformers": sentence_transformers.__version__}))


def _tokenizer_dir(make_golden, family: str, root: Path) -> Path:
    """The family's golden tokenizer, saved once (and read back, as users see it)."""
    import transformers

    work = root / family / "_work"
    shutil.rmtree(root / family, ignore_errors=True)
    work.mkdir(parents=True)
    make_golden.build_tokenizer(family, work).save_pretrained(root / family / "tokenizer")
    shutil.rmtree(work)
    folder = root / family / "tokenizer"
    transformers.AutoTokenizer.from_pretrained(folder)  # must load
    return folder


def _config(make_golden, variant: Variant, vocab_size: int, head: str):
    base = make_golden._family_config(variant.family, vocab_size)
    values = base.to_dict() | variant.config
    if "pooler_hidden_size" in values:  # DeBERTa's ContextPooler follows the width it was built with
        values["pooler_hidden_size"] = variant.config.get("pooler_hidden_size", values["hidden_size"])
    if head in ("seqcls", "tokcls") and "id2label" not in variant.config:
        values.pop("id2label", None), values.pop("label2id", None)
        values["num_labels"] = variant.config.get("num_labels", 3)
    return type(base).from_dict(values)


def _build_one(make_golden, variant: Variant, head: str, tok_dir: Path, folder: Path) -> dict:
    import torch
    import transformers

    shutil.rmtree(folder, ignore_errors=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir)
    config = _config(make_golden, variant, len(tokenizer), head)
    auto = {"seqcls": transformers.AutoModelForSequenceClassification,
            "tokcls": transformers.AutoModelForTokenClassification,
            "pretraining": (transformers.AutoModelForPreTraining if variant.family in ("bert", "electra")
                            else transformers.AutoModelForMaskedLM),
            "qa": transformers.AutoModelForQuestionAnswering}.get(head, transformers.AutoModel)
    seed = 1000 + sum(map(ord, variant.key + head))
    torch.manual_seed(seed)
    model = auto.from_config(config, attn_implementation="eager").eval()
    make_golden._randomize_named(model, {n for n, _ in model.named_parameters()}, seed)
    target = folder if head != "sentence" else folder.parent / "_sentence_base"
    _save(model, target, variant.storage)
    for name in make_golden.TOKENIZER_FILES:
        if (tok_dir / name).is_file():
            shutil.copy(tok_dir / name, target / name)
    if head == "sentence":
        return _build_sentence(make_golden, variant, target, folder)
    model = auto.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    limit = _hf_limit(model, tokenizer) if variant.probe_length else tokenizer.model_max_length
    arrays, entry = {}, {"max_length": int(limit)}
    for batch, encoded in _batches(tokenizer, limit).items():
        inputs = {k: torch.tensor(v) for k, v in encoded.items()}
        if "token_type_ids" in inputs and getattr(model.config, "type_vocab_size", 2) <= 1:
            inputs["token_type_ids"] = torch.zeros_like(inputs["token_type_ids"])  # HF's only type
        with torch.no_grad():  # other heads: samp-jax reads their backbone
            output = model(**inputs) if head in ("base", "seqcls", "tokcls") else model.base_model(**inputs)
        value = output.logits if head in ("seqcls", "tokcls") else output.last_hidden_state
        arrays |= {f"{batch}_{k}": v.astype(np.int32) for k, v in encoded.items()}
        arrays[f"{batch}_hf"] = value.numpy().astype(np.float32)
    np.savez_compressed(folder / "expected.npz", **arrays)
    if head in ("seqcls", "tokcls"):
        entry["labels"] = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return entry


def _save(model, folder: Path, storage: str | None) -> None:
    import torch

    if storage in ("bfloat16", "float16"):
        model = model.to(getattr(torch, storage))
    shard = "40KB" if storage == "sharded" else "5GB"
    model.save_pretrained(folder, safe_serialization=True, max_shard_size=shard)
    if storage == "sharded":
        assert (folder / "model.safetensors.index.json").is_file(), "expected several shards"


def _batches(tokenizer, limit: int) -> dict[str, dict[str, np.ndarray]]:
    import make_golden

    single = tokenizer(make_golden.SENTENCES, padding=True, truncation=True, max_length=limit,
                       return_tensors="np")
    pairs = tokenizer([a for a, _ in make_golden.PAIRS], [b for _, b in make_golden.PAIRS],
                      padding=True, truncation=True, max_length=limit, return_tensors="np")
    return {"single": dict(single), "pair": dict(pairs)}


def _hf_limit(model, tokenizer) -> int:
    """The longest input (up to the tokenizer's limit) the HF model runs without failing."""
    import torch

    for length in range(tokenizer.model_max_length, 0, -1):
        ids = torch.full((1, length), 5, dtype=torch.long)
        try:
            with torch.no_grad():
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
            return length
        except (IndexError, RuntimeError):
            continue
    raise RuntimeError("the model runs on no input length")


def _build_sentence(make_golden, variant: Variant, base: Path, folder: Path) -> dict:
    """A sentence-transformers folder around `base`, as the variant declares it, and what
    `SentenceTransformer.encode` returns for the texts."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = variant.st
    hidden = json.loads((base / "config.json").read_text())
    hidden = hidden.get("hidden_size", hidden.get("dim"))
    make_golden._write_st_folder(base, folder, hidden, "mean")
    shutil.rmtree(base)
    modules = json.loads((folder / "modules.json").read_text())
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    modes = st.get("pooling", ["mean"])
    keys = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
            "max": "pooling_mode_max_tokens", "weightedmean": "pooling_mode_weightedmean_tokens",
            "lasttoken": "pooling_mode_lasttoken"}
    pooling |= {key: mode in modes for mode, key in keys.items()}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=4))
    width = hidden * len(modes)
    if st.get("dense"):
        from sentence_transformers.models import Dense
        torch.manual_seed(7)
        (folder / "2_Dense").mkdir()
        Dense(width, 16, activation_function=torch.nn.Tanh()).save(str(folder / "2_Dense"))
        modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense",
                           "type": "sentence_transformers.models.Dense"})
    if not st.get("normalize", True):
        modules = [m for m in modules if not m["type"].endswith("Normalize")]
        shutil.rmtree(folder / "2_Normalize")
    for i, module in enumerate(modules):
        module["idx"], module["name"] = i, str(i)
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    bert_config = json.loads((folder / "sentence_bert_config.json").read_text())
    bert_config |= {k: st[k] for k in ("max_seq_length", "do_lower_case") if k in st}
    if variant.probe_length:  # no declared length: sentence-transformers takes the model's
        bert_config.pop("max_seq_length")
    (folder / "sentence_bert_config.json").write_text(json.dumps(bert_config, indent=4))
    if "default_prompt" in st:
        settings = json.loads((folder / "config_sentence_transformers.json").read_text())
        settings |= {"prompts": {"query": st["default_prompt"]}, "default_prompt_name": "query"}
        (folder / "config_sentence_transformers.json").write_text(json.dumps(settings, indent=2))
    model = SentenceTransformer(str(folder), device="cpu")
    if st.get("native_save"):  # the folder sentence-transformers itself writes
        shutil.rmtree(folder)
        model.save(str(folder))
        model = SentenceTransformer(str(folder), device="cpu")
    texts = _sentence_texts(make_golden)
    arrays = {f"{batch}_hf": model.encode(rows, convert_to_numpy=True).astype(np.float32)
              for batch, rows in texts.items()}
    np.savez_compressed(folder / "expected.npz", **arrays)
    return {"texts": texts}


def _sentence_texts(make_golden) -> dict[str, list[str]]:
    return {"single": list(make_golden.SENTENCES), "pair": [a for a, _ in make_golden.PAIRS]}


# -------------------------------------------------------------------------------- compare
def compare(out: Path, record: Path | None, only: str | None) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    rows = []
    texts = json.loads((out / "texts.json").read_text())
    batches = {"single": (texts["single"], None),
               "pair": ([a for a, _ in texts["pairs"]], [b for _, b in texts["pairs"]])}
    for entry in json.loads((out / "manifest.json").read_text()):
        if only and only not in f"{entry['family']}/{entry['variant']}":
            continue
        row = {k: entry[k] for k in ("family", "variant", "head")}
        if "hf_error" in entry:
            row |= {"status": "hf_error", "note": entry["hf_error"]}
        else:
            row |= _compare_one(out / entry["folder"], entry, batches)
        rows.append(row)
        diff = f"{row['max_abs_diff']:.1e}" if row.get("max_abs_diff") is not None else ""
        print(f"{row['family']:12} {row['variant']:26} {row['head']:8} {row['status']:18} {diff:8} "
              f"{row.get('note', '')[:150]}")
    if record is not None:
        _record(out, rows, record)
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print(counts)
    return rows


def _compare_one(folder: Path, entry: dict, batches: dict) -> dict:
    from samp_jax import load

    try:
        model = load(folder)
    except Exception as e:  # noqa: BLE001  a refusal is a result; its message is reported
        return {"status": "refused", "note": f"{type(e).__name__}: {_one_line(e)}"}
    expected = dict(np.load(folder / "expected.npz"))
    if entry["head"] == "sentence":
        return _compare_sentence(model, entry["texts"], expected)
    worst, notes = 0.0, []
    labels = entry.get("labels")
    if labels is not None and list(model.labels or ()) != labels:
        return {"status": "labels_mismatch", "note": f"samp-jax {model.labels}, HF {labels}"}
    for batch, (texts, pairs) in batches.items():
        try:
            ours = model.tokenizer(texts, pairs, truncation=True)
        except ValueError as e:
            return {"status": "refused", "note": f"tokenizer: {_one_line(e)}"}
        hf_ids, hf_mask = expected[f"{batch}_input_ids"], expected[f"{batch}_attention_mask"]
        if ours["input_ids"].shape != hf_ids.shape or (ours["input_ids"] != hf_ids).any():
            return {"status": "tokenizer_mismatch",
                    "note": f"{batch}: samp-jax ids {ours['input_ids'].shape}, HF {hf_ids.shape}"}
        try:
            value = np.asarray(model(ours["input_ids"], ours["attention_mask"], ours["token_type_ids"]))
        except Exception as e:  # noqa: BLE001
            return {"status": "refused", "note": f"forward: {type(e).__name__}: {_one_line(e)}"}
        want = expected[f"{batch}_hf"]
        diff = np.abs(value - want)
        if value.ndim == 3:  # per token: padded positions carry no meaning
            diff = diff[hf_mask.astype(bool)]
        worst = max(worst, float(diff.max()))
    status = "match" if worst <= TOLERANCE else "mismatch"
    return {"status": status, "max_abs_diff": worst, "note": "; ".join(notes)}


def _compare_sentence(model, texts: dict, expected: dict) -> dict:
    worst = 0.0
    for batch, rows in texts.items():
        encoded = model.tokenizer(rows, truncation=True)
        value = np.asarray(model(**encoded))
        want = expected[f"{batch}_hf"]
        if value.shape != want.shape:
            return {"status": "mismatch", "note": f"shape {value.shape}, HF {want.shape}"}
        worst = max(worst, float(np.abs(value - want).max()))
    return {"status": "match" if worst <= TOLERANCE else "mismatch", "max_abs_diff": worst}


def _record(out: Path, rows: list[dict], file: Path) -> None:
    """The rows, with the provenance of this run and the versions HF's side ran with (paths in
    the notes start at DIR)."""
    from samp_jax.core.provenance import provenance
    from samp_jax.serving.timing import device_description

    command = ("python tools/variant_sweep.py build --out DIR (golden venv) && python "
               f"tools/variant_sweep.py compare DIR --record {file.relative_to(ROOT) if file.is_absolute() else file}")
    data = {"provenance": provenance(command, device_description()),
            "hf_versions": json.loads((out / "versions.json").read_text()),
            "tolerance": TOLERANCE,
            "rows": [row | {"note": row.get("note", "").replace(f"{out}/", "DIR/")[:240]} for row in rows]}
    file.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {file}")


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:400]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("out", type=Path)
    c.add_argument("--record", type=Path, help="also write the rows, with their provenance, "
                   "as JSON (docs/results/variant_sweep.json)")
    for p in (b, c):
        p.add_argument("--only", help="only variants whose 'family/name' contains this")
    args = parser.parse_args()
    if args.step == "build":
        build(args.out, args.only)
    else:
        compare(args.out, args.record, args.only)


if __name__ == "__main__":
    main()
