"""One cell of your data as a canonical value (`samp_jax.tasks.files` reads the rows):
a text, a word list, a raw label (an id, a name, or a fractional number for the caller to
refuse), a label set (multi-label), a similarity score, a 0/1 pair label, a ranking row's
relevance and query id, or a value copied through as JSON. Each error names where the cell is (`at`: file, row, column) and what was
expected."""

from __future__ import annotations

import datetime
import decimal
import math
import re

import numpy as np

MISSING_LABELS = frozenset({"nan", "-nan", "+nan", "na", "n/a", "#n/a", "<na>", "null"})
"""Label strings that spell a missing value (compared lower-cased and stripped): what pandas,
R, spreadsheets and JSON write for an empty cell. Such a label is refused, never made a class.
`none` is not among them: it is a real class in many sets ("no emotion", "no intent")."""
WHOLE_NUMBER = re.compile(r"[+-]?\d+(?:\.0*)?")  # "1", "-2", "1.0": an id
LABEL_SEPARATOR = "|"
"""Separates the labels of one row in a text cell (CSV/TSV): `toxic|insult`; an empty cell is a
row with no label."""


def text(value, at: str) -> str:
    """`value` if it is a string (blank ones too) of Unicode text: a lone surrogate (JSON's
    "\\ud800" escape) is not, and no tokenizer takes it."""
    if not isinstance(value, str):
        raise ValueError(f"{at} holds {shown(value)} ({kind_of(value)}); expected a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{at} has a lone surrogate {value[e.start]!r} at character {e.start}, "
                         "which is not Unicode text; expected text UTF-8 can encode") from None
    return str(value)


def shown(value, width: int = 80) -> str:
    """`repr(value)`, cut to about `width` characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= width else text[:width] + f"... ({len(text)} characters)"


def kind_of(value) -> str:
    """The JSON-ish kind of a value for messages: 'dict' for any mapping, else its type."""
    return "dict" if isinstance(value, dict) else type(value).__name__


def filled_text(value, at: str) -> str:
    """`value` if it is a string that is not empty or only spaces (a missing value)."""
    value = text(value, at)
    if not value.strip():
        what = ("a word (a blank word has no token to carry its tag)" if " item " in at
                else "a text in every row (an empty cell is a missing value)")
        raise ValueError(f"{at} is blank ({value!r}); expected {what}: fill it or drop the row")
    return value


def sequence(value, at: str, what: str) -> list:
    """`value` as a list, if it is a list, tuple or array (never a string)."""
    if isinstance(value, str):
        raise ValueError(f"{at} holds a string ({value[:40]!r}); expected a list of {what} "
                         "(CSV and TSV cannot hold lists: use JSON Lines, Parquet or a datasets "
                         "folder)")
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise ValueError(f"{at} holds {value!r} ({type(value).__name__}); expected a list of "
                         f"{what}")
    return list(value)


def raw_label(value, at: str) -> int | float | str:
    """An id (int), a name (str) or, for the caller to refuse, a fractional float. A boolean
    (JSON's `true`, a Parquet bool) is the name a CSV spells it with, "True" or "False", not an
    id: the same column means the same classes in every format."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)) or (
            isinstance(value, str) and not value.strip()):
        raise ValueError(f"{at} has no label ({value!r}); expected a class name or id in every row")
    if isinstance(value, str) and value.strip().lower() in MISSING_LABELS:
        raise ValueError(f"{at} has label {value!r}, a spelling of a missing value (one of "
                         f"{sorted(MISSING_LABELS)}, any case); expected a class name or id in "
                         "every row (fill the row, drop it, or rename the class)")
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, str):
        return value.strip()
    several = (" (a list of labels per row is multi-label data: task type text_multi_label, "
               "for a head trained with problem_type multi_label_classification)"
               if isinstance(value, (list, tuple, np.ndarray)) else "")
    raise ValueError(f"{at} holds {value!r:.80} ({type(value).__name__}); expected a class name or "
                     f"an integer id{several}")


def label_set(value, at: str) -> list[int | float | str]:
    """A row's labels (multi-label): a list of names or ids (`[]`: none), or a text of them
    separated by `LABEL_SEPARATOR` (an empty or blank text: none), or one id. Each label is
    read as `raw_label` reads one; a label named twice is refused."""
    if isinstance(value, str):
        pieces = value.split(LABEL_SEPARATOR) if value.strip() else []
        if any(not piece.strip() for piece in pieces):
            raise ValueError(f"{at} holds {value!r}, with an empty label between separators; "
                             f"expected label names or ids separated by {LABEL_SEPARATOR!r} "
                             "(an empty cell for a row with no label)")
    elif isinstance(value, (list, tuple, np.ndarray)):
        pieces = list(value)
    elif isinstance(value, (bool, np.bool_, int, np.integer)):
        pieces = [value]
    else:
        raise ValueError(f"{at} holds {value!r} ({type(value).__name__}); expected a list of label "
                         f"names or ids ([] for a row with no label), or a text of them separated "
                         f"by {LABEL_SEPARATOR!r}")
    found = [raw_label(piece, f"{at} item {i}") for i, piece in enumerate(pieces)]
    repeated = next((v for i, v in enumerate(found) if v in found[:i]), None)
    if repeated is not None:
        hot = (" (a 0/1 vector of one entry per label, multi-hot, is read as such only when "
               "every row has one, of the model's width)" if is_multi_hot(value) else "")
        raise ValueError(f"{at} names label {repeated!r} twice ({value!r:.80}); expected each "
                         f"label at most once per row{hot}")
    return found


