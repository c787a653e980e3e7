"""Word accuracy, the metric of a tagger whose tags are not entity tags (part of speech): the
words tagged right over the words scored, against scikit-learn's `accuracy_score` on the
flattened word tags (`tests/golden/word_accuracy.json`, `tools/golden_word_accuracy.py`) and a
count by hand; read at each word's first piece and never at a word whose gold is `IGNORE`; the
tag names choose it over entity F1; its bootstrap margin by hand."""

from __future__ import annotations

import dataclasses
import json

import datasets
import numpy as np
import pytest

import samp_jax as sj
from samp_jax.data.splits import TaskSplits
from samp_jax.models.bio_tags import names_entities, near_entity_names, reads_entities
from samp_jax.tasks import TASK_TYPES, Task, load_task
from samp_jax.tasks.chance import chance_level
from samp_jax.tasks.metrics import ENTITY_F1, IGNORE, WORD_ACCURACY, bootstrap_weights

from tests.helpers import GOLDEN

UPOS = ("ADJ", "ADP", "ADV", "DET", "NOUN", "PRON", "PUNCT", "VERB")
TAGGER = TASK_TYPES["token_classification"]


def accuracy_score(gold: list, predicted: list) -> float:
    """The fraction of equal pairs, counted by hand (scikit-learn's `accuracy_score`)."""
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def _flat(gold: np.ndarray, predicted: np.ndarray) -> tuple[list, list]:
    """The scored words' gold and predicted tags, one list over all sentences."""
    keep = gold != IGNORE
    return gold[keep].tolist(), predicted[keep].tolist()


def test_word_accuracy_and_its_resamples_are_sklearns_accuracy_on_the_flattened_tags():
    golden = json.loads((GOLDEN / "word_accuracy.json").read_text())
    labels, sentences = golden["labels"], golden["sentences"]
    width = max(len(s["gold"]) for s in sentences) + 2  # positions past a sentence: padding
    gold = np.full((len(sentences), width), IGNORE)
    predicted = np.zeros_like(gold)
    for row, s in enumerate(sentences):
        gold[row, :len(s["gold"])] = [IGNORE if t is None else labels.index(t) for t in s["gold"]]
        predicted[row, :len(s["predicted"])] = [labels.index(t) for t in s["predicted"]]
    evidence = WORD_ACCURACY.evidence(predicted, gold, labels)
    assert evidence[7].tolist() == [0, 0]  # a sentence with no word scored counts for nothing
    assert WORD_ACCURACY.value(evidence) == pytest.approx(golden["accuracy"], abs=1e-12)
    weights = np.array([r["weights"] for r in golden["resamples"]])
    np.testing.assert_allclose(WORD_ACCURACY.resampled(evidence, weights),
                               [r["accuracy"] for r in golden["resamples"]], atol=1e-12)


def test_word_accuracy_pools_the_words_and_resamples_sentences():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, len(UPOS), (30, 12))
    gold[rng.random(gold.shape) < 0.3] = IGNORE  # pieces past the first, specials, padding
    gold[4] = IGNORE  # a sentence with no word scored counts for nothing
    predicted = np.where(rng.random(gold.shape) < 0.6, gold, rng.integers(0, len(UPOS), gold.shape))
    evidence = WORD_ACCURACY.evidence(predicted, gold, UPOS)
    assert evidence.shape == (30, 2) and evidence[4].tolist() == [0, 0]
    assert WORD_ACCURACY.value(evidence) == pytest.approx(accuracy_score(*_flat(gold, predicted)),
                                                          abs=1e-12)
    # a mean of per-sentence accuracies is another figure: the words are pooled
    per_sentence = [accuracy_score(*_flat(g[None], p[None])) for g, p in zip(gold, predicted)
                    if (g != IGNORE).any()]
    assert abs(np.mean(per_sentence) - WORD_ACCURACY.value(evidence)) > 1e-4
    # each bootstrap resample is the accuracy of its sentences repeated
    weights = bootstrap_weights(30)[:5]
    expected = [accuracy_score(*_flat(np.repeat(gold, w, 0), np.repeat(predicted, w, 0)))
                for w in weights]
    np.testing.assert_allclose(WORD_ACCURACY.resampled(evidence, weights), expected, atol=1e-12)
    assert np.isnan(WORD_ACCURACY.resampled(evidence, np.eye(30)[4:5])).all()  # no word scored


