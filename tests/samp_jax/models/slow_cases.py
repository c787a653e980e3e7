"""Folders with only a slow tokenizer's files, written from the family goldens, and hostile
texts to tokenize them with.

Pure Python (no samp-jax, no jax): `tools/check_slow_tokenizers.py` imports it under the
golden venv to record what HF's `AutoTokenizer` builds from each folder
(`tests/golden/slow_tokenizers.json`), and `test_slow_tokenizer.py` compares samp-jax's
conversion with that record.

The SentencePiece families (DeBERTa-v2/v3, XLM-R) read the models in
`tests/golden/sentencepiece/` (xz-compressed; `tools/check_slow_tokenizers.py train` trains
them): `deberta-v2` is the family's own (the Unigram model whose `tokenizer.json` HF wrote into
the family folder), `xlm-roberta` a Unigram model with XLM-R's layout, both with the
`nmt_nfkc` normalization's precompiled charsmap, and a BPE model of each layout with no
normalization, a user-defined piece and a control one.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FAMILIES = ROOT / "tests" / "golden" / "families"
RECORD = ROOT / "tests" / "golden" / "slow_tokenizers.json"
SENTENCEPIECE_MODELS = ROOT / "tests" / "golden" / "sentencepiece"
WORDPIECE = ("bert", "distilbert", "electra", "mpnet")
BPE = ("roberta",)
SENTENCEPIECE = ("deberta-v2", "xlm-roberta")
SLOW_FILES = ("vocab.txt", "vocab.json", "merges.txt", "tokenizer_config.json",
              "special_tokens_map.json", "config.json")
CLASS_NAMES = {"bert": "BertTokenizer", "distilbert": "DistilBertTokenizer",
               "electra": "ElectraTokenizer", "mpnet": "MPNetTokenizer",
               "roberta": "RobertaTokenizer", "deberta-v2": "DebertaV2Tokenizer",
               "xlm-roberta": "XLMRobertaTokenizer"}
# The file each SentencePiece family's slow tokenizer reads; the ids of its Unigram model's
# pieces (XLM-R's: with its fairseq tokens and <mask>), which added tokens are numbered after.
SPM_FILES = {"deberta-v2": "spm.model", "xlm-roberta": "sentencepiece.bpe.model"}
SPM_SIZES = {"deberta-v2": 180, "xlm-roberta": 200}

HOSTILE = [
    "",
    "Élodie's café: crème brûlée, naïve façade, Ångström, São Paulo, Straße, İstanbul",
    "combining: cafe\u0301 re\u0301sume\u0301 a\u0308 n\u0303 \u0301alone",
    "中文分词测试，北京欢迎你。",
    "日本語のテキストとカタカナ、ひらがな。한국어 문장",
    "emoji 😀👍🏽 🇯🇵 family 👨\u200d👩\u200d👧 ❤️",
    "control\x00chars\x07 and\x1b[0m escapes \ufffd replacement",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060joiner",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em\u3000ideographic",
    "\u2028line sep\u2029para \x85next \x0bvtab \x0cfeed",
    "x" + "abcdefghij" * 11,  # a 111-character word: over WordPiece's 100
    "y" * 100,
    "[CLS] [SEP] [PAD] [MASK] [UNK] literal specials",
    "<s> </s> <pad> <mask> <unk> byte-level specials",
    "[sep] [mask] <MASK> [Mask] <S>",
    "a[SEP]b<mask>c[MASK]d</s>e",
    "  <mask>  spaced  [MASK]  ",
    "MiXeD CaSe WoRdS: THE DOG Is PLAYING A Guitar",
    "!!!??? ... ,,, ;;; '''' --- (((( )))) $$$ %%% ...!?",
    "1234567890 3.14159 1,000,000 -42 +7 0x1F",
    "the dog is playing a guitar on the long sky",
    "ﬁ ligature ＦＵＬＬＷＩＤＴＨ ① ² Ⅷ",
    "\u0130 \u0131 \u03a3\u03c3\u03c2 \u0391\u0392\u0393",
    "don't won't it's I'm you're we've they'll he'd",
    "trailing spaces   ",
    "   leading spaces",
    "[E1] dog [E2] guitar",
]
# More for the SentencePiece families: SentencePiece's own whitespace mark, runs of spaces,
# compatibility characters the nmt_nfkc charsmap folds, and scripts of XLM-R's corpus.
SPM_HOSTILE = [
    "▁literal ▁▁marks▁ ▁",
    "a  b   c\t\td \u00a0\u00a0 e \u3000 f",
    "ｶﾀｶﾅ half-width, ＡＢＣ１２３, ㍻ ㎏ ℃ Ⅻ ﬀ, ½ ⁴",
    "Le chat dort près de la fenêtre. Der Hund läuft über die Wiese.",
    "Кошка спит. 猫在窗边睡觉。 Ο σκύλος τρέχει.",
    "s[E1]s[E2]s <mask>s [MASK]s",
]
HOSTILE_PAIRS = [
    ("[SEP] a", "b [SEP]"),
    ("", "empty first"),
    ("Élodie's café", "中文 😀"),
    ("<mask> man", "MiXeD <s>"),
]


def vocab_digest(vocab: dict) -> str:
    """A digest of a token -> id mapping that does not depend on its order."""
    return hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()).hexdigest()


def ids_digest(ids) -> str:
    """A short digest of one encoding's ids (and token types, for a pair)."""
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:10]


