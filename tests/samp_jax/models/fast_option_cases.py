"""Folders whose `tokenizer.json` and `tokenizer_config.json` disagree, and texts to tokenize
them with: what HF's fast tokenizer classes do with the options of `tokenizer_config.json`
(`samp_jax.models.fast_tokenizer_options`).

Pure Python (no samp-jax, no jax): `tools/check_tokenizer_options.py` imports it under the golden
venv to record what HF's `AutoTokenizer` (and sentence-transformers, for the `st/` cases) gives
for each folder (`tests/golden/fast_tokenizer_options.json`), and
`test_fast_tokenizer_options.py` compares samp-jax with that record.

Each folder is a real `tokenizer.json` (all-MiniLM-L6-v2's, uncased; or a family golden's, in
`tests/golden/families/*/seqcls`), perhaps edited (`EDITS`), with a `tokenizer_config.json` that
states the options, leaves them out, or is absent, and a `config.json` naming the model type
(and perhaps the tokenizer class).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[3]
FAMILIES = ROOT / "tests" / "golden" / "families"
RECORD = ROOT / "tests" / "golden" / "fast_tokenizer_options.json"
MINILM = "minilm"
COMPONENTS = ("normalizer", "pre_tokenizer", "post_processor")
TEXTS = [
    "Hello Café naïve world",
    "A MAN is Playing a Guitar.",
    "A mán is pláying a güitar.",
    "中文 dogs 日本語",
    "  Two dogs run across a snowy field  ",
    "Hi",
    "Hi [SEP] there <mask> [MASK] </s>",  # special tokens' text: split_special_tokens
]
PAIRS = [("A man is playing a guitar.", "A Pérson plays an instrument 中文.")]
# the lengths `TEXTS` and `PAIRS` are also cut at (special tokens included)
CUT_LENGTH, CUT_PAIR_LENGTH = 6, 12
BERT_OPTIONS = ("do_lower_case", "strip_accents", "tokenize_chinese_chars")
ROBERTA_OPTIONS = ("add_prefix_space", "trim_offsets")
# sentence-transformers folder files (besides the tokenizer's) that the st/ cases keep
ST_FILES = ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json")


@dataclasses.dataclass(frozen=True)
class Case:
    """One folder.

    Attributes:
      source: `MINILM` or a family golden's name (its `seqcls` folder).
      config: how `tokenizer_config.json` differs from the source's: keys set (a value of
        `DROP` removes the key); None: no `tokenizer_config.json` at all.
      model: `config.json`: the model type and perhaps `tokenizer_class`.
      edit: the names of `EDITS` applied to `tokenizer.json`, in order.
      st: sentence-transformers settings (`sentence_bert_config.json` keys, and `prompt`: the
        default prompt of `config_sentence_transformers.json`), or None for a plain folder.
    """

    source: str
    config: dict | None
    model: dict
    edit: tuple[str, ...] = ()
    st: dict | None = None


DROP = object()
_NO_CLASS = {"tokenizer_class": DROP}
_NO_BERT = {name: DROP for name in BERT_OPTIONS}
_NO_ROBERTA = {name: DROP for name in ROBERTA_OPTIONS}
_BERT, _ROBERTA = {"model_type": "bert"}, {"model_type": "roberta"}


def _set(node: dict | None, **fields) -> dict:
    return dict(node or {}) | fields


def _cased(spec: dict) -> None:
    """Capitalised tokens in the WordPiece vocabulary (a cased one), a normalizer that keeps case."""
    vocab = spec["model"]["vocab"]
    for token in ("The", "Dog", "Guitar", "A"):
        vocab[token] = len(vocab)
    spec["normalizer"] = _set(spec["normalizer"], lowercase=False)


def _roberta_template(spec: dict) -> None:
    """RoBERTa's post-processor as a TemplateProcessing (it has no add_prefix_space field)."""
    ids = {token: spec["model"]["vocab"][token] for token in ("<s>", "</s>")}
    special = lambda token: {"SpecialToken": {"id": token, "type_id": 0}}  # noqa: E731
    sequence = lambda name: {"Sequence": {"id": name, "type_id": 0}}  # noqa: E731
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [special("<s>"), sequence("A"), special("</s>")],
        "pair": [special("<s>"), sequence("A"), special("</s>"), special("</s>"), sequence("B"),
                 special("</s>")],
        "special_tokens": {t: {"id": t, "ids": [i], "tokens": [t]} for t, i in ids.items()}}


