"""The length rows are cut at: the model's own limit by default (the length `predict` serves),
a task's `max_length` when it sets one, and the counts of what a cut leaves out (rows, and a
tagger's words past the cut), exact at the boundary and for text pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samp_jax.data import TaskSplits
from samp_jax.models import Tokenizer
from samp_jax.tasks import TASK_TYPES, Task, get_task, load_task
from samp_jax.tasks.task import BUILTIN_MAX_LENGTH
from samp_jax.tasks.truncation import Truncation, describe_all

LABELS = ("O", "B-thing", "I-thing")


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    """MiniLM's tokenizer with a limit above 128, so that a default left at 128 shows."""
    return Tokenizer.from_pretrained(minilm_dir, max_length=256)


def words(n: int) -> str:
    """`n` words of one token each ("good" and "movie" are single MiniLM word pieces)."""
    return " ".join(["good", "movie"][i % 2] for i in range(n))


def task(task_type: str, test: list[dict], labels=None, max_length=None) -> Task:
    return Task("t", TASK_TYPES[task_type], labels, TaskSplits((), (), (), (), tuple(test)),
                max_length=max_length)


def test_rows_are_cut_at_the_models_limit_by_default(tokenizer):
    rows = [{"text": words(200), "label": 0}, {"text": words(3), "label": 1}]
    long = task("text_classification", rows, labels=("a", "b"))
    assert long.max_length is None and long.length(tokenizer) == 256
    encoded = long.encode(tokenizer, rows)
    assert encoded.lengths.tolist() == [202, 5]  # [CLS] 200 words [SEP]: nothing cut
    assert encoded.truncation == Truncation(256, 2, 0)
    # a file loaded without max_length keeps the model's limit too
    assert load_task([{"text": words(i + 1), "label": "ab"[i % 2]} for i in range(40)]).max_length is None


def test_a_tasks_max_length_is_honoured_and_capped_at_the_models_limit(tokenizer):
    rows = [{"text": words(200), "label": 0}]
    assert task("text_classification", rows, ("a", "b"), 64).encode(tokenizer, rows).lengths[0] == 64
    assert task("text_classification", rows, ("a", "b"), 1000).length(tokenizer) == 256
    with pytest.raises(ValueError, match="max_length=0 must be a positive whole number"):
        task("text_classification", rows, ("a", "b"), 0)


def test_built_in_tasks_keep_the_length_of_their_recorded_figures():
    assert get_task("polarity").max_length == BUILTIN_MAX_LENGTH == 128
    assert get_task("snli-embed").max_length is None  # embedded at the model's limit, as recorded


def test_rows_cut_are_counted_exactly_at_the_boundary_and_for_pairs(tokenizer):
    pairs = [{"text": words(10), "text_pair": words(19), "label": 0},  # 3 + 29 = 32: kept whole
             {"text": words(10), "text_pair": words(20), "label": 1},  # 33: the pair is cut
             {"text": words(2), "text_pair": words(40), "label": 0},   # a short text, long pair
             {"text": words(3), "text_pair": words(3), "label": 1}]
    pair_task = task("text_pair_classification", pairs, ("a", "b"), 32)
    assert pair_task.truncation(tokenizer, pairs) == Truncation(32, 4, 2)
    singles = [{"text": words(30), "label": 0}, {"text": words(31), "label": 1}]  # 32, 33 tokens
    single_task = task("text_classification", singles, ("a", "b"), 32)
    evaluation = single_task.evaluation(tokenizer)
    assert evaluation.truncation == Truncation(32, 2, 1)
    assert evaluation.truncation.describe("test") == (
        "1 of 2 test rows is longer than 32 tokens and was truncated")


def test_a_taggers_words_past_the_cut_are_counted_with_those_in_gold_entities(tokenizer):
    # 16 tokens hold [CLS], 14 words and [SEP]
    tagged = [{"tokens": words(20).split(), "tags": [0] * 14 + [1, 2, 0, 0, 1, 0]},
              {"tokens": words(14).split(), "tags": [1] + [0] * 13},  # exactly 16 tokens
              {"tokens": words(3).split(), "tags": [0, 1, 2]}]
    tagger = task("token_classification", tagged, LABELS, 16)
    evaluation = tagger.evaluation(tokenizer)
    assert evaluation.truncation == Truncation(16, 3, 1, words_cut=6, entity_words_cut=3)
    # the words past the cut have no label left: the metric cannot see them
    assert (evaluation.encoded.labels[0] != -100).sum() == 14
    assert evaluation.truncation.describe("test") == (
        "1 of 3 test rows is longer than 16 tokens and was truncated; 6 tagged words past the "
        "cut are not scored (3 of them in gold entities)")
    assert tagger.truncation(tokenizer, tagged) == evaluation.truncation


