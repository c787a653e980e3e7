"""Builds the fast tokenizer (`tokenizer.json`) that HF's `AutoTokenizer` builds from a slow
tokenizer's files, for checkpoint folders that ship no `tokenizer.json`.

Many fine-tuned checkpoints carry only the slow tokenizer's files: `vocab.txt` (WordPiece:
BERT, DistilBERT, ELECTRA, MPNet, ERNIE), `vocab.json` + `merges.txt` (byte-level BPE: RoBERTa,
data2vec-text) or a SentencePiece model (`spm.model`: DeBERTa-v2/v3;
`sentencepiece.bpe.model`: XLM-R, CamemBERT), with a `tokenizer_config.json` that may be
minimal or absent. HF converts them when it loads them (`transformers.convert_slow_tokenizer`:
`BertConverter`, `MPNetConverter`, `RobertaConverter`, `DebertaV2Converter`,
`XLMRobertaConverter`, `CamembertConverter`). `convert_slow_tokenizer` here builds the same
tokenizer with the `tokenizers` library, so the ids are the ones HF's fast tokenizer gives:

- The tokenizer class is `tokenizer_class` in `tokenizer_config.json`, else in `config.json`,
  else the one of `config.json`'s `model_type`: `bert`, `distilbert`, `electra` and `ernie`
  are WordPiece as BERT (`[CLS] A [SEP] B [SEP]`), `mpnet` is WordPiece with `<s> A </s></s> B
  </s>`, `roberta` and `data2vec-text` are byte-level BPE, `deberta-v2`, `xlm-roberta` and
  `camembert` read a SentencePiece model (`samp_jax.models.sentencepiece_tokenizer`). Other
  classes are refused, with how to write `tokenizer.json` once with transformers.
- The files are read as HF's slow tokenizers read them: a token per line of `vocab.txt`, its id
  the line number; `vocab.json` an object of ids; `merges.txt` without its first line (the
  `#version` header) and without what follows its last newline, duplicates dropped; the
  SentencePiece model's pieces, scores and settings (`samp_jax.models.sentencepiece_model`).
- The options come from `tokenizer_config.json`, with HF's defaults: `do_lower_case` (true),
  `strip_accents` (null: strip when lowercasing), `tokenize_chinese_chars` (true),
  `do_basic_tokenize` (true), `add_prefix_space` (false), `trim_offsets` (true); DeBERTa's
  `do_lower_case` (false) and `split_by_punct` (false).
- The special and added tokens, with their lstrip/rstrip/normalized/single_word flags, come
  from `tokenizer_config.json` (its `added_tokens_decoder` and token keys), else from
  `special_tokens_map.json` and `added_tokens.json`, and from the class's defaults, as
  `samp_jax.models.added_tokens` describes.

Refused rather than converted wrongly, the message naming the file: a `vocab.txt` with a
token on two lines, a `vocab.json` that is not an object of distinct ids `0..n-1`, a
`merges.txt` line that is not two tokens of the vocabulary, a malformed SentencePiece model or
one HF's converter would not convert exactly (`sentencepiece_tokenizer`), a special token that
is not in the vocabulary (but DeBERTa's mask token, which HF appends after the pieces, as
DeBERTa-v3 numbers it), an added token whose stated id is not the id it gets, an option of the
wrong type, an unknown tokenizer class, and a cased WordPiece vocabulary whose `do_lower_case`
is stated nowhere (`CASED_SHARE`): HF would lowercase by default, and the model would get ids
it was never trained on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from samp_jax.models.added_tokens import (
    CONFIG_FILE,
    StatedTokens,
    Token,
    json_value,
    read_stated_tokens,
    special_tokens,
    text_of,
    tokens_to_add,
)
from samp_jax.models.sentencepiece_model import read_sentencepiece_model
from samp_jax.models.sentencepiece_tokenizer import (
    SPM_CONVERTERS,
    SPM_MODEL,
    XLM_ROBERTA_MODEL,
    cls_sep_template,
    sentencepiece_backend,
    sentencepiece_post_processor,
)
from samp_jax.models.tokenizer_files import MERGES_TXT, SPECIAL_TOKENS_FILE, VOCAB_JSON, VOCAB_TXT

# Options read from tokenizer_config.json: name -> (HF's default, the types it may have).
OPTIONS = {"do_lower_case": (True, (bool,)), "strip_accents": (None, (bool, type(None))),
           "tokenize_chinese_chars": (True, (bool,)), "do_basic_tokenize": (True, (bool,)),
           "add_prefix_space": (False, (bool,)), "trim_offsets": (True, (bool,))}
DEBERTA_OPTIONS = {"do_lower_case": (False, (bool,)), "split_by_punct": (False, (bool,))}
# A WordPiece vocabulary is cased when at least this share of its tokens (special and bracketed
# ones like [unused0] left out) holds a letter that lowercasing changes. An uncased vocabulary
# has none (a lowercasing tokenizer can never produce such a token); bert-base-cased has
# thousands among 28,996. A few strays are tolerated.
CASED_SHARE = 0.01


@dataclasses.dataclass(frozen=True)
class SlowClass:
    """What one of HF's slow tokenizer classes does with its files and special tokens.

    Attributes:
      name: the HF class, e.g. `BertTokenizer`.
      files: the vocabulary files it reads.
      defaults: its `__init__`'s special-token defaults.
      wrap: how its `__init__` passes a special token given as a string on: `wrap(key, text)`.
      separators: separator tokens between the two texts of a pair (MPNet has two).
      chinese_needs_basic_tokenize: the fast class splits Chinese characters only when
        `do_basic_tokenize` is set (MPNetTokenizerFast resets only the case and accent
        options of its normalizer, so its converter's setting stands).
      options: the `tokenizer_config.json` options it reads: name -> (default, types).
      appended: special-token keys whose token may lie outside the vocabulary: HF appends it
        after the vocabulary, the id the model was trained with (DeBERTa's mask token).
      additional: its `__init__`'s default `additional_special_tokens` (CamemBERT's
        `<s>NOTUSED`, ...), used when neither `tokenizer_config.json` nor
        `special_tokens_map.json` states the key.
    """

    name: str
    files: tuple[str, ...]
    defaults: Mapping[str, str]
    wrap: Callable[[str, str], "Token | str"]
    separators: int = 1
    chinese_needs_basic_tokenize: bool = False
    options: Mapping[str, tuple] = dataclasses.field(default_factory=lambda: OPTIONS)
    appended: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SlowConversion:
    """The converted tokenizer: `tokenizer.json` text and the pad token HF's class would use."""

    tokenizer_json: str
    pad_token: str


def _as_is(key: str, text: str) -> "Token | str":
    return text


def _mpnet_wrap(key: str, text: str) -> "Token | str":
    # MPNetTokenizer: special tokens, and a mask that takes the space before it
    return Token(text, lstrip=key == "mask_token", special=True)


def _roberta_wrap(key: str, text: str) -> "Token | str":
    # RobertaTokenizer: normalized tokens, and a mask that is not normalized and takes the space
    return Token(text, lstrip=True, normalized=False) if key == "mask_token" else Token(text)


def _deberta_wrap(key: str, text: str) -> "Token | str":
    # DebertaV2Tokenizer: a normalized, special unknown token
    return Token(text, normalized=True, special=True) if key == "unk_token" else text


def _xlm_roberta_wrap(key: str, text: str) -> "Token | str":
    # XLMRobertaTokenizer: a special mask that takes the space before it
    return Token(text, lstrip=True, special=True) if key == "mask_token" else text


_BERT_DEFAULTS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                  "cls_token": "[CLS]", "mask_token": "[MASK]"}
_ROBERTA_DEFAULTS = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
                     "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
                     "mask_token": "<mask>"}
