"""Carving examples into splits: seeded, stratified shuffles, default split sizes, and the rows
that repeat a test input (dropped from the other splits). Ranking rows are carved a query at a
time (their `group`): the sizes count queries, and a query whose text is a test query's leaves
the other splits whole. See `samp_jax.tasks.files` for the rules.

Stratified. Rows with one gold value each (a class, a 0/1 label, a score) are carved so that
every split holds each stratum (`gold_strata`: a class, else a tenth of the scores by rank)
in the pool's proportion, to within a row for two strata (within a few for ten): a test
split of 40 rows from 200 with 10 positives gets 1 to 3 of them, where a plain shuffle gives
none one time in ten. The rows are shuffled within each
stratum and then interleaved (`stratified_order`), so every run of the order is stratified
and the test split, cut first, still depends only on the data, the seed and its own size.
Label sets, tags and rankings are shuffled plainly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_FRACTIONS = {"test": 0.2, "search": 0.2, "calibration": 0.1, "dev": 0.1}
# Test is cut first, so that it depends only on the seed and its own size.
CARVE_ORDER = ("test", "search", "calibration", "dev", "train")
MAX_CALIBRATION = 512
MIN_ROWS = 10
SCORE_STRATA = 10  # a score of more distinct values is stratified by its tenths, by rank


def split_sizes(n: int, requested: Mapping[str, int | float], carve: Sequence[str],
           where: str, units: str = "rows") -> dict[str, int]:
    """Rows (or queries: `units`) for each split in `carve`: `requested`, else the defaults
    (module docstring)."""
    if any(s not in requested for s in carve) and n < MIN_ROWS:
        raise ValueError(f"{where} has {n} {units}; splitting it into {', '.join(carve)} needs at "
                         f"least {MIN_ROWS} (or give each split its own rows: a file per split, "
                         "--split-file, or every split's size, sizes= in Python)")
    counts = {}
    for split in carve:
        if split in requested:
            counts[split] = _count(requested[split], n, split)
        elif split == "dev":
            counts[split] = round(DEFAULT_FRACTIONS["dev"] * n)
        else:
            counts[split] = max(1, round(DEFAULT_FRACTIONS[split] * n))
    if "calibration" in counts and "calibration" not in requested:
        counts["calibration"] = min(counts["calibration"], MAX_CALIBRATION)
    if sum(counts.values()) > n:
        raise ValueError(f"{where} has {n} {units}, but the splits need {sum(counts.values())} "
                         f"({counts})")
    return counts


def _count(value, n: int, split: str) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        if value < 0:
            raise ValueError(f"sizes[{split!r}]={value}; expected a count of 0 or more")
        return int(value)
    if isinstance(value, (float, np.floating)) and 0 < value < 1:
        return max(1, round(float(value) * n))
    raise ValueError(f"sizes[{split!r}]={value!r}; expected an int (a count) or a float in "
                     "(0, 1) (a fraction)")


def query_rows(examples: Sequence[dict]) -> list[list[int]]:
    """The row indices of each query (`group`, else its text), queries by first appearance."""
    rows: dict = {}
    for i, e in enumerate(examples):
        rows.setdefault(e.get("group", e["text"]), []).append(i)
    return list(rows.values())


def gold_strata(examples: Sequence[dict], field: str | None) -> list | None:
    """Each row's stratum for a stratified carve, or None (a plain shuffle).

    A `label` is its own stratum (a class, or an embedding pair's 0/1), and so is a `score`
    of at most `SCORE_STRATA` distinct values; other scores are strata by tenths of their
    rank (equal scores by their mean rank, so they share a stratum). None where rows hold no single gold value: no gold `field`, label sets or tags (a
    list per row), or a row without it.
    """
    if field is None:
        return None
    values = [e.get(field) for e in examples]
    if set(map(type, values)) & {type(None), list, tuple, np.ndarray}:  # one pass, at C speed
        return None
    if field != "score":
        return values
    scores = np.asarray(values, dtype=np.float64)
    distinct, which, counts = np.unique(scores, return_inverse=True, return_counts=True)
    if distinct.size <= SCORE_STRATA:
        return values
    ends = np.cumsum(counts)
    rank = (ends - counts + ends - 1) / 2  # each value's mean rank: equal scores stay together
    return np.floor(rank[which] * SCORE_STRATA / len(values)).astype(np.int64).tolist()


def stratified_order(strata: Sequence, rng: np.random.Generator) -> np.ndarray:
    """A shuffle of the rows in which every run holds each stratum in proportion.

    Each stratum's rows (strata by first appearance) are shuffled; its j-th of n rows gets
    the key (j + u) / n, with one uniform u per stratum, and the rows are ordered by key. So
    the first m rows hold m·n/N of a stratum of n rows out of N, to within a row when there
    are two strata (with k, within 1 + (k - 2)·n/N).
    """
    codes: dict = {}
    code = np.fromiter((codes.setdefault(s, len(codes)) for s in strata), np.int64, len(strata))
    by_stratum = np.split(np.argsort(code, kind="stable"), np.cumsum(np.bincount(code))[:-1])
    keys = np.empty(len(strata))
    for rows in by_stratum:  # each stratum's rows in their order, strata by first appearance
        rows = rng.permutation(rows)
        keys[rows] = (np.arange(len(rows)) + rng.random()) / len(rows)
    return np.argsort(keys, kind="stable")


def carve_splits(examples: list[dict], counts: Mapping[str, int], rest: str,
           seed: int, *, grouped: bool = False, strata: Sequence | None = None
                 ) -> dict[str, list[dict]]:
    """Seeded shuffle, then `counts` rows for each split in `CARVE_ORDER`; the rest (unless
    `rest` was sized too) go to `rest`. `strata` (one per row, `gold_strata`): the shuffle is
    `stratified_order`'s. `grouped`: the shuffle and `counts` are of whole queries
    (`query_rows`), each query's rows kept together in their order (never stratified)."""
    if grouped:
        queries = query_rows(examples)
        parts = carve_splits(queries, counts, rest, seed)  # queries, as rows
        return {split: [examples[i] for rows in chosen for i in rows]
                for split, chosen in parts.items()}
    rng = np.random.default_rng(seed)
    order = (rng.permutation(len(examples)) if strata is None
             else stratified_order(strata, rng))
    parts, start = {}, 0
    for split in CARVE_ORDER:
        if split in counts:
            parts[split] = [examples[i] for i in order[start:start + counts[split]]]
            start += counts[split]
    parts.setdefault(rest, [examples[i] for i in order[start:]])
    return parts


def _input_key(example: dict) -> tuple:
    if "tokens" in example:
        return tuple(example["tokens"]),
    return example["text"], example.get("text_pair")


def without_test_inputs(splits: dict[str, list[dict]], *, grouped: bool = False
                        ) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Drops the rows of non-test splits whose input equals a test input; counts per split.
    `grouped`: every row of a query (`group`) whose text is a test query's, so that no query
    straddles the test split and another and none is left part-ranked."""
    if grouped:
        test = {e["text"] for e in splits.get("test", ())}
        key = lambda e: e.get("group", e["text"])  # noqa: E731
        seen = {split: {key(e) for e in examples if e["text"] in test}
                for split, examples in splits.items()}
        repeats = lambda split, e: key(e) in seen[split]  # noqa: E731
    else:
        test = {_input_key(e) for e in splits.get("test", ())}
        repeats = lambda split, e: _input_key(e) in test  # noqa: E731
    kept, dropped = {}, {}
    for split, examples in splits.items():
        kept[split] = examples if split == "test" else [
            e for e in examples if not repeats(split, e)]
        if len(kept[split]) < len(examples):
            dropped[split] = len(examples) - len(kept[split])
            if not kept[split]:
                raise ValueError(f"every row of the {split} split repeats a test input; the data "
                                 "has too few distinct inputs (texts, or token lists)")
    return kept, dropped
