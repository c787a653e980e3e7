import json
import numpy as np
import pytest

from samp_jax import Tokenizer
from tests.helpers import GOLDEN, golden_inputs


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return Tokenizer.from_pretrained(minilm_dir, sentence_transformers=False)  # as HF's AutoTokenizer


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
    with pytest.raises(ValueError, match="padding=1024 exceeds the tokenizer's max_length=512"):
        tokenizer(["x"], padding=1024)
    with pytest.raises(ValueError, match="max_length=600 exceeds the tokenizer's max_length=512"):
        tokenizer(["x"], max_length=600)
    with pytest.raises(ValueError, match="padding=16 is shorter than max_length=32"):
        tokenizer(["x"], padding=16, max_length=32)


def test_truncated_marks_exactly_the_rows_longer_than_max_length(tokenizer):
    """`return_truncated` marks a row when it had more than `max_length` tokens: a row of
    exactly `max_length` is not cut; pairs and pre-split words likewise."""
    words = "one two three four five six seven eight nine ten".split()
    texts = [" ".join(words[:n]) for n in (1, 5, 6, 7, 10)]  # 3 .. 12 tokens with [CLS] [SEP]
    full = tokenizer.lengths(texts)
    batch = tokenizer(texts, truncation=True, max_length=8, return_truncated=True)
    assert batch["truncated"].tolist() == (full > 8).tolist() == [False, False, False, True, True]
    assert batch["input_ids"].shape == (5, 8)  # "longest", within max_length
    assert batch["attention_mask"].sum(axis=1).tolist() == np.minimum(full, 8).tolist()
    pairs = ["a b", "a b c d e f"]
    flagged = tokenizer(texts[:2], pairs, truncation=True, max_length=9, return_truncated=True)
    assert flagged["truncated"].tolist() == (tokenizer.lengths(texts[:2], pairs) > 9).tolist()
    rows = [t.split() for t in texts]
    batch, word_ids = tokenizer.encode_words(rows, truncation=True, max_length=8,
                                             return_truncated=True)
    assert batch["truncated"].tolist() == (tokenizer.lengths(rows, words=True) > 8).tolist()
    assert word_ids.shape == batch["input_ids"].shape
    assert "truncated" not in tokenizer(texts, truncation=True, max_length=8)


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


def test_rows_tokenized_in_chunks_equal_one_batch(tokenizer, monkeypatch):
    """Rows go to the tokenizers library a chunk at a time: the arrays, marks and a refused
    row's index are those of one batch."""
    import samp_jax.models.token_rows as token_rows
    texts = ["a", "a b c d e f g h", "a b", "a b c d e f g h i j k", "a b c"]
    whole = tokenizer(texts, truncation=True, max_length=8, return_truncated=True)
    words = [t.split() for t in texts]
    whole_words = tokenizer.encode_words(words, truncation=True, max_length=8)
    monkeypatch.setattr(token_rows, "ENCODE_CHUNK_ROWS", 2)
    chunked = tokenizer(texts, truncation=True, max_length=8, return_truncated=True)
    assert chunked.keys() == whole.keys()
    for key in whole:
        np.testing.assert_array_equal(chunked[key], whole[key], err_msg=key)
    chunked_words = tokenizer.encode_words(words, truncation=True, max_length=8)
    for got, want in zip(chunked_words[0].values(), whole_words[0].values()):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(chunked_words[1], whole_words[1])
    assert tokenizer(texts[:1], padding=16)["input_ids"].shape == (1, 16)
    with pytest.raises(ValueError, match=r"2 row\(s\) exceed 8 tokens \(first: row 1 with 10\)"):
        tokenizer(texts, max_length=8)


def test_a_limit_below_the_special_tokens_says_so(tokenizer):
    """Cut to 2 tokens a pair still holds [CLS] [SEP] [SEP]: truncation cannot help, and the
    message says what can."""
    with pytest.raises(ValueError, match=r"1 row\(s\) exceed 2 tokens \(first: row 0 with 5\); "
                                         r"max_length=2 is below the special tokens a row needs"):
        tokenizer(["a"], ["b"], truncation=True, max_length=2)


def test_truncating_copies_are_bounded(tokenizer):
    """A copy of the backend per cut length is kept, at most `TRUNCATING_COPIES` of them; a
    length whose copy was dropped cuts as before."""
    from samp_jax.models.tokenizer import TRUNCATING_COPIES
    text = [" ".join(["good", "movie"] * 20)]  # 42 tokens
    first = tokenizer(text, truncation=True, max_length=6)["input_ids"]
    for length in range(7, 7 + 2 * TRUNCATING_COPIES):
        assert tokenizer(text, truncation=True, max_length=length)["input_ids"].shape[1] == length
    assert len(tokenizer._truncating) <= TRUNCATING_COPIES
    np.testing.assert_array_equal(tokenizer(text, truncation=True, max_length=6)["input_ids"], first)


# ------------------------------------------- the tokenizers library panicking on a text
RUNAWAY = "a" * 28 + "!"  # `(a+)+$` backtracks past Oniguruma's retry limit on it


@pytest.fixture(scope="module")
def runaway(minilm_dir, tmp_path_factory):
    """MiniLM's tokenizer with a Split pre-tokenizer whose regex gives up on `RUNAWAY`: the
    tokenizers library panics (pyo3's PanicException, a BaseException)."""
    import json
    import shutil
    folder = tmp_path_factory.mktemp("runaway")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, folder / name)
    spec = json.loads((minilm_dir / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False},
        spec["pre_tokenizer"]]}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    return Tokenizer.from_pretrained(folder, sentence_transformers=False)