SLOW_CLASSES = {c.name: c for c in (
    SlowClass("BertTokenizer", (VOCAB_TXT,), _BERT_DEFAULTS, _as_is),
    SlowClass("DistilBertTokenizer", (VOCAB_TXT,), _BERT_DEFAULTS, _as_is),
    SlowClass("ElectraTokenizer", (VOCAB_TXT,), _BERT_DEFAULTS, _as_is),
    SlowClass("MPNetTokenizer", (VOCAB_TXT,), _ROBERTA_DEFAULTS | {"unk_token": "[UNK]"},
              _mpnet_wrap, separators=2, chinese_needs_basic_tokenize=True),
    SlowClass("RobertaTokenizer", (VOCAB_JSON, MERGES_TXT), _ROBERTA_DEFAULTS, _roberta_wrap),
    SlowClass("DebertaV2Tokenizer", (SPM_MODEL,), _BERT_DEFAULTS | {"bos_token": "[CLS]",
              "eos_token": "[SEP]"}, _deberta_wrap, options=DEBERTA_OPTIONS,
              appended=("mask_token",)),
    SlowClass("XLMRobertaTokenizer", (XLM_ROBERTA_MODEL,), _ROBERTA_DEFAULTS, _xlm_roberta_wrap,
              separators=2, options={}),
    # CamembertTokenizer: XLM-R's tokens (its mask too), CamembertConverter's ids
    SlowClass("CamembertTokenizer", (XLM_ROBERTA_MODEL,), _ROBERTA_DEFAULTS, _xlm_roberta_wrap,
              separators=2, options={},
              additional=("<s>NOTUSED", "</s>NOTUSED", "<unk>NOTUSED")),
)}
# config.json's model_type -> the tokenizer class AutoTokenizer picks for it.
MODEL_TYPES = {"bert": "BertTokenizer", "distilbert": "DistilBertTokenizer",
               "electra": "ElectraTokenizer", "mpnet": "MPNetTokenizer",
               "roberta": "RobertaTokenizer", "deberta-v2": "DebertaV2Tokenizer",
               "xlm-roberta": "XLMRobertaTokenizer", "camembert": "CamembertTokenizer",
               # RoBERTa's and BERT's model under other model types (AutoTokenizer's table)
               "data2vec-text": "RobertaTokenizer", "ernie": "BertTokenizer"}


