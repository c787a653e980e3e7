"""Checkpoints whose `config.json` states no head (older and converted hub checkpoints, without
`architectures`): refused while their weights hold a head, naming the head kinds that fit and
how to choose one; read exactly as HF's task class with `head=`."""

import re

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import samp_jax
from samp_jax import CheckpointError, ConfigError, EncoderConfig, load_pretrained
from samp_jax.models import get_family
from samp_jax.models.checkpoint import read_state_dict, strip_prefix
from samp_jax.models.head_keys import fitting_heads
from tests.helpers import GOLDEN, without_architectures

FAMILY_GOLDEN = GOLDEN / "families"
SEQ, TOK = "sequence_classification", "token_classification"
KINDS = {"seqcls": SEQ, "tokcls": TOK}
# The head kinds whose key tables each golden classifier's weights fit. BERT's pooler is in every
# BertModel, so its sequence classifier's keys fit its token layout too; ModernBERT's two heads
# have the same keys; the other families' sequence heads have keys of their own.
FITS = {
    "bert": {"seqcls": (SEQ, TOK), "tokcls": (TOK,)}, "ernie": {"seqcls": (SEQ, TOK), "tokcls": (TOK,)},
    "modernbert": {"seqcls": (SEQ, TOK), "tokcls": (SEQ, TOK)},
    **{model_type: {"seqcls": (SEQ,), "tokcls": (TOK,)}
       for model_type in ("roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "deberta-v2",
                          "camembert", "data2vec-text")},
}


def logits_match(model, model_type, head, batch="pair"):
    golden = np.load(FAMILY_GOLDEN / model_type / "golden.npz")
    ids, mask, types = (golden[f"{batch}_{key}"] for key in ("input_ids", "attention_mask",
                                                            "token_type_ids"))
    logits, expected = np.asarray(model(ids, mask, types)), golden[f"{batch}_{head[:3]}_logits"]
    assert logits.shape == expected.shape
    if head == "tokcls":  # padded positions carry no meaning
        logits, expected = logits[mask.astype(bool)], expected[mask.astype(bool)]
    assert np.abs(logits - expected).max() <= 1e-5


@pytest.mark.parametrize("head", ["seqcls", "tokcls"])
@pytest.mark.parametrize("model_type", sorted(FITS))
def test_a_head_no_architectures_states_is_refused_then_read_as_named(model_type, head, tmp_path):
    folder = without_architectures(FAMILY_GOLDEN / model_type / head, tmp_path / "ckpt")
    fits = FITS[model_type][head]
    state, _ = read_state_dict(folder)
    family = get_family(model_type)
    keys = strip_prefix(state, family)
    assert fitting_heads(family, EncoderConfig.from_hf_config(folder), keys) == fits
    with pytest.raises(ConfigError) as info:
        load_pretrained(folder)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{folder / 'config.json'} has no `architectures` to state the head")
    assert f"that fit {' or '.join(fits)};" in message
    choose = (f"--head {fits[0]} on the CLI or head='{fits[0]}' in samp_jax.load" if len(fits) == 1
              else f"--head KIND on the CLI or head=KIND in samp_jax.load (KIND: {', '.join(fits)})")
    assert message.endswith(choose)
    model = samp_jax.load(folder, head=KINDS[head])  # its tokenizer and class names too
    assert model.head_kind == KINDS[head] and model.labels is not None
    logits_match(model, model_type, head)


def test_the_tiny_golden_heads_without_architectures(tmp_path):
    """The tester's two cases: one BERT sequence and one token classifier, HF's logits."""
    for task, kind in (("tiny_seqcls", SEQ), ("tiny_tokcls", TOK)):
        folder = without_architectures(GOLDEN / task / "safetensors", tmp_path / task)
        with pytest.raises(ConfigError, match=r"config\.json has no `architectures` to state the head.*"
                           rf"\['classifier\.bias', 'classifier\.weight'\] that fit .*{kind}"):
            load_pretrained(folder)
        golden = np.load(GOLDEN / task / "golden.npz")
        model = load_pretrained(folder, head=kind)
        logits = np.asarray(model(golden["input_ids"], golden["attention_mask"], golden["token_type_ids"]))
        expected = golden["logits"]
        if logits.ndim == 3:
            valid = golden["attention_mask"].astype(bool)
            logits, expected = logits[valid], expected[valid]
        np.testing.assert_allclose(logits, expected, atol=1e-5)


