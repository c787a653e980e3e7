import numpy as np
import pytest

from samp_jax import Tokenizer
from tests.helpers import golden_inputs


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return Tokenizer.from_pretrained(minilm_dir)


def test_matches_hf_tokenizer_on_singles_and_pairs(tokenizer, minilm_golden, minilm_texts):
    ids, mask, types = golden_inputs(minilm_golden, "single")
    batch = tokenizer(minilm_texts["sentences"])
    np.testing.assert_array_equal(batch["input_ids"], ids)
    np.testing.assert_array_equal(batch["attention_mask"], mask)
    np.testing.assert_array_equal(batch["token_type_ids"], types)
    pairs = minilm_texts["pairs"]
    batch = tokenizer([a for a, _ in pairs], [b for _, b in pairs])
    ids, mask, types = golden_inputs(minilm_golden, "pair")
    np.testing.assert_array_equal(batch["input_ids"], ids)
    np.testing.assert_array_equal(batch["token_type_ids"], types)
    assert batch["token_type_ids"].max() == 1  # the second segment is marked


def test_fixed_padding_length_and_right_padding(tokenizer):
    batch = tokenizer(["short", "a somewhat longer sentence here"], padding=16)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["input_ids"].dtype == np.int32
    mask = batch["attention_mask"]
    # right padding: every row is ones then zeros
    assert all(np.all(np.diff(row) <= 0) for row in mask)
    assert np.all(batch["input_ids"][mask == 0] == tokenizer.pad_id)


def test_overlong_rows_raise_unless_truncated(tokenizer):
    long_text = "word " * 40
    with pytest.raises(ValueError, match="exceed 16 tokens"):
        tokenizer([long_text], padding=16)
    cut = tokenizer([long_text, "x"], ["another long tail " * 5, "y"], padding=16, truncation=True)
    assert cut["input_ids"].shape == (2, 16)
    assert cut["attention_mask"][0].sum() == 16
    # truncation is scoped to the call: the next call raises again
    with pytest.raises(ValueError, match="exceed"):
        tokenizer([long_text], padding=16)


@pytest.mark.parametrize("texts, pairs, message", [
    ([], None, "empty batch"),
    (["a", "b"], ["c"], "2 texts but 1 pairs"),
])
def test_bad_batches(tokenizer, texts, pairs, message):
    with pytest.raises(ValueError, match=message):
        tokenizer(texts, pairs)


def test_single_string_is_rejected(tokenizer):
    with pytest.raises(TypeError):
        tokenizer("not a list")


def test_padding_beyond_model_limit(tokenizer):
    with pytest.raises(ValueError, match="exceeds max_length=512"):
        tokenizer(["x"], padding=1024)


def test_encode_words_reports_word_ids(tokenizer):
    batch, word_ids = tokenizer.encode_words([["@user", "loves", "Tokyo"], ["ok"]])
    assert word_ids.shape == batch["input_ids"].shape
    row = word_ids[0][batch["attention_mask"][0] == 1]
    assert row[0] == -1 and row[-1] == -1  # [CLS] and [SEP]
    assert sorted(set(row[1:-1])) == [0, 1, 2]  # every word maps to at least one piece
    assert np.all(np.diff(row[1:-1]) >= 0)
    assert np.all(word_ids[1][batch["attention_mask"][1] == 0] == -1)
    with pytest.raises(TypeError, match="batch of word lists"):
        tokenizer.encode_words(["not", "nested"])