def convert_slow_tokenizer(files: Mapping[str, str | bytes], *, where: str | Path,
                           model_config: Mapping | None = None) -> SlowConversion:
    """The `tokenizer.json` HF's fast tokenizer builds from a folder's slow-tokenizer files.

    Args:
      files: the folder's tokenizer files by name (`vocab.txt`, `vocab.json` + `merges.txt`, or
        a SentencePiece model, and when present `tokenizer_config.json`,
        `special_tokens_map.json`, `added_tokens.json`), as text; a SentencePiece model as
        bytes.
      where: the folder, named in errors.
      model_config: the folder's `config.json`, for `tokenizer_class` and `model_type` when
        `tokenizer_config.json` names no class.

    Returns:
      The `tokenizer.json` text and the pad token.

    Raises:
      FileNotFoundError: a vocabulary file the tokenizer class reads is missing.
      ValueError: a file is malformed, the class is unknown, or the tokenizer would differ
        from the one the model was trained with (see the module docstring).
    """
    where = Path(where)
    config = json_value(files[CONFIG_FILE], where / CONFIG_FILE, dict) if CONFIG_FILE in files else {}
    slow = _slow_class(config, model_config or {}, where)
    missing = [name for name in slow.files if name not in files]
    if missing:
        raise FileNotFoundError(f"{where / missing[0]} is missing: {slow.name} reads "
                                f"{' and '.join(slow.files)} (and there is no tokenizer.json)")
    options = read_options(config, slow.options, where)
    stated = read_stated_tokens(config, files, where)
    if slow.additional and not _states_additional(config, files, where):
        stated = dataclasses.replace(stated, additional=slow.additional)
    special, extended = special_tokens(stated, slow.defaults, slow.wrap)
    needed = ("cls_token", "sep_token", "pad_token") + (("unk_token",) if VOCAB_TXT in slow.files else ())
    unset = [key for key in needed if special[key] is None]
    if unset:
        raise ValueError(f"{where / CONFIG_FILE} sets {unset[0]} to null; {slow.name} needs one")
    backend, present = _backend(slow, files, where, config, stated, special, extended, options)
    backend.add_tokens([token.added_token()
                        for token in tokens_to_add(stated.decoder, extended, present)])
    _check_added_ids(backend, stated, where)
    if slow.name in SPM_CONVERTERS:
        backend.post_processor = sentencepiece_post_processor(SPM_CONVERTERS[slow.name], backend,
                                                              special, where)
    else:
        backend.post_processor = _post_processor(slow, backend, special, options)
    return SlowConversion(backend.to_str(), text_of(special["pad_token"]))


def _states_additional(config: Mapping, files: Mapping, where: Path) -> bool:
    """Whether the folder states `additional_special_tokens` (an empty list too), in
    `tokenizer_config.json` or, as HF reads it where that file has no `added_tokens_decoder`,
    in `special_tokens_map.json`."""
    if "additional_special_tokens" in config:
        return True
    if "added_tokens_decoder" in config or SPECIAL_TOKENS_FILE not in files:
        return False
    special_map = json_value(files[SPECIAL_TOKENS_FILE], where / SPECIAL_TOKENS_FILE, dict)
    return "additional_special_tokens" in special_map


