"""The special and added tokens HF's fast tokenizer gets when it is built from a slow
tokenizer's files, with their lstrip/rstrip/normalized/single_word/special flags.

`slow_tokenizer.convert_slow_tokenizer` adds these to the tokenizer it builds. They follow
`transformers` 4.x (`PreTrainedTokenizerBase._from_pretrained` and
`PreTrainedTokenizerFast.__init__`) step by step, since a flag decides whether a literal
`[SEP]` or `<mask>` in a text becomes the special token's id:

1. `read_stated_tokens`: `tokenizer_config.json`'s token keys (strings, or legacy
   `{"__type": "AddedToken"}` objects) and its `added_tokens_decoder`; a stated special token
   takes the flags of its `added_tokens_decoder` entry. Without `added_tokens_decoder`,
   `special_tokens_map.json`'s tokens replace the config's (objects there are special) and
   `added_tokens.json` lists the added tokens.
2. `special_tokens`: the tokenizer class's defaults for the keys not stated, its wrapping of
   the ones given as strings (`SlowClass.wrap`), then the copy HF makes of them (which fixes a
   `normalized` flag left unstated); all of them deduplicated by text, in HF's order.
3. `tokens_to_add`: the added tokens by id, then each special token not among them (nor, given
   as a string, among the tokens a SentencePiece converter added before), each marked special
   when its text is one of the special tokens'.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

from tokenizers import AddedToken

from samp_jax.core import strict_json
from samp_jax.models.tokenizer_files import ADDED_TOKENS_FILE, SPECIAL_TOKENS_FILE
from samp_jax.models.tokenizer_files import TOKENIZER_CONFIG_FILE as CONFIG_FILE

# HF's special-token attributes, in the order it adds them.
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                "mask_token")
TOKEN_FLAGS = ("single_word", "lstrip", "rstrip", "normalized", "special")


@dataclasses.dataclass(frozen=True)
class Token:
    """An added token as `tokenizers.AddedToken` holds it.

    `normalized=None` is a flag not stated: it reads as `not special`, and follows `special`
    when that is set later, until the token is copied (`copied`), which fixes it. HF copies the
    special tokens into the slow tokenizer's `init_kwargs` before the fast tokenizer marks
    them special, so a RoBERTa `<s>` given as a string stays normalized.
    """

    content: str
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool | None = None
    special: bool = False

    @property
    def is_normalized(self) -> bool:
        return (not self.special) if self.normalized is None else self.normalized

    def copied(self) -> "Token":
        return dataclasses.replace(self, normalized=self.is_normalized)

    def fields(self) -> tuple:
        """What `AddedToken.__eq__` compares."""
        return (self.content, self.single_word, self.lstrip, self.rstrip, self.is_normalized,
                self.special)

    def added_token(self) -> AddedToken:
        return AddedToken(self.content, single_word=self.single_word, lstrip=self.lstrip,
                          rstrip=self.rstrip, normalized=self.is_normalized, special=self.special)


@dataclasses.dataclass(frozen=True)
class StatedTokens:
    """The special and added tokens a folder's files state.

    Attributes:
      values: the special tokens (`SPECIAL_KEYS`) stated, null included; keys not stated are
        absent (the class's defaults apply).
      additional: `additional_special_tokens`.
      extra: `extra_special_tokens`, by name (transformers 5 writes them as a list: by
        position, "0", "1", ...).
      decoder: the added tokens by their stated id.
      decoder_file: the file that states them (`tokenizer_config.json` or `added_tokens.json`).
    """

    values: Mapping[str, "Token | str | None"]
    additional: tuple["Token | str", ...]
    extra: Mapping[str, "Token | str"]
    decoder: Mapping[int, Token]
    decoder_file: str


def text_of(token: "Token | str") -> str:
    return token.content if isinstance(token, Token) else token


def json_value(text: str, file: Path, kind: type):
    """The JSON value in `text` (file `file`), which must be a `kind` (dict or list)."""
    try:
        value = strict_json.parse(text)
    except strict_json.BeyondReader as e:
        raise ValueError(f"{file}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{file} is not valid JSON ({e.msg}, line {e.lineno}); "
                         f"expected a JSON {kind.__name__}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{file} holds a JSON {type(value).__name__}; expected a {kind.__name__}")
    return value


def read_stated_tokens(config: Mapping, files: Mapping[str, str], where: Path) -> StatedTokens:
    """The tokens `tokenizer_config.json` (`config`) states; without its `added_tokens_decoder`,
    with those of `special_tokens_map.json` (which win) and `added_tokens.json` in `files`.

    Raises:
      ValueError: a token or file is malformed (the message names the file and key).
    """
    file = where / CONFIG_FILE
    values = {k: _config_token(config[k], file, k) for k in SPECIAL_KEYS if k in config}
    additional = [_config_token(t, file, "additional_special_tokens")
                  for t in _typed(config, "additional_special_tokens", list, file)]
    if isinstance(config.get("extra_special_tokens"), list):  # transformers 5: a list of them
        extra = {str(i): _config_token(t, file, f"extra_special_tokens[{i}]")
                 for i, t in enumerate(config["extra_special_tokens"])}
    else:  # transformers 4: named
        extra = {k: _config_token(t, file, f"extra_special_tokens.{k}")
                 for k, t in _typed(config, "extra_special_tokens", dict, file).items()}
    if "added_tokens_decoder" in config:
        decoder = _decoder(_typed(config, "added_tokens_decoder", dict, file), file)
        by_text = {token.content: token for token in decoder.values()}
        for key, value in values.items():
            if value is not None:
                values[key] = by_text.get(text_of(value), value)
        return StatedTokens(values, tuple(additional), extra, decoder, CONFIG_FILE)
    file = where / SPECIAL_TOKENS_FILE
    special_map = json_value(files[SPECIAL_TOKENS_FILE], file, dict) if SPECIAL_TOKENS_FILE in files else {}
    for key in SPECIAL_KEYS:
        if key in special_map:
            values[key] = _map_token(special_map[key], file, key)
    for token in _typed(special_map, "additional_special_tokens", list, file):
        token = _map_token(token, file, "additional_special_tokens")
        if not any(_equal(token, t) for t in additional):
            additional.append(token)
    decoder = _legacy_added_tokens(files, where, {text_of(v) for v in (*values.values(), *additional)
                                                  if v is not None})
    return StatedTokens(values, tuple(additional), extra, decoder, ADDED_TOKENS_FILE)


def special_tokens(stated: StatedTokens, defaults: Mapping[str, str],
                   wrap: Callable[[str, str], "Token | str"]):
    """The special tokens as HF's fast tokenizer holds them, by key (None: unset), and all of
    them deduplicated by text in HF's order (`all_special_tokens_extended`).

    Args:
      stated: what the files state.
      defaults: the tokenizer class's special-token defaults.
      wrap: how the class passes a special token of its own given as a string on.
    """
    special: dict[str, Token | str | None] = {}
    for key in SPECIAL_KEYS:
        value = stated.values[key] if key in stated.values else defaults.get(key)
        if isinstance(value, str) and key in defaults:
            value = wrap(key, value)
        special[key] = value.copied() if isinstance(value, Token) else value
    others = [t.copied() if isinstance(t, Token) else t
              for t in (*stated.additional, *stated.extra.values())]
    extended, seen = [], set()
    for token in (*special.values(), *others):
        if token is not None and text_of(token) not in seen:
            seen.add(text_of(token))
            extended.append(token)
    return special, extended


def tokens_to_add(decoder: Mapping[int, Token], extended: list,
                  present: Sequence[Token] = ()) -> list[Token]:
    """The tokens `PreTrainedTokenizerFast.__init__` adds to the backend, in order: the stated
    added tokens by id, then each special token not among them: a string is compared by its
    text with them and with the tokens `present` in the backend already (those a SentencePiece
    converter added), a token by all its flags with the stated ones only. Each is marked
    special when its text is a special token's."""
    stated = [decoder[index] for index in sorted(decoder)]
    texts = [token.content for token in (*present, *stated)]
    fields = [token.fields() for token in stated]
    candidates = stated + [t for t in extended if (t not in texts if isinstance(t, str)
                                                   else t.fields() not in fields)]
    names = {text_of(t) for t in extended}
    return [Token(t, special=t in names) if isinstance(t, str)
            else dataclasses.replace(t, special=t.special or t.content in names)
            for t in candidates]


def _legacy_added_tokens(files: Mapping[str, str], where: Path, names: set[str]) -> dict[int, Token]:
    """`added_tokens.json` ({token: id}) as HF reads it: a token named by a special-token key
    is special and not normalized, the others normalized."""
    file = where / ADDED_TOKENS_FILE
    added = json_value(files[ADDED_TOKENS_FILE], file, dict) if ADDED_TOKENS_FILE in files else {}
    decoder = {}
    for text, index in added.items():
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"{file} maps {text!r} to {index!r}; expected an object of "
                             "token -> integer id")
        decoder[index] = Token(text, normalized=text not in names, special=text in names)
    return decoder


