"""A thin wrapper over the HF fast tokenizer (`tokenizer.json`) in a checkpoint folder.

`tokenizer.json` is taken as HF's fast tokenizer class has it once loaded: the options of
`tokenizer_config.json` the class writes into it (`do_lower_case` into a `BertNormalizer`,
RoBERTa's `add_prefix_space`, ...; `samp_jax.models.fast_tokenizer_options`) are applied when
it is read, and `Tokenizer.save` writes the result. Its `split_special_tokens` (a special
token's text in the input, e.g. "[SEP]", tokenized as text) is followed too; it is not part of
`tokenizer.json`, and `tokenizer_config.json` is saved with it.

A folder without `tokenizer.json` but with a slow tokenizer's files (`vocab.txt`,
`vocab.json` + `merges.txt`, or a SentencePiece model: DeBERTa-v2/v3's `spm.model`, XLM-R's
`sentencepiece.bpe.model`) gets the `tokenizer.json` HF's `AutoTokenizer` would build from them
(`samp_jax.models.slow_tokenizer`), and `Tokenizer.save` writes it, so a saved or quantized
model carries a fast tokenizer.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

from samp_jax.core import strict_json
from samp_jax.core.input_files import check_regular, read_bytes, read_text
from samp_jax.models.config import ConfigError, EncoderConfig, read_json
from samp_jax.models.fast_tokenizer_options import (apply_fast_options, fast_class,
                                                    written_by_transformers5)
from samp_jax.models.long_texts import heads_to_tokenize
from samp_jax.models.sentencepiece_tokenizer import SENTENCEPIECE_FILES
from samp_jax.models.slow_tokenizer import add_stated_tokens, convert_slow_tokenizer
from samp_jax.models.st_folder import (PROMPTS_FILE, Prompts, TextSettings, parse_prompts,
                                       is_cross_encoder, prompts_file_text, read_pooling,
                                       read_text_settings, transformer_folder)
from samp_jax.models.token_rows import (PREFIXED_WORDS_CLASSES, encode_batch, encode_rows,
                                        is_panic, panic_error, words_backend)
from samp_jax.models.tokenizer_files import (ADDED_TOKENS_FILE, MERGES_TXT, SPECIAL_TOKENS_FILE,
                                           TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, VOCAB_JSON,
                                           VOCAB_TXT)

# Files kept verbatim from the source folder and written back by `Tokenizer.save`, so that HF
# tools reading the saved folder see the same tokenizer (slow-tokenizer vocab included).
SIDE_FILES = (SPECIAL_TOKENS_FILE, ADDED_TOKENS_FILE, VOCAB_TXT, VOCAB_JSON, MERGES_TXT,
              PROMPTS_FILE)
TOKENIZER_FILES = (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, *SIDE_FILES)
# Vocabularies of the slow tokenizers samp-jax builds a tokenizer.json from. The SentencePiece
# models among them are binary: read only to build tokenizer.json, never kept in the
# tokenizer's files (`checkpoint.save_pretrained` copies them with a folder's tokenizer files).
SLOW_VOCABULARY_FILES = (VOCAB_TXT, VOCAB_JSON, *SENTENCEPIECE_FILES)


class Tokenizer:
    """Turns texts or text pairs into right-padded `int32` arrays for `EncoderModel`.

    Returns a dict with `input_ids`, `attention_mask` and `token_type_ids`, each
    `[batch, seq]`. Pairs get `[CLS] a [SEP] b [SEP]` with token type 1 on the second segment,
    exactly as the HF tokenizer's post-processor defines.

    A tokenizer can travel with its model (`EncoderModel.tokenizer`, set by `samp_jax.load`):
    it is then a static attribute of the model, compared and hashed by identity.

    A sentence embedder's tokenizer may hold the prompts of its
    `config_sentence_transformers.json` (`prompts`); the one in use is put before every text
    (the first of a pair), as sentence-transformers' `encode` puts it (`prompt + text`, then
    normalised and truncated as a whole).

    Thread-safe: a call never changes the HF backend it encodes with. Truncation is a backend
    setting, so each truncation length gets its own copy of the backend, made once (under a
    lock) with truncation enabled and never changed afterwards; calls without truncation use
    the original backend, whose padding and truncation stay off.

    Args:
      backend: a `tokenizers.Tokenizer` (its padding and truncation settings are switched off:
        this class pads and truncates itself).
      max_length: the longest row, in tokens, special tokens included.
      pad_id: the id padded positions hold.
      files: text of the tokenizer files it was loaded from, by file name (see
        `TOKENIZER_FILES`); `save` writes them back. Filled by `from_pretrained`.
      prompts: the prompts and the one in use (`st_folder.Prompts`), or None for none.
      split_special_tokens: whether a special token's text in the input (e.g. "[SEP]" typed
        by a user) is tokenized as text rather than read as that token, as HF's
        `split_special_tokens` option (of `tokenizer_config.json`) does.
      tokenizer_class: the HF class the tokenizer is (without "Fast", e.g. "RobertaTokenizer";
        None: not known), written into a saved `tokenizer_config.json` that names none. It
        decides how pre-split words (`encode_words`) are read: each as following a space (a
        byte-level BPE's `add_prefix_space`, `words_prefix_space`) for the classes that
        require it for `is_split_into_words` (RoBERTa's, GPT-2's: `PREFIXED_WORDS_CLASSES`,
        as taggers are trained with them); otherwise as the tokenizer is set (ModernBERT's
        class: each as if it began the text), as HF's other classes read them.
      words_as_set: read pre-split words as the tokenizer is set whatever its class, as
        transformers 5 reads them (it requires no `add_prefix_space` for them): a folder it
        wrote, whose taggers were trained so.
      truncation_side: which end of a row too long is cut: "right" keeps its first tokens,
        "left" its last (HF's `truncation_side` of `tokenizer_config.json`); the special
        tokens stay either way.
      token_types: whether rows carry the token types the post-processor gives (1 on a pair's
        second segment). False where the HF tokenizer sends none (`model_input_names` of
        `tokenizer_config.json` without `token_type_ids`): HF's model then sees, and was
        trained with, type 0 everywhere, and so do the rows here.
    """

    # names the tokenizer where the tokenizers library fails on a text ("tokenizer.json of
    # FOLDER" for one read from a folder)
    source: str = "the tokenizer"

    def __init__(self, backend, *, max_length: int, pad_id: int,
                 files: Mapping[str, str] | None = None, prompts: Prompts | None = None,
                 split_special_tokens: bool = False, truncation_side: str = "right",
                 tokenizer_class: str | None = None, words_as_set: bool = False,
                 token_types: bool = True):
        if truncation_side not in TRUNCATION_SIDES:
            raise ValueError(f"{truncation_side=} is not one of {TRUNCATION_SIDES}")
        self.split_special_tokens = split_special_tokens
        self.truncation_side = truncation_side
        self.token_types = token_types
        self._backend = self._configured(backend)
        self._backend.no_padding()
        self._backend.no_truncation()
        self.tokenizer_class = tokenizer_class
        self.words_prefix_space = tokenizer_class in PREFIXED_WORDS_CLASSES and not words_as_set
        self._words_backend = self._configured(
            words_backend(backend, self.words_prefix_space))
        # (pretokenized, length) -> a private backend truncating to that length; never mutated
        self._truncating: dict[tuple[bool, int], HFTokenizer] = {}
        self._lock = threading.Lock()
        self.max_length = max_length
        self.pad_id = pad_id
        unknown = sorted(set(files or {}) - set(TOKENIZER_FILES))
        if unknown:
            raise ValueError(f"files={unknown} are not tokenizer files; expected some of {TOKENIZER_FILES}")
        self._files = dict(files or {})
        self.prompts = prompts
        self.prompt = "" if prompts is None else prompts.text

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, max_length: int | None = None,
                        sentence_transformers: bool | None = None, prompts: bool | None = None,
                        prompt_name: str | None = None) -> "Tokenizer":
        """Loads `tokenizer.json` from a checkpoint folder, with the options of
        `tokenizer_config.json` HF's fast class writes into it
        (`fast_tokenizer_options.apply_fast_options`), or builds it from the slow tokenizer's
        files when the folder has none (`slow_tokenizer.convert_slow_tokenizer`).

        `max_length` defaults to the smallest of the model's longest input
        (`EncoderConfig.position_limit`, from `config.json`) and the tokenizer's
        `model_max_length`; for a model without a position table (DeBERTa-v3, ModernBERT)
        whose tokenizer states no `model_max_length`, its `max_position_embeddings` (which
        also caps a sentence embedder's tokenizer without a `max_seq_length`, as
        sentence-transformers caps it). With `sentence_transformers=True` (the tokenizer of a sentence
        embedder, as `samp_jax.load` builds it) the folder's `sentence_bert_config.json` is
        followed as sentence-transformers follows it: its `max_seq_length` replaces
        `model_max_length`, and `do_lower_case` puts a Lowercase normalizer first in the
        tokenizer (kept in `tokenizer.json` when the tokenizer is saved); and the prompt
        `prompt_name` of `config_sentence_transformers.json` ('' for none; default: its
        `default_prompt_name`) is put before every text. `prompts=True` reads that file alone
        (a sentence-transformers `CrossEncoder` puts its prompt before the first text of each
        pair); otherwise it is read with `sentence_transformers` only, and kept only when read.
        Left as None, each follows the folder as `samp_jax.load` reads it for the head the
        folder declares: `sentence_transformers` when it is a sentence-transformers folder (it
        declares a pooling: `modules.json`), `prompts` then and for a `CrossEncoder` folder.
        Pass False to tokenize such a folder as its plain HF tokenizer does (e.g. to train
        another head on a sentence embedder). A sentence-transformers folder whose
        `modules.json` puts its transformer in a subfolder (`0_Transformer/`,
        `st_folder.transformer_folder`) is read from there, its prompts from the root.

        Raises:
          FileNotFoundError: the folder has no `tokenizer.json` and no slow tokenizer's
            vocabulary.
          ValueError: a tokenizer file is damaged (not UTF-8, not JSON, not a tokenizer; the
            message names the file), no maximum length is stated anywhere, the pad token is
            not in the vocabulary, the slow tokenizer's files cannot be converted exactly
            (see `slow_tokenizer`), or an option HF's fast class reads has the wrong type or
            would lowercase a cased vocabulary by default (see `fast_tokenizer_options`).
          ConfigError: `sentence_bert_config.json` or `config_sentence_transformers.json` is
            malformed, `prompt_name` is not one of its prompts, or a prompt is in use with a
            pooling that leaves the prompt's tokens out (`include_prompt` false).
        """
        path = Path(path)
        # a sentence-transformers 1.x folder keeps its tokenizer, config.json and
        # sentence_bert_config.json with its transformer (0_Transformer/), its modules and
        # prompts at the root
        source = transformer_folder(path)
        file = source / TOKENIZER_FILE
        if not has_tokenizer(source):
            raise FileNotFoundError(f"no fast tokenizer at {file}, and no slow tokenizer's "
                                    f"vocabulary ({', '.join(SLOW_VOCABULARY_FILES)})")
        if prompts is None:  # the prompts file read with the sentence-transformers settings
            prompts = sentence_transformers if sentence_transformers is not None else \
                (_declares_pooling(path) or is_cross_encoder(path))
        if sentence_transformers is None:  # as samp_jax.load reads the head the folder declares
            sentence_transformers = _declares_pooling(path)
        files = {}
        for name in TOKENIZER_FILES:
            read_prompts = prompts
            # a FIFO or /dev/zero under a tokenizer file's name is refused, named: skipping it
            # would tokenize without it
            where = path if name == PROMPTS_FILE else source
            if (read_prompts or name != PROMPTS_FILE) and check_regular(where / name):
                try:
                    files[name] = read_text(where / name)
                except UnicodeDecodeError as e:
                    raise ValueError(f"{where / name} is not UTF-8 text ({e.reason} at byte "
                                     f"{e.start}); expected a tokenizer file") from None
        model_config = _model_config(source)  # read once, for the model type and the limit
        if TOKENIZER_FILE not in files:
            models = {name: read_bytes(source / name) for name in SENTENCEPIECE_FILES
                      if check_regular(source / name)}
            files = _converted(files, models, source, model_config)
        else:  # as HF's fast class rewrites it from tokenizer_config.json when it loads it
            config = (_json_object(files, TOKENIZER_CONFIG_FILE, source)
                      if TOKENIZER_CONFIG_FILE in files else None)
            files[TOKENIZER_FILE] = apply_fast_options(files[TOKENIZER_FILE], config,
                                                       model_config, source)
            files[TOKENIZER_FILE] = add_stated_tokens(files[TOKENIZER_FILE], config, files,
                                                      source, model_config)
        limit, default = _model_lengths(model_config)
        settings = read_text_settings(source) if sentence_transformers else TextSettings()
        if sentence_transformers and settings.max_seq_length is None:
            # sentence-transformers cuts at min(max_position_embeddings, model_max_length) when
            # its folder states no max_seq_length, whether the model has a position table or not
            limit = default if limit is None else limit
        if settings.lowercase:
            files[TOKENIZER_FILE] = _lowercasing(files[TOKENIZER_FILE], source / TOKENIZER_FILE)
        if sentence_transformers and PROMPTS_FILE in files and not _pools_prompts(path):
            prompts = parse_prompts(files[PROMPTS_FILE], path / PROMPTS_FILE, prompt_name)
            if prompts.text:
                raise ConfigError(
                    f"{path}: its Pooling leaves the prompt's tokens out of the embedding "
                    f"(include_prompt=false), which samp-jax does not run, and the prompt "
                    f"{prompts.active!r} is in use; embed without a prompt "
                    "(prompt_name='', --prompt-name '') or with a model that pools the prompt")
            # no prompt can be used with it: the tokenizer (and every copy saved) names none
            files.pop(PROMPTS_FILE)
            prompt_name = None
        tokenizer = cls.from_files(files, where=source, max_length=max_length,
                                   model_max_length=limit, stated_max_length=settings.max_seq_length,
                                   default_max_length=default, prompt_name=prompt_name,
                                   model_config=model_config)
        return tokenizer

    def file_text(self, name: str) -> str | None:
        """The text of one of the tokenizer's files (`TOKENIZER_FILES`) as `save` writes it,
        or None when it has none by that name."""
        return self._files.get(name)

    @classmethod
    def from_files(cls, files: Mapping[str, str], *, where: str | os.PathLike,
                   max_length: int | None = None,
                   model_max_length: int | None = None,
                   stated_max_length: int | None = None,
                   default_max_length: int | None = None,
                   prompt_name: str | None = None,
                   model_config: Mapping | None = None) -> "Tokenizer":
        """Builds the tokenizer from the text of its files, by name (`TOKENIZER_FILES`;
        `tokenizer.json` is required), as read from the folder `where` (named in errors).
        `model_config` (`config.json`'s fields, or just its `model_type`) names the tokenizer
        class where `tokenizer_config.json` does not (`fast_class`): it decides how pre-split
        words are tokenized (`PREFIXED_WORDS_CLASSES`).

        `max_length` defaults to the smallest of `model_max_length` (the model's longest input;
        None: no limit) and the tokenizer's own limit: `stated_max_length` when given (a
        sentence-transformers `max_seq_length`), else the tokenizer config's
        `model_max_length`; `default_max_length` when neither states one. With
        `config_sentence_transformers.json` among the files, its prompt `prompt_name` ('' for
        none; default: its `default_prompt_name`) is put before every text, and the file is
        saved with that prompt as its default.

        Raises:
          ValueError: as `from_pretrained`.
        """
        where = Path(where)
        try:
            backend = HFTokenizer.from_str(files[TOKENIZER_FILE])
        except Exception as e:  # noqa: BLE001  the tokenizers library raises a bare Exception
            problem = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"{where / TOKENIZER_FILE} is not a readable fast tokenizer "
                             f"({problem}); expected the tokenizer.json an HF tokenizer "
                             "saves (the file may be truncated or damaged)") from None
        config = _json_object(files, TOKENIZER_CONFIG_FILE, where)
        own = config.get("model_max_length") if stated_max_length is None else stated_max_length
        limits = [model_max_length, own]
        limits = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
        if max_length is None:
            if not limits and default_max_length is None:
                raise ValueError(f"{where} states no maximum length; pass max_length")
            max_length = min(limits) if limits else default_max_length
        pad_token = _pad_token(config, _json_object(files, SPECIAL_TOKENS_FILE, where))
        pad_id = backend.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"pad token {pad_token!r} is not in the vocabulary of "
                             f"{where / TOKENIZER_FILE}")
        prompts = None
        if PROMPTS_FILE in files:
            prompts = parse_prompts(files[PROMPTS_FILE], where / PROMPTS_FILE, prompt_name)
            files = dict(files) | {PROMPTS_FILE: prompts_file_text(files[PROMPTS_FILE], prompts.active)}
        elif prompt_name:
            raise ConfigError(f"prompt name {prompt_name!r}: prompts are a sentence embedder's "
                              f"({PROMPTS_FILE}), and the tokenizer of {where} has none (not a "
                              "sentence-embedding model, or no such file)")
        split = config.get("split_special_tokens", False)
        if not isinstance(split, bool):
            raise ValueError(f"{where / TOKENIZER_CONFIG_FILE} sets split_special_tokens to "
                             f"{split!r}; expected bool")
        side = config.get("truncation_side", "right")
        if side not in TRUNCATION_SIDES:
            raise ValueError(f"{where / TOKENIZER_CONFIG_FILE} sets truncation_side to "
                             f"{side!r}; expected one of {TRUNCATION_SIDES}")
        tokenizer = cls(backend, max_length=max_length, pad_id=pad_id, files=files,
                        prompts=prompts, split_special_tokens=split, truncation_side=side,
                        tokenizer_class=fast_class(config, model_config, where),
                        words_as_set=written_by_transformers5(config),
                        token_types=_sends_token_types(config, where))
        tokenizer.source = f"{TOKENIZER_FILE} of {where}"
        return tokenizer

    def save(self, directory: str | os.PathLike) -> Path:
        """Writes the tokenizer into `directory` (created) so `from_pretrained` reads it back.

        Writes `tokenizer.json` (as loaded or as built from a slow tokenizer's files, else the
        backend's own serialisation), `tokenizer_config.json` (as loaded, with
        `model_max_length` and `pad_token` set to this tokenizer's `max_length` and pad token,
        and its `tokenizer_class` when it names none and the class is known) and, when it was
        loaded with them, the `SIDE_FILES` (`special_tokens_map.json`, the slow tokenizer's
        vocabulary). Returns the folder.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = dict(self._files)
        files.setdefault(TOKENIZER_FILE, self._backend.to_str())
        config = json.loads(files.get(TOKENIZER_CONFIG_FILE, "{}"))
        pad_token = self._backend.id_to_token(self.pad_id)
        stated = config.get("pad_token")
        stated = stated.get("content") if isinstance(stated, dict) else stated
        named = {} if self.tokenizer_class is None or "tokenizer_class" in config else {
            "tokenizer_class": self.tokenizer_class}  # as HF's save_pretrained names it
        if config.get("model_max_length") != self.max_length or stated != pad_token or named:
            # a folder without config.json (a quantized model) states its own limit and class
            config |= {"model_max_length": self.max_length, "pad_token": pad_token} | named
            files[TOKENIZER_CONFIG_FILE] = json.dumps(config, indent=2)
        for name, text in files.items():
            (directory / name).write_text(text, encoding="utf-8")
        return directory

    def with_max_length(self, max_length: int) -> "Tokenizer":
        """A copy of this tokenizer (same files, prompt and options) whose rows may hold up to
        `max_length` tokens; `save` writes it as the copy's `model_max_length`."""
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length={max_length!r} must be a positive int")
        longer = copy.copy(self)  # through __getstate__: a fresh lock and truncation cache
        longer.max_length = max_length
        return longer

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_lock")
        state["_truncating"] = {}  # rebuilt on demand
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._configured(self._backend)  # a backend's own pickle drops the setting
        self._configured(self._words_backend)

    def _configured(self, backend):
        """`backend` with this tokenizer's `split_special_tokens` set (the tokenizers library
        keeps it on the object only: `to_str` and a copy do not carry it)."""
        backend.encode_special_tokens = self.split_special_tokens
        return backend

    def __repr__(self) -> str:
        prompt = f", prompt={self.prompt!r}" if self.prompt else ""
        return (f"Tokenizer(vocab_size={self.vocab_size}, max_length={self.max_length}, "
                f"pad_id={self.pad_id}{prompt})")

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size()

    def __call__(self, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
                 padding: str | int = "longest", truncation: bool = False,
                 max_length: int | None = None,
                 return_truncated: bool = False) -> dict[str, np.ndarray]:
        """Tokenizes a batch.

        Args:
          texts: the first segments.
          pairs: optional second segments, one per text (for cross-encoders).
          padding: 'longest' pads to the longest row; an int pads every row to that length.
          truncation: cut rows longer than `max_length` instead of raising (pairs: the longer
            segment first, as HF's `longest_first`).
          max_length: the most tokens a row may have (special tokens included); default: the
            `padding` length when it is an int, else the tokenizer's own `max_length`.
          return_truncated: add `"truncated"`, `[N]` bool: the row was longer and was cut.

        Raises:
          ValueError: empty batch, mismatched pair count, a `max_length` past the tokenizer's
            or an int `padding` below it, or a row longer than `max_length` without
            `truncation`.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        if self.prompt:  # before the first text of a pair, as sentence-transformers puts it
            texts = [self.prompt + text for text in texts]
        inputs = list(texts) if pairs is None else list(zip(texts, pairs))
        batch, _, truncated = self._encode(inputs, padding, truncation, max_length,
                                           pretokenized=False)
        return batch | {"truncated": truncated} if return_truncated else batch

    def encode_words(self, words: Sequence[Sequence[str]], *, padding: str | int = "longest",
                     truncation: bool = False, max_length: int | None = None,
                     return_truncated: bool = False,
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Tokenizes pre-split words (for token classification); the options are `__call__`'s.

        Returns the batch and `word_ids [batch, seq]`: for each position, the index of the word
        it came from, or -1 for special tokens and padding.
        """
        if len(words) and isinstance(words[0], str):
            raise TypeError("words must be a batch of word lists, e.g. [['Hello', 'world']]")
        batch, word_ids, truncated = self._encode([list(w) for w in words], padding, truncation,
                                                  max_length, pretokenized=True)
        return (batch | {"truncated": truncated} if return_truncated else batch), word_ids

    def words(self, text: str) -> list[str]:
        """`text` split into the words this tokenizer makes of it (its normalizer and
        pre-tokenizer: BERT's splits off punctuation and puts each CJK character apart;
        RoBERTa's byte-level one: words, runs of punctuation and contractions; SentencePiece's:
        whitespace), each word as the text spells it (the span of its tokens' offsets), spaces
        dropped. What a tagger reads a plain sentence as (`encode_words`). A character that
        makes no token is in the word it follows without a space (an accent the normalizer
        composes or strips; a zero-width space BERT's drops), else in no word."""
        return [text[start:end] for start, end in self.word_spans(text)]

    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """The character spans `(start, end)` (`end` exclusive) of `words(text)` in `text`:
        `text[start:end]` is each word, with the characters right after it that no token
        covers (see `_with_trailing_marks`)."""
        try:
            encoding = self._backend.encode(text, add_special_tokens=False)
        except BaseException as e:
            if not is_panic(e):
                raise
            raise panic_error(e, self.source) from None
        spans: dict[int, tuple[int, int]] = {}
        for word, (start, end) in zip(encoding.word_ids, encoding.offsets):
            if word is not None:
                first, last = spans.get(word, (start, end))
                spans[word] = (min(first, start), max(last, end))
        stripped = []
        for start, end in (spans[w] for w in sorted(spans)):
            piece = text[start:end]
            start += len(piece) - len(piece.lstrip())
            end -= len(piece) - len(piece.rstrip())
            if start < end:
                stripped.append((start, end))
        return _with_trailing_marks(text, stripped, self._normalized)

    def _normalized(self, character: str) -> str:
        """`character` as this tokenizer's normalizer writes it, alone (itself without one)."""
        normalizer = self._backend.normalizer
        return character if normalizer is None else normalizer.normalize_str(character)

    def lengths(self, texts: Sequence, pairs: Sequence[str] | None = None, *,
                words: bool = False) -> np.ndarray:
        """Tokens per row, special tokens (and the prompt) included, with no length limit: how
        long each row is before any truncation. `texts` are texts (with `pairs`, one second
        segment per text, as `__call__` takes them) or, with `words`, lists of pre-split
        words (as `encode_words` takes them)."""
        if words:
            inputs, backend = [list(w) for w in texts], self._words_backend
        else:
            texts = [self.prompt + text for text in texts] if self.prompt else list(texts)
            inputs = texts if pairs is None else list(zip(texts, pairs))
            backend = self._backend
        if not inputs:
            return np.zeros(0, np.int64)
        encodings = encode_batch(backend, inputs, pretokenized=words, source=self.source)
        return np.array([len(e.ids) for e in encodings], np.int64)

    def _encode(self, inputs, padding, truncation, max_length, *, pretokenized):
        """`(batch, word_ids, truncated)` of `inputs` (see `__call__`); a cut row is one the
        tokenizers library left tokens over for (`Encoding.overflowing`)."""
        if len(inputs) == 0:
            raise ValueError("empty batch: no texts to tokenize")
        if max_length is None:
            max_length = self.max_length if padding == "longest" else int(padding)
            named = "the tokenizer's max_length" if padding == "longest" else f"padding={padding}"
        else:
            named = f"max_length={max_length}"
        limit = int(max_length)
        if limit > self.max_length:
            raise ValueError(f"{named} exceeds the tokenizer's max_length={self.max_length}")
        if padding != "longest" and int(padding) < limit:
            raise ValueError(f"padding={int(padding)} is shorter than max_length={limit}")
        backend = self._truncating_backend(pretokenized, limit) if truncation else (
            self._words_backend if pretokenized else self._backend)
        if truncation and not pretokenized and self.truncation_side == "right" and \
                all(isinstance(text, str) for text in inputs):  # texts, not pairs
            inputs = heads_to_tokenize(inputs, limit, lambda head: bool(encode_batch(
                backend, [head], pretokenized=False, source=self.source)[0].overflowing))
        batch, word_ids, truncated = encode_rows(
            backend, inputs, pretokenized=pretokenized, limit=limit, truncating=truncation,
            width=None if padding == "longest" else int(padding), pad_id=self.pad_id,
            limit_named=named, source=self.source)
        if not self.token_types:  # as HF's model sees rows its tokenizer gives no types for
            batch["token_type_ids"] = np.zeros_like(batch["token_type_ids"])
        return batch, word_ids, truncated

    def _truncating_backend(self, pretokenized: bool, limit: int):
        """A private copy of the (words) backend truncating to `limit` tokens, made once.

        Switching truncation on the shared backend per call raced with other threads (a strict
        call could see another call's truncation), so the shared backends are never changed."""
        key = (pretokenized, limit)
        with self._lock:
            backend = self._truncating.get(key)
            if backend is None:
                source = self._words_backend if pretokenized else self._backend
                backend = self._configured(HFTokenizer.from_str(source.to_str()))
                backend.no_padding()
                backend.enable_truncation(limit, strategy="longest_first",
                                          direction=self.truncation_side)
                if len(self._truncating) >= TRUNCATING_COPIES:  # the oldest goes
                    self._truncating.pop(next(iter(self._truncating)))
                self._truncating[key] = backend
        return backend


TRUNCATION_SIDES = ("right", "left")  # HF's `truncation_side` values
TRUNCATING_COPIES = 8  # truncating backends kept (one per length and kind of input)

def _declares_pooling(path: Path) -> bool:
    """Whether `path` is a sentence-transformers folder samp-jax embeds with (a pooling it
    runs); one whose modules it cannot run is tokenized as the plain HF tokenizer does (the
    model, not the tokenizer, is refused when loaded as an embedder)."""
    try:
        return read_pooling(path) is not None
    except ConfigError:
        return False


def check_fits(tokenizer: "Tokenizer", config: EncoderConfig, where: str = "the model") -> None:
    """Refuses a tokenizer that can produce ids outside the model's vocabulary.

    Every id a tokenizer emits must index the model's word-embedding table (`vocab_size` rows);
    XLA's gather would clamp a larger id to the last row silently. A model table larger than
    the tokenizer's vocabulary is fine (many checkpoints pad it).

    Args:
      tokenizer: a `Tokenizer`.
      config: the model's `EncoderConfig`.
      where: names the model in the message, e.g. the folder it was loaded from.

    Raises:
      ValueError: the tokenizer's largest id (its pad id included) is `>= config.vocab_size`.
    """
    vocab = tokenizer._backend.get_vocab(with_added_tokens=True)
    largest = max([*vocab.values(), tokenizer.pad_id]) if vocab else tokenizer.pad_id
    if largest >= config.vocab_size:
        token = next((t for t, i in vocab.items() if i == largest), None)
        raise ValueError(
            f"tokenizer/model mismatch for {where}: the tokenizer has {len(vocab)} tokens with ids "
            f"up to {largest} ({token!r}), but the model's vocab_size is {config.vocab_size} "
            f"(ids [0, {config.vocab_size})); expected the tokenizer the model was trained with")
    added = _post_processor_ids(tokenizer)
    if added and max(added) >= config.vocab_size:
        raise ValueError(
            f"tokenizer/model mismatch for {where}: its tokenizer's post-processor (the special "
            f"tokens tokenizer.json puts around every text) adds id {max(added)}, but the "
            f"model's vocab_size is {config.vocab_size} (ids [0, {config.vocab_size}))")


def _post_processor_ids(tokenizer: "Tokenizer") -> list[int]:
    """The ids the post-processor adds to an empty text, and to an empty pair where it takes
    pairs: ids no vocabulary entry need name."""
    ids = []
    for texts in (("",), ("", "")):
        try:
            ids += tokenizer._backend.encode(*texts).ids
        except Exception:  # noqa: BLE001  no template for pairs: singles only
            continue
        except BaseException as e:
            if not is_panic(e):
                raise
            raise panic_error(e, tokenizer.source) from None
    return ids


def has_tokenizer(folder: str | os.PathLike) -> bool:
    """Whether `Tokenizer.from_pretrained` finds a tokenizer in `folder`: its `tokenizer.json`,
    or a slow tokenizer's vocabulary to build one from."""
    return any(check_regular(Path(folder) / name) for name in (TOKENIZER_FILE, *SLOW_VOCABULARY_FILES))


def _converted(files: dict[str, str], models: dict[str, bytes], path: Path,
               model_config: dict | None) -> dict[str, str]:
    """`files` with the `tokenizer.json` built from the slow tokenizer's files (and the
    SentencePiece `models`, by name; `model_config` for its model type), and the pad token
    stated in `tokenizer_config.json` when the class's default is not what `_pad_token` would
    read."""
    converted = convert_slow_tokenizer(files | models, where=path, model_config=model_config)
    files = dict(files) | {TOKENIZER_FILE: converted.tokenizer_json}
    config = _json_object(files, TOKENIZER_CONFIG_FILE, path)
    if _pad_token(config, _json_object(files, SPECIAL_TOKENS_FILE, path)) != converted.pad_token:
        files[TOKENIZER_CONFIG_FILE] = json.dumps(config | {"pad_token": converted.pad_token},
                                                  indent=2, ensure_ascii=False)
    return files


def _lowercasing(text: str, file: Path) -> str:
    """`tokenizer.json` text whose normalizer lowercases first (sentence-transformers'
    `do_lower_case`: a Lowercase normalizer in front, unless the tokenizer lowercases already)."""
    try:
        spec = strict_json.parse(text)
    except strict_json.BeyondReader as e:
        raise ValueError(f"{file}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{file} is not valid JSON ({e.msg}, line {e.lineno})") from None
    normalizer = spec.get("normalizer")
    is_sequence = isinstance(normalizer, dict) and normalizer.get("type") == "Sequence"
    steps = normalizer.get("normalizers", []) if is_sequence else [normalizer] if normalizer else []
    if any(step.get("type") == "Lowercase" or (step.get("type") == "BertNormalizer"
                                               and step.get("lowercase")) for step in steps):
        return text
    spec["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Lowercase"}, *steps]}
    return json.dumps(spec, ensure_ascii=False)


