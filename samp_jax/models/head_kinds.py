"""Head kinds as data: what a head returns (`HeadKind`), declared by each head class and read
by the serving engine, the tasks and the search. Imports nothing from the project, so model
families can name head kinds too.
"""

from __future__ import annotations

import dataclasses
import enum


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