def is_multi_hot(value) -> bool:
    """Whether `value` is a 0/1 vector of two or more entries (`[0, 1, 1]`, `[0.0, 1.0]`,
    booleans): HF's multi-hot encoding of a row's label set, one entry per label."""
    return (isinstance(value, (list, tuple, np.ndarray)) and len(value) >= 2 and all(
        isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)) and v in (0, 1)
        for v in value))


def multi_hot_ids(value) -> list[int]:
    """The label ids of a multi-hot vector (`is_multi_hot`): where it holds 1."""
    return [i for i, v in enumerate(value) if v == 1]


def score(value, at: str) -> float:
    """`value` as a finite float similarity score (a number or a string that spells one)."""
    try:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, int, float,
                                                                        np.number)):
            raise ValueError
        number = float(value)
    except ValueError:
        raise ValueError(f"{at} holds {value!r}; expected a number (a similarity score)") from None
    if math.isnan(number):
        raise ValueError(f"{at} has no score ({value!r}); expected a number in every row")
    if math.isinf(number):
        raise ValueError(f"{at} holds {value!r}; expected a finite number (a similarity score)")
    return number


def binary(value, at: str, task_type: str = "embedding_pairs") -> int:
    """A 0/1 gold label (of embedding pairs, or of a one-output head's scores): 0 or 1, a
    string that spells one, or "True"/"False" (any case; `raw_label` reads a boolean so)."""
    if isinstance(value, str) and WHOLE_NUMBER.fullmatch(value):
        value = whole_number(value)
    elif isinstance(value, str) and value.lower() in ("true", "false"):
        value = int(value.lower() == "true")
    if value not in (0, 1):
        raise ValueError(f"{at} has label {value!r}; task type {task_type} reads a label "
                         "column as 0/1 gold (true or false); a column of scores to rank "
                         "against (1-5 ratings, similarities) goes to the score field: name it "
                         "with --score-column (Columns(score=...))")
    return value


def relevance(value, at: str) -> int:
    """A ranking row's relevance: a whole number of 0 or more (0 is not relevant; 0/1, or graded
    0, 1, 2, ...), given as an int, a whole float (JSON's 1.0), a string that spells one, or a
    boolean (true is 1)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    number = None
    if isinstance(value, str) and WHOLE_NUMBER.fullmatch(value.strip()):
        number = whole_number(value.strip())
    elif isinstance(value, str) and value.strip().lower() in ("true", "false"):
        number = int(value.strip().lower() == "true")
    elif isinstance(value, (int, np.integer)):
        number = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        number = int(value)
    if number is None or number < 0:
        raise ValueError(f"{at} holds {shown(value)}; expected a relevance: a whole number of 0 "
                         "or more (0 for not relevant; 0/1, or graded 0, 1, 2, ...)")
    return number


def query_id(value, at: str) -> str:
    """A ranking row's query id, as text: a string (stripped) or a whole number (7 and "7" and
    7.0 name one query)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError(f"{at} holds {shown(value)}; expected a query id (a text or a whole number) "
                     "in every row")


def whole_number(spelled: str) -> int:
    """The id a label string spells: "1" and "1.0" are both 1 (as JSON's 1 and 1.0 are)."""
    return int(spelled.partition(".")[0])


def as_id(value: int | str) -> int:
    """An id given as an int or as a string that spells a whole number."""
    return whole_number(value) if isinstance(value, str) else int(value)


def passthrough(value, at: str):
    """`value` as JSON, unchanged in meaning: a column `predict` copies from its input row to
    the row's record (`--keep-columns`, an id). Numbers, strings, booleans and nulls stay as
    they are (a NaN becomes null, as in every JSON samp-jax writes), NumPy values become
    Python ones, lists and mappings are converted item by item, dates and times are written in
    ISO 8601, and a decimal as its exact digits (a string).

    Raises:
      ValueError: a value JSON cannot hold (bytes, a mapping with keys that are not strings,
        other objects), naming where it is.
    """
    if isinstance(value, np.datetime64):  # .item() of a nanosecond time is an int
        return None if np.isnat(value) else str(np.datetime_as_string(value))
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:  # its own shortest digits,
        return float(str(value))  # 0.1 in float32 is not float64's 0.10000000149011612
    if isinstance(value, np.generic):  # before Python's types: np.float64 is a float
        return passthrough(value.item(), at)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [passthrough(item, f"{at} item {i}") for i, item in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: passthrough(item, f"{at} key {key!r}") for key, item in value.items()}
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise ValueError(f"{at} holds {shown(value)} ({kind_of(value)}); a kept column is copied "
                     "into JSON, which cannot hold it: expected a number, string, boolean, null, "
                     "date, or a list or mapping of them")