def test_the_tag_names_choose_entity_f1_or_word_accuracy():
    examples = [{"tokens": ["a"], "tags": [0]}]
    for names, metric in ((("O", "B-PER", "I-PER"), ENTITY_F1),
                          (("O", "B-NP", "I-NP", "B-VP"), ENTITY_F1),  # chunks, as spans
                          (("B-PER", "E-PER", "S-PER"), ENTITY_F1),  # no "O": still entities
                          (UPOS, WORD_ACCURACY),
                          (("NN", "NNS", "VBZ", "-LRB-", "PRP$", ",", "``"), WORD_ACCURACY),  # Penn
                          (("LABEL_0", "LABEL_1", "LABEL_2"), WORD_ACCURACY),
                          (("O", "PER", "LOC"), ENTITY_F1),  # IO: "O" beside bare types
                          (("o", "per"), ENTITY_F1),
                          (("ADJ", "NOUN", "O"), ENTITY_F1),  # "O" is outside, whatever else
                          (("O",), WORD_ACCURACY),  # "O" alone names no entity type
                          (("O", "o", "PER"), WORD_ACCURACY),  # which is outside: a guess
                          (("Case=Nom|Number=Sing", "Mood=Ind"), WORD_ACCURACY)):
        assert reads_entities(names) == (metric is ENTITY_F1), names
        assert names_entities(names) == (metric is ENTITY_F1 and "-" in names[-1]), names
        assert TAGGER.metric_for(examples, names) is metric, names
        # the other metric of an entity tagger is word accuracy; a word tagger has no other
        offered = [m.name for m in TAGGER.metrics_for(examples, names)]
        assert offered == (["entity_f1", "word_accuracy"] if metric is ENTITY_F1
                           else ["word_accuracy"]), names
    assert TAGGER.metric_for(examples) is ENTITY_F1  # names unknown: as before


def _pos_task(examples, **options) -> Task:
    return Task("pos", TAGGER, UPOS, TaskSplits(train=(), dev=(), calibration=(), search=(),
                                                 test=tuple(examples)), **options)


WORDS = [  # words the MiniLM tokenizer cuts into several pieces, and words of one
    (["the", "unbelievably", "photosynthesizing", "cat", "sleeps", "."], [3, 2, 0, 4, 7, 6]),
    (["antidisestablishmentarianism", "is", "long"], [4, 7, 0]),
    (["quickly", ",", "she", "reorganized", "everything"], [2, 6, 5, 7, IGNORE]),
]


def test_a_tagger_is_scored_at_each_words_first_piece_and_not_at_ignored_words(minilm_dir):
    """The logits at each word's first piece hold the prediction; those at its other pieces
    (and at the specials) say another tag. Scoring every piece, or counting the word whose
    gold is IGNORE, would give another value: both are computed and differ."""
    tokenizer = sj.Tokenizer.from_pretrained(minilm_dir)
    examples = [{"tokens": words, "tags": tags} for words, tags in WORDS]
    task = _pos_task(examples)
    assert task.metric == "word_accuracy"
    encoded = task.encode(tokenizer, examples)
    _, word_ids = tokenizer.encode_words([e["tokens"] for e in examples])
    rng = np.random.default_rng(1)
    logits = np.zeros((*encoded.labels.shape, len(UPOS)), np.float32)
    gold_words, predicted_words, every_piece = [], [], ([], [])
    for row, e in enumerate(examples):
        guesses = [t if t != IGNORE and rng.random() < 0.5 else int(rng.integers(len(UPOS)))
                   for t in e["tags"]]
        seen = set()
        for position in range(logits.shape[1]):
            word = word_ids[row][position] if position < word_ids.shape[1] else -1
            first = word >= 0 and word not in seen
            seen.add(word)
            tag = guesses[word] if first else (len(UPOS) - 1 if word < 0 else 0)  # others: wrong
            logits[row, position, tag] = 5.0
            if word >= 0 and e["tags"][word] != IGNORE:
                every_piece[0].append(e["tags"][word])
                every_piece[1].append(tag)
        for tag, guess in zip(e["tags"], guesses):
            if tag != IGNORE:
                gold_words.append(tag)
                predicted_words.append(guess)
    assert sum(len(w) for w, _ in WORDS) - 1 == len(gold_words) < len(every_piece[0])
    expected = accuracy_score(gold_words, predicted_words)
    score = task.score(logits, encoded)
    assert score == {"metric": "word_accuracy", "value": pytest.approx(expected, abs=1e-12),
                     "examples": 3}
    assert abs(accuracy_score(*every_piece) - expected) > 0.05  # scoring every piece differs
    counted = len(gold_words) * expected / (len(gold_words) + 1)  # the ignored word counted
    assert abs(counted - expected) > 0.01


