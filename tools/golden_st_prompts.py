"""Golden files for sentence-transformers prompts, written with sentence-transformers itself
(golden venv; `tools/make_golden.py` calls `write`, or run this file alone):

    python tools/golden_st_prompts.py --out tests/golden/families/roberta

`OUT/sentence_prompts/` (and `OUT/cross_encoder_prompts/`, `write_cross_encoder`): a
`config_sentence_transformers.json` naming `PROMPTS` with a default,
to lay over the family's `sentence/` folder together with `sentence_settings/`'s
`sentence_bert_config.json` (so the prompt is lowercased and counts towards the 12-token
truncation), and `golden.npz`: what `SentenceTransformer.encode` gives the single texts with
the default prompt (`default`), with each prompt it names (`prompt_<name>`: `PROMPTS` and
sentence-transformers 5's empty `query` and `document`), and with `prompt=''` (`none`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

# A cased prompt (lowercased with the texts) and one without a trailing space (merged into the
# text's first word by the byte-level BPE), so prompt + text is not the two tokenized apart.
PROMPTS = {"query": "Query: ", "passage": "passage:", "empty": ""}
DEFAULT_PROMPT = "query"


def write(out: Path) -> None:
    """Writes `out/sentence_prompts/` from `out/sentence/` and `out/sentence_settings/`."""
    from sentence_transformers import SentenceTransformer

    texts = json.loads((out / "texts.json").read_text())["single"]
    folder = out / "sentence_prompts"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    config = json.loads((out / "sentence" / "config_sentence_transformers.json").read_text())
    config |= {"prompts": PROMPTS, "default_prompt_name": DEFAULT_PROMPT}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config, indent=2))
    arrays = {}
    with tempfile.TemporaryDirectory() as tmp:
        layered = Path(tmp) / "sentence"
        shutil.copytree(out / "sentence", layered)
        shutil.copy(out / "sentence_settings" / "sentence_bert_config.json", layered)
        shutil.copy(folder / "config_sentence_transformers.json", layered)
        st = SentenceTransformer(str(layered), device="cpu")
        assert st.default_prompt_name == DEFAULT_PROMPT, st.default_prompt_name
        assert st.prompts == {"query": "", "document": ""} | PROMPTS, st.prompts  # ST 5's defaults
        arrays["default"] = st.encode(texts, convert_to_numpy=True)
        for name in st.prompts:
            arrays[f"prompt_{name}"] = st.encode(texts, prompt_name=name, convert_to_numpy=True)
        arrays["none"] = st.encode(texts, prompt="", convert_to_numpy=True)
    arrays = {key: value.astype(np.float32) for key, value in arrays.items()}
    assert np.array_equal(arrays["default"], arrays[f"prompt_{DEFAULT_PROMPT}"])
    assert not np.allclose(arrays["default"], arrays["none"], atol=1e-3), "the prompt changes nothing"
    np.savez_compressed(folder / "golden.npz", **arrays)
    print(f"{out.name} sentence_prompts: {PROMPTS}, default {DEFAULT_PROMPT!r}")


CROSS_ENCODER_PROMPTS = {"query": "Instruct: find the answer\nQuery: "}


def write_cross_encoder(out: Path) -> None:
    """Writes `out/cross_encoder_prompts/`: the `config_sentence_transformers.json` that
    sentence-transformers' `CrossEncoder` saves for the family's `seqcls/` classifier with a
    default prompt, and `golden.npz`: its logits (`CrossEncoder.predict`, no activation) on the
    family's text pairs with that prompt (`default`) and with `prompt=''` (`none`)."""
    from sentence_transformers import CrossEncoder

    pairs = [tuple(pair) for pair in json.loads((out / "texts.json").read_text())["pairs"]]
    folder = out / "cross_encoder_prompts"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "cross_encoder"
        CrossEncoder(str(out / "seqcls"), device="cpu", prompts=CROSS_ENCODER_PROMPTS,
                     default_prompt_name="query").save(str(saved))
        shutil.copy(saved / "config_sentence_transformers.json", folder)
        reloaded = CrossEncoder(str(saved), device="cpu")
        assert reloaded.default_prompt_name == "query", reloaded.default_prompt_name
        arrays = {key: np.asarray(reloaded.predict(pairs, activation_fn=torch_identity(),
                                                   convert_to_numpy=True, **options), np.float32)
                  for key, options in (("default", {}), ("none", {"prompt": ""}))}
    assert not np.allclose(arrays["default"], arrays["none"], atol=1e-3), "the prompt changes nothing"
    np.savez_compressed(folder / "golden.npz", **arrays)
    print(f"{out.name} cross_encoder_prompts: {CROSS_ENCODER_PROMPTS}")


def torch_identity():
    import torch
    return torch.nn.Identity()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True,
                        help="a family's golden folder with sentence/ and sentence_settings/")
    out = parser.parse_args().out
    write(out)
    write_cross_encoder(out)


if __name__ == "__main__":
    main()