def texts(family: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The family's golden texts and pairs, then the hostile ones."""
    golden = json.loads((FAMILIES / family / "texts.json").read_text())
    extra = SPM_HOSTILE if family in SENTENCEPIECE else []
    return golden["single"] + HOSTILE + extra, [tuple(p) for p in golden["pairs"]] + HOSTILE_PAIRS


def spec_digest(spec: dict) -> dict:
    """`tokenizer.json` as a dict with its long parts as digests: the model's vocabulary (an
    object of ids, or a Unigram model's list of pieces and scores) and a normalizer's
    precompiled charsmap."""
    spec = json.loads(json.dumps(spec))
    vocab = spec["model"]["vocab"]
    spec["model"]["vocab"] = vocab_digest(vocab) if isinstance(vocab, dict) else hashlib.sha256(
        json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()
    normalizer = spec.get("normalizer") or {}
    for step in normalizer.get("normalizers", [normalizer]):
        if "precompiled_charsmap" in step:
            charsmap = step["precompiled_charsmap"].encode()
            step["precompiled_charsmap"] = hashlib.sha256(charsmap).hexdigest()
    return spec


def sentencepiece_model(name: str) -> bytes:
    """The SentencePiece model `tests/golden/sentencepiece/{name}.model.xz`, decompressed."""
    return lzma.decompress((SENTENCEPIECE_MODELS / f"{name}.model.xz").read_bytes())


def _load(folder: Path, name: str):
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _dump(folder: Path, name: str, value) -> None:
    (folder / name).write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")


def _vocab_size(family: str, folder: Path) -> int:
    if family in SENTENCEPIECE:
        return SPM_SIZES[family]
    if (folder / "vocab.txt").is_file():
        return len((folder / "vocab.txt").read_text(encoding="utf-8").split("\n")) - 1
    return len(_load(folder, "vocab.json"))


def _special(family: str, key: str) -> str:
    bert = {"cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]", "pad": "[PAD]", "unk": "[UNK]"}
    roberta = {"cls": "<s>", "sep": "</s>", "mask": "<mask>", "pad": "<pad>", "unk": "<unk>"}
    table = roberta if family in ("mpnet", "roberta", "xlm-roberta") else bert
    return "[UNK]" if (family, key) == ("mpnet", "unk") else table[key]


def _lowercasing(family: str) -> dict:
    """A minimal config: WordPiece ones state do_lower_case (their vocabularies are uncased)."""
    return {"do_lower_case": True} if family in WORDPIECE else {}


def _legacy(family: str, folder: Path) -> dict:
    mask = {"__type": "AddedToken", "content": _special(family, "mask"), "lstrip": True,
            "normalized": True, "rstrip": False, "single_word": False}
    config = {"model_max_length": 40, "mask_token": mask}
    return config | _lowercasing(family)


def _edit(family: str, folder: Path, case: str) -> None:
    """Turns a copy of the family's shipped slow files into `case`."""
    config_file, map_file = folder / "tokenizer_config.json", folder / "special_tokens_map.json"
    config = _load(folder, "tokenizer_config.json")
    special_map = _load(folder, "special_tokens_map.json")
    n = _vocab_size(family, folder)
    if case == "bare":
        config_file.unlink(), map_file.unlink()
    elif case == "special_map_only":
        config_file.unlink()
    elif case == "minimal_config":  # deberta-v2: as microsoft/deberta-v3-base ships it
        minimal = {"do_lower_case": False, "vocab_type": "spm"} if family == "deberta-v2" else {}
        _dump(folder, "tokenizer_config.json", minimal | _lowercasing(family))
        map_file.unlink()
    elif case == "class_only":
        _dump(folder, "tokenizer_config.json", {"tokenizer_class": CLASS_NAMES[family] + "Fast"})
    elif case == "options":  # XLM-R's two are read by no converter
        extra = ({"add_prefix_space": True, "trim_offsets": False} if family in BPE else
                 {"do_lower_case": True, "split_by_punct": True} if family == "deberta-v2" else
                 {"add_prefix_space": False, "legacy": False} if family == "xlm-roberta" else
                 {"strip_accents": True, "tokenize_chinese_chars": False})
        _dump(folder, "tokenizer_config.json", config | extra)
    elif case == "cased_stated":
        _dump(folder, "tokenizer_config.json", config | {"do_lower_case": False})
    elif case == "no_basic_tokenize":
        _dump(folder, "tokenizer_config.json", config | {"do_basic_tokenize": False})
    elif case == "legacy_config":
        _dump(folder, "tokenizer_config.json", _legacy(family, folder))
    elif case == "legacy_config_no_map":
        _dump(folder, "tokenizer_config.json", _legacy(family, folder))
        map_file.unlink()
    elif case == "added_tokens_json":
        _dump(folder, "tokenizer_config.json", _lowercasing(family))
        _dump(folder, "special_tokens_map.json",
              special_map | {"additional_special_tokens": ["[E1]"]})
        _dump(folder, "added_tokens.json", {"[E1]": n, "[E2]": n + 1})
    elif case == "decoder_partial":
        decoder = {i: dict(t) for i, t in config["added_tokens_decoder"].items()
                   if t["content"] != _special(family, "mask")}
        first = min(decoder, key=int)
        del decoder[first]["special"]
        sep = next(i for i, t in decoder.items() if t["content"] == _special(family, "sep"))
        decoder[sep]["lstrip"] = True
        _dump(folder, "tokenizer_config.json", config | {"added_tokens_decoder": decoder})
    elif case == "additional":  # special tokens of the vocabulary
        first, second = (("is", "a") if family in BPE else ("s", "▁a") if family in SENTENCEPIECE
                         else ("dog", "guitar"))
        second = {"__type": "AddedToken", "content": second, "lstrip": True,
                  "normalized": False, "rstrip": False, "single_word": False}
        _dump(folder, "tokenizer_config.json",
              config | {"additional_special_tokens": [first, second]})
    elif case == "crlf":
        (folder / "vocab.txt").write_bytes((folder / "vocab.txt").read_bytes().replace(b"\n", b"\r\n"))
    elif case == "merges_unterminated":  # HF drops what follows the last newline
        merges = (folder / "merges.txt").read_text(encoding="utf-8").rstrip("\n")
        (folder / "merges.txt").write_text(merges, encoding="utf-8")
    elif case == "merges_repeated":  # a repeated merge keeps its first rank
        lines = (folder / "merges.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
        (folder / "merges.txt").write_text("\n".join(lines + lines[1:3]) + "\n", encoding="utf-8")
    elif case == "bpe":  # the family's BPE model; its user-defined piece named special too
        _dump(folder, "tokenizer_config.json",
              {"model_max_length": 40, "additional_special_tokens": ["[E1]"]})
        map_file.unlink()
    elif case != "shipped":
        raise ValueError(f"unknown case {case!r}")


COMMON = ("shipped", "bare", "special_map_only", "minimal_config", "class_only", "options",
          "legacy_config", "legacy_config_no_map", "added_tokens_json", "decoder_partial",
          "additional")
CASES = tuple(f"{family}/{case}" for family in WORDPIECE
              for case in COMMON + ("cased_stated", "no_basic_tokenize", "crlf")) + tuple(
    f"{family}/{case}" for family in BPE
    for case in COMMON + ("merges_unterminated", "merges_repeated")) + tuple(
    f"{family}/{case}" for family in SENTENCEPIECE for case in COMMON + ("bpe",))


def write_case(case: str, folder: Path) -> Path:
    """Writes the slow-tokenizer folder `case` ("family/variant", one of `CASES`): the family's
    `config.json` and slow files, no `tokenizer.json`, edited as the variant says."""
    family, variant = case.split("/")
    folder.mkdir(parents=True, exist_ok=True)
    for name in SLOW_FILES:
        source = FAMILIES / family / "base" / name
        if source.is_file():
            shutil.copyfile(source, folder / name)
    if family in SENTENCEPIECE:
        model = family + ("-bpe" if variant == "bpe" else "")
        (folder / SPM_FILES[family]).write_bytes(sentencepiece_model(model))
    _edit(family, folder, variant)
    return folder
