"""The search's proxies as data: smooth divergences of a candidate's outputs from the FP32
model's (lower is better), one per way a head's outputs are read.

A `Proxy` holds its divergence per row (or per token) and, where the mean of those is not free
of the outputs' scale, a scale of the reference that divides it:
- `KL`: KL(FP32 || candidate) of the softmax over classes (`Readout.CLASSES`);
- `LABEL_KL`: the mean over labels of the binary KL of each label's sigmoid
  (`Readout.LABELS`: a multi-label head);
- `SCORE`: the squared change of one score per row, over the variance of the FP32 scores
  (`Readout.SCORE`: a reranker or a regression; a ranking task's two-class head: its
  `row_scores`);
- `COSINE`: `1 - cosine` to the FP32 embedding (an embedder compared by cosine, and anything
  else);
- `EMBEDDING_CHANGE`: `||out - FP32||^2 / ||FP32||^2` of each embedding, its length included: an
  embedder compared by a dot product or a distance (sentence-transformers' `similarity_fn_name`
  `dot`, `euclidean` or `manhattan`), whose scores move with the length that `1 - cosine`
  ignores.
Each is exactly 0 on the reference itself. The evaluations (`samp_jax.tasks.evaluation`) and the
unlabelled search (`calibrate.search.objectives.UnlabelledObjective`) read them from here.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from samp_jax.models.head_kinds import Readout
from samp_jax.models.similarity import DEFAULT_SIMILARITY, NORM_FLOOR, cosine


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis (float64)."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_sigmoid(logits: np.ndarray) -> np.ndarray:
    """`log(sigmoid(x))` without overflow (float64)."""
    return -np.logaddexp(0.0, -np.asarray(logits, np.float64))


def one_minus_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`1 - cos(a, b)` per row of the last axis."""
    return 1.0 - cosine(a, b)


