"""The options of `tokenizer_config.json` that HF's fast tokenizer classes write into a folder's
`tokenizer.json` when they load it, applied here so that samp-jax tokenizes (and saves) with the
tokenizer `AutoTokenizer` builds.

`AutoTokenizer.from_pretrained` reads `tokenizer.json`, then the fast class's `__init__` rebuilds
some of its components from options, each with the class's default when `tokenizer_config.json`
does not state it or does not exist. As transformers 4.57 does it (`tokenization_utils_fast.py`
and `models/*/tokenization_*_fast.py`), comparing the fields of a component's state, so a
component without the field is kept:

- Every class (`PreTrainedTokenizerFast.__init__`): a pre-tokenizer with an `add_prefix_space`
  field (`ByteLevel`) takes `add_prefix_space` (default false).
- `BertTokenizerFast`, `DistilBertTokenizerFast`, `ElectraTokenizerFast`: a normalizer whose
  `lowercase`, `strip_accents` or `handle_chinese_chars` differs from `do_lower_case` (true),
  `strip_accents` (null) or `tokenize_chinese_chars` (true) takes all three (`BertNormalizer`).
- `MPNetTokenizerFast`: the same with `do_lower_case` and `strip_accents` only; its
  `handle_chinese_chars` stays as `tokenizer.json` has it.
- `RobertaTokenizerFast`: a post-processor with an `add_prefix_space` or `trim_offsets` field
  (`RobertaProcessing`, `ByteLevel`) takes each that differs: `add_prefix_space` (false),
  `trim_offsets` (true; it moves offsets only).
- `XLMRobertaTokenizerFast`, `CamembertTokenizerFast`, `DebertaV2TokenizerFast` and
  `PreTrainedTokenizerFast` (ModernBERT's class): the first rule only (a `Metaspace`
  pre-tokenizer has no `add_prefix_space` field, and DeBERTa's `do_lower_case` is not applied
  to a `tokenizer.json`).

A `Sequence` normalizer, pre-tokenizer or post-processor has none of these fields itself, so it
is kept as it is, whatever it holds. The class is the one `AutoTokenizer` picks:
`tokenizer_class` of `tokenizer_config.json`, else of `config.json`, else the one of
`config.json`'s `model_type` (`FAST_MODEL_TYPES`); a `...Fast` name is its class. Another class
(BART's, GPT-2's, ...) gets the first rule only, which every class runs (its own rules, if any,
are not known here); a folder naming no class is kept as it is, and so is a Bert-style class's
`tokenizer.json` without a normalizer (HF fails to load it).

Refused, naming the file: an option of the wrong type, a `tokenizer_class` that is not a string,
and a cased WordPiece vocabulary whose normalizer does not lowercase, with `do_lower_case` stated
nowhere: HF would lowercase by default and give ids the model never saw (as
`slow_tokenizer.CASED_SHARE` refuses the same for a `vocab.txt`).

transformers 5.x (5.25) differs where a component is not the one these options name:
`BertTokenizer` (DistilBERT's and ELECTRA's too), `MPNetTokenizer`, `RobertaTokenizer`,
`XLMRobertaTokenizer` and `DebertaV2Tokenizer` take only the vocabulary (and merges) from
`tokenizer.json` and build the rest from their options, so a `Sequence` normalizer becomes a
`BertNormalizer`, a `Sequence` pre-tokenizer a `ByteLevel` one, RoBERTa's and MPNet's
post-processor a `RobertaProcessing`, MPNet's `tokenize_chinese_chars` is applied, DeBERTa's
`do_lower_case` lowercases and XLM-R's normalizer is dropped; and its base class (ModernBERT's)
writes no `add_prefix_space` into the pre-tokenizer. Over the components these options name
(BERT's, MPNet's and RoBERTa's classes over a `BertNormalizer`, a `ByteLevel` pre-tokenizer, a
`RobertaProcessing`) both give the same ids. samp-jax follows 4.57, the
project's golden version (`tests/golden/fast_tokenizer_options.json` lists where 5.x differs),
for folders older versions wrote. A folder transformers 5 wrote (its `tokenizer_config.json`
names a `backend`, a key only 5.x writes) is run as written: 5.x saves the pipeline it built,
so its `tokenizer.json` already holds what the options gave, and its base class
(`TokenizersBackend`, ModernBERT's) applies none of them on loading either, where 4.57's would
write `add_prefix_space` into the pre-tokenizer.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

from tokenizers import Tokenizer as HFTokenizer

from samp_jax.models.slow_tokenizer import (MODEL_TYPES, OPTIONS, cased_tokens, read_options,
                                            unstated_lowercase_message)
from samp_jax.models.tokenizer_files import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE

COMPONENTS = ("normalizer", "pre_tokenizer", "post_processor")


@dataclasses.dataclass(frozen=True)
class FastRules:
    """What one fast class's `__init__` writes into `tokenizer.json` besides `add_prefix_space`
    on the pre-tokenizer (which every class writes).

    Attributes:
      normalizer: option -> the normalizer field it sets; all are set when any differs.
      post_processor: options set on the post-processor, each when it differs.
    """

    normalizer: Mapping[str, str] = dataclasses.field(default_factory=dict)
    post_processor: tuple[str, ...] = ()

    @property
    def options(self) -> tuple[str, ...]:
        """Every option the class reads, `add_prefix_space` first."""
        return tuple(dict.fromkeys(("add_prefix_space", *self.normalizer, *self.post_processor)))


_BERT = FastRules(normalizer={"do_lower_case": "lowercase", "strip_accents": "strip_accents",
                              "tokenize_chinese_chars": "handle_chinese_chars"})
# class name (without "Fast") -> its rules
FAST_RULES = {
    "BertTokenizer": _BERT, "DistilBertTokenizer": _BERT, "ElectraTokenizer": _BERT,
    "MPNetTokenizer": FastRules(normalizer={"do_lower_case": "lowercase",
                                            "strip_accents": "strip_accents"}),
    "RobertaTokenizer": FastRules(post_processor=("add_prefix_space", "trim_offsets")),
    "XLMRobertaTokenizer": FastRules(), "DebertaV2Tokenizer": FastRules(),
    "CamembertTokenizer": FastRules(), "PreTrainedTokenizer": FastRules(),
}
# config.json's model_type -> the class AutoTokenizer picks (without "Fast")
FAST_MODEL_TYPES = {**MODEL_TYPES, "modernbert": "PreTrainedTokenizer"}


def fast_class(config: Mapping, model_config: Mapping | None, where: Path) -> str | None:
    """The fast class `AutoTokenizer` loads the folder `where` with, without "Fast":
    `tokenizer_class` of `tokenizer_config.json` (`config`), else of `config.json`
    (`model_config`), else the class of its `model_type`; None when none is named.

    Raises:
      ValueError: a `tokenizer_class` that is not a string.
    """
    for source, stated in ((TOKENIZER_CONFIG_FILE, config), ("config.json", model_config or {})):
        name = stated.get("tokenizer_class")
        if name is not None:
            if not isinstance(name, str):
                raise ValueError(f"{where / source} sets tokenizer_class to {name!r}; expected a "
                                 "class name such as 'BertTokenizer'")
            return name.removesuffix("Fast")
    model_type = (model_config or {}).get("model_type")
    return FAST_MODEL_TYPES.get(model_type) if isinstance(model_type, str) else None


def written_by_transformers5(config: Mapping | None) -> bool:
    """Whether `tokenizer_config.json` (as a dict) was written by transformers 5: it names the
    tokenizer's `backend` ("tokenizers"), which earlier versions never wrote."""
    return config is not None and "backend" in config


