"""A thin wrapper over the HF fast tokenizer (`tokenizer.json`) in a checkpoint folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer as HFTokenizer


class Tokenizer:
    """Turns texts or text pairs into right-padded `int32` arrays for `EncoderModel`.

    Returns a dict with `input_ids`, `attention_mask` and `token_type_ids`, each
    `[batch, seq]`. Pairs get `[CLS] a [SEP] b [SEP]` with token type 1 on the second segment,
    exactly as the HF tokenizer's post-processor defines.
    """

    def __init__(self, backend, *, max_length: int, pad_id: int):
        self._backend = backend
        self._backend.no_padding()
        self._backend.no_truncation()
        self.max_length = max_length
        self.pad_id = pad_id

    @classmethod
    def from_pretrained(cls, path: str | Path, *, max_length: int | None = None) -> "Tokenizer":
        """Loads `tokenizer.json` from a checkpoint folder.

        `max_length` defaults to the smallest of the model's `max_position_embeddings` and the
        tokenizer's `model_max_length`.
        """

        path = Path(path)
        file = path / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(f"no fast tokenizer at {file}")
        backend = HFTokenizer.from_file(str(file))
        limits = []
        if (path / "config.json").is_file():
            limits.append(json.loads((path / "config.json").read_text()).get("max_position_embeddings"))
        if (path / "tokenizer_config.json").is_file():
            limits.append(json.loads((path / "tokenizer_config.json").read_text()).get("model_max_length"))
        limits = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
        if max_length is None:
            if not limits:
                raise ValueError(f"{path} states no maximum length; pass max_length")
            max_length = min(limits)
        pad_token = _pad_token(path)
        pad_id = backend.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"pad token {pad_token!r} is not in the vocabulary of {file}")
        return cls(backend, max_length=max_length, pad_id=pad_id)

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size()

    def __call__(self, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
                 padding: str | int = "longest", truncation: bool = False) -> dict[str, np.ndarray]:
        """Tokenizes a batch.

        Args:
          texts: the first segments.
          pairs: optional second segments, one per text (for cross-encoders).
          padding: 'longest' pads to the longest row; an int pads every row to that length.
          truncation: cut rows longer than the target length instead of raising.

        Raises:
          ValueError: empty batch, mismatched pair count, or a row longer than the limit
            without `truncation`.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        inputs = list(texts) if pairs is None else list(zip(texts, pairs))
        batch, _ = self._encode(inputs, padding, truncation, pretokenized=False)
        return batch

    def encode_words(self, words: Sequence[Sequence[str]], *, padding: str | int = "longest",
                     truncation: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Tokenizes pre-split words (for token classification).

        Returns the batch and `word_ids [batch, seq]`: for each position, the index of the word
        it came from, or -1 for special tokens and padding.
        """
        if len(words) and isinstance(words[0], str):
            raise TypeError("words must be a batch of word lists, e.g. [['Hello', 'world']]")
        return self._encode([list(w) for w in words], padding, truncation, pretokenized=True)

    def _encode(self, inputs, padding, truncation, *, pretokenized):
        if len(inputs) == 0:
            raise ValueError("empty batch: no texts to tokenize")
        limit = self.max_length if padding == "longest" else int(padding)
        if limit > self.max_length:
            raise ValueError(f"padding={limit} exceeds max_length={self.max_length}")
        if truncation:
            self._backend.enable_truncation(limit, strategy="longest_first")
        try:
            encodings = self._backend.encode_batch(inputs, is_pretokenized=pretokenized)
        finally:
            self._backend.no_truncation()
        lengths = [len(e.ids) for e in encodings]
        too_long = [(i, n) for i, n in enumerate(lengths) if n > limit]
        if too_long:
            i, n = too_long[0]
            raise ValueError(
                f"{len(too_long)} row(s) exceed {limit} tokens (first: row {i} with {n}); "
                "pass truncation=True or use a larger length")
        width = max(lengths) if padding == "longest" else limit
        batch = len(encodings)
        input_ids = np.full((batch, width), self.pad_id, np.int32)
        attention_mask = np.zeros((batch, width), np.int32)
        token_type_ids = np.zeros((batch, width), np.int32)
        word_ids = np.full((batch, width), -1, np.int32)
        for row, (enc, n) in enumerate(zip(encodings, lengths)):
            input_ids[row, :n] = enc.ids
            attention_mask[row, :n] = 1
            token_type_ids[row, :n] = enc.type_ids
            word_ids[row, :n] = [-1 if w is None else w for w in enc.word_ids]
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "token_type_ids": token_type_ids}, word_ids


def _pad_token(path: Path) -> str:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        file = path / name
        if file.is_file():
            token = json.loads(file.read_text()).get("pad_token")
            if isinstance(token, dict):
                token = token.get("content")
            if token:
                return token
    return "[PAD]"