def softmax_kl(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """KL(softmax(reference) || softmax(outputs)) over the last axis: `[...]`."""
    ref_logp, logp = log_softmax(reference), log_softmax(outputs)
    return np.sum(np.exp(ref_logp) * (ref_logp - logp), axis=-1)


def label_kl(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The mean over the last (label) axis of KL(Bernoulli(sigmoid(reference)) ||
    Bernoulli(sigmoid(outputs))), one value per row: `[...]`."""
    log_p, log_not_p = log_sigmoid(reference), log_sigmoid(-np.asarray(reference, np.float64))
    log_q, log_not_q = log_sigmoid(outputs), log_sigmoid(-np.asarray(outputs, np.float64))
    p = np.exp(log_p)
    return np.mean(p * (log_p - log_q) + (1.0 - p) * (log_not_p - log_not_q), axis=-1)


def row_scores(logits: np.ndarray, relevant_class: int = 1) -> np.ndarray:
    """`[...]`: the score a reranker's head gives each row: its one output, or, for a head of
    two classes, the log-odds of `relevant_class` (class 1 unless told: sentence-transformers'
    CrossEncoder reads P(class 1)), `logit_1 - logit_0` (float64). That orders rows as
    P(class 1) = softmax(logits)[1] does, and does not round to a tie where the probability
    rounds to 1. A head whose class 0 is the relevant one (glue/qnli's `entailment`,
    `not_entailment`) is read with `relevant_class=0`: the negated log-odds.

    Raises:
      ValueError: a head of another width, or a `relevant_class` other than 0 or 1.
    """
    logits = np.asarray(logits, np.float64)
    if logits.shape[-1] == 1:
        return logits[..., 0]
    if relevant_class not in (0, 1):
        raise ValueError(f"{relevant_class=} is not a class of a head of two classes (0 or 1)")
    if logits.shape[-1] == 2:
        return logits[..., relevant_class] - logits[..., 1 - relevant_class]
    raise ValueError(f"a row's score is read from a head of one output, or of two classes "
                     f"(P(class 1)); this head has {logits.shape[-1]} outputs")


def _squared_score_change(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (row_scores(outputs) - row_scores(reference)) ** 2


def _score_variance(reference: np.ndarray) -> float:
    return max(float(np.var(row_scores(reference))), NORM_FLOOR)


@dataclasses.dataclass(frozen=True)
class Proxy:
    """A smooth divergence of a candidate's outputs from the FP32 model's (lower is better).

    Attributes:
      name: registry key ('kl', 'label_kl', 'score', 'cosine').
      display_name: how reports name it.
      divergence: `(outputs [..., C], reference [..., C]) -> [...]`: one value per row (or
        per token), 0 where the two are equal.
      scale: `reference rows [n, C] -> float` that the mean divergence is divided by, or None.
    """

    name: str
    display_name: str
    divergence: Callable[[np.ndarray, np.ndarray], np.ndarray]
    scale: Callable[[np.ndarray], float] | None = None

    def rows(self, outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """`divergence` per row (or token), +inf where `outputs` hold NaN or Inf: as far from
        the reference as can be."""
        with np.errstate(invalid="ignore", over="ignore"):
            values = self.divergence(outputs, reference)
        return np.where(np.isfinite(values), values, np.inf)

    def pooled(self, values: np.ndarray, reference: Sequence[np.ndarray]) -> float:
        """The proxy of per-row `values` (`divergence`'s) whose reference rows are the
        batches `reference` (read only by a `scale`)."""
        mean = float(np.mean(values))
        return mean if self.scale is None else mean / self.scale(np.concatenate(reference))


KL = Proxy("kl", "KL to FP32", softmax_kl)  # one class per row: a softmax
LABEL_KL = Proxy("label_kl", "per-label binary KL to FP32", label_kl)  # a sigmoid per label
# one score per row: the mean squared change over the FP32 scores' variance
SCORE = Proxy("score", "score change² / FP32 variance", _squared_score_change, _score_variance)
def _cosine_divergence(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`1 - cos`, at least 0: equal embeddings round to a cosine a hair above 1."""
    return np.maximum(one_minus_cosine(outputs, reference), 0.0)


def _relative_squared_change(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`||out - ref||^2 / ||ref||^2` of each row (float64): 0 where equal, and a change of length
    counts as much as one of direction."""
    reference = np.asarray(reference, np.float64)
    change = np.asarray(outputs, np.float64) - reference
    return np.sum(change * change, -1) / np.maximum(np.sum(reference * reference, -1), NORM_FLOOR)


COSINE = Proxy("cosine", "1 − cosine to FP32", _cosine_divergence)  # outputs are embeddings
EMBEDDING_CHANGE = Proxy("embedding_change", "‖change‖² / ‖FP32‖²", _relative_squared_change)
PROXIES: dict[str, Proxy] = {p.name: p for p in (KL, LABEL_KL, SCORE, COSINE, EMBEDDING_CHANGE)}
READOUT_PROXIES: dict[Readout, Proxy] = {Readout.CLASSES: KL, Readout.LABELS: LABEL_KL,
                                         Readout.SCORE: SCORE}
"""The proxy of each way logits are read; any other output (embeddings) is compared by
`embedding_proxy` of the model's similarity."""
SIMILARITY_PROXIES: dict[str, Proxy] = {DEFAULT_SIMILARITY: COSINE}
"""The proxy of embeddings compared by each similarity; any other (dot, euclidean, manhattan)
is EMBEDDING_CHANGE."""


def embedding_proxy(similarity: str = DEFAULT_SIMILARITY) -> Proxy:
    """The proxy of embeddings compared by `similarity` (`samp_jax.models.similarity`): COSINE
    for cosine, which reads directions only; EMBEDDING_CHANGE for the others, which read lengths
    too."""
    return SIMILARITY_PROXIES.get(similarity, EMBEDDING_CHANGE)


def proxy_for(readout: Readout | None, similarity: str = DEFAULT_SIMILARITY) -> Proxy:
    """The proxy of outputs read as `readout` (`EncoderModel.readout`); for None (embeddings,
    a custom head's outputs) `embedding_proxy(similarity)`."""
    return READOUT_PROXIES.get(readout) or embedding_proxy(similarity)