def test_a_tokenizer_cutting_on_the_left_drops_and_counts_a_taggers_first_words(minilm_dir,
                                                                              tmp_path):
    """`truncation_side: left` (tokenizer_config.json) keeps a row's last words: the first
    ones are those not scored, and counted."""
    folder = Tokenizer.from_pretrained(minilm_dir, max_length=256).save(tmp_path / "left")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {"truncation_side": "left"}))
    left = Tokenizer.from_pretrained(folder)
    tagged = [{"tokens": words(20).split(), "tags": [1, 2, 0, 1, 0, 0] + [0] * 14}]
    tagger = task("token_classification", tagged, LABELS, 16)
    evaluation = tagger.evaluation(left)
    assert evaluation.truncation == Truncation(16, 1, 1, words_cut=6, entity_words_cut=3)
    labels = evaluation.encoded.labels[0]
    assert labels[1:15].tolist() == [0] * 14  # the last 14 words' tags, the first six gone


def test_embedding_pairs_count_a_pair_whose_either_text_was_cut(tokenizer):
    pairs = [{"text": words(3), "text_pair": words(40), "label": 1},
             {"text": words(3), "text_pair": words(4), "label": 0},
             {"text": words(50), "text_pair": words(4), "label": 0}]
    embedding = task("embedding_pairs", pairs, max_length=32)
    assert embedding.evaluation(tokenizer).truncation == Truncation(32, 3, 2)


def test_calibration_inputs_count_the_cut_of_the_rows_they_read(tokenizer):
    """The first `max_examples` calibration rows (an embedding task: its unique texts), cut at
    the task's length: the batches hold those rows, the counts are theirs."""
    pairs = [{"text": words(3), "text_pair": words(40), "label": 1},
             {"text": words(3), "text_pair": words(50), "label": 0},
             {"text": words(60), "text_pair": words(4), "label": 0}]
    embedding = Task("t", TASK_TYPES["embedding_pairs"], None,
                     TaskSplits((), (), tuple(pairs), (), ()), max_length=32)
    batches, cut = embedding.calibration_inputs(tokenizer, max_examples=3, batch_size=2)
    assert cut == Truncation(32, 3, 2)  # texts of 3, 40 and 50 words; the 60 is not read
    assert sum(int(b["attention_mask"].any(axis=1).sum()) for b in batches) == 3
    assert sorted(int(n) for b in batches for n in b["attention_mask"].sum(axis=1) if n) == [5, 32, 32]
    rows = [{"text": words(n), "label": n % 2} for n in (40, 3, 50, 4)]
    classes = Task("t", TASK_TYPES["text_classification"], ("a", "b"),
                   TaskSplits((), (), tuple(rows), (), ()), max_length=32)
    batches, cut = classes.calibration_inputs(tokenizer, max_examples=3)
    assert cut == Truncation(32, 3, 2)
    assert sorted(int(n) for b in batches for n in b["attention_mask"].sum(axis=1) if n) == [5, 32, 32]
    assert all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in
               zip(batches, classes.calibration_batches(tokenizer, max_examples=3)))


def test_encoded_rows_keep_only_the_bucket_their_longest_row_needs(tokenizer):
    """The default length does not make short rows wider: the arrays end at the smallest
    length bucket that holds the longest row, and batches take the same buckets as before."""
    rows = [{"text": words(n), "label": n % 2} for n in (3, 10, 40)]
    encoded = task("text_classification", rows, ("a", "b")).encode(tokenizer, rows)
    assert encoded.input_ids.shape == (3, 64)
    shapes = [batch["input_ids"].shape for _, batch in encoded.batches(1)]
    assert shapes == [(1, 32), (1, 32), (1, 64)]


def test_several_splits_make_one_line():
    assert describe_all({"search": Truncation(64, 10, 0), "test": None}) is None
    assert describe_all({"search": Truncation(64, 10, 2), "test": Truncation(64, 5, 0)}) == (
        "2 of 10 search rows are longer than 64 tokens and were truncated")
    np.testing.assert_equal(Truncation(64, 10, 2).as_dict(),
                            {"max_length": 64, "rows": 10, "rows_truncated": 2})