@pytest.mark.parametrize("architectures, named", [
    (["BertModel"], "['BertModel']"), (["MyBertClassifier"], "['MyBertClassifier']")])
def test_architectures_naming_no_head_class_is_refused_the_same_way(architectures, named, tmp_path):
    folder = without_architectures(FAMILY_GOLDEN / "bert" / "tokcls", tmp_path / "ckpt",
                                   architectures=architectures)
    with pytest.raises(ConfigError, match=rf"config\.json's architectures {re.escape(named)} names "
                       r"no bert head class samp-jax runs \(BertForSequenceClassification, "
                       r"BertForTokenClassification\), .* that fit token_classification;"):
        load_pretrained(folder)
    assert load_pretrained(folder, head=TOK).head_kind == TOK


def test_an_encoder_without_architectures_still_loads_as_one(tmp_path):
    folder = without_architectures(FAMILY_GOLDEN / "bert" / "base", tmp_path / "ckpt")
    assert load_pretrained(folder).head_kind == "none"  # its pooler is no head


def test_keys_no_head_reads_are_named_with_the_missing_architectures(tmp_path):
    folder = without_architectures(FAMILY_GOLDEN / "bert" / "base", tmp_path / "ckpt")
    state = load_file(folder / "model.safetensors")
    state["qa_outputs.weight"], state["qa_outputs.bias"] = np.zeros((2, 30), np.float32), np.zeros(2, np.float32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(2\).*\n.*has no `architectures` "
                       r"to state the head, and no bert head samp-jax runs reads these keys; pass "
                       r"strict=False"):
        load_pretrained(folder)
    assert load_pretrained(folder, strict=False).head_kind == "none"


def test_strict_false_reads_the_encoder_alone(tmp_path):
    folder = without_architectures(FAMILY_GOLDEN / "bert" / "seqcls", tmp_path / "ckpt")
    assert load_pretrained(folder, strict=False).head_kind == "none"


def test_a_named_head_without_a_stated_width_has_hfs_two_labels(tmp_path):
    """HF reads a config without `id2label` as two classes: so does `head=`; a classifier of
    another width is then named by its shape."""
    folder = without_architectures(FAMILY_GOLDEN / "bert" / "seqcls", tmp_path / "three",
                                   id2label=None, label2id=None)
    with pytest.raises(CheckpointError, match=r"wrong shape: classifier.weight has \(3, 30\), "
                       r"expected \(2, 30\)"):
        load_pretrained(folder, head=SEQ)
    assert load_pretrained(folder, head=SEQ, num_labels=3).head.num_labels == 3
    two = without_architectures(FAMILY_GOLDEN / "bert" / "seqcls", tmp_path / "two",
                                id2label=None, label2id=None)
    state = load_file(two / "model.safetensors")
    state["classifier.weight"], state["classifier.bias"] = state["classifier.weight"][:2], state["classifier.bias"][:2]
    save_file(state, str(two / "model.safetensors"))
    model = load_pretrained(two, head=SEQ)
    assert model.head.num_labels == 2
    golden = np.load(FAMILY_GOLDEN / "bert" / "golden.npz")
    logits = np.asarray(model(golden["pair_input_ids"], golden["pair_attention_mask"],
                              golden["pair_token_type_ids"]))
    assert np.abs(logits - golden["pair_seq_logits"][:, :2]).max() <= 1e-5


def test_the_head_stated_by_architectures_is_unchanged():
    assert load_pretrained(FAMILY_GOLDEN / "bert" / "seqcls").head_kind == SEQ
    assert load_pretrained(FAMILY_GOLDEN / "bert" / "seqcls", head=TOK, strict=False).head_kind == TOK
