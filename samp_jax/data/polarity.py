"""Movie-review sentence polarity: loading and deterministic splits.

The data is the movie-review snippet ground truth of Hutto & Gilbert (ICWSM 2014), shipped
inside the `vader` asset (see `samp_jax.core.assets`) as `movieReviewSnippets_GroundTruth.txt` in
`hutto_ICWSM_2014.tar.gz`. It holds 10,605 sentence snippets from Pang & Lee's movie reviews,
each with the mean of about 20 human ratings on a -4 (most negative) to +4 (most positive)
scale. The member is read from the tarball in memory; nothing is written to the cache.

File format: one snippet per CRLF-terminated line, `id<TAB>mean score<TAB>text`, ids 1..10605
in order, UTF-8 (133 snippets contain non-ASCII characters, mostly curly quotes). Quotes in
the text are written as two apostrophes (`''Conan''`), as in the original corpus; they are
kept as they are.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import tarfile

from samp_jax.core.assets import fetch
from samp_jax.data.splits import TaskSplits, seeded_splits

POLARITY_LABELS = ("negative", "positive")
"""Label names; a `TextExample.label` is an index into this tuple."""

_ARCHIVE = "hutto_ICWSM_2014.tar.gz"
SNIPPET_COLLECTIONS = {
    "movie_reviews": "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
    "amazon_reviews": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
    "nyt_editorials": "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
    "tweets": "hutto_ICWSM_2014/tweets_GroundTruth.txt",
}
"""The four ground-truth files of the archive, by name; the polarity task uses movie reviews."""
_MEMBER = SNIPPET_COLLECTIONS["movie_reviews"]


@dataclasses.dataclass(frozen=True)
class TextExample:
    """One labelled text.

    Attributes:
      text: the snippet, surrounding whitespace stripped.
      label: index into `POLARITY_LABELS`: 1 positive (score > 0), 0 negative (score < 0).
      score: the mean human rating, from -4 to +4.
    """

    text: str
    label: int
    score: float


def load_polarity(*, min_abs_score: float = 0.0) -> list[TextExample]:
    """Reads the movie-review snippets, binarised by the sign of the mean score, in file order.

    Snippets with `|score| <= min_abs_score` are dropped; a score of exactly 0 has no sign and
    is always dropped. At the default (`min_abs_score=0.0`) only those 37 zero-score snippets
    are dropped, which leaves 10,568: 5,242 positive and 5,326 negative. Raising the threshold
    keeps only clearer cases (e.g. 10,043 snippets at 0.5 and 9,023 at 1.0).

    The file is parsed once per process; each call returns a fresh list. Exact duplicate
    texts are kept here (there are two pairs of them); `polarity_splits` removes them.

    Raises:
      ValueError: `min_abs_score` is negative or not finite.
    """
    min_abs_score = float(min_abs_score)
    if not (math.isfinite(min_abs_score) and min_abs_score >= 0):
        raise ValueError(f"{min_abs_score=} must be a finite number >= 0")
    return [ex for ex in _load() if abs(ex.score) > min_abs_score]


def load_snippets(collection: str) -> list[TextExample]:
    """Every snippet of one of the archive's `SNIPPET_COLLECTIONS` with a nonzero mean score,
    binarised by its sign, in file order (same format and rules as the movie reviews; the other
    collections are not part of the `polarity` task).

    Raises:
      ValueError: `collection` is not one of `SNIPPET_COLLECTIONS`.
    """
    if collection not in SNIPPET_COLLECTIONS:
        raise ValueError(f"{collection=} is not one of {sorted(SNIPPET_COLLECTIONS)}")
    return list(_load(SNIPPET_COLLECTIONS[collection]))


def polarity_splits(seed: int = 0, *, dev_size: int = 500, calibration_size: int = 512,
                    search_size: int = 1000, test_size: int = 2000) -> TaskSplits:
    """Splits `load_polarity()` deterministically into disjoint train/dev/calibration/search/test.

    Exact duplicate texts are dropped first (the first occurrence is kept), so the parts are
    disjoint by text; 10,566 snippets remain. They are shuffled with
    `np.random.default_rng(seed)`: the first `test_size` are `test`, then `search_size` are
    `search`, `calibration_size` are `calibration`, `dev_size` are `dev` and the rest
    (6,554 at the defaults) are `train`. Results are cached per arguments.

    Raises:
      ValueError: a size is not positive, or the sizes leave no snippets for `train`.
    """
    return _splits(operator.index(seed), operator.index(dev_size),
                   operator.index(calibration_size), operator.index(search_size),
                   operator.index(test_size))


@functools.lru_cache(maxsize=None)
def _load(name: str = _MEMBER) -> tuple[TextExample, ...]:
    """All snippets of archive member `name` with a nonzero score, in file order."""
    path = fetch("vader") / _ARCHIVE
    with tarfile.open(path, "r:gz") as tf:
        member = tf.extractfile(name)
        if member is None:
            raise ValueError(f"{name!r} in {path} is not a regular file")
        text = member.read().decode("utf-8")
    examples = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise ValueError(f"{name} line {number}: expected 'id<TAB>score<TAB>text', "
                             f"got {line[:80]!r}")
        score = float(fields[1])
        if not -4.0 <= score <= 4.0:
            raise ValueError(f"{name} line {number}: {score=} is outside [-4, 4]")
        if score == 0:
            continue
        examples.append(TextExample(text=fields[2].strip(), label=int(score > 0), score=score))
    return tuple(examples)


@functools.lru_cache(maxsize=None)
def _splits(seed: int, dev_size: int, calibration_size: int, search_size: int,
            test_size: int) -> TaskSplits:
    first_by_text: dict[str, TextExample] = {}
    for ex in _load():
        first_by_text.setdefault(ex.text, ex)
    return seeded_splits(tuple(first_by_text.values()), seed, dev_size=dev_size,
                         calibration_size=calibration_size, search_size=search_size,
                         test_size=test_size)
