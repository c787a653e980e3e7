"""Tasks, batching, scoring and fine-tuning (short runs on small subsets)."""

import dataclasses
import functools
import json
import errno
import os
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from samp_jax import Tokenizer, load_pretrained
from samp_jax.tasks import IGNORE, SPLITS, TASKS, EncodedSplit, Task, evaluate, get_task
from samp_jax.training.finetuning import FinetuneConfig, finetune, finetuned_dir, finetuned_model


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return Tokenizer.from_pretrained(minilm_dir)


@pytest.mark.parametrize("name", ["snli", "polarity", "wnut16", "snli-embed"])
def test_task_splits_are_disjoint_and_test_is_held_out(name):
    task = get_task(name)
    parts = {split: task.split(split) for split in SPLITS if task.split(split)}
    expected = {"calibration", "search", "test"} | (set() if name == "snli-embed" else {"train", "dev"})
    assert set(parts) == expected
    text = {"snli": lambda e: (e["text"], e["text_pair"]), "snli-embed": lambda e: (e["text"], e["text_pair"]),
            "polarity": lambda e: e["text"], "wnut16": lambda e: tuple(e["tokens"])}[name]
    test_texts = {text(e) for e in parts["test"]}
    for other in set(parts) - {"test"}:
        assert not test_texts & {text(e) for e in parts[other]}, other
    for example in parts["test"][:20]:
        task.task_type.check(example, name)


def test_tasks_are_registered_data_with_their_type_head_and_metric():
    expected = {"snli": ("text_pair_classification", "sequence_classification", "accuracy"),
                "snli-embed": ("embedding_pairs", "sentence_embedding", "roc_auc"),
                "polarity": ("text_classification", "sequence_classification", "accuracy"),
                "wnut16": ("token_classification", "token_classification", "entity_f1")}
    assert set(TASKS) == set(expected)
    for name, (task_type, head, metric) in expected.items():
        task = get_task(name)
        assert (task.task_type.name, task.head.name, task.metric) == (task_type, head, metric)
    assert set(get_task("snli-embed").split("test")[0]) == {"text", "text_pair", "label"}


def test_subsets_are_seeded_and_balanced_for_binary_pairs():
    task = get_task("snli-embed")
    a = task.examples("test", max_examples=100, seed=3)
    assert a == task.examples("test", max_examples=100, seed=3) != task.examples("test", max_examples=100, seed=4)
    assert sum(e["label"] for e in a) == 50
    polarity = get_task("polarity")
    assert len(polarity.examples("test", max_examples=7)) == 7
    with pytest.raises(ValueError, match="max_examples=0 must be positive"):
        polarity.examples("test", max_examples=0)


def test_batches_cover_every_row_once_with_bucketed_widths(tokenizer):
    task = get_task("polarity")
    encoded = task.encode(tokenizer, list(task.split("dev"))[:100])
    for rng in (None, np.random.default_rng(0)):
        seen = []
        for rows, batch in encoded.batches(16, buckets=(32, 64, 128), rng=rng):
            assert batch["input_ids"].shape[0] == 16
            assert batch["input_ids"].shape[1] in (32, 64, 128)
            assert np.all(batch["labels"][len(rows):] == IGNORE)
            assert np.all(batch["attention_mask"][len(rows):] == 0)
            np.testing.assert_array_equal(batch["labels"][:len(rows)], encoded.labels[rows])
            seen.extend(rows.tolist())
        assert sorted(seen) == list(range(100))


@pytest.mark.parametrize("name, max_examples, rows, balanced_size", [
    ("polarity", 40, 40, 40),  # one batch of 40, not 64
    ("polarity", 100, 100, 56),  # two of 56, not two of 64
    ("polarity", 130, 130, 48),  # three of 48
    ("snli-embed", 20, None, None)])  # unique texts, not pairs, are the rows
