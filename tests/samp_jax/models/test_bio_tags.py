"""BIO and BIOES tags as entity spans (`samp_jax.models.bio_tags`), for any tag names or ids
into them, against seqeval's conlleval reading (`tests/golden/entity_spans.json`, from
`tools/golden_entities.py`). The BIO conlleval cases and entity F1 are tested through
`samp_jax.data.wnut16`."""

import json

import numpy as np
import pytest

from samp_jax.models.bio_tags import entity_counts, not_bio, split_tag, tag_spans
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
    assert not_bio(["O", "PER", "B-", "I-x", "S-x", "E-x", "L-x", "o", "B"]) == [
        "PER", "B-", "L-x", "o", "B"]


def test_bio_and_bioes_spans_are_seqevals():
    """Every transition between "O" and the four prefixes of two types, 405 sequences."""
    cases = json.loads((GOLDEN / "entity_spans.json").read_text())["cases"]
    assert sum(len(case["spans"]) for case in cases) > 2000
    for case in cases:
        assert tag_spans(case["tags"]) == [tuple(span) for span in case["spans"]], case["tags"]


def test_entity_counts_with_names():
    counts = entity_counts([[1, 2, 0]], [[1, 0, 0]], NAMES)
    assert counts.tolist() == [[1, 1, 0]]
