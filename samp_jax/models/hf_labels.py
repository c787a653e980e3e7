"""What an HF config says about its classifier: how many labels (`stated_num_labels`), their
names (`label_names`), whether samp-jax reads its outputs as they were trained
(`check_problem_type`), and the problem type a head keeps (`stated_problem_type`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from samp_jax.models.config import ConfigError
from samp_jax.models.families import get_family
from samp_jax.models.head_kinds import (PROBLEM_TYPES, Readout, check_label_threshold,
                                       check_relevant_class_id, unserved_problem_type)
from samp_jax.models.heads import get_head_kind

GENERIC_LABEL = re.compile(r"LABEL_\d+")  # transformers' default id2label names


def all_generic(names: Sequence[str]) -> bool:
    """Whether every one of `names` is transformers' generic `LABEL_<i>`: a head whose
    classes nothing names (HF writes them for a config without `id2label`)."""
    return all(GENERIC_LABEL.fullmatch(str(name)) for name in names)

# HF's classifier width when a config states none: transformers writes no `id2label` for its
# default two labels (LABEL_0, LABEL_1), and reads such a config back with two.
HF_DEFAULT_NUM_LABELS = 2


def stated_num_labels(hf: dict) -> int | None:
    """The classifier width the config states; HF's default for a classifier checkpoint that
    states none; else None."""
    if hf.get("id2label"):
        return len(hf["id2label"])
    if hf.get("num_labels") is not None:
        return hf["num_labels"]
    trained = get_family(hf.get("model_type")).head_kind_of(hf.get("architectures"))
    return HF_DEFAULT_NUM_LABELS if trained is not None else None


def num_labels_origin(hf: dict, config_file: str | Path = "config.json") -> str:
    """Where `stated_num_labels` took the classifier width from, in words, for an error about
    a classifier of another width: `id2label` (and a `num_labels` it overrides, as HF reads
    them), `num_labels`, or HF's default."""
    id2label, stated = hf.get("id2label"), hf.get("num_labels")
    if id2label:
        beside = (f" (its num_labels={stated!r} is overridden by id2label, as HF transformers "
                  "reads them)" if stated is not None and stated != len(id2label) else "")
        return f"{config_file}'s id2label names {len(id2label)} labels{beside}"
    if stated is not None:
        return f"{config_file}'s num_labels={stated!r}"
    return (f"{config_file} states no id2label or num_labels, and HF's default is "
            f"{HF_DEFAULT_NUM_LABELS}")


def label_names(hf: dict, *, path: str | Path = "config.json") -> tuple[str, ...] | None:
    """Class names from an HF config's `id2label`, ordered by id (HF's default names
    `LABEL_0`, ... count as names too, and are what HF names the classes of a config with no
    `id2label`), or None when it states no classifier.

    Raises:
      ConfigError: the ids are not 0 .. n-1, a name is not a non-empty string, or two ids
        have one name.
    """
    id2label = hf.get("id2label")
    if not id2label:
        count = stated_num_labels(hf)
        return None if count is None else tuple(f"LABEL_{i}" for i in range(count))
    try:
        by_id = {int(key): name for key, name in id2label.items()}
    except (AttributeError, TypeError, ValueError):
        raise ConfigError(f"{path}: id2label must map ids '0', '1', ... to names, "
                          f"got {id2label!r:.120}") from None
    if sorted(by_id) != list(range(len(by_id))):
        raise ConfigError(f"{path}: id2label ids {sorted(by_id)} are not 0 .. {len(by_id) - 1}")
    names = tuple(by_id[i] for i in range(len(by_id)))
    if not all(isinstance(name, str) and name for name in names):
        raise ConfigError(f"{path}: id2label names must be non-empty strings, got {names!r:.120}")
    repeated = {name: [i for i, other in enumerate(names) if other == name] for name in names}
    repeated = {name: ids for name, ids in repeated.items() if len(ids) > 1}
    if repeated:  # predict names each class's score by its label
        raise ConfigError(f"{path}: id2label names must be distinct; " + "; ".join(
            f"{name!r} names ids {ids}" for name, ids in repeated.items()))
    return names


