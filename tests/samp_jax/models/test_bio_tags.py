"""BIO, BIOES and BILOU tags as entity spans (`samp_jax.models.bio_tags`), for any tag names or
ids into them, against seqeval's conlleval reading and its strict BILOU reading
(`tests/golden/entity_spans.json`, from `tools/golden_entities.py`). The BIO conlleval cases
and entity F1 are tested through `samp_jax.data.wnut16`."""

import json

import numpy as np
import pytest

from samp_jax.models.bio_tags import (SCHEMES, entity_counts, not_bio, scheme_of, split_tag,
                                      tag_spans)
from tests.helpers import GOLDEN

NAMES = ("O", "B-PER", "I-PER", "B-geo-loc", "I-geo-loc")


def test_spans_come_in_order_and_ids_read_as_their_names():
    tags = ["I-geo-loc", "B-PER", "I-PER", "O", "B-PER", "B-PER"]
    expected = [("geo-loc", 0, 1), ("PER", 1, 3), ("PER", 4, 5), ("PER", 5, 6)]
    assert tag_spans(tags) == expected
    ids = [NAMES.index(t) for t in tags]
    assert tag_spans(ids, NAMES) == expected
    assert tag_spans(np.array(ids), NAMES) == expected


def test_ids_need_names_in_range():
    with pytest.raises(ValueError, match="tag id 1 at position 0 needs the tag names"):
        tag_spans([1])
    with pytest.raises(ValueError, match=r"tag id 5 at position 1 is not in 0..4"):
        tag_spans([0, 5], NAMES)
    assert split_tag("B-a-b", 3) == ("B", "a-b")


def test_not_bio_names_the_names_that_are_not_bio_tags():
    assert not_bio(NAMES) == []
    assert not_bio(["O", "PER", "B-", "I-x", "S-x", "E-x", "L-x", "U-x", "X-x", "o", "B"]) == [
        "PER", "B-", "X-x", "o", "B"]


def test_bio_and_bioes_spans_are_seqevals():
    """Every transition between "O" and the four prefixes of two types, 405 sequences."""
    cases = json.loads((GOLDEN / "entity_spans.json").read_text())["cases"]
    assert sum(len(case["spans"]) for case in cases) > 2000
    for case in cases:
        assert tag_spans(case["tags"]) == [tuple(span) for span in case["spans"]], case["tags"]


def _bilou_cases():
    return json.loads((GOLDEN / "entity_spans.json").read_text())["bilou_cases"]


def test_valid_bilou_spans_are_seqevals_strict_bilou_spans():
    """Every well-formed BILOU sequence (each entity B- I-* L- or U-) reads as seqeval's strict
    mode with its BILOU scheme reads it; an "L-" read as "U-" (or the reverse) splits entities."""
    valid = [case for case in _bilou_cases() if case["valid"]]
    assert len(valid) > 200 and sum(len(case["strict"]) for case in valid) > 500
    for case in valid:
        assert tag_spans(case["tags"]) == [tuple(span) for span in case["strict"]], case["tags"]
    assert tag_spans(["B-PER", "L-PER", "U-geo-loc", "U-geo-loc"]) == [
        ("PER", 0, 2), ("geo-loc", 2, 3), ("geo-loc", 3, 4)]


def test_any_bilou_sequence_reads_as_bioes_with_l_as_e_and_u_as_s():
    """The lenient rule for BILOU that is not well formed (a stray "I-" or "L-", a "B-" without
    its "L-"): conlleval's reading of the sequence written in BIOES, as seqeval gives it."""
    cases = _bilou_cases()
    assert sum(not case["valid"] for case in cases) > 150
    for case in cases:
        assert tag_spans(case["tags"]) == [tuple(span) for span in case["lenient"]], case["tags"]
        as_bioes = [{"L": "E", "U": "S"}.get(t[0], t[0]) + t[1:] for t in case["tags"]]
        assert tag_spans(case["tags"]) == tag_spans(as_bioes)


def test_a_head_has_one_scheme_and_bioes_mixed_with_bilou_is_refused():
    assert [scheme_of(n) for n in (["O"], ["O", "B-x", "I-x"], ["B-x", "E-x", "S-y"],
                                   ["O", "U-x", "L-x"])] == ["BIO", "BIO", "BIOES", "BILOU"]
    assert list(SCHEMES) == ["BIO", "BIOES", "BILOU"]
    with pytest.raises(ValueError, match=r"prefixes \['B', 'E', 'L'\], which no one scheme has"):
        scheme_of(["O", "B-x", "E-x", "L-x"])
    with pytest.raises(ValueError, match=r"tags \['PER'\] are not 'O' or '<B\|I\|E\|S\|L\|U>-<type>'"):
        scheme_of(["O", "PER"])
    with pytest.raises(ValueError, match="tag 'U-x' at position 2 is BILOU and the tags before it "
                                         "are BIOES"):
        tag_spans(["S-x", "O", "U-x"])
    names = ("O", "B-x", "E-x", "L-x")
    assert tag_spans([1, 2, 0], names) == [("x", 0, 2)]  # one sequence of one scheme reads
    for gold, predicted in (([[1, 2, 0]], [[1, 3, 0]]), ([["B-x", "E-x"]], [["B-x", "L-x"]])):
        with pytest.raises(ValueError, match="which no one scheme has"):
            entity_counts(gold, predicted, names if isinstance(gold[0][0], int) else None)


def test_entity_counts_with_names():
    counts = entity_counts([[1, 2, 0]], [[1, 0, 0]], NAMES)
    assert counts.tolist() == [[1, 1, 0]]
