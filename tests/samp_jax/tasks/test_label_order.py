"""A task read without the model's label names numbers the names it finds in sorted order:
the Python API refuses to score a model whose names are not the task's, in its order, where it
would read every id as another class (the commands read the data with the model's names)."""

from __future__ import annotations

import numpy as np
import pytest

import samp_jax as sj
from calibrate import SearchConfig, search
from samp_jax.models import save_pretrained
from samp_jax.tasks.files import load_task
from tests.helpers import tiny_classifier


@pytest.fixture(scope="module")
def permuted(tmp_path_factory, minilm_dir):
    """A classifier whose classes are (pos, neg), and reviews labelled neg/pos."""
    root = tmp_path_factory.mktemp("label_order")
    save_pretrained(tiny_classifier(), root / "model", tokenizer_dir=minilm_dir,
                    labels=("pos", "neg"))
    rng = np.random.default_rng(0)
    words = "good bad movie plot day night".split()
    (root / "data.csv").write_text("text,label\n" + "".join(
        f"{' '.join(rng.choice(words, 6))},{'pos' if i % 2 else 'neg'}\n" for i in range(60)))
    return sj.load(root / "model"), root / "data.csv"


def test_evaluate_refuses_a_task_that_numbers_the_classes_otherwise(permuted):
    model, data = permuted
    task = load_task(data)
    assert task.labels == ("neg", "pos") and model.labels == ("pos", "neg")
    with pytest.raises(ValueError, match=r"task 'data' names its 2 labels \['neg', 'pos'\] by id, "
                                         r"and the model's are \['pos', 'neg'\].*"
                                         r"load_task\(\.\.\., labels=model\.labels\)"):
        sj.evaluate(model, task, tokenizer=model.tokenizer)
    with pytest.raises(ValueError, match="the model's are"):
        search(model, task, SearchConfig(tolerance=0.05, progress=False),
               tokenizer=model.tokenizer)


def test_with_the_models_names_the_api_scores_as_the_command_does(permuted):
    model, data = permuted
    task = load_task(data, labels=model.labels)
    scored = sj.evaluate(model, task, tokenizer=model.tokenizer)
    engine = sj.compile(model, seq_buckets=(16,), batch_size=8, truncate=True)
    test = task.split("test")
    predicted = engine([e["text"] for e in test]).label_names
    expected = np.mean([p == model.labels[e["label"]] for p, e in zip(predicted, test)])
    assert scored["value"] == pytest.approx(expected)


def test_class_ids_in_the_data_are_the_models_ids(permuted, tmp_path):
    model, data = permuted
    ids = tmp_path / "ids.csv"
    ids.write_text(data.read_text().replace(",neg\n", ",1\n").replace(",pos\n", ",0\n"))
    task = load_task(ids)
    assert task.labels == ("0", "1")
    sj.evaluate(model, task, tokenizer=model.tokenizer)  # ids as ids: nothing to refuse


def test_a_taggers_task_of_the_tags_the_data_holds_is_refused_not_an_index_error():
    from types import SimpleNamespace
    from samp_jax.tasks.task import check_labels_fit
    tagger = SimpleNamespace(labels=("O", "B-PER", "I-PER", "B-LOC", "I-LOC"))
    with pytest.raises(ValueError, match=r"names its 3 labels \['O', 'B-LOC', 'B-PER'\]"):
        check_labels_fit(tagger, SimpleNamespace(name="tags", labels=("O", "B-LOC", "B-PER")))
    generic = SimpleNamespace(labels=("LABEL_0", "LABEL_1"))
    check_labels_fit(generic, SimpleNamespace(name="t", labels=("a", "b")))  # nothing to go by


def test_ids_that_are_also_other_classes_names_are_refused():
    """-1/0/1 sentiment, and data holding only 0 and 1: read as ids they would be the model's
    "-1" and "0"; the commands read them by name."""
    from types import SimpleNamespace
    from samp_jax.tasks.task import check_labels_fit
    model = SimpleNamespace(labels=("-1", "0", "1"))
    with pytest.raises(ValueError, match=r"names its 2 labels \['0', '1'\]"):
        check_labels_fit(model, SimpleNamespace(name="t", labels=("0", "1")))
    check_labels_fit(SimpleNamespace(labels=("0", "1", "2")), SimpleNamespace(name="t",
                                                                              labels=("0", "1")))


def test_finetune_says_how_to_train_the_head_for_other_names(permuted):
    model, data = permuted
    with pytest.raises(ValueError, match=r"the model's are \['pos', 'neg'\].*clear its names "
                                         r"first \(model\.head\.labels = None\)"):
        sj.finetune(model, load_task(data), model.tokenizer, sj.FinetuneConfig(), progress=False)