def _pools_prompts(path: Path) -> bool:
    """Whether the folder's Pooling pools a prompt's tokens with the text's (`include_prompt`;
    true for a folder that declares no pooling)."""
    declared = read_pooling(path)
    return declared is None or declared.include_prompt


def _model_config(path: Path) -> dict | None:
    """The folder's `config.json` as a dict, or None when it is absent or unreadable
    (load_pretrained reports a bad config; the tokenizer needs only its type and limit)."""
    try:
        config = read_json(path / "config.json")
    except (ConfigError, OSError):
        return None
    return config if isinstance(config, dict) else None


def _model_lengths(model_config: dict | None) -> tuple[int | None, int | None]:
    """`(limit, default)`: the longest input the model can take (`EncoderConfig.position_limit`:
    its position table's rows, of which RoBERTa-style models lose `padding_idx + 1`; None for a
    model without one), and the length it takes when its tokenizer states none
    (`max_sequence_length`); `(None, None)` when the config is absent or not one samp-jax
    reads."""
    if model_config is None:
        return None, None
    try:
        config = EncoderConfig.from_hf_config(model_config)
    except (ConfigError, OSError, ValueError):
        return None, None
    return config.position_limit, config.max_sequence_length


def _json_object(files: Mapping[str, str], name: str, where: Path) -> dict:
    """The JSON object in tokenizer file `name` ({} when absent)."""
    if name not in files:
        return {}
    try:
        value = strict_json.parse(files[name])
    except strict_json.BeyondReader as e:
        raise ValueError(f"{where / name}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where / name} is not valid JSON ({e.msg}, line {e.lineno}); "
                         "expected a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where / name} holds a JSON {type(value).__name__}; expected an object")
    return value


