"""Registering a family from outside the package: the checks `register_family` makes."""

import dataclasses

import pytest

from samp_jax.models.families import FAMILIES, BERT, register_family
from samp_jax.models.head_kinds import NO_HEAD, SEQUENCE_CLASSIFICATION


@pytest.fixture
def families(monkeypatch):
    """The family registry, restored after the test."""
    from samp_jax.models import families as module
    monkeypatch.setattr(module, "FAMILIES", dict(FAMILIES))
    return module.FAMILIES


def test_register_family_refuses_what_is_no_family(families):
    with pytest.raises(TypeError, match="expected a samp_jax.models.families.Family, got dict"):
        register_family({"model_type": "mine"})
    with pytest.raises(TypeError, match="got NoneType"):
        register_family(None)


def test_a_family_needs_the_head_less_layout(families):
    heads = {SEQUENCE_CLASSIFICATION.name: BERT.heads[SEQUENCE_CLASSIFICATION.name]}
    with pytest.raises(ValueError, match=f"family 'mine': heads .* have no {NO_HEAD.name!r} layout"):
        register_family(dataclasses.replace(BERT, model_type="mine", heads=heads))
    with pytest.raises(ValueError, match=r"heads \['sequence_classification'\] are not HeadLayouts"):
        register_family(dataclasses.replace(BERT, model_type="mine", heads={
            **BERT.heads, SEQUENCE_CLASSIFICATION.name: "ForSequenceClassification"}))
    with pytest.raises(ValueError, match="model_type=''"):
        register_family(dataclasses.replace(BERT, model_type=""))
    assert "mine" not in families
    register_family(dataclasses.replace(BERT, model_type="mine"))
    assert families["mine"].heads == BERT.heads
    with pytest.raises(ValueError, match="model_type='mine' is already registered; pass replace=True"):
        register_family(dataclasses.replace(BERT, model_type="mine"))