def test_load_task_reads_pos_tags_as_the_models_names_and_refuses_tags_it_lacks(tmp_path):
    rows = [row for i in range(10) for row in (
        {"tokens": ["a", "big", f"dog{i}"], "tags": ["DET", "ADJ", "NOUN"]},
        {"tokens": [f"it{i}", "runs"], "tags": ["PRON", "VERB"]})]
    task = load_task(rows, labels=UPOS)
    assert task.labels == UPOS and task.metric == "word_accuracy"
    assert task.split("test")[0]["tags"] in ([3, 0, 4], [5, 7])
    numbered = load_task([{"tokens": r["tokens"], "tags": [UPOS.index(t) for t in r["tags"]]}
                          for r in rows], labels=tuple(f"LABEL_{i}" for i in range(8)))
    assert numbered.metric == "word_accuracy"  # a head of generic names: its ids as they are
    with pytest.raises(ValueError, match=r"item 2 has label 'NOUN', which is not one of the "
                                         r"model's labels \['DET', 'ADJ'\]"):
        load_task(rows, labels=("DET", "ADJ"))
    with pytest.raises(ValueError, match=r"metric 'entity_f1' is not one it can be scored by; "
                                         r"these rows are scored by word_accuracy \(entity_f1 "
                                         r"does not read the label names \['ADJ', "):
        dataclasses.replace(task, metric_name="entity_f1")


def test_an_entity_tagger_may_be_scored_by_word_accuracy_too(minilm_dir):
    tags = ("O", "B-PER", "I-PER")
    rows = [{"tokens": ["Ada", "Lovelace", "wrote"], "tags": [1, 2, 0]},
            {"tokens": ["she", "did"], "tags": [0, 0]}]
    task = Task("ner", TAGGER, tags, TaskSplits((), (), (), (), tuple(rows)))
    assert task.metric == "entity_f1"
    words = dataclasses.replace(task, metric_name="word_accuracy")
    encoded = words.encode(sj.Tokenizer.from_pretrained(minilm_dir), rows)
    logits = np.zeros((*encoded.labels.shape, 3), np.float32)
    logits[..., 0] = 1.0  # "O" everywhere: 3 of the 5 words, and no entity
    assert words.score(logits, encoded)["value"] == pytest.approx(3 / 5)
    assert task.score(logits, encoded)["value"] == 0.0


def test_word_accuracy_guarded_drop_is_the_drop_plus_the_paired_bootstrap_margin():
    # per sentence (scored, right): the candidate tags two words of sentence 0 wrong
    base = np.array([[5, 5], [3, 2], [4, 4], [6, 5]], np.float64)
    candidate = np.array([[5, 3], [3, 2], [4, 4], [6, 5]], np.float64)
    drop = 16 / 18 - 14 / 18
    pseudo_base, pseudo_candidate = np.array([[1, 1], [1, 0]]), np.array([[1, 0], [1, 1]])
    rng = np.random.default_rng(0)  # bootstrap_weights' resamples, by hand
    weights = np.stack([np.bincount(rng.integers(0, 6, 6), minlength=6) for _ in range(1000)])

    def accuracy(rows):
        return (weights @ rows[:, 1]) / (weights @ rows[:, 0])
    margin = 1.645 * np.std(accuracy(np.r_[base, pseudo_base])
                            - accuracy(np.r_[candidate, pseudo_candidate]), ddof=1)
    assert margin > 0.02
    assert WORD_ACCURACY.guarded_drop(base, candidate) == pytest.approx(drop + margin, rel=1e-12)
    unchanged = WORD_ACCURACY.guarded_drop(base, base)  # the pseudo-sentences alone
    assert unchanged == pytest.approx(1.645 * np.std(accuracy(np.r_[base, pseudo_base])
                                                     - accuracy(np.r_[base, pseudo_candidate]),
                                                     ddof=1), rel=1e-12)
    assert unchanged > 0.01