# name -> an edit of tokenizer.json (as a dict, in place)
EDITS: dict[str, Callable[[dict], None]] = {
    "lowercase_off": lambda s: s.update(normalizer=_set(s["normalizer"], lowercase=False)),
    "strip_accents_off": lambda s: s.update(normalizer=_set(s["normalizer"], strip_accents=False)),
    "chinese_off": lambda s: s.update(normalizer=_set(s["normalizer"], handle_chinese_chars=False)),
    "normalizer_sequence": lambda s: s.update(
        normalizer={"type": "Sequence", "normalizers": [s["normalizer"]]}),
    "prefix_on": lambda s: s.update(pre_tokenizer=_set(s["pre_tokenizer"], add_prefix_space=True)),
    "post_prefix_on": lambda s: s.update(
        post_processor=_set(s["post_processor"], add_prefix_space=True)),
    "post_trim_off": lambda s: s.update(
        post_processor=_set(s["post_processor"], trim_offsets=False)),
    "pre_tokenizer_sequence": lambda s: s.update(
        pre_tokenizer={"type": "Sequence", "pretokenizers": [s["pre_tokenizer"]]}),
    "post_template": _roberta_template,
    "cased": _cased,
}

CASES: dict[str, Case] = {
    # BertTokenizerFast over MiniLM's tokenizer.json (a lowercasing BertNormalizer)
    "minilm/shipped": Case(MINILM, {}, _BERT),
    "minilm/lower_false": Case(MINILM, {"do_lower_case": False}, _BERT),
    "minilm/strip_accents_false": Case(MINILM, {"strip_accents": False}, _BERT),
    "minilm/strip_accents_true_lower_false": Case(
        MINILM, {"do_lower_case": False, "strip_accents": True}, _BERT),
    "minilm/chinese_false": Case(MINILM, {"tokenize_chinese_chars": False}, _BERT),
    "minilm/unstated": Case(MINILM, _NO_BERT, _BERT, ("lowercase_off", "chinese_off")),
    "minilm/absent": Case(MINILM, None, _BERT,
                          ("lowercase_off", "strip_accents_off", "chinese_off")),
    "minilm/sequence_normalizer": Case(
        MINILM, {"do_lower_case": False, "tokenize_chinese_chars": False}, _BERT,
        ("normalizer_sequence",)),
    "minilm/fast_class_name": Case(
        MINILM, {"tokenizer_class": "BertTokenizerFast", "do_lower_case": False}, _BERT),
    "minilm/distilbert": Case(
        MINILM, {"tokenizer_class": "DistilBertTokenizer", "do_lower_case": False}, _BERT),
    "minilm/electra_model_type": Case(
        MINILM, _NO_CLASS | {"do_lower_case": False}, {"model_type": "electra"}),
    "minilm/config_json_class": Case(  # config.json's class before its model type's
        MINILM, _NO_CLASS | {"do_lower_case": False},
        {"model_type": "roberta", "tokenizer_class": "BertTokenizer"}),
    "minilm/add_prefix_space_no_field": Case(MINILM, {"add_prefix_space": True}, _BERT),
    # MPNetTokenizerFast: case and accents, not Chinese characters
    "mpnet/lower_false": Case("mpnet", {"do_lower_case": False}, {"model_type": "mpnet"}),
    "mpnet/chinese_false": Case("mpnet", {"tokenize_chinese_chars": False},
                                {"model_type": "mpnet"}),
    "mpnet/unstated": Case("mpnet", _NO_BERT, {"model_type": "mpnet"},
                           ("lowercase_off", "strip_accents_off", "chinese_off")),
    # a cased WordPiece vocabulary: kept when do_lower_case is stated false; HF lowercases it
    # when it is stated nowhere (samp-jax refuses those)
    "bert/cased_lower_false": Case("bert", {"do_lower_case": False}, _BERT, ("cased",)),
    "bert/cased_unstated": Case("bert", _NO_BERT, _BERT, ("cased",)),
    "bert/cased_absent": Case("bert", None, _BERT, ("cased",)),
    # RobertaTokenizerFast: the pre-tokenizer (every class) and the post-processor
    "roberta/prefix_true": Case("roberta", {"add_prefix_space": True}, _ROBERTA),
    "roberta/trim_false": Case("roberta", {"trim_offsets": False}, _ROBERTA),
    "roberta/unstated": Case("roberta", _NO_ROBERTA, _ROBERTA,
                             ("prefix_on", "post_prefix_on", "post_trim_off")),
    "roberta/absent": Case("roberta", None, _ROBERTA, ("prefix_on", "post_prefix_on")),
    "roberta/template_post_processor": Case("roberta", {"add_prefix_space": True}, _ROBERTA,
                                            ("post_template",)),
    "roberta/sequence_pre_tokenizer": Case("roberta", {"add_prefix_space": True}, _ROBERTA,
                                           ("pre_tokenizer_sequence",)),
    # classes samp-jax has no own rules for: the pre-tokenizer rule every class runs
    "roberta/bart_class": Case("roberta", _NO_ROBERTA | {"tokenizer_class": "BartTokenizer"},
                               _ROBERTA, ("prefix_on",)),
    "roberta/gpt2_class": Case("roberta", _NO_ROBERTA | {"tokenizer_class": "GPT2Tokenizer"},
                               _ROBERTA, ("prefix_on",)),
    # PreTrainedTokenizerFast (ModernBERT), XLM-R, DeBERTa-v2: the pre-tokenizer only
    "modernbert/prefix_true": Case("modernbert", {"add_prefix_space": True},
                                   {"model_type": "modernbert"}),
    "modernbert/model_type": Case("modernbert", _NO_CLASS | {"add_prefix_space": True},
                                  {"model_type": "modernbert"}),
    "xlm-roberta/options": Case("xlm-roberta", {"add_prefix_space": True, "do_lower_case": True},
                                {"model_type": "xlm-roberta"}),
    "deberta-v2/do_lower_case": Case("deberta-v2", {"do_lower_case": True},
                                     {"model_type": "deberta-v2"}),
    # split_special_tokens: a special token's text is tokenized as text
    "minilm/split_special_tokens": Case(MINILM, {"split_special_tokens": True}, _BERT),
    "roberta/split_special_tokens": Case("roberta", {"split_special_tokens": True}, _ROBERTA),
    "xlm-roberta/split_special_tokens": Case("xlm-roberta", {"split_special_tokens": True},
                                             {"model_type": "xlm-roberta"}),
    # truncation_side: a row too long loses its first tokens, not its last
    "minilm/truncation_left": Case(MINILM, {"truncation_side": "left"}, _BERT),
    "roberta/truncation_left": Case("roberta", {"truncation_side": "left"}, _ROBERTA),
    "xlm-roberta/truncation_left": Case("xlm-roberta", {"truncation_side": "left"},
                                        {"model_type": "xlm-roberta"}),
    "modernbert/truncation_left": Case("modernbert", {"truncation_side": "left"},
                                       {"model_type": "modernbert"}),
    # sentence-transformers: its do_lower_case lowercases after the class's options; a prompt
    "st/lower_false": Case(MINILM, {"do_lower_case": False}, _BERT, st={}),
    "st/lower_false_st_lower": Case(MINILM, {"do_lower_case": False}, _BERT,
                                    st={"do_lower_case": True}),
    "st/prompt": Case(MINILM, {"do_lower_case": False}, _BERT, st={"prompt": "Query: Ça "}),
}
# cases samp-jax refuses (a cased vocabulary HF would lowercase by default)
REFUSED = ("bert/cased_unstated", "bert/cased_absent")


