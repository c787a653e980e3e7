"""Records what HF's `AutoTokenizer` builds from folders that have only a slow tokenizer's files
(no `tokenizer.json`), for `tests/samp_jax/models/test_slow_tokenizer.py` to compare
samp-jax's conversion with. Runs in the golden venv (transformers, no samp-jax):

    .golden-venv/bin/python tools/check_slow_tokenizers.py train
    .golden-venv/bin/python tools/check_slow_tokenizers.py record
    .golden-venv/bin/python tools/check_slow_tokenizers.py ids DIR OUT.json

`train` trains the SentencePiece models of the DeBERTa-v2 and XLM-R cases with sentencepiece
(`SPM_TRAINING`: a few hundred pieces on the family's golden texts) into
`tests/golden/sentencepiece/` (xz-compressed). `record` writes each folder of
`tests/samp_jax/models/slow_cases.py` (`CASES`), loads it with `AutoTokenizer.from_pretrained`,
and stores in `tests/golden/slow_tokenizers.json` the fast tokenizer it built
(`tokenizer.json`, its vocabulary and charsmap as digests) and a digest of its ids on each of the
family's texts and the hostile ones (`ids_digest`). `ids` writes the ids HF gives for one folder
(a real checkpoint's, say) on the hostile texts, to compare with samp-jax's by hand.
"""

import argparse
import datetime
import json
import lzma
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.samp_jax.models.slow_cases import (  # noqa: E402
    CASES, FAMILIES, HOSTILE, HOSTILE_PAIRS, RECORD, SENTENCEPIECE_MODELS, ids_digest, spec_digest,
    texts, write_case)

# DeBERTa-v3's layout of special pieces ([MASK] is appended after the pieces).
_DEBERTA_IDS = dict(pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
                    eos_piece="[SEP]", unk_piece="[UNK]")
# A few lines in XLM-R's other scripts, for the XLM-R models' corpus.
_MULTILINGUAL = [
    "Le chat dort sur le canapé près de la fenêtre.", "Der Hund läuft schnell über die große Wiese.",
    "El niño juega con una pelota roja en el parque.", "Кошка спит на диване у окна.",
    "猫在窗边的沙发上睡觉。", "窓のそばのソファで猫が寝ています。", "Ο σκύλος τρέχει γρήγορα στο λιβάδι.",
    "São Paulo é uma cidade muito grande e movimentada."]
_BPE = dict(model_type="bpe", vocab_size=150, normalization_rule_name="identity",
            user_defined_symbols=["[E1]"], control_symbols=["[E2]"])
# model name -> (the family whose golden texts it is trained on, sentencepiece's options).
SPM_TRAINING = {
    # the family's own, as tools/golden_deberta_v2.py trains it
    "deberta-v2": ("deberta-v2", dict(model_type="unigram", vocab_size=180, character_coverage=1.0,
                                      seed_sentencepiece_size=100000, **_DEBERTA_IDS)),
    # XLM-R's layout (sentencepiece's default ids: <unk> <s> </s>, no pad); 198 pieces, so that
    # <mask> is id 199 as in the family folder's tokenizer_config.json
    "xlm-roberta": ("xlm-roberta", dict(model_type="unigram", vocab_size=198)),
    "deberta-v2-bpe": ("deberta-v2", dict(**_BPE, **_DEBERTA_IDS)),
    "xlm-roberta-bpe": ("xlm-roberta", _BPE),
}


def commit() -> str:
    """The checkout's short commit, `-dirty` with uncommitted changes (as
    `samp_jax.core.provenance`, which this venv cannot import)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short=12", "HEAD") + ("-dirty" if dirty else "")


def hf_ids(tokenizer, singles, pairs) -> dict:
    return {"single": [tokenizer(t)["input_ids"] for t in singles],
            "pairs": [[(e := tokenizer(a, b, return_token_type_ids=True))["input_ids"],
                       e["token_type_ids"]] for a, b in pairs]}


def corpus(family: str) -> list[str]:
    golden = json.loads((FAMILIES / family / "texts.json").read_text())
    extra = _MULTILINGUAL if family == "xlm-roberta" else []
    return golden["single"] + [text for pair in golden["pairs"] for text in pair] + extra


def train() -> None:
    import sentencepiece as spm

    SENTENCEPIECE_MODELS.mkdir(parents=True, exist_ok=True)
    for name, (family, options) in SPM_TRAINING.items():
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)  # the model records its prefix: a relative one keeps it reproducible
            spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus(family)),
                                           model_prefix="spm", num_threads=1, minloglevel=2,
                                           **options)
            data = Path(tmp, "spm.model").read_bytes()
            os.chdir(ROOT)
        out = SENTENCEPIECE_MODELS / f"{name}.model.xz"
        out.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        print(f"wrote {out.relative_to(ROOT)}: {len(data)} bytes, {out.stat().st_size} compressed")


def record() -> None:
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            folder = write_case(case, Path(tmp) / case)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            spec = spec_digest(json.loads(tokenizer.backend_tokenizer.to_str()))
            singles, pairs = texts(case.split("/")[0])
            encoded = hf_ids(tokenizer, singles, pairs)
            cases[case] = {"class": type(tokenizer).__name__, "pad_token": tokenizer.pad_token,
                           "tokenizer": spec,
                           **{k: [ids_digest(ids) for ids in v] for k, v in encoded.items()}}
            print(f"recorded {case}: {type(tokenizer).__name__}")
    provenance = {"command": "python tools/check_slow_tokenizers.py record", "commit": commit(),
                  "device": f"CPU ({platform.machine()})",
                  "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
                  "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}
    lines = [f" {json.dumps(case)}: {json.dumps(value, ensure_ascii=False)}"
             for case, value in cases.items()]
    RECORD.write_text(f'{{"provenance": {json.dumps(provenance)},\n"cases": {{\n'
                      + ",\n".join(lines) + "\n}}\n", encoding="utf-8")
    print(f"wrote {RECORD.relative_to(ROOT)} ({len(cases)} folders)")


def ids(folder: Path, out: Path) -> None:
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out.write_text(json.dumps({"class": type(tokenizer).__name__,
                               **hf_ids(tokenizer, HOSTILE, HOSTILE_PAIRS)}), encoding="utf-8")
    print(f"wrote {out}: {type(tokenizer).__name__} ids of {len(HOSTILE)} texts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train")
    sub.add_parser("record")
    one = sub.add_parser("ids")
    one.add_argument("folder", type=Path)
    one.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "train":
        train()
    elif args.command == "record":
        record()
    else:
        ids(args.folder, args.out)


if __name__ == "__main__":
    main()