def test_the_word_accuracy_margin_keeps_its_level():
    """Sentences of about 15 words, 90% tagged right; the candidate loses one right word in a
    sentence with the probability that makes its true word accuracy drop 5% past the allowed
    one (1% of it). Over 300 search splits of 200 sentences it passes in under 4% of them
    (5% is the margin's nominal level), as the same test of entity F1's bootstrap does."""
    rng = np.random.default_rng(5)

    def sentences(n):
        words = 1 + rng.poisson(14, n)
        return np.stack([words, rng.binomial(words, 0.9)], 1).astype(np.float64)
    population = sentences(400_000)
    allowed = 0.01 * population[:, 1].sum() / population[:, 0].sum()
    slope = (population[:, 1] >= 1).mean() / population[:, 0].mean()
    accepted, draws = 0, 300
    for _ in range(draws):
        base = sentences(200)
        candidate = base.copy()
        candidate[(base[:, 1] >= 1) & (rng.random(200) < 1.05 * allowed / slope), 1] -= 1
        accepted += WORD_ACCURACY.guarded_drop(base, candidate) <= allowed
    assert accepted / draws <= 0.04


def test_the_chance_level_of_a_word_tagger_is_its_most_frequent_tag(minilm_dir):
    rows = [{"tokens": ["the", "dog", "the", "cat"], "tags": [3, 4, 3, 4]},
            {"tokens": ["the", "end"], "tags": [3, 4]},
            {"tokens": ["a", "sleeps"], "tags": [3, 7]}]
    task = _pos_task(rows)
    encoded = task.encode(sj.Tokenizer.from_pretrained(minilm_dir), rows)
    chance = chance_level(TAGGER, UPOS, encoded, task.task_metric)
    assert (chance.metric, chance.label, chance.value) == ("word_accuracy", "DET", 4 / 8)


def test_a_datasets_pos_column_and_a_two_field_conll_file_are_word_tagged(tmp_path):
    """conll2003's `pos_tags` (a ClassLabel sequence beside `ner_tags`), named as the tags;
    a `word POS` CoNLL file, its last field the tags."""
    penn = ["NN", "NNP", "VBZ", "DT", "."]
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "pos_tags": datasets.Sequence(datasets.ClassLabel(names=penn)),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-ORG", "I-ORG"]))})
    rows = {"tokens": [["The", f"firm{i}", "grows", "."] for i in range(20)],
            "pos_tags": [[3, 0, 2, 4]] * 20, "ner_tags": [[0, 1, 0, 0]] * 20}
    dataset = datasets.Dataset.from_dict(rows, features=features)
    assert load_task(dataset).metric == "entity_f1"  # ner_tags: a usual name of the tags
    task = load_task(dataset, columns={"tags": "pos_tags"}, labels=penn)
    assert task.metric == "word_accuracy" and task.labels == tuple(penn)
    assert task.split("test")[0]["tags"] == [3, 0, 2, 4]
    path = tmp_path / "pos.conll"
    path.write_text("".join(f"The DT\nfirm{i} NN\ngrows VBZ\n. .\n\n" for i in range(20)))
    conll = load_task(path)
    assert conll.metric == "word_accuracy" and conll.labels == (".", "DT", "NN", "VBZ")


@pytest.mark.parametrize("names", [
    ("o", "b-per", "i-per"),  # lowercase
    ("O", "B_PER", "I_PER", "B_LOC"),  # an underscore
    ("O", "PER-B", "PER-I"),  # the prefix after the type
    ("O", "B", "I"),  # typeless: keyphrases
])
def test_entity_tags_in_another_spelling_are_not_scored_by_word_accuracy_unasked(names):
    """A NER head whose tags entity F1 cannot read would, read as word tags, be scored by word
    accuracy, mostly "O": refused unless word accuracy is asked for by name."""
    assert near_entity_names(names) == [n for n in names if n.lower() != "o"]
    task = load_task([{"tokens": ["a", f"w{i}"], "tags": [0, 1]} for i in range(10)],
                     labels=names)
    with pytest.raises(ValueError, match=r"look like entity tags in another spelling than "
                       r"'<B\|I\|E\|S\|L\|U>-<type>'.*choose --metric word_accuracy"):
        task.metric
    assert dataclasses.replace(task, metric_name="word_accuracy").metric == "word_accuracy"


@pytest.mark.parametrize("names", [
    UPOS, ("NN", "NNS", "VBZ", "-LRB-", "PRP$", ",", "``"), ("NN-TL", "VB-HL", "AT"),
    ("O", "PER", "LOC"), ("O", "B-PER", "I-PER"), ("LABEL_0", "LABEL_1"), ("X", "B", "I")])
def test_word_tags_and_readable_entity_tags_raise_no_doubt(names):
    assert near_entity_names(names) == []
    assert WORD_ACCURACY.doubt(names) is None