def source_folder(source: str, minilm: Path) -> Path:
    return minilm if source == MINILM else FAMILIES / source / "seqcls"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def components(tokenizer_json: str) -> dict:
    """The normalizer, pre-tokenizer and post-processor of `tokenizer.json` text, a precompiled
    charsmap as a digest."""
    spec = json.loads(tokenizer_json)
    out = {key: spec.get(key) for key in COMPONENTS}
    normalizer = out["normalizer"] or {}
    for step in normalizer.get("normalizers", [normalizer]):
        if "precompiled_charsmap" in step:
            step["precompiled_charsmap"] = digest(step["precompiled_charsmap"])
    return out


def write_case(name: str, folder: Path, minilm: Path, *, full: bool = False) -> Path:
    """Writes the folder of case `name` (one of `CASES`) into `folder`, from all-MiniLM-L6-v2's
    folder `minilm` or a family golden. With `full` (an `st/` case loaded by
    sentence-transformers) the source's whole folder is copied first, weights included."""
    case = CASES[name]
    source = source_folder(case.source, minilm)
    if full:
        shutil.copytree(source, folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    for edit in case.edit:
        EDITS[edit](spec)
    (folder / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    shutil.copyfile(source / "special_tokens_map.json", folder / "special_tokens_map.json")
    if case.config is None:
        (folder / "tokenizer_config.json").unlink(missing_ok=True)
    else:
        config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
        config = {k: v for k, v in (config | case.config).items() if v is not DROP}
        _dump(folder / "tokenizer_config.json", config)
    if not full:
        _dump(folder / "config.json", case.model)
    if case.st is not None:
        _write_st(folder, source, case.st)
    return folder


def _write_st(folder: Path, source: Path, st: dict) -> None:
    for name in ST_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, folder / name)
    settings = {k: v for k, v in st.items() if k != "prompt"}
    bert = json.loads((source / "sentence_bert_config.json").read_text()) | settings
    _dump(folder / "sentence_bert_config.json", bert)
    if "prompt" in st:
        _dump(folder / "config_sentence_transformers.json",
              {"prompts": {"query": st["prompt"]}, "default_prompt_name": "query"})


def _dump(file: Path, value) -> None:
    file.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")
