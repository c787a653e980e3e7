"""Names from the file system as text samp-jax writes (JSON, reports, plot titles, messages).

Python decodes a file name, and a command-line argument, with the file-system encoding and
`surrogateescape`: under an ASCII locale with UTF-8 mode off (`LC_ALL=C PYTHONUTF8=0`), the
name `évals.csv` arrives as `'\\udcc3\\udca9vals.csv'`, lone surrogates that open the file but
that JSON writes as escapes no reader maps back, and that Matplotlib refuses to draw.
`readable` gives the name back as Unicode text. The path itself is kept for opening the file.
`command_line` records a command as a shell reads it back.
"""

from __future__ import annotations

import shlex
from typing import Iterable


def readable(name: str) -> str:
    """`name` with the bytes that `surrogateescape` carries (lone surrogates U+DC80-U+DCFF)
    decoded as UTF-8, as the name's bytes are on the file systems of today; bytes that are not
    UTF-8, and any other lone surrogate, become U+FFFD. Text without surrogates comes back as it
    is."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that no byte escaped ('\ud800')
        return name.encode("utf-8", "replace").decode("utf-8")


def command_line(words: Iterable[str]) -> str:
    """The command of `words` (`["samp-jax", *sys.argv[1:]]`) as one line a POSIX shell runs
    again: each word `readable`, quoted where the shell would split or expand it
    (`shlex.join`: `--out '/tmp/a search é'`)."""
    return shlex.join(readable(word) for word in words)
