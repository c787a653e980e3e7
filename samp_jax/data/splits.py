"""Seeded five-way splits shared by the single-pool tasks (polarity, WNUT-16)."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class TaskSplits:
    """Disjoint parts of one task's data.

    Attributes:
      train: for fine-tuning (everything not in another part).
      dev: for model selection / early stopping while fine-tuning.
      calibration: for quantization calibration.
      search: for the precision-map search.
      test: held out; never used for training, calibration or search.
    """

    train: tuple[Any, ...]
    dev: tuple[Any, ...]
    calibration: tuple[Any, ...]
    search: tuple[Any, ...]
    test: tuple[Any, ...]


def seeded_splits(pool: Sequence[Any], seed: int, *, dev_size: int, calibration_size: int,
                  search_size: int, test_size: int) -> TaskSplits:
    """Shuffles `pool` with `np.random.default_rng(seed)` and cuts it into five parts.

    After the shuffle the first `test_size` items are `test`, then `search_size` are `search`,
    `calibration_size` are `calibration`, `dev_size` are `dev` and the rest are `train`.
    Taking `test` first means it depends only on `seed` and `test_size`.

    Raises:
      ValueError: a size is not positive, or the sizes leave no items for `train`.
    """
    seed = operator.index(seed)
    sizes = {"test_size": test_size, "search_size": search_size,
             "calibration_size": calibration_size, "dev_size": dev_size}
    sizes = {name: operator.index(size) for name, size in sizes.items()}
    not_positive = {name: size for name, size in sizes.items() if size <= 0}
    if not_positive:
        raise ValueError(f"split sizes must be positive, got {not_positive}")
    if sum(sizes.values()) >= len(pool):
        raise ValueError(f"sizes {sizes} add up to {sum(sizes.values())}, which leaves none of "
                         f"the {len(pool)} items for train")
    order = np.random.default_rng(seed).permutation(len(pool))
    shuffled = tuple(pool[i] for i in order)
    parts, start = {}, 0
    for name, size in sizes.items():
        parts[name.removesuffix("_size")] = shuffled[start:start + size]
        start += size
    return TaskSplits(train=shuffled[start:], **parts)
