"""Which head `samp-jax finetune` trains: the model's own when it already reads the data (its
class order kept, a one-output head trained as a score), a new one otherwise (with a warning
when a head of the right width names other classes)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from flax import nnx

import samp_jax as sj
from samp_jax.app import cli
from samp_jax.app.parser import build_parser
from samp_jax.models import make_head, save_pretrained
from tests.helpers import TINY_MINILM_VOCAB, tiny_classifier

WORDS = "good great fine bad awful poor movie film plot day night city".split()


def _rows(path, labels, pairs: bool = False):
    rng = np.random.default_rng(0)
    header = "text,text_pair,label" if pairs else "text,label"
    lines = [header] + [",".join([" ".join(rng.choice(WORDS, 5))] * (2 if pairs else 1)
                                 + [labels[i % len(labels)]]) for i in range(60)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _resolved(tmp_path, model_dir, data):
    args = build_parser().parse_args(["finetune", "--model", str(model_dir), "--data", str(data),
                                      "--out", str(tmp_path / "out")])
    return cli._model_to_finetune(args, model_dir, cli.resolve_task(args, None))


def _kernel(model):
    return np.asarray(model.head.classifier.kernel.value)


def test_a_classifier_keeps_its_class_order_and_its_head(tmp_path, minilm_dir):
    """id2label {0: pos, 1: neg}: the data's sorted names (neg, pos) must not relabel its rows."""
    folder = save_pretrained(tiny_classifier(), tmp_path / "m", tokenizer_dir=minilm_dir,
                             labels=("pos", "neg"))
    model, task = _resolved(tmp_path, folder, _rows(tmp_path / "d.csv", ("neg", "pos")))
    assert task.labels == ("pos", "neg") and model.labels == ("pos", "neg")
    np.testing.assert_array_equal(_kernel(model), _kernel(sj.load(folder)))


def test_a_one_output_head_on_0_1_labels_is_trained_as_a_score(tmp_path, minilm_dir):
    folder = save_pretrained(tiny_classifier(num_labels=1), tmp_path / "m", tokenizer_dir=minilm_dir)
    model, task = _resolved(tmp_path, folder, _rows(tmp_path / "d.csv", ("0", "1"), pairs=True))
    assert task.task_type.name == "text_pair_scoring" and task.num_outputs == 1
    assert task.training_loss.name == "sigmoid cross-entropy"
    np.testing.assert_array_equal(_kernel(model), _kernel(sj.load(folder)))


def test_a_head_of_other_classes_is_made_anew_with_a_warning(tmp_path, minilm_dir):
    folder = save_pretrained(tiny_classifier(), tmp_path / "m", tokenizer_dir=minilm_dir,
                             labels=("cat", "dog"))
    with pytest.warns(UserWarning, match=r"names the classes \['cat', 'dog'\], the data's are "
                                         r"\['neg', 'pos'\]: its head is initialised anew"):
        model, task = _resolved(tmp_path, folder, _rows(tmp_path / "d.csv", ("neg", "pos")))
    assert task.labels == ("neg", "pos") and model.labels is None  # fine-tuning names them
    assert not np.array_equal(_kernel(model), _kernel(sj.load(folder)))


