"""Which heads a checkpoint's weights fit, for a checkpoint whose `config.json` states no head
samp-jax runs (`architectures` missing, or naming no `*ForSequenceClassification` /
`*ForTokenClassification` class of the family): older and converted hub checkpoints.

A head kind *fits* the weights when every key of its layout (the family's key table for that
head, `HeadLayout.key_rules`) is there and every key that neither the backbone reads nor the
family ignores is one of them. The fit is computed, not guessed: it is reported, and the caller
names the head (`head=` / CLI `--head`).

The head is never chosen from the fit, not even when exactly one kind fits: no rule over key
names is unambiguous by construction, since HF's classes share them. BERT's sequence and token
classifiers both write `classifier.weight` `[num_labels, hidden]` (the pooler a sequence head
adds is in every `BertModel` too); ModernBERT's two heads write the same keys; and classes
samp-jax does not run write exactly the keys of one it does, so that a single fit proves
nothing: `RobertaForMultipleChoice` writes RoBERTa's token-classifier layout
(`classifier.weight` `[1, hidden]`), `DistilBertForMultipleChoice` DistilBERT's sequence one. A
head read as the wrong class gives wrong outputs without any error, so the checkpoint is
refused, naming what fits.
"""

from __future__ import annotations

from typing import Collection, Iterable

from samp_jax.models.errors import ConfigError
from samp_jax.models.families.base import Family, KeyRule

SHOWN_KEYS = 6  # keys quoted in a message; the rest are counted


def rule_keys(rules: Iterable[KeyRule], num_layers: int) -> set[str]:
    """The foreign key names a key table reads, `{i}` expanded over the layers."""
    keys = set()
    for rule in rules:
        for key in rule.theirs:
            if "{i}" in key:
                keys |= {key.format(i=i) for i in range(rule.first_layer, num_layers)}
            else:
                keys.add(key)
    return keys


def head_kind_keys(family: Family, config) -> dict[str, set[str]]:
    """Each head kind of `family` that reads weights of its own -> the keys it reads, for a
    model of `config` (`EncoderConfig`: ModernBERT's head biases depend on it)."""
    out = {}
    for kind, layout in family.heads.items():
        keys = rule_keys(layout.key_rules(config), config.num_layers)
        if keys:
            out[kind] = keys
    return out


def extra_keys(family: Family, config, keys: Collection[str]) -> list[str]:
    """The checkpoint keys (without the base-model prefix) that neither the backbone reads nor
    the family ignores (`ignored_keys`, `ignored_prefixes`, `unused_keys`): what a head must
    account for. Sorted."""
    backbone = rule_keys(family.backbone(config), config.num_layers)
    unused = family.unused_keys(config)
    return sorted(key for key in keys if key not in backbone and key not in family.ignored_keys
                  and key not in unused and not key.startswith(family.ignored_prefixes))


def fitting_heads(family: Family, config, keys: Collection[str]) -> tuple[str, ...]:
    """The head kinds whose layout the checkpoint `keys` (without the base-model prefix) fit:
    all of the layout's keys are there, and every key `extra_keys` finds is one of them. In the
    family's registration order; empty when the weights hold no head's keys."""
    keys = set(keys)
    extra = set(extra_keys(family, config, keys))
    return tuple(kind for kind, wanted in head_kind_keys(family, config).items()
                 if extra and wanted <= keys and extra <= wanted)


def check_stated_head(config_file, family: Family, config, keys: Collection[str],
                      architectures) -> str | None:
    """For a checkpoint whose config states no head samp-jax runs, and that would be read as a
    bare encoder: refuses weights that hold a head, and explains keys no head reads.

    Args:
      config_file: the checkpoint's `config.json` (named in the message).
      family: the checkpoint's family.
      config: its `EncoderConfig`.
      keys: its weights' keys, without the base-model prefix.
      architectures: `config.json`'s `architectures` (None when absent).

    Returns:
      None when the weights hold no keys beyond the encoder's; else, when no head of the family
      fits them, a hint for the unexpected-keys error.

    Raises:
      ConfigError: one or more head kinds fit the weights (`fitting_heads`); the message names
        them and how to choose one (`head=KIND`, CLI `--head KIND`).
    """
    extra = extra_keys(family, config, keys)
    if not extra:
        return None
    fits = fitting_heads(family, config, keys)
    with_keys = head_kind_keys(family, config)
    heads = [family.class_prefix + family.heads[kind].architecture for kind in with_keys]
    reason = (f"{config_file} has no `architectures` to state the head" if not architectures
              else f"{config_file}'s architectures {list(architectures)} names no "
                   f"{family.model_type} head class samp-jax runs ({', '.join(heads)})")
    if not fits:
        return (f"{reason}, and no {family.model_type} head samp-jax runs reads these keys; pass "
                "strict=False to load the encoder alone")
    shown = extra[:SHOWN_KEYS] + ([f"... {len(extra) - SHOWN_KEYS} more"] if len(extra) > SHOWN_KEYS else [])
    choose = (f"--head {fits[0]} on the CLI or head={fits[0]!r} in samp_jax.load" if len(fits) == 1
              else f"--head KIND on the CLI or head=KIND in samp_jax.load (KIND: {', '.join(fits)})")
    raise ConfigError(
        f"{reason}, and its weights hold head keys {shown} that fit {' or '.join(fits)}; key "
        f"names alone do not tell which HF class wrote them, so choose the head: {choose}")