def add_stated_tokens(tokenizer_json: str, config: Mapping | None, files: Mapping[str, str],
                      where: str | Path, model_config: Mapping | None = None) -> str:
    """`tokenizer.json` with the tokens the folder's other files state and it lacks, added as
    HF's fast class adds them when it loads the folder (`PreTrainedTokenizerFast.__init__`):
    `tokenizer_config.json`'s `added_tokens_decoder` entries and special tokens
    (`additional_special_tokens` included; `special_tokens_map.json`'s without a decoder),
    with their flags, each whose text is not an added token of `tokenizer.json` already. HF's
    own `save_pretrained` writes them all into `tokenizer.json`; a folder edited by hand or
    written by another tool may not, and without them a literal `[E1]` would be read as
    `[UNK]` or word pieces.

    Raises:
      ValueError: a stated token's id is not the one it gets (the ids after the vocabulary).
    """
    where, config = Path(where), config or {}  # config: tokenizer_config.json, parsed
    stated = read_stated_tokens(config, files, where)
    if not stated.decoder and not stated.additional and not stated.extra and \
            not any(value is not None for value in stated.values.values()):
        return tokenizer_json
    try:
        slow = _slow_class(config, model_config or {}, where)
        defaults, wrap = slow.defaults, slow.wrap
    except ValueError:  # a class samp-jax does not convert: only what the files state
        defaults, wrap = {}, (lambda key, value: value)
    _, extended = special_tokens(stated, defaults, wrap)
    try:
        backend = HFTokenizer.from_str(tokenizer_json)
    except Exception:  # noqa: BLE001  a damaged file: `Tokenizer.from_files` refuses it, by name
        return tokenizer_json
    present = {token.content for token in backend.get_added_tokens_decoder().values()}
    missing, seen = [], set(present)
    for token in tokens_to_add(stated.decoder, extended):
        if token.content not in seen:
            seen.add(token.content)
            missing.append(token)
    if not missing:
        return tokenizer_json
    backend.add_tokens([token.added_token() for token in missing])
    _check_added_ids(backend, stated, where)
    return backend.to_str()


def _backend(slow: SlowClass, files: Mapping, where: Path, config: Mapping, stated: StatedTokens,
             special: Mapping, extended: list, options: Mapping) -> tuple[HFTokenizer, list[Token]]:
    """The converter's tokenizer from the class's vocabulary files, its special tokens checked
    against the vocabulary, and the added tokens the converter gave it."""
    if slow.files == (VOCAB_TXT,):
        vocab = read_wordpiece_vocab(files[VOCAB_TXT], where / VOCAB_TXT)
        _check_specials(extended, stated.decoder, vocab, where / VOCAB_TXT, special["unk_token"])
        if "do_lower_case" not in config:
            _check_uncased(vocab, extended, stated.decoder, where, stated=CONFIG_FILE in files)
        return _wordpiece(slow, vocab, text_of(special["unk_token"]), options), []
    if slow.name in SPM_CONVERTERS:
        file = where / slow.files[0]
        model = read_sentencepiece_model(files[slow.files[0]], file)
        backend, vocab, present = sentencepiece_backend(SPM_CONVERTERS[slow.name], model, options, file)
        appended = {text_of(special[key]) for key in slow.appended if special[key] is not None}
        _check_specials(extended, stated.decoder, vocab, file, None, appended)
        return backend, present
    vocab = read_bpe_vocab(files[VOCAB_JSON], where / VOCAB_JSON)
    merges = read_merges(files[MERGES_TXT], where / MERGES_TXT, vocab)
    _check_specials(extended, stated.decoder, vocab, where / VOCAB_JSON, None)
    return _byte_level_bpe(vocab, merges, options), []


