"""A very long text cut at `max_length` is tokenized from its head (`samp_jax.models.long_texts`):
the same tokens as the whole text gives, on every family's tokenizer, and the whole text is
never handed to the tokenizers library."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samp_jax import Tokenizer
from samp_jax.models import long_texts, token_rows
from tests.helpers import GOLDEN

FAMILY_FOLDERS = sorted(p / "base" for p in (GOLDEN / "families").iterdir()
                        if (p / "base" / "tokenizer.json").is_file())
# spaces, runs of them, tabs, newlines, a no-break space and an ideographic one, punctuation
# against words, accents, CJK, emoji, digits
SEPARATORS = (" ", "  ", " \t ", "\n", " \n\n ", "\u00a0", "\u3000", ", ", "! ", "... ", " (", ") ")
EXTRA_WORDS = ("naïve", "Straße", "日本語の文", "🙂🙂", "12,345.6", "don't", "e-mail", "x" * 120)


def long_texts_from(words: list[str], seed: int, count: int = 6, chars: int = 20_000) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(count):
        parts, size = [], 0
        while size < chars:
            word = words[rng.integers(len(words))]
            parts += [word, SEPARATORS[rng.integers(len(SEPARATORS))]]
            size += len(word) + 2
        texts.append("".join(parts))
    return texts


@pytest.mark.parametrize("folder", FAMILY_FOLDERS + ["minilm"],
                         ids=lambda f: f if isinstance(f, str) else f.parent.name)
def test_a_long_texts_head_gives_the_tokens_of_the_whole_text(folder, minilm_dir, monkeypatch):
    folder = minilm_dir if folder == "minilm" else folder
    tokenizer = Tokenizer.from_pretrained(folder, sentence_transformers=False)
    texts_file = folder.parent / "texts.json"
    sample = json.loads(texts_file.read_text()) if texts_file.is_file() else ["a plain sentence"]
    words = [w for text in sample for w in str(text).split()] + list(EXTRA_WORDS)
    texts = long_texts_from(words, seed=len(str(folder))) + ["short one", "word " * 5000 + "end"]
    seen = []
    encode = token_rows.encode_batch

    def recording(backend, inputs, **kwargs):
        seen.extend(len(row) for row in inputs)
        return encode(backend, inputs, **kwargs)
    monkeypatch.setattr("samp_jax.models.tokenizer.encode_batch", recording)
    monkeypatch.setattr(token_rows, "encode_batch", recording)
    for limit in (8, 16, 40):
        seen.clear()
        heads = tokenizer(texts, truncation=True, max_length=limit, return_truncated=True)
        assert max(seen) < 20_000  # heads only, never a whole long text
        with monkeypatch.context() as whole:
            whole.setattr(long_texts, "HEAD_CHARS_PER_TOKEN", 10 ** 9)
            expected = tokenizer(texts, truncation=True, max_length=limit, return_truncated=True)
        assert heads.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(heads[key], expected[key], err_msg=f"{key} at {limit}")
        assert expected["truncated"][:6].all() and expected["truncated"][-1]  # the long ones cut


def test_a_head_grows_until_it_overflows_and_a_text_without_spaces_stays_whole(minilm_dir):
    tokenizer = Tokenizer.from_pretrained(minilm_dir, sentence_transformers=False)
    limit = 8
    chars = limit * long_texts.HEAD_CHARS_PER_TOKEN
    # the first heads hold a few long words only ([UNK] each past 100 characters): one token
    # per word, not enough to overflow; a head GROWTH times longer does
    sparse = " ".join(["y" * 150] * 40)
    dense = "no spaces at all".replace(" ", "_") * 500
    heads = long_texts.heads_to_tokenize(
        [sparse, dense, "short"], limit,
        lambda head: tokenizer.lengths([head])[0] > limit)
    assert chars < len(heads[0]) <= chars * long_texts.GROWTH and sparse.startswith(heads[0])
    assert heads[0].endswith("y") and sparse[len(heads[0])] == " "
    assert heads[1] is dense and heads[2] == "short"
    assert long_texts.head_at_word_end("ab cd ef", 6) == "ab cd"
    assert long_texts.head_at_word_end("abcdef gh", 4) is None  # no word end in [2, 4)


def test_pairs_tokenize_whole_texts(minilm_dir, monkeypatch):
    """The head rule is for one text cut on the right: a pair, cut longest first (which depends
    on both segments' whole lengths), is tokenized whole."""
    tokenizer = Tokenizer.from_pretrained(minilm_dir, sentence_transformers=False)
    long = "word " * 2000
    called = []
    monkeypatch.setattr("samp_jax.models.tokenizer.heads_to_tokenize",
                        lambda texts, *a: called.append(texts) or list(texts))
    tokenizer([long], [long], truncation=True, max_length=16)
    assert called == []
    tokenizer([long], truncation=True, max_length=16)
    assert called == [[long]]


def test_a_head_never_ends_inside_a_word(minilm_dir):
    """Where the head holds barely more than `max_length` tokens, a word cut short would give
    other tokens than the whole word: a 200-character word is one [UNK] whole, but its first
    characters are word pieces."""
    tokenizer = Tokenizer.from_pretrained(minilm_dir, sentence_transformers=False)
    text = "y" * 110 + " " + "z" * 200 + " tail"
    assert len(text) > 4 * long_texts.HEAD_CHARS_PER_TOKEN
    got = tokenizer([text], truncation=True, max_length=4)["input_ids"][0]
    unk = 100  # [UNK] in MiniLM's vocab.txt (its 101st line)
    assert list(got[1:3]) == [unk, unk], got
