"""IO tags ("O" beside bare types: "PER", "LOC") scored by entity F1, an entity being each
maximal run of words of one type: counts written by hand (seqeval does not read bare tags),
and the same F1 as the tags converted to BIO (each run's first word "B-") give through the
BIO reading; which name sets are IO; `predict` and the metric read one definition."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from samp_jax.app import predictions
from samp_jax.data.splits import TaskSplits
from samp_jax.models import bio_tags
from samp_jax.models.bio_tags import IO, entity_counts, entity_scheme, io_outside, type_runs
from samp_jax.tasks import TASK_TYPES, Task, load_task
from samp_jax.tasks.metrics import ENTITY_F1, IGNORE

IO_NAMES = ("O", "PER", "LOC", "ORG")
TAGGER = TASK_TYPES["token_classification"]

# (gold, predicted) per sentence, and (gold entities, predicted entities, correct) by hand
SENTENCES = [
    (["PER", "PER", "O", "LOC"], ["PER", "PER", "O", "ORG"], (2, 2, 1)),
    (["O", "PER", "PER", "LOC", "LOC", "O"], ["O", "PER", "O", "LOC", "LOC", "O"], (2, 2, 1)),
    # two persons side by side are one run: IO cannot tell them apart
    (["PER", "PER", "PER"], ["PER", "O", "PER"], (1, 2, 0)),
    (["O", "O"], ["LOC", "O"], (0, 1, 0)),
]


def _ids(rows: list[list[str]], names, width: int) -> np.ndarray:
    """Tag ids per sentence, padded with `IGNORE` (positions no metric scores)."""
    out = np.full((len(rows), width), IGNORE)
    for i, row in enumerate(rows):
        out[i, :len(row)] = [names.index(t) for t in row]
    return out


def as_bio(tags: list[str]) -> list[str]:
    """IO tags written in BIO: each run's first word "B-", the rest "I-"."""
    return ["O" if t == "O" else ("I-" if i and tags[i - 1] == t else "B-") + t
            for i, t in enumerate(tags)]


def test_io_entity_f1_counts_runs_of_one_type_as_counted_by_hand():
    gold, predicted = [g for g, _, _ in SENTENCES], [p for _, p, _ in SENTENCES]
    evidence = ENTITY_F1.evidence(_ids(predicted, IO_NAMES, 7), _ids(gold, IO_NAMES, 7), IO_NAMES)
    assert evidence.tolist() == [list(counts) for _, _, counts in SENTENCES]
    # 5 gold entities, 7 predicted, 2 right
    assert ENTITY_F1.value(evidence) == pytest.approx(2 * 2 / (5 + 7), abs=1e-12)
    assert ENTITY_F1.details(evidence) == {"precision": pytest.approx(2 / 7),
                                           "recall": pytest.approx(2 / 5)}
    assert entity_counts(gold, predicted).tolist() == evidence.tolist()  # names from the tags


def test_io_entity_f1_is_the_f1_of_the_tags_converted_to_bio():
    rng = np.random.default_rng(0)
    gold = [list(rng.choice(IO_NAMES, int(rng.integers(1, 12)), p=[0.5, 0.2, 0.2, 0.1]))
            for _ in range(300)]
    predicted = [[t if rng.random() < 0.8 else str(rng.choice(IO_NAMES)) for t in row]
                 for row in gold]
    bio_names = ("O", *(f"{p}-{t}" for t in IO_NAMES[1:] for p in "BI"))
    io = ENTITY_F1.evidence(_ids(predicted, IO_NAMES, 12), _ids(gold, IO_NAMES, 12), IO_NAMES)
    bio = ENTITY_F1.evidence(_ids([as_bio(r) for r in predicted], bio_names, 12),
                             _ids([as_bio(r) for r in gold], bio_names, 12), bio_names)
    np.testing.assert_array_equal(io, bio)
    assert 0.3 < ENTITY_F1.value(io) < 0.9 and io[:, 0].sum() > 300
    # word accuracy of the same words is another, higher figure: mostly "O" counted
    words = [(g, p) for gr, pr in zip(gold, predicted) for g, p in zip(gr, pr)]
    assert sum(g == p for g, p in words) / len(words) > ENTITY_F1.value(io) + 0.1


@pytest.mark.parametrize("names, outside", [
    (("O", "PER", "LOC"), "O"),
    (("o", "per", "loc"), "o"),
    (("LOC", "O"), "O"),
    (("O", "DATE-TIME", "geo_loc"), "O"),  # a hyphen or underscore inside a type
    (("O",), None),  # no type
    (("O", "o", "PER"), None),  # which is outside would be a guess
    (("ADJ", "NOUN", "VERB"), None),  # part of speech: no "O"
    (("NN", "NNS", "VBZ", "DT", ","), None),
    (("LABEL_0", "LABEL_1"), None),
    (("O", "B-PER", "I-PER"), None),  # BIO
    (("O", "B-PER", "PER"), None),  # BIO mixed with a bare type: refused as BIO
    (("O", "B_PER", "I_PER"), None),  # BIO misspelt: not the types "B_PER", "I_PER"
    (("O", "PER-B", "PER-I"), None),
    (("O", "B", "I"), None),
])
def test_which_names_are_io_tags(names, outside):
    assert io_outside(names) == outside
    if outside is not None:
        assert entity_scheme(names) == IO
        assert TAGGER.metric_for([], names) is ENTITY_F1


def test_entity_scheme_names_the_prefixed_schemes_too():
    assert [entity_scheme(n) for n in (("O", "B-x", "I-x"), ("O", "S-x", "E-x", "B-x"),
                                       ("O", "U-x"), ("O", "x"))] == ["BIO", "BIOES", "BILOU", IO]
    with pytest.raises(ValueError, match="are not 'O' or"):
        entity_scheme(("NOUN", "VERB"))


def test_predict_reads_io_tags_by_the_metrics_runs():
    assert predictions.type_runs is bio_tags.type_runs  # one definition
    assert predictions.entity_reader(IO_NAMES)(["PER", "PER", None, "PER", "LOC"]) == [
        ("PER", 0, 2), ("PER", 3, 4), ("LOC", 4, 5)]
    assert predictions.entity_reader(("o", "per"))(["per", "o", "per"]) == [
        ("per", 0, 1), ("per", 2, 3)]
    assert predictions.entity_reader(("O", "B_PER", "I_PER")) is None  # not types "B_PER"
    for gold, _, (count, _, _) in SENTENCES:
        assert len(predictions.entity_reader(IO_NAMES)(gold)) == count
    assert type_runs(["x", "x", "y"], outside="y") == [("x", 0, 2)]


def test_load_task_scores_io_tags_by_entity_f1_and_word_accuracy_on_request():
    rows = [{"tokens": [f"w{i}", "in", "Paris"], "tags": ["PER", "O", "LOC"]} for i in range(10)]
    task = load_task(rows)
    assert task.labels == ("O", "LOC", "PER") and task.metric == "entity_f1"
    assert dataclasses.replace(task, metric_name="word_accuracy").metric == "word_accuracy"
    empty = TaskSplits((), (), (), (), ())
    assert Task("io", TAGGER, IO_NAMES, empty).metric == "entity_f1"
    assert Task("pos", TAGGER, ("ADJ", "NOUN", "VERB"), empty).metric == "word_accuracy"