def check_problem_type(config_file: Path, hf: dict, head: str) -> None:
    """Raises ConfigError when a classification head was trained for a `problem_type` whose
    outputs samp-jax would misread: an unknown one, a regression with several outputs, or
    anything but one class per token for a token head. A sequence head is served for every
    type of `PROBLEM_TYPES`: one class per row (softmax), a set of labels per row
    (`multi_label_classification`, a sigmoid per label) or one score per row."""
    problem = hf.get("problem_type")
    kind = get_head_kind(head)
    if problem is None or not kind.classifies:
        return
    served = ("single_label_classification",) if kind.per_token else tuple(PROBLEM_TYPES)
    if problem not in served:
        why = (f"a {head} head is read one class per token (a softmax)" if kind.per_token
               and problem in PROBLEM_TYPES else
               "samp-jax does not know how this head's outputs are read")
        raise ConfigError(f"{config_file}: problem_type {problem!r}: {why}; supported: "
                          f"{served} (samp-jax finetune trains a new head)")
    why = unserved_problem_type(problem, stated_num_labels(hf) or 1)
    if why is not None:
        raise ConfigError(f"{config_file}: {why}")


# `config.json`'s key for a multi-label head's own decision threshold (HF has none; its
# config keeps the key as an attribute and its classes ignore it)
LABEL_THRESHOLD_KEY = "samp_jax_label_threshold"


def stated_label_threshold(config_file: Path, hf: dict, problem_type: str | None) -> float | None:
    """The decision threshold `config.json` gives a multi-label head (`LABEL_THRESHOLD_KEY`,
    written by `save_pretrained`), or None: not given, or not a multi-label head (a new head
    to fine-tune, whose threshold the fine-tune decides).

    Raises:
      ConfigError: the value is not a number strictly between 0 and 1.
    """
    value = hf.get(LABEL_THRESHOLD_KEY)
    if value is None or PROBLEM_TYPES.get(problem_type) is not Readout.LABELS:
        return None
    try:
        return check_label_threshold(value)
    except ValueError as e:
        raise ConfigError(f"{config_file}: {LABEL_THRESHOLD_KEY}: {e}") from None


# `config.json`'s key for the relevant class of a two-class head read as a ranking (HF has
# none; its config keeps the key as an attribute and its classes ignore it)
RELEVANT_CLASS_KEY = "samp_jax_relevant_class"


def stated_relevant_class(config_file: Path, hf: dict, num_labels: int | None,
                          problem_type: str | None) -> int | None:
    """The relevant class `config.json` gives a two-class head (`RELEVANT_CLASS_KEY`, written
    by `save_pretrained` for a fine-tune given `--relevant-class`), or None: not given, or
    the head built is not of two classes (a new head to fine-tune, of another width).

    Raises:
      ConfigError: the value is not 0 or 1.
    """
    value = hf.get(RELEVANT_CLASS_KEY)
    if value is None or num_labels != 2 or \
            PROBLEM_TYPES.get(problem_type, Readout.CLASSES) is not Readout.CLASSES:
        return None
    try:
        return check_relevant_class_id(value)
    except ValueError as e:
        raise ConfigError(f"{config_file}: {RELEVANT_CLASS_KEY}: {e}") from None


def stated_problem_type(hf: dict, num_labels: int | None) -> str | None:
    """The checkpoint's `problem_type` where it describes the head being built (the width the
    config gives, a type a head of that width is read by); None otherwise (e.g. a new head of
    another width to fine-tune)."""
    problem = hf.get("problem_type")
    if problem not in PROBLEM_TYPES or num_labels != (stated_num_labels(hf) or 1):
        return None
    return None if problem == "regression" and num_labels != 1 else problem