def apply_fast_options(text: str, config: Mapping | None, model_config: Mapping | None,
                       where: str | Path) -> str:
    """`tokenizer.json` text as HF's fast class has it once loaded with these options.

    Args:
      text: the folder's `tokenizer.json`.
      config: its `tokenizer_config.json` as a dict, or None when there is none.
      model_config: its `config.json` as a dict, or None.
      where: the folder, named in errors.

    Returns:
      `text` itself when the class changes nothing (or no class is named, the folder was
      written by transformers 5, or the file does not load: `Tokenizer.from_files` reports
      that), else the file with the changed components rewritten.

    Raises:
      ValueError: an option of the wrong type, a `tokenizer_class` that is not a string, or a
        cased vocabulary that HF would lowercase because `do_lower_case` is stated nowhere.
    """
    where = Path(where)
    name = fast_class(config or {}, model_config, where)
    if name is None or written_by_transformers5(config):
        return text
    rules = FAST_RULES.get(name, FastRules())  # any other class: the rule every class runs
    options = read_options(config or {}, {name: OPTIONS[name] for name in rules.options}, where)
    try:
        spec = json.loads(text)
        loaded = _loaded_components(spec)
    except Exception:  # noqa: BLE001  a damaged file: from_files names it
        return text
    changed = {}
    pre, prefix = loaded["pre_tokenizer"], options["add_prefix_space"]
    if pre is not None and pre.get("add_prefix_space", prefix) != prefix:
        changed["pre_tokenizer"] = pre | {"add_prefix_space": prefix}
    normalizer = loaded["normalizer"]
    if rules.normalizer and normalizer is not None and any(
            normalizer.get(field, options[option]) != options[option]
            for option, field in rules.normalizer.items()):
        changed["normalizer"] = normalizer | {field: options[option]
                                              for option, field in rules.normalizer.items()}
        if changed["normalizer"].get("lowercase") and not normalizer.get("lowercase", True):
            _check_uncased(spec, config, where, name)
    post = loaded["post_processor"]
    if post is not None:
        differing = {option: options[option] for option in rules.post_processor
                     if post.get(option, options[option]) != options[option]}
        if differing:
            changed["post_processor"] = post | differing
    if not changed:
        return text
    return json.dumps(spec | changed, ensure_ascii=False)


def _loaded_components(spec: dict) -> dict:
    """The normalizer, pre-tokenizer and post-processor of `tokenizer.json` as the `tokenizers`
    library serialises them once loaded (its defaults filled in), which is what HF compares."""
    minimal = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
               "decoder": None, "model": {"type": "WordLevel", "vocab": {}, "unk_token": ""},
               **{key: spec.get(key) for key in COMPONENTS}}
    loaded = json.loads(HFTokenizer.from_str(json.dumps(minimal)).to_str())
    return {key: loaded.get(key) for key in COMPONENTS}


def _check_uncased(spec: dict, config: Mapping | None, where: Path, name: str) -> None:
    """Refuses turning lowercasing on by default over a cased WordPiece vocabulary."""
    if config is not None and "do_lower_case" in config:
        return
    vocab = (spec.get("model") or {}).get("vocab")
    if not isinstance(vocab, dict):
        return
    special = {token.get("content") for token in spec.get("added_tokens") or []
               if isinstance(token, dict)}
    cased = cased_tokens(vocab, special)
    if cased:
        raise ValueError(unstated_lowercase_message(
            where, where / TOKENIZER_FILE, cased, len(vocab), stated=config is not None,
            reader=f"HF's {name}Fast (its default over the normalizer's lowercase false)"))
