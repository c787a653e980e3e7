"""docs/extending.md's examples run as written against the exported helpers: its family
registers and maps a checkpoint's keys, its strategy registers."""

from __future__ import annotations

import re

import pytest

from tests.helpers import ROOT, TINY_CONFIG

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "extending.md").read_text(), re.S)


def test_the_family_example_registers_and_maps_keys(monkeypatch):
    from samp_jax.models import families
    monkeypatch.setattr(families, "FAMILIES", dict(families.FAMILIES))
    (block,) = [b for b in BLOCKS if "register_family(" in b]
    exec(compile(block, "docs/extending.md", "exec"), {})  # noqa: S102  the documented code itself
    family = families.get_family("mybert")
    theirs = {key for rule in family.backbone(TINY_CONFIG) for key in rule.theirs}
    assert "blocks.{i}.attn.query.weight" in theirs and "embeddings.LayerNorm.weight" in theirs
    assert family.architecture("sequence_classification") == "MyBertForSequenceClassification"
    assert family.architecture("none") == "MyBertModel"


def test_the_strategy_example_registers(monkeypatch):
    from calibrate.search import strategy
    monkeypatch.setattr(strategy, "STRATEGIES", dict(strategy.STRATEGIES))
    (block,) = [b for b in BLOCKS if "register_strategy(" in b]
    exec(compile(block, "docs/extending.md", "exec"), {})  # noqa: S102
    assert strategy.get_strategy("ffn_only").description.startswith("the last option")


@pytest.mark.parametrize("name", ["register_family", "register_head", "register_gemm_implementation",
                                  "register_fused_op", "register_strategy", "register_target",
                                  "register_device", "register_metric", "SAMP_JAX_PLUGINS",
                                  "samp_jax.plugins"])
def test_every_registry_and_the_plugins_are_documented(name):
    assert name in (ROOT / "docs" / "extending.md").read_text()