GENERIC_FAST_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
"""transformers' generic fast tokenizer classes: transformers 5's send no `token_type_ids`
(its `model_input_names` default to input ids and attention mask), transformers 4's did."""


def _sends_token_types(config: Mapping, where: Path) -> bool:
    """Whether the HF tokenizer of `tokenizer_config.json` sends `token_type_ids` (where it
    does not, HF's model defaults them to zeros): as its `model_input_names` say; without them,
    not for a generic fast class that transformers 5 wrote (`GENERIC_FAST_CLASSES`), as the
    version that wrote the folder (and trained the model) reads it; else yes."""
    names = config.get("model_input_names")
    if names is None:
        return not (written_by_transformers5(config)
                    and config.get("tokenizer_class") in GENERIC_FAST_CLASSES)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where / TOKENIZER_CONFIG_FILE} sets model_input_names to {names!r}; "
                         "expected a list of input names, e.g. [\"input_ids\", \"attention_mask\"]")
    return "token_type_ids" in names


def _pad_token(config: Mapping, special_tokens: Mapping) -> str:
    """The pad token the tokenizer config (or else the special-tokens map) names; [PAD]."""
    for stated in (config, special_tokens):
        token = stated.get("pad_token")
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str) and token:
            return token
    return "[PAD]"


def _with_trailing_marks(text: str, spans: list[tuple[int, int]],
                         normalized: Callable[[str], str]) -> list[tuple[int, int]]:
    """`spans` (sorted, disjoint) each stretched over the characters after it that are in no
    span, up to the next span, and that are no space, not even once `normalized`.

    A token's offsets cover the characters its normalized text came from, but a normalizer that
    composes (NFC, NFKC: a letter and a combining accent, conjoining Korean jamo, a half-width
    kana and its sound mark) or strips accents gives the merged or dropped characters to no
    offset: the span of `"Jose\u0301"` ends before the accent. Cut there, the word would be
    spelled without it and, encoded alone, give other ids than the text does (`Jose` for
    `José`). The stretched word holds what its tokens came from. A character the normalizer
    turns into a space (SentencePiece's for a zero-width space or U+FFFD) separates words, as
    a space does: a word stretched over it would gain a token."""
    stretched = []
    for index, (start, end) in enumerate(spans):
        limit = spans[index + 1][0] if index + 1 < len(spans) else len(text)
        while end < limit and not text[end].isspace()  and not normalized(text[end]).isspace():
            end += 1
        stretched.append((start, end))
    return stretched