# --------------------------------------------------------------------------- files
def read_wordpiece_vocab(text: str, file: Path) -> dict[str, int]:
    """`vocab.txt` as `BertTokenizer` reads it: a token per line, its id the line number.

    Raises:
      ValueError: the file is empty, or a token is on two lines (HF would keep the later id
        and never produce the earlier one).
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline ending the last token
    if not lines:
        raise ValueError(f"{file} is empty; expected one token per line")
    vocab: dict[str, int] = {}
    for index, token in enumerate(lines):
        if token in vocab:
            raise ValueError(f"{file} has {token!r} on lines {vocab[token] + 1} and {index + 1}; "
                             "expected each token once (its id is its line number)")
        vocab[token] = index
    return vocab


def read_bpe_vocab(text: str, file: Path) -> dict[str, int]:
    """`vocab.json`: an object of token -> id, the ids `0..n-1` each once.

    Raises:
      ValueError: not JSON, not an object of integer ids, or ids repeated or with gaps.
    """
    vocab = json_value(text, file, dict)
    wrong = [(token, id_) for token, id_ in vocab.items()
             if not isinstance(id_, int) or isinstance(id_, bool)]
    if wrong:
        raise ValueError(f"{file} maps {wrong[0][0]!r} to {wrong[0][1]!r}; expected an object "
                         "of token -> integer id")
    if not vocab:
        raise ValueError(f"{file} is an empty object; expected token -> id")
    if sorted(vocab.values()) != list(range(len(vocab))):
        seen: dict[int, str] = {}
        for token, id_ in vocab.items():
            if id_ in seen:
                raise ValueError(f"{file} gives {seen[id_]!r} and {token!r} the same id {id_}; "
                                 "expected each id once")
            seen[id_] = token
        outside = min((i for i in seen if not 0 <= i < len(vocab)), key=abs)
        raise ValueError(f"{file} has id {outside} ({seen[outside]!r}) among {len(vocab)} "
                         f"tokens; expected the ids 0..{len(vocab) - 1}")
    return vocab


def read_merges(text: str, file: Path, vocab: Mapping[str, int]) -> list[tuple[str, str]]:
    """`merges.txt` as `RobertaTokenizer` reads it: its first line (the `#version` header) and
    what follows its last newline are not merges; a repeated merge keeps its first rank.

    Raises:
      ValueError: a line is not two tokens, or a merge's parts or result are not in
        `vocab.json`.
    """
    merges: dict[tuple[str, str], int] = {}
    for number, line in enumerate(text.split("\n")[1:-1], start=2):
        parts = tuple(line.split())
        if len(parts) != 2:
            raise ValueError(f"{file} line {number} is {line!r}; expected two tokens separated "
                             "by a space (the first line is the #version header)")
        absent = [t for t in (*parts, parts[0] + parts[1]) if t not in vocab]
        if absent:
            raise ValueError(f"{file} line {number} merges {line!r}, but {absent[0]!r} is not in "
                             f"{file.with_name(VOCAB_JSON)}; expected the merges of that vocabulary")
        merges.setdefault(parts, number)
    return list(merges)


# --------------------------------------------------------------------------- class, options
def _slow_class(config: Mapping, model_config: Mapping, where: Path) -> SlowClass:
    """The tokenizer class AutoTokenizer would pick: tokenizer_config.json's, config.json's, or
    the one of config.json's model_type."""
    for source, stated in ((CONFIG_FILE, config), ("config.json", model_config)):
        name = stated.get("tokenizer_class")
        if name is not None:
            break
    else:
        source, model_type = "config.json", model_config.get("model_type")
        name = MODEL_TYPES.get(model_type)
        if name is None:
            raise ValueError(
                f"{where} has no tokenizer.json, and neither {CONFIG_FILE} (tokenizer_class) "
                f"nor config.json (model_type {model_type!r}) names a tokenizer samp-jax builds "
                f"from vocabulary files: model types {sorted(MODEL_TYPES)}")
    slow = SLOW_CLASSES.get(name.removesuffix("Fast")) if isinstance(name, str) else None
    if slow is None:
        raise ValueError(
            f"{where / source} names tokenizer_class {name!r}, and the folder has no "
            f"tokenizer.json; samp-jax builds one only for {sorted(SLOW_CLASSES)} (or their "
            f"Fast names): write {where / 'tokenizer.json'} once with transformers, e.g. "
            f"AutoTokenizer.from_pretrained('{where}').save_pretrained('{where}')")
    return slow


def read_options(config: Mapping, known: Mapping[str, tuple], where: Path) -> dict:
    """The options `known` (name -> (HF's default, accepted types)) from a folder's
    `tokenizer_config.json` (`config`), type-checked; errors name the file under `where`."""
    options = {}
    for name, (default, types) in known.items():
        value = config.get(name, default)
        if not isinstance(value, types):
            raise ValueError(f"{where / CONFIG_FILE} sets {name} to {value!r}; expected "
                             f"{' or '.join('null' if t is type(None) else t.__name__ for t in types)}")
        options[name] = value
    return options