def test_a_balanced_evaluation_pads_no_more_rows_than_its_batches_need(
        tokenizer, name, max_examples, rows, balanced_size):
    task = get_task(name)
    plain = task.evaluation(tokenizer, "search", max_examples=max_examples, batch_size=64)
    balanced = task.evaluation(tokenizer, "search", max_examples=max_examples, batch_size=64,
                               balanced=True)
    if rows is None:  # an embedding task batches each unique text once
        rows = len(balanced.texts)
        balanced_size = -(-rows // 8) * 8
    assert {len(b["input_ids"]) for b in plain.batches} == {64}
    assert {len(b["input_ids"]) for b in balanced.batches} == {balanced_size}
    assert len(balanced.batches) == len(plain.batches) == -(-rows // 64)
    real = sorted(np.concatenate(balanced._rows).tolist())
    assert real == list(range(rows))  # every row once
    if name != "snli-embed":  # each row's outputs come back to it: its first tokens here
        first_tokens = lambda e: [b["input_ids"][:, :6].astype(np.float32) for b in e.batches]  # noqa: E731
        np.testing.assert_array_equal(balanced.gather(first_tokens(balanced)),
                                      plain.gather(first_tokens(plain)))


def test_ner_labels_sit_on_first_word_pieces(tokenizer):
    task = get_task("wnut16")
    examples = [e for e in task.split("train") if any(t != 0 for t in e["tags"])][:20]
    encoded = task.encode(tokenizer, examples)
    for example, labels in zip(examples, encoded.labels):
        assert list(labels[labels != IGNORE]) == list(example["tags"])


def test_scoring_accuracy_and_entity_f1_on_known_logits():
    snli = get_task("snli")
    enc = EncodedSplit(np.zeros((4, 3), np.int32), np.ones((4, 3), np.int32), np.zeros((4, 3), np.int32),
                       np.array([0, 1, 2, 1], np.int32))
    logits = np.eye(3)[[0, 1, 1, 1]]
    assert snli.score(logits, enc)["value"] == pytest.approx(0.75)
    ner = get_task("wnut16")
    b_person, i_person = ner.labels.index("B-person"), ner.labels.index("I-person")
    labels = np.array([[IGNORE, b_person, i_person, 0, IGNORE]], np.int32)
    enc = EncodedSplit(np.zeros((1, 5), np.int32), np.ones((1, 5), np.int32), np.zeros((1, 5), np.int32), labels)
    perfect = np.eye(len(ner.labels))[[0, b_person, i_person, 0, 0]][None]
    assert ner.score(perfect, enc)["value"] == 1.0
    truncated = np.eye(len(ner.labels))[[0, b_person, 0, 0, 0]][None]  # wrong span end
    assert ner.score(truncated, enc)["value"] == 0.0


@pytest.mark.slow
def test_short_finetune_lowers_the_loss_and_leaves_the_source_alone(minilm_dir, tokenizer):
    task = get_task("polarity")
    model = load_pretrained(minilm_dir, head=task.head, num_labels=2, allow_new_head=True)
    before = np.asarray(model.head.classifier.kernel[...]).copy()
    config = FinetuneConfig(learning_rate=2e-4, batch_size=16, epochs=3, max_train_examples=96,
                            max_dev_examples=32, eval_every=6, patience=10, warmup_fraction=0.1,
                            min_steps=0)
    result = finetune(model, task, tokenizer, config, progress=False)
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert len(losses) >= 2 and losses[-1] < losses[0] - 0.05, losses
    np.testing.assert_array_equal(np.asarray(model.head.classifier.kernel[...]), before)
    assert not np.array_equal(np.asarray(result.model.head.classifier.kernel[...]), before)
    assert result.steps == 18 and result.examples_per_second > 0


@pytest.mark.slow
def test_finetuned_models_are_cached(minilm_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMP_JAX_CACHE", str(tmp_path))
    # the asset cache moves too: point it at the already-fetched MiniLM
    monkeypatch.setattr("samp_jax.training.finetuning.minilm_path", lambda: minilm_dir)
    config = FinetuneConfig(batch_size=8, max_train_examples=16, max_dev_examples=8, eval_every=2,
                            min_steps=0, epochs=1.0)
    with pytest.raises(FileNotFoundError, match="no fine-tuned polarity model"):
        finetuned_model("polarity", config, train_if_missing=False)
    model, tok, info = finetuned_model("polarity", config, progress=False)
    assert (finetuned_dir("polarity", config) / "model.safetensors").is_file()
    assert info["steps"] == 2 and info["task"] == "polarity"
    monkeypatch.setattr("samp_jax.training.finetuning.finetune", lambda *a, **k: pytest.fail("retrained"))
    again, _, _ = finetuned_model("polarity", config)
    jax.tree.map(np.testing.assert_array_equal, np.asarray(model.head.classifier.kernel[...]),
                 np.asarray(again.head.classifier.kernel[...]))
    assert finetuned_dir("polarity", config) != finetuned_dir("polarity", dataclasses.replace(config, seed=1))


@pytest.fixture
def untrained_finetune(minilm_dir, tmp_path, monkeypatch):
    """`finetuned_model` with its cache under tmp_path and no training: the fresh model is the
    "fine-tuned" one."""
    from samp_jax.training import finetuning
    monkeypatch.setenv("SAMP_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(finetuning, "minilm_path", lambda: minilm_dir)
    monkeypatch.setattr(finetuning, "finetune", lambda model, *a, **k: finetuning.FinetuneResult(
        model=model, dev_metric=0.5, steps=0, seconds=0.0, examples_per_second=0.0, history=[]))
    return finetuning


def test_a_fine_tuned_model_that_cannot_be_cached_is_a_warning_and_is_returned(untrained_finetune,
                                                                                tmp_path,
                                                                                monkeypatch):
    finetuning = untrained_finetune
    save = finetuning.save_pretrained

    def read_only_cache(model, target, **kwargs):
        if Path(target).is_relative_to(tmp_path / "cache"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(target))
        return save(model, target, **kwargs)
    monkeypatch.setattr(finetuning, "save_pretrained", read_only_cache)
    config = FinetuneConfig(max_train_examples=16, max_dev_examples=8, min_steps=0)
    with pytest.warns(UserWarning, match=f"could not write the fine-tuned model "
                                         f"{finetuned_dir('polarity', config)} to the cache "
                                         r"\(Read-only file system\)"):
        model, tokenizer, info = finetuned_model("polarity", config, progress=False)
    assert info["task"] == "polarity" and model.head_kind == "sequence_classification"
    folder = finetuned_dir("polarity", config)
    assert tokenizer.vocab_size == 30522 and not folder.exists()
    assert not folder.with_name(folder.name + ".tmp").exists()  # no half-written staging folder
    assert not list(folder.parent.glob(f".{folder.name}.tmp-*"))  # nor atomic_folder's


def test_a_cached_fine_tune_keeps_its_training_rows_as_a_finetune_folder_does(untrained_finetune):
    """Its folder, given as --model, is guarded against scoring its training rows."""
    from samp_jax.tasks.trained_rows import TRAINED_ROWS_CONFIG, overlap, trained_rows
    config = FinetuneConfig(max_train_examples=16, max_dev_examples=8, min_steps=0)
    finetuned_model("polarity", config, progress=False)
    folder = finetuned_dir("polarity", config)
    train = get_task("polarity", seed=config.seed).split("train")
    assert overlap(trained_rows(folder), train) == len(train)
    assert json.loads((folder / "config.json").read_text()).items() >= TRAINED_ROWS_CONFIG.items()


# writes, hashes and loads MiniLM's 90 MB folder four times
@pytest.mark.slow
def test_a_cached_fine_tune_is_used_only_as_it_was_written(untrained_finetune, monkeypatch, tmp_path):
    """finetune.json lists every other file of the cached folder with its sha256 and size; a
    file changed, removed or added since is named (found vs recorded), and the model is trained
    again and cached in its place, or, without training, refused. An entry linking to a
    folder of the user's is never replaced."""
    from samp_jax.core.digests import file_digest
    finetuning = untrained_finetune
    trained = []
    untrained = finetuning.finetune
    monkeypatch.setattr(finetuning, "finetune", lambda *a, **k: trained.append(1) or untrained(*a, **k))
    config = FinetuneConfig(max_train_examples=16, max_dev_examples=8, min_steps=0)
    _, _, info = finetuned_model("polarity", config, progress=False)
    folder = finetuned_dir("polarity", config)
    files = {p.name for p in folder.iterdir()} - {"finetune.json"}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= files
    assert info["files"] == {name: file_digest(folder / name) for name in files}
    assert json.loads((folder / "finetune.json").read_text()) == info
    finetuned_model("polarity", config)  # as written: loaded, not trained
    assert len(trained) == 1
    entry = re.escape(f"the cached fine-tuned polarity model {folder} is not as it was written: ")

    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x10  # one bit of the last weight
    weights.write_bytes(bytes(data))
    found = file_digest(weights)["sha256"][:16]
    recorded = info["files"]["model.safetensors"]["sha256"][:16]
    with pytest.raises(finetuning.CachedModelError,
                       match=entry + re.escape(f"model.safetensors: {len(data)} bytes, sha256 {found}..., "
                                               f"recorded {len(data)} bytes, sha256 {recorded}.... "
                                               "Delete the folder, or pass train_if_missing=True, "
                                               "to train it again")):
        finetuned_model("polarity", config, train_if_missing=False)
    assert len(trained) == 1 and weights.read_bytes() == bytes(data)  # refused, nothing changed
    with pytest.warns(UserWarning, match=entry + r"model.safetensors: .*; training it again"):
        finetuned_model("polarity", config, progress=False)
    assert len(trained) == 2 and file_digest(weights)["sha256"][:16] == recorded

    # no config.json left: not a model folder, still the cache's own to replace
    (folder / "config.json").unlink()
    (folder / "extra.txt").write_text("x")
    with pytest.warns(UserWarning, match=entry + "config.json: missing; extra.txt: not one of "
                                                 "the files written there; training it again"):
        finetuned_model("polarity", config, progress=False)
    assert len(trained) == 3 and (folder / "config.json").is_file() and not (folder / "extra.txt").exists()
    finetuned_model("polarity", config)  # cached again, whole
    assert len(trained) == 3

    # an entry that links to a folder of the user's: named, never replaced
    mine = tmp_path / "mine"
    folder.rename(mine)
    folder.symlink_to(mine, target_is_directory=True)
    (mine / "README.md").write_text("my notes")
    with pytest.warns(UserWarning) as warned:
        finetuned_model("polarity", config, progress=False)
    said = [str(w.message) for w in warned]
    assert any("README.md: not one of the files written there" in line for line in said), said
    assert any(line.startswith(f"could not write the fine-tuned model {folder} to the cache")
               for line in said), said
    assert (mine / "README.md").read_text() == "my notes" and folder.is_symlink()


def test_a_cached_fine_tunes_summary_is_sealed(tmp_path):
    """finetune.json holds the sha256 of the rest of itself: an edit to any field, a file that
    is not JSON and one written without its seal and file list are each one problem."""
    from samp_jax.training.finetuning import _read_cached, _write_info
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    written = _write_info(tmp_path, {"task": "polarity", "dev_metric": 0.75, "steps": 3})
    assert _read_cached(tmp_path) == (written, [])
    for field, value in (("dev_metric", 0.99), ("steps", 4), ("files", {})):
        (tmp_path / "finetune.json").write_text(json.dumps({**written, field: value}))
        assert _read_cached(tmp_path)[1][0] == ("finetune.json: its contents do not match its "
                                                "sha256 (edited since it was written)"), field
    (tmp_path / "finetune.json").write_text("{not json")
    assert _read_cached(tmp_path)[1][0].startswith("finetune.json: unreadable (")
    (tmp_path / "finetune.json").write_text("[1]")
    assert _read_cached(tmp_path)[1] == ["finetune.json: a JSON list, expected an object"]
    (tmp_path / "finetune.json").write_text(json.dumps({"task": "polarity", "dev_metric": 0.75}))
    assert _read_cached(tmp_path)[1] == ["finetune.json has no sha256 of its contents and no list "
                                         "of the folder's files to check them against (it was "
                                         "written without them)"]


def test_evaluate_errors(minilm, tokenizer):
    with pytest.raises(ValueError, match="needs a sequence_classification head"):
        evaluate(minilm, "snli", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="task name='glue' is not one of"):
        get_task("glue")
    with pytest.raises(ValueError, match="split='valid' is not one of"):
        get_task("snli").split("valid")
    with pytest.raises(ValueError, match="a tokenizer is required"):
        get_task("snli").evaluation(None, "test")
    with pytest.raises(ValueError, match="invalid fine-tuning settings"):
        FinetuneConfig(learning_rate=-1.0)


def test_a_large_dev_split_is_scored_through_a_seeded_sample_of_all_of_it():
    """`max_dev_examples` of a larger dev split: drawn over the whole split (a dev file sorted
    by class gave its first rows, one class, to every evaluation), kept in order, seeded apart
    from the training order."""
    from types import SimpleNamespace

    from samp_jax.training import finetuning
    dev = [{"label": 0}] * 1500 + [{"label": 1}] * 1500  # a dev file sorted by class
    task = SimpleNamespace(splits=SimpleNamespace(train=list(range(40)), dev=dev),
                           encode=lambda tokenizer, examples: examples, task_metric=None,
                           task_type=SimpleNamespace(grouped=False))
    task.split = lambda name: getattr(task.splits, name)
    task.examples = functools.partial(Task.examples, task)  # the real subsetting
    config = FinetuneConfig(max_dev_examples=1000, max_train_examples=20)
    train, scored = finetuning._encoded_splits(task, None, config, np.random.default_rng(0))
    assert len(scored) == 1000 and 400 < sum(row["label"] for row in scored) < 600
    again = finetuning._encoded_splits(task, None, config, np.random.default_rng(0))
    assert again == (train, scored)
    alone, _ = finetuning._encoded_splits(task, None, dataclasses.replace(config, max_dev_examples=None),
                                          np.random.default_rng(0))
    assert alone == train and train == sorted(train)  # the training rows do not depend on it


def test_a_task_scored_by_another_metric_than_its_default():
    """`metric_name` picks one of the task type's metrics: its evaluation and score use it, the
    fine-tune loss stays the one its gold answers give; one it does not offer is refused by
    name, with the choices."""
    import dataclasses

    from samp_jax.data.splits import TaskSplits
    from samp_jax.tasks import Task, get_task_type
    rows = tuple({"text": f"row {i}", "label": i % 3} for i in range(12))
    task = Task("mine", get_task_type("text_classification"), ("a", "b", "c"),
                TaskSplits(train=rows, dev=(), calibration=(), search=(), test=rows))
    chosen = dataclasses.replace(task, metric_name="class_macro_f1")
    assert (task.metric, chosen.metric) == ("accuracy", "class_macro_f1")
    assert chosen.training_loss is task.training_loss
    with pytest.raises(ValueError, match=r"task 'mine' \(text_classification\): metric 'micro_f1' "
                                         r"is not one it can be scored by; these rows are scored "
                                         r"by accuracy or class_macro_f1"):
        dataclasses.replace(task, metric_name="micro_f1")