PANIC = r"the tokenizers library failed{}: Onig: Regex search error: retry-limit-in-match over$"


def test_a_panic_of_the_tokenizers_library_is_a_value_error_naming_file_and_row(runaway):
    texts = ["fine", "also fine", RUNAWAY, "fine again"]
    with pytest.raises(ValueError, match=r"^tokenizer\.json of .*runaway\d*: " +
                       PANIC.format(r" on inputs\[2\]")):
        runaway(texts)
    with pytest.raises(ValueError, match=PANIC.format(r" on inputs\[1\]")):
        runaway(["x", "y"], ["z", RUNAWAY], truncation=True)
    with pytest.raises(ValueError, match=PANIC.format(r" on inputs\[1\]")):
        runaway.encode_words([["fine"], ["so", RUNAWAY]])
    with pytest.raises(ValueError, match=PANIC.format(r" on inputs\[2\]")):
        runaway.lengths(texts)
    with pytest.raises(ValueError, match=r"^tokenizer\.json of .*: " + PANIC.format("")):
        runaway.words(RUNAWAY)
    assert runaway(["fine"])["input_ids"].shape == (1, 3)  # still usable


def test_a_panic_names_the_row_of_the_whole_batch_in_a_later_chunk(runaway, monkeypatch):
    monkeypatch.setattr("samp_jax.models.token_rows.ENCODE_CHUNK_ROWS", 2)
    with pytest.raises(ValueError, match=PANIC.format(r" on inputs\[3\]")):
        runaway(["a", "b", "c", RUNAWAY, "d"])


def test_a_tokenizer_built_from_a_backend_is_named_as_the_tokenizer(runaway):
    plain = Tokenizer(runaway._backend, max_length=16, pad_id=0)
    with pytest.raises(ValueError, match=r"^the tokenizer: " + PANIC.format(r" on inputs\[0\]")):
        plain([RUNAWAY])


def test_an_interrupt_during_encoding_is_not_turned_into_an_error():
    from samp_jax.models.token_rows import encode_batch

    class Interrupted:
        def encode_batch(self, inputs, is_pretokenized):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_batch(Interrupted(), ["a"], pretokenized=False, source="x")


@pytest.mark.parametrize("edit", [
    {},  # BertTokenizer: types sent
    {"model_input_names": ["input_ids", "attention_mask"]},  # none sent, in any version
    {"model_input_names": ["input_ids", "token_type_ids", "attention_mask"]},
    {"tokenizer_class": "TokenizersBackend", "backend": "tokenizers"},  # transformers 5's generic
    {"tokenizer_class": "PreTrainedTokenizerFast", "backend": "tokenizers"},
], ids=["bert", "names-without-types", "names-with-types", "generic-5", "generic-fast-5"])
def test_pairs_carry_token_types_where_hfs_tokenizer_sends_them_else_zeros(edit, tmp_path):
    """HF's model defaults the token types to zeros where its tokenizer sends none, and was
    trained so: a pair's second segment is then type 0 here too (HF's tokenizer decides)."""
    import shutil
    from transformers import AutoTokenizer
    folder = tmp_path / "m"
    shutil.copytree(GOLDEN / "families" / "bert" / "seqcls", folder)
    (folder / "vocab.txt").unlink()  # tokenizer.json alone, as a generic class reads it
    config = json.loads((folder / "tokenizer_config.json").read_text()) | edit
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    hf = AutoTokenizer.from_pretrained(folder)("a man plays", "someone makes music")
    ours = Tokenizer.from_pretrained(folder)(["a man plays"], ["someone makes music"])
    assert ours["input_ids"][0].tolist() == hf["input_ids"]
    expected = hf.get("token_type_ids", [0] * len(hf["input_ids"]))
    assert ours["token_type_ids"][0].tolist() == expected
    assert ("token_type_ids" in hf) == (1 in expected)  # the cases differ


def test_model_input_names_that_are_not_a_list_of_names_are_refused(tmp_path):
    import shutil
    folder = tmp_path / "m"
    shutil.copytree(GOLDEN / "families" / "bert" / "seqcls", folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {"model_input_names": "ids"}))
    with pytest.raises(ValueError, match=r"tokenizer_config.json sets model_input_names to 'ids'; "
                                         r"expected a list of input names"):
        Tokenizer.from_pretrained(folder)


def test_a_tokenizer_transformers_5_saved_with_extra_special_tokens_as_a_list_loads(tmp_path):
    """transformers 5 writes `extra_special_tokens` as a list (CamemBERT's `<s>NOTUSED`, ...):
    the folder loads, tokenizes as HF's tokenizer does, and its model answers as before."""
    import shutil
    import samp_jax as sj
    from transformers import AutoTokenizer
    source = GOLDEN / "families" / "camembert" / "seqcls"
    folder = tmp_path / "resaved"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, folder / name)
    hf = AutoTokenizer.from_pretrained(source)
    hf.save_pretrained(folder)
    stated = json.loads((folder / "tokenizer_config.json").read_text())["extra_special_tokens"]
    assert isinstance(stated, list) and stated
    texts = [f"un film {stated[0]} superbe", "rien à dire"]
    ours = Tokenizer.from_pretrained(folder)(texts)
    theirs = AutoTokenizer.from_pretrained(folder)(texts, padding=True)
    assert ours["input_ids"].tolist() == theirs["input_ids"]
    before, after = sj.load(source), sj.load(folder)
    batch = before.tokenizer(texts)
    np.testing.assert_array_equal(np.asarray(before(**batch)), np.asarray(after(**batch)))