@pytest.mark.parametrize("labels", [("neg", "pos"), ("a", "b", "c")])
def test_a_new_head_keeps_the_pretrained_layers_before_its_classifier(tmp_path, minilm_dir, labels):
    """Only the classifier starts anew (other class names, or another width): BERT's pooler
    keeps its weights, as HF's from_pretrained(num_labels=N) keeps them."""
    folder = save_pretrained(tiny_classifier(), tmp_path / "m", tokenizer_dir=minilm_dir,
                             labels=("cat", "dog"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the new head's warning
        model, _ = _resolved(tmp_path, folder, _rows(tmp_path / "d.csv", labels))
    pretrained = sj.load(folder).head
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(np.asarray(getattr(model.head.pooler, name)[...]),
                                      np.asarray(getattr(pretrained.pooler, name)[...]))
    assert model.head.num_labels == len(labels)
    assert not np.array_equal(_kernel(model)[:, :2], _kernel(sj.load(folder)))


def test_a_base_model_gets_the_head_its_data_needs(tmp_path, minilm_dir):
    config = sj.EncoderConfig(**TINY_MINILM_VOCAB)
    base = sj.EncoderModel(config, make_head("none", config, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))
    folder = save_pretrained(base, tmp_path / "m", tokenizer_dir=minilm_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the new head's weights are initialised
        model, task = _resolved(tmp_path, folder, _rows(tmp_path / "d.csv", ("a", "b", "c")))
    assert model.head_kind == "sequence_classification" and model.head.num_labels == 3
    assert task.labels == ("a", "b", "c")


def test_a_head_with_generic_names_is_kept_and_takes_the_datas_names(tmp_path, minilm_dir):
    """HF names a config's classes LABEL_0, LABEL_1 when nobody named them: nothing to contradict
    the data's names, so the trained head is kept (as eval reads it) and fine-tuning names it."""
    folder = save_pretrained(tiny_classifier(), tmp_path / "m", tokenizer_dir=minilm_dir)
    assert sj.load(folder).labels == ("LABEL_0", "LABEL_1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, task = _resolved(tmp_path, folder, _rows(tmp_path / "d.csv", ("neg", "pos")))
    assert task.labels == ("neg", "pos") and model.labels is None
    np.testing.assert_array_equal(_kernel(model), _kernel(sj.load(folder)))


def test_a_cross_encoders_new_head_takes_the_default_activation_of_its_width(tmp_path, minilm_dir):
    """A one-output CrossEncoder (Sigmoid) fine-tuned on three classes: its new head is read as
    sentence-transformers reads a 3-output one (Identity), not with the old Sigmoid."""
    model = tiny_classifier(num_labels=1)
    model.head.cross_encoder_activation = "Sigmoid"
    folder = save_pretrained(model, tmp_path / "m", tokenizer_dir=minilm_dir)
    assert sj.load(folder).cross_encoder_activation == "Sigmoid"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuned, task = _resolved(tmp_path, folder, _rows(tmp_path / "d.csv", ("a", "b", "c"), pairs=True))
    assert task.num_outputs == 3 and tuned.cross_encoder_activation == "Identity"


def _ranking(path):
    """Query-passage rows with a relevance column: a ranking of 20 queries of 3 rows."""
    rng = np.random.default_rng(0)
    path.write_text("qid,query,passage,relevance\n" + "".join(
        f"Q{i // 3},{' '.join(rng.choice(WORDS, 3))},{' '.join(rng.choice(WORDS, 5))},"
        f"{int(i % 3 == 0)}\n" for i in range(60)))
    return path


@pytest.mark.parametrize("width, loss", [
    (1, "sigmoid cross-entropy (target: relevance >= 1)"),
    (2, "softmax cross-entropy (class 1: relevance >= 1)")])
def test_a_rerankers_head_of_one_output_or_two_classes_is_kept_for_a_ranking(
        tmp_path, minilm_dir, width, loss):
    """A ranking reads a head of one output, or of two classes by P(class 1): either is kept
    and trained with its own loss (sentence-transformers' CrossEncoder defaults)."""
    folder = save_pretrained(tiny_classifier(num_labels=width), tmp_path / "m",
                             tokenizer_dir=minilm_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, task = _resolved(tmp_path, folder, _ranking(tmp_path / "r.csv"))
    assert task.task_type.name == "text_pair_ranking" and model.head.num_labels == width
    np.testing.assert_array_equal(_kernel(model), _kernel(sj.load(folder)))
    assert task.training_loss_for(model).name == loss


def test_a_head_of_three_classes_given_a_ranking_is_made_anew_with_one_output(tmp_path, minilm_dir):
    folder = save_pretrained(tiny_classifier(num_labels=3), tmp_path / "m", tokenizer_dir=minilm_dir)
    with pytest.warns(UserWarning, match="has 3 outputs, the data needs 1: its head is initialised anew"):
        model, task = _resolved(tmp_path, folder, _ranking(tmp_path / "r.csv"))
    assert model.head.num_labels == 1 and task.training_loss_for(model).name == (
        "sigmoid cross-entropy (target: relevance >= 1)")
