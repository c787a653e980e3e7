"""Head kinds as data: what a head returns (`HeadKind`), declared by each head class and read
by the serving engine, the tasks and the search, and how a head's logits are read (`Readout`).
Imports nothing from the project, so model families can name head kinds too.
"""

from __future__ import annotations

import dataclasses
import enum
import numbers

import numpy as np

LABEL_THRESHOLD = 0.5
"""A multi-label head predicts every label whose sigmoid probability is at least this, unless
a threshold is given (`Readout.predict`, `samp_jax.compile(label_threshold=...)`,
`samp-jax predict/eval/search --threshold`)."""


def check_label_threshold(threshold) -> float:
    """`threshold` as a float, when it is a decision threshold label sets can be read at: a
    finite number strictly between 0 and 1 (at 0 every label would be predicted, at 1 none).

    Raises:
      ValueError: naming the value and the range expected.
    """
    is_number = isinstance(threshold, numbers.Real) and not isinstance(threshold, (bool, np.bool_))
    if not is_number or not 0.0 < float(threshold) < 1.0:  # NaN fails the comparison too
        raise ValueError(f"label threshold {threshold!r} must be a number strictly between 0 and 1 "
                         "(a label is predicted when its sigmoid probability is at least it)")
    return float(threshold)


def check_relevant_class_id(relevant_class) -> int:
    """`relevant_class` as an int, when it names a class of a head of two classes: 0 or 1
    (a whole number, not a bool or a float).

    Raises:
      ValueError: naming the value and what is expected.
    """
    if isinstance(relevant_class, (bool, np.bool_)) or not isinstance(
            relevant_class, numbers.Integral) or int(relevant_class) not in (0, 1):
        raise ValueError(f"relevant class {relevant_class!r} is not the integer 0 or 1 (the "
                         "class of a two-class head a ranking reads as relevant)")
    return int(relevant_class)


class HeadOutput(enum.Enum):
    """What a head returns, which decides how it is served and compared with FP32."""

    LOGITS = "logits"  # class scores: argmax labels; the search's proxy is the KL
    EMBEDDING = "embedding"  # a vector per sequence: compared by cosine
    HIDDEN = "hidden"  # the encoder's last hidden state (no head)
    OTHER = "other"  # anything else a custom head returns


@dataclasses.dataclass(frozen=True)
class HeadKind:
    """A head kind's declaration: its output's shape and meaning, as data.

    Attributes:
      name: the registry key saved folders store (`head_spec`).
      per_token: the output follows the sequence axis (`[batch, seq, width]`); else one row
        per sequence (`[batch, width]`).
      output: what the output holds (`HeadOutput`).
    """

    name: str
    per_token: bool
    output: HeadOutput = HeadOutput.OTHER

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"head kind name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.per_token, bool):
            raise TypeError(f"{self.name}: per_token={self.per_token!r} must be True (the output "
                            "follows the sequence axis) or False (one row per sequence)")
        if not isinstance(self.output, HeadOutput):
            raise TypeError(f"{self.name}: output={self.output!r} is not a HeadOutput")

    @property
    def classifies(self) -> bool:
        """Whether the output is logits over classes."""
        return self.output is HeadOutput.LOGITS

    def output_shape(self, batch: int, seq: int, width: int) -> tuple[int, ...]:
        """`(batch, seq, width)` per token, else `(batch, width)`."""
        return (batch, seq, width) if self.per_token else (batch, width)

    def __str__(self) -> str:
        return self.name


NO_HEAD = HeadKind("none", per_token=True, output=HeadOutput.HIDDEN)
SEQUENCE_CLASSIFICATION = HeadKind("sequence_classification", per_token=False, output=HeadOutput.LOGITS)
TOKEN_CLASSIFICATION = HeadKind("token_classification", per_token=True, output=HeadOutput.LOGITS)
SENTENCE_EMBEDDING = HeadKind("sentence_embedding", per_token=False, output=HeadOutput.EMBEDDING)


class Readout(enum.Enum):
    """How the logits of a classification head are read: the one place that decides it for
    serving, evaluation, the search's proxy, `predict` and fine-tuning's loss.

    - `CLASSES`: a softmax over classes, one class per row (or token): the argmax
      (HF `problem_type` `single_label_classification`);
    - `LABELS`: a sigmoid per label, a set of labels per row: every label whose probability
      is at least a threshold, `LABEL_THRESHOLD` unless one is given
      (`multi_label_classification`);
    - `SCORE`: one output per row (num_labels=1: a reranker, a regression cross-encoder): the
      logit itself is the row's score.
    """

    CLASSES = "classes"
    LABELS = "labels"
    SCORE = "score"

    @property
    def described(self) -> str:
        """How the logits are read, in words, for messages (the one phrasing of each)."""
        return {"classes": "classes (a softmax, one class per row)",
                "labels": "labels (problem_type multi_label_classification: a sigmoid per label)",
                "score": "a score (one output, num_labels=1: a reranker)"}[self.value]

    def predict(self, logits: np.ndarray, threshold: float = LABEL_THRESHOLD) -> np.ndarray:
        """What the head predicts from `[..., C]` logits: class ids `[...]` (CLASSES), a
        multi-hot bool `[..., C]`, True where the sigmoid is at least `threshold` (LABELS), or
        scores `[...]` (SCORE).

        Raises:
          ValueError: `threshold` is not strictly between 0 and 1 (`check_label_threshold`;
            checked whatever the readout, though only LABELS reads it).
        """
        threshold = check_label_threshold(threshold)
        logits = np.asarray(logits)
        if self is Readout.CLASSES:
            return np.argmax(logits, axis=-1)
        if self is Readout.LABELS:
            return sigmoid(logits) >= threshold
        return logits[..., 0]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function, computed without overflow (float64)."""
    x = np.asarray(logits, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


PROBLEM_TYPES: dict[str, Readout] = {
    "single_label_classification": Readout.CLASSES,
    "multi_label_classification": Readout.LABELS,
    "regression": Readout.SCORE,
}
"""HF `config.json` `problem_type`s a sequence head is served for, and how each is read. A head
of one output is read as a score (its raw output) whatever its problem type, where HF's
text-classification pipeline applies a sigmoid unless the type is `regression`: the sigmoid is
monotone, so rankings and the scoring tasks' metrics agree, and a sentence-transformers
CrossEncoder folder that states its activation gets it (`samp_jax.models.cross_encoder`)."""


def unserved_problem_type(problem_type: str | None, num_labels: int) -> str | None:
    """Why a sequence head of `num_labels` outputs trained for `problem_type` cannot be served
    (an unknown type, or a regression of several outputs), or None when it can."""
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        return f"problem_type {problem_type!r} is not one of {sorted(PROBLEM_TYPES)}"
    if problem_type == "regression" and num_labels != 1:
        return (f"problem_type 'regression' with {num_labels} outputs: samp-jax serves a "
                "regression head of one output only")
    return None
