"""Golden files for a sentence-transformers `CrossEncoder`'s activation, written with
sentence-transformers itself (golden venv):

    python tools/golden_cross_encoder.py --out tests/golden/cross_encoder

`OUT/one/` and `OUT/three/`: small random-weight BERT classifiers of one and three outputs
(the architecture and tokenizer of `tests/golden/families/bert/seqcls`; the weight
matrices scaled up so that the logits spread over a few units and every activation changes
them). `OUT/variants/<name>/`: the files that make one of them a CrossEncoder folder whose
activation is stated one way (`VARIANTS`: none, so the default by `num_labels`;
sentence-transformers 5's `config_sentence_transformers.json` `activation_fn`, written by
`CrossEncoder.save`; 4's `config.json` `sentence_transformers.activation_fn`; the older
`config.json` `sbert_ce_default_activation_function`; several at once, to show which wins),
laid over the model's folder. `OUT/golden.json`: the text pairs and, per variant, the model
it lays over, the activation `CrossEncoder` resolved (`fullname(model.activation_fn)`) and
what `CrossEncoder.predict` returns for the pairs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

FAMILY = Path(__file__).resolve().parent.parent / "tests" / "golden" / "families" / "bert"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
MODELS = {"one": 1, "three": 3}
# random init gives logits near 0 and alike for every pair; with every weight matrix but the
# embeddings scaled up, the logits differ from pair to pair and spread over a few units
WEIGHT_SCALE = 10.0
ST4 = {"version": "4.1.0"}  # what sentence-transformers 4 writes beside activation_fn
SIGMOID = "torch.nn.modules.activation.Sigmoid"
IDENTITY = "torch.nn.modules.linear.Identity"
TANH = "torch.nn.modules.activation.Tanh"
SOFTMAX = "torch.nn.modules.activation.Softmax"

# name -> (model, how the activation is stated): "saved" (CrossEncoder.save with that
# activation, or with none given), "st5" (config_sentence_transformers.json's activation_fn
# over a saved folder's; "modules": False drops the saved modules.json), "st4" / "old"
# (config.json keys, no sentence-transformers files).
VARIANTS = {
    "one_default": ("one", {"saved": None}),
    "three_default": ("three", {"saved": None}),
    "one_saved_tanh": ("one", {"saved": "Tanh"}),
    "three_saved_softmax": ("three", {"saved": "Softmax"}),
    "one_st4_identity": ("one", {"st4": IDENTITY}),
    "three_st4_sigmoid": ("three", {"st4": SIGMOID}),
    "one_st4_default": ("one", {"st4": None}),
    "one_old_tanh_short_path": ("one", {"old": "torch.nn.Tanh"}),
    "three_old_softmax": ("three", {"old": SOFTMAX}),
    "one_st5_over_config": ("one", {"saved": None, "st5": IDENTITY, "st4": SIGMOID, "old": TANH}),
    "three_st4_over_old": ("three", {"st4": TANH, "old": SIGMOID}),
    # without modules.json sentence-transformers does not read its own file's activation
    "one_saved_tanh_without_modules": ("one", {"saved": "Tanh", "modules": False}),
}


def write_models(out: Path) -> None:
    """`out/one/` and `out/three/`: the family classifier's architecture, fresh weights."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    base = json.loads((FAMILY / "seqcls" / "config.json").read_text())
    for name, num_labels in MODELS.items():
        torch.manual_seed(num_labels)
        config = {k: v for k, v in base.items() if k not in ("id2label", "label2id")}
        if num_labels == 3:
            config |= {"id2label": base["id2label"], "label2id": base["label2id"]}
        model = BertForSequenceClassification(BertConfig(**config, num_labels=num_labels)).eval()
        with torch.no_grad():
            for key, weight in model.named_parameters():
                if weight.ndim == 2 and "embeddings" not in key:
                    weight.mul_(WEIGHT_SCALE)
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        model.save_pretrained(folder)
        for file in TOKENIZER_FILES:
            shutil.copy(FAMILY / "seqcls" / file, folder)


def write_variant(out: Path, name: str, stated: dict, work: Path) -> Path:
    """`out/variants/<name>/` (the files stating the activation) and the folder it makes,
    laid over its model, under `work`; returns that folder."""
    import torch
    from sentence_transformers import CrossEncoder

    model_name, _ = VARIANTS[name]
    folder = work / name
    shutil.copytree(out / model_name, folder)
    overlay = out / "variants" / name
    shutil.rmtree(overlay, ignore_errors=True)
    overlay.mkdir(parents=True)
    if "saved" in stated:
        activation = stated["saved"] and getattr(torch.nn, stated["saved"])()
        saved = work / f"{name}_saved"
        CrossEncoder(str(folder), device="cpu", activation_fn=activation).save(str(saved))
        kept = ("modules.json", "sentence_bert_config.json") if stated.get("modules", True) else ()
        for file in (*kept, "config_sentence_transformers.json"):
            config = json.loads((saved / file).read_text())
            if file == "config_sentence_transformers.json":
                config.pop("__version__")  # not read; keeps the golden free of versions
                if stated["saved"] is None:
                    config.pop("activation_fn")  # stated nowhere: the default by num_labels
                if "st5" in stated:
                    config["activation_fn"] = stated["st5"]
            (overlay / file).write_text(json.dumps(config, indent=2) + "\n")
    config = json.loads((folder / "config.json").read_text())
    if "st4" in stated:
        config["sentence_transformers"] = ST4 | ({} if stated["st4"] is None
                                                 else {"activation_fn": stated["st4"]})
    if "old" in stated:
        config["sbert_ce_default_activation_function"] = stated["old"]
    if "st4" in stated or "old" in stated:
        (overlay / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for file in overlay.iterdir():
        shutil.copy(file, folder)
    return folder


def write(out: Path) -> None:
    from importlib.metadata import version

    import numpy as np
    from sentence_transformers import CrossEncoder
    from sentence_transformers.util import fullname

    pairs = json.loads((FAMILY / "texts.json").read_text())["pairs"]
    write_models(out)
    golden = {"generator": "tools/golden_cross_encoder.py",
              "sentence_transformers": version("sentence-transformers"), "pairs": pairs,
              "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model_name, stated) in VARIANTS.items():
            folder = write_variant(out, name, stated, Path(tmp))
            model = CrossEncoder(str(folder), device="cpu")
            scores = np.asarray(model.predict([tuple(p) for p in pairs]), np.float64)
            golden["variants"][name] = {"model": model_name,
                                        "activation": fullname(model.activation_fn),
                                        "scores": np.round(scores, 7).tolist()}
            print(f"{name}: {fullname(model.activation_fn)} {scores.ravel()[:3]}")
    (out / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    write(out)


if __name__ == "__main__":
    main()