def _equal(a: "Token | str", b: "Token | str") -> bool:
    """Python's `==` between two of HF's tokens: a string never equals an AddedToken."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.fields() == b.fields()


def _typed(mapping: Mapping, key: str, kind: type, file: Path):
    value = mapping.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise ValueError(f"{file} sets {key} to a {type(value).__name__}; expected a {kind.__name__}")
    return value


def _token(fields: Mapping, file: Path, key: str, *, special: bool | None = None) -> Token:
    """A token from its JSON fields (`content` and `TOKEN_FLAGS`)."""
    unknown = sorted(set(fields) - {"content", *TOKEN_FLAGS})
    content = fields.get("content")
    flags = {f: fields[f] for f in TOKEN_FLAGS if f in fields}
    if special is not None:
        flags["special"] = special
    wrong = [f for f, v in flags.items()
             if not (isinstance(v, bool) or (f == "normalized" and v is None))]
    if unknown or not isinstance(content, str) or wrong:
        problem = (f"unknown fields {unknown}" if unknown else
                   f"{wrong[0]}={flags[wrong[0]]!r}" if wrong else f"content={content!r}")
        raise ValueError(f"{file}: {key} has {problem}; expected a token object with a string "
                         f"content and boolean {', '.join(TOKEN_FLAGS)}")
    return Token(content, **flags)


def _config_token(value, file: Path, key: str) -> "Token | str | None":
    """A token of tokenizer_config.json: a string, null, or an `{"__type": "AddedToken"}` object."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("__type") == "AddedToken":
        return _token({k: v for k, v in value.items() if k != "__type"}, file, key)
    raise ValueError(f"{file} sets {key} to {value!r}; expected a string or an object with "
                     '"__type": "AddedToken"')


def _map_token(value, file: Path, key: str) -> "Token | str":
    """A token of special_tokens_map.json: a string, or an object (which HF marks special)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _token(value, file, key, special=True)
    raise ValueError(f"{file} sets {key} to {value!r}; expected a string or a token object")


def _decoder(entries: Mapping, file: Path) -> dict[int, Token]:
    """`added_tokens_decoder`: {"<id>": token object}."""
    decoder = {}
    for index, fields in entries.items():
        is_id = isinstance(index, str) and index.isascii() and index.isdecimal()
        if not is_id or not isinstance(fields, dict):
            raise ValueError(f"{file}: added_tokens_decoder has {index!r}: {fields!r}; expected "
                             '"<id>": {"content": ..., ...}')
        decoder[int(index)] = _token(fields, file, f"added_tokens_decoder[{index}]")
    return decoder