# --------------------------------------------------------------------------- checks
def _check_specials(extended: list, decoder: Mapping[int, Token], vocab: Mapping[str, int],
                    file: Path, unk: "Token | str | None", appended: set[str] = frozenset()) -> None:
    """Every special token must have an id of the vocabulary or of the stated added tokens (HF
    would append it with a new id the model was not trained with), or be one of the class's
    `appended` tokens; WordPiece's unknown token must be in the vocabulary itself."""
    added = {token.content for token in decoder.values()} | set(appended)
    for token in extended:
        text = text_of(token)
        in_model = text in vocab or (text in added and (unk is None or text != text_of(unk)))
        if not in_model:
            bom = " (the file starts with a byte-order mark)" if next(iter(vocab)).startswith("\ufeff") else ""
            raise ValueError(f"special token {text!r} is not in {file}{bom}; expected the "
                             "vocabulary the model was trained with")


def cased_tokens(vocab: Mapping[str, int], special: set[str]) -> list[str]:
    """The tokens of a cased WordPiece vocabulary that lowercasing changes (the `special` ones
    and bracketed ones like [unused0] left out), or [] when fewer than `CASED_SHARE` of its
    tokens are such (an uncased vocabulary)."""
    cased = [t for t in vocab if t not in special and t != t.lower()
             and not (t[:1] + t[-1:] in ("[]", "<>"))]
    return cased if cased and len(cased) >= CASED_SHARE * len(vocab) else []


def unstated_lowercase_message(where: Path, vocab_file: Path, cased: list[str], size: int, *,
                               stated: bool, reader: str) -> str:
    """Why a cased vocabulary whose do_lower_case is stated nowhere is refused, and the fix."""
    config = where / CONFIG_FILE
    place = f"{config} does not state do_lower_case" if stated else f"{where} has no {CONFIG_FILE}"
    return (f"{place}, and {vocab_file} is cased ({len(cased)} of {size} tokens have capitals, "
            f"e.g. {cased[:3]}): {reader} would lowercase by default, giving ids the model may "
            f"never have seen. State it in {config}: "
            '"do_lower_case": false for a cased model (true if it was trained on lowercased text)')


def _check_uncased(vocab: Mapping[str, int], extended: list, decoder: Mapping[int, Token],
                   where: Path, *, stated: bool) -> None:
    """Refuses a cased vocabulary whose do_lower_case is stated nowhere (HF would lowercase)."""
    skip = {text_of(t) for t in extended} | {t.content for t in decoder.values()}
    cased = cased_tokens(vocab, skip)
    if cased:
        raise ValueError(unstated_lowercase_message(where, where / VOCAB_TXT, cased, len(vocab),
                                                    stated=stated, reader="HF's tokenizer"))


def _check_added_ids(backend: HFTokenizer, stated: StatedTokens, where: Path) -> None:
    for index, token in sorted(stated.decoder.items()):
        got = backend.token_to_id(token.content)
        if got != index and token.content:
            raise ValueError(
                f"{where / stated.decoder_file} gives {token.content!r} id {index}, but the "
                f"tokenizer built from the vocabulary gives it {got}; expected the ids of the "
                "vocabulary, then the added tokens numbered on from its end")


# --------------------------------------------------------------------------- the backend
def _wordpiece(slow: SlowClass, vocab: dict[str, int], unk: str, options: Mapping) -> HFTokenizer:
    """`BertConverter` / `MPNetConverter`, with the normalizer the fast class then sets."""
    backend = HFTokenizer(models.WordPiece(vocab, unk_token=unk))
    chinese = options["tokenize_chinese_chars"]
    if slow.chinese_needs_basic_tokenize and not options["do_basic_tokenize"]:
        chinese = False
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=chinese, strip_accents=options["strip_accents"],
        lowercase=options["do_lower_case"])
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def _byte_level_bpe(vocab: dict[str, int], merges: list, options: Mapping) -> HFTokenizer:
    """`RobertaConverter`."""
    backend = HFTokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None,
                                     continuing_subword_prefix="", end_of_word_suffix="",
                                     fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=options["add_prefix_space"])
    backend.decoder = decoders.ByteLevel()
    return backend


def _post_processor(slow: SlowClass, backend: HFTokenizer, special: Mapping, options: Mapping):
    """The converter's post-processor, with the options the fast class then sets."""
    cls, sep = text_of(special["cls_token"]), text_of(special["sep_token"])
    cls_id, sep_id = backend.token_to_id(cls), backend.token_to_id(sep)
    if VOCAB_JSON in slow.files:
        return processors.RobertaProcessing(
            (sep, sep_id), (cls, cls_id), trim_offsets=options["trim_offsets"],
            add_prefix_space=options["add_prefix_space"])
    return cls_sep_template(cls, sep, backend, separators=slow.separators)
