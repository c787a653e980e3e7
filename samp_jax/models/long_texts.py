"""A very long text that is cut at `limit` tokens is tokenized from its head, not whole.

The tokenizers library tokenizes a whole text before truncating it (and keeps the rest as
overflowing windows): one 10-million-character cell took tens of seconds and over 1.5 GB of
memory on a 2-core CPU to give its first 128 tokens; a cell of the 256 MB a CSV field may
hold would exhaust the memory of most machines. Where the first tokens are kept (truncation on the
right), a text longer than `limit * HEAD_CHARS_PER_TOKEN` characters is tokenized from its
head: its characters up to the end of a word that a space follows, near that many characters.
Every pre-tokenizer of the supported families (BERT's, byte-level BPE's, SentencePiece's
Metaspace) splits words at a space, and their normalizers work character by character, so the
head's tokens are the whole text's first tokens (tests/samp_jax/models/test_long_texts.py
compares both on every family's tokenizer). The head is used only when it still overflows
`limit` (the row is cut either way, as the whole text would be); otherwise a head `GROWTH`
times longer is tried, up to the whole text (a text without spaces, say).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

HEAD_CHARS_PER_TOKEN = 32  # characters of head per token of the limit, at first
GROWTH = 8  # how much longer each next try is
# a word's last character, a space after it: the plain space, which every pre-tokenizer splits
# at (whether it does at other whitespace, a no-break space say, varies)
_WORD_END = re.compile(r"\S(?= )")


def head_at_word_end(text: str, chars: int) -> str | None:
    """`text` up to the last word end in its characters `[chars // 2, chars)` (a character
    that is not whitespace followed by a space); None where there is none."""
    last = None
    for last in _WORD_END.finditer(text, chars // 2, chars):
        pass
    return None if last is None else text[:last.end()]


def heads_to_tokenize(texts: Sequence[str], limit: int, overflows: Callable[[str], bool]) -> list[str]:
    """`texts`, each one longer than `limit * HEAD_CHARS_PER_TOKEN` characters replaced by the
    shortest head (`head_at_word_end`, at that many characters and then `GROWTH` times more
    each try) for which `overflows(head)` (its tokens run past `limit`); a text no head of
    which overflows stays whole."""
    out = []
    for text in texts:
        chars = limit * HEAD_CHARS_PER_TOKEN
        while len(text) > chars:
            head = head_at_word_end(text, chars)
            if head is not None and overflows(head):
                text = head
                break
            chars *= GROWTH
        out.append(text)
    return out
