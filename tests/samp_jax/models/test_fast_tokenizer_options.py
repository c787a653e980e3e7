"""A `tokenizer.json` whose `tokenizer_config.json` states other options tokenizes as HF's fast
tokenizer classes make it when they load the folder (`samp_jax.models.fast_tokenizer_options`):
each folder of `fast_option_cases.py` against what transformers 4.57's `AutoTokenizer` (and
sentence-transformers, for the `st/` ones) gave (`tests/golden/fast_tokenizer_options.json`,
written by `tools/check_tokenizer_options.py`): the normalizer, pre-tokenizer and post-processor,
the ids, offsets and token types. Saved models keep the rewritten `tokenizer.json`; options of
the wrong type and a cased vocabulary HF would lowercase by default are refused, naming the file."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer

import samp_jax
from samp_jax import PrecisionMap, Tokenizer, quantize
from samp_jax.models.checkpoint import save_pretrained
from samp_jax.models.fast_tokenizer_options import apply_fast_options
from tests.samp_jax.models.fast_option_cases import (
    CASES,
    CUT_LENGTH,
    CUT_PAIR_LENGTH,
    PAIRS,
    RECORD,
    REFUSED,
    TEXTS,
    components,
    digest,
    source_folder,
    write_case,
)

PLAIN = [name for name, case in CASES.items() if case.st is None and name not in REFUSED]
ST = [name for name, case in CASES.items() if case.st is not None]


@pytest.fixture(scope="module")
def record():
    return json.loads(RECORD.read_text(encoding="utf-8"))


def _ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer([text])["input_ids"][0].tolist()


def test_the_record_was_made_from_these_tokenizer_files(record, minilm_dir):
    for source, recorded in record["sources"].items():
        text = (source_folder(source, minilm_dir) / "tokenizer.json").read_text(encoding="utf-8")
        assert digest(text) == recorded, source
    assert set(record["cases"]) == set(CASES)
    assert record["provenance"]["transformers"].startswith("4.57")


@pytest.mark.parametrize("name", PLAIN)
def test_each_folder_tokenizes_as_hf_fast_class(name, record, minilm_dir, tmp_path):
    expected = record["cases"][name]
    folder = write_case(name, tmp_path / "case", minilm_dir)
    tokenizer = Tokenizer.from_pretrained(folder, max_length=64)
    assert components(tokenizer._files["tokenizer.json"]) == {
        key: expected[key] for key in ("normalizer", "pre_tokenizer", "post_processor")}
    for text, want in zip(TEXTS, expected["single"]):
        assert _ids(tokenizer, text) == want["ids"], text
        assert [list(o) for o in tokenizer._backend.encode(text).offsets] == want["offsets"], text
    for (a, b), want in zip(PAIRS, expected["pairs"]):
        batch = tokenizer([a], [b])
        assert batch["input_ids"][0].tolist() == want["ids"]
        assert batch["token_type_ids"][0].tolist() == want["type_ids"]
    # rows cut as the class cuts them (its truncation_side): the ids HF keeps
    for text, want in zip(TEXTS, expected["cut"]):
        batch = tokenizer([text], truncation=True, max_length=CUT_LENGTH)
        assert batch["input_ids"][0][:sum(batch["attention_mask"][0])].tolist() == want, text
    for (a, b), want in zip(PAIRS, expected["cut_pairs"]):
        batch = tokenizer([a], [b], truncation=True, max_length=CUT_PAIR_LENGTH)
        assert batch["input_ids"][0].tolist() == want
    # pre-split words as a tagger is trained on them (RoBERTa's class: with a prefix space)
    for text, want in zip(TEXTS, expected["words"]["ids"]):
        batch, _ = tokenizer.encode_words([text.split()])
        assert batch["input_ids"][0].tolist() == want, text


@pytest.mark.parametrize("name", PLAIN)
def test_tokenizer_json_is_kept_verbatim_when_the_class_changes_nothing(name, record, minilm_dir,
                                                                        tmp_path):
    folder = write_case(name, tmp_path / "case", minilm_dir)
    written = (folder / "tokenizer.json").read_text(encoding="utf-8")
    kept = components(written) == {key: record["cases"][name][key]
                                   for key in ("normalizer", "pre_tokenizer", "post_processor")}
    tokenizer = Tokenizer.from_pretrained(folder, max_length=64)
    assert (tokenizer._files["tokenizer.json"] == written) is kept


@pytest.mark.parametrize("name", ST)
def test_sentence_transformers_lowercasing_and_prompt_follow_the_class_options(name, record,
                                                                               minilm_dir,
                                                                               tmp_path):
    """sentence-transformers' do_lower_case lowercases over the normalizer the class set (a
    Lowercase step in front of it); the prompt is tokenized with the text."""
    folder = write_case(name, tmp_path / "case", minilm_dir)
    tokenizer = Tokenizer.from_pretrained(folder, max_length=64, sentence_transformers=True)
    expected = record["cases"][name]
    assert components(tokenizer._files["tokenizer.json"])["normalizer"] == expected["normalizer"]
    assert [_ids(tokenizer, text) for text in TEXTS] == [s["ids"] for s in expected["single"]]


@pytest.mark.parametrize("name, place", [
    ("bert/cased_unstated", r"case/tokenizer_config.json does not state do_lower_case"),
    ("bert/cased_absent", r"case has no tokenizer_config.json"),
])
def test_a_cased_vocabulary_hf_would_lowercase_by_default_is_refused(name, place, record,
                                                                     minilm_dir, tmp_path):
    # HF lowercases it: its normalizer's lowercase false is overridden by the class's default
    assert record["cases"][name]["normalizer"]["lowercase"] is True
    folder = write_case(name, tmp_path / "case", minilm_dir)
    with pytest.raises(ValueError, match=place + r", and .*case/tokenizer.json is cased \(4 of 159 "
                       r"tokens .*'The', 'Dog', 'Guitar'.*HF's BertTokenizerFast .* would "
                       r'lowercase by default.*"do_lower_case": false for a cased model'):
        Tokenizer.from_pretrained(folder, max_length=64)


@pytest.mark.parametrize("name, options, message", [
    ("minilm/lower_false", {"do_lower_case": "false"}, r"sets do_lower_case to 'false'; expected bool"),
    ("minilm/lower_false", {"strip_accents": 0}, r"sets strip_accents to 0; expected bool or null"),
    ("minilm/lower_false", {"tokenize_chinese_chars": None},
     r"sets tokenize_chinese_chars to None; expected bool"),
    ("roberta/prefix_true", {"add_prefix_space": "yes"}, r"sets add_prefix_space to 'yes'"),
    ("roberta/prefix_true", {"trim_offsets": 1}, r"sets trim_offsets to 1; expected bool"),
    ("roberta/prefix_true", {"tokenizer_class": 5},
     r"sets tokenizer_class to 5; expected a class name"),
    ("minilm/split_special_tokens", {"split_special_tokens": "true"},
     r"sets split_special_tokens to 'true'; expected bool"),
    ("minilm/truncation_left", {"truncation_side": "middle"},
     r"sets truncation_side to 'middle'; expected one of \('right', 'left'\)"),
])
def test_an_option_of_the_wrong_type_is_refused_naming_the_file(name, options, message,
                                                                minilm_dir, tmp_path):
    folder = write_case(name, tmp_path / "case", minilm_dir)
    config = json.loads((folder / "tokenizer_config.json").read_text()) | options
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"case/tokenizer_config.json " + message):
        Tokenizer.from_pretrained(folder, max_length=64)


def test_split_special_tokens_holds_for_truncated_rows_words_and_a_pickled_copy(minilm_dir,
                                                                               tmp_path):
    """The tokenizers library keeps `encode_special_tokens` on the object only; every backend
    samp-jax encodes with (the truncating copies, the words backend, an unpickled tokenizer)
    must have it."""
    folder = write_case("minilm/split_special_tokens", tmp_path / "case", minilm_dir)
    tokenizer = Tokenizer.from_pretrained(folder, max_length=12)
    sep = tokenizer._backend.token_to_id("[SEP]")
    text = "Hi [SEP] there [SEP] again and again"
    cut = tokenizer([text], truncation=True)["input_ids"][0].tolist()
    assert len(cut) == 12 and sep not in cut[1:-1]
    words = tokenizer.encode_words([["Hi", "[SEP]", "there"]])[0]["input_ids"][0].tolist()
    assert sep not in words[1:-1]
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy([text], truncation=True)["input_ids"][0].tolist() == cut
    assert Tokenizer.from_pretrained(tmp_path / "case", max_length=12).split_special_tokens
    saved = Tokenizer.from_pretrained(tokenizer.save(tmp_path / "saved"), max_length=12)
    assert saved([text], truncation=True)["input_ids"][0].tolist() == cut


def test_tokenizer_json_is_kept_where_no_known_class_or_component_applies(minilm_dir, tmp_path):
    """A class samp-jax knows no rules of (named, or of an unknown model type, or none), and a
    BERT tokenizer without a normalizer (transformers 4.57 fails to load it): kept as it is."""
    text = (minilm_dir / "tokenizer.json").read_text(encoding="utf-8")
    for config, model in [({"tokenizer_class": "SomeOtherTokenizer", "do_lower_case": False}, None),
                          ({"do_lower_case": False}, {"model_type": "t5"}),
                          ({"do_lower_case": False}, None)]:
        assert apply_fast_options(text, config, model, tmp_path) is text
    bare = json.dumps(json.loads(text) | {"normalizer": None})
    assert apply_fast_options(bare, {"do_lower_case": False}, {"model_type": "bert"}, tmp_path) is bare


def _raw_ids(folder, text: str) -> list[int]:
    """The ids of the saved tokenizer.json read as it is (no options applied)."""
    return HFTokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids


@pytest.mark.parametrize("name, quantized", [("roberta/prefix_true", True),
                                             ("mpnet/lower_false", False)])
def test_a_saved_model_keeps_the_rewritten_tokenizer_json(name, quantized, record, minilm_dir,
                                                          tmp_path):
    """The family golden model with the case's tokenizer files: its tokenizer, saved with
    save_pretrained (and as a quantized folder), is the one HF tokenizes with, also for a reader
    of tokenizer.json alone."""
    folder = write_case(name, tmp_path / "model", minilm_dir, full=True)
    model = samp_jax.load(folder)
    expected = [s["ids"] for s in record["cases"][name]["single"]]
    assert [_ids(model.tokenizer, t) for t in TEXTS] == expected
    saved = [save_pretrained(model, tmp_path / "saved")]
    if quantized:
        saved.append(quantize(model, PrecisionMap.preset("fully_quant", model.config.num_layers))
                     .save(tmp_path / "quantized"))
    for out in saved:
        assert (out / "tokenizer.json").read_text(encoding="utf-8") == \
            model.tokenizer._files["tokenizer.json"]
        assert [_raw_ids(out, t) for t in TEXTS] == expected
        again = samp_jax.load(out)
        assert again.tokenizer._files["tokenizer.json"] == model.tokenizer._files["tokenizer.json"]
        batch = again.tokenizer(TEXTS)
        np.testing.assert_array_equal(batch["input_ids"], model.tokenizer(TEXTS)["input_ids"])


def test_a_source_folder_is_left_as_it_is(minilm_dir, tmp_path):
    """Reading a folder never writes into it; only the tokenizer samp-jax holds is rewritten."""
    folder = write_case("minilm/lower_false", tmp_path / "case", minilm_dir)
    before = (folder / "tokenizer.json").read_bytes()
    Tokenizer.from_pretrained(folder, max_length=64)
    assert (folder / "tokenizer.json").read_bytes() == before


# ------------------------------------------- folders transformers 5 wrote (the installed one)
FAMILY_GOLDEN = __import__("tests.helpers", fromlist=["GOLDEN"]).GOLDEN / "families"
WORDS = [["A", "man", "in", "Paris"], ["Nobody", "is", "outside", "."]]


def _saved_by_transformers5(source, target, **options):
    """The tokenizer of `source` loaded and saved by the installed transformers 5."""
    import transformers
    assert int(transformers.__version__.split(".")[0]) >= 5, transformers.__version__
    hf = transformers.AutoTokenizer.from_pretrained(source, **options)
    hf.save_pretrained(target)
    assert "backend" in json.loads((target / "tokenizer_config.json").read_text())
    return hf


@pytest.mark.parametrize("family, head, options", [
    # its base class (TokenizersBackend) keeps add_prefix_space in tokenizer_config.json and
    # applies it nowhere; 4.57's base class wrote it into the pre-tokenizer (a leading space)
    ("modernbert", "seqcls", {"add_prefix_space": True}),
    ("roberta", "tokcls", {}),
    ("roberta", "tokcls", {"add_prefix_space": True}),
    ("xlm-roberta", "tokcls", {}),
    ("bert", "tokcls", {}),
])
def test_a_folder_transformers5_wrote_tokenizes_as_transformers5(family, head, options, tmp_path):
    """Texts, pairs and pre-split words: transformers 5 reads a tagger's words as its tokenizer
    is set (RoBERTa's default: no leading space, where 4.57 refused them without
    add_prefix_space=True and samp-jax reads an older folder's words after a space)."""
    hf = _saved_by_transformers5(FAMILY_GOLDEN / family / head, tmp_path, **options)
    ours = Tokenizer.from_pretrained(tmp_path)
    texts = ["Hello World, this is a test.", "  A man plays  "]

    def real(encoded, row):
        return [int(i) for i, m in zip(encoded["input_ids"][row], encoded["attention_mask"][row]) if m]
    for row, text in enumerate(texts):
        assert real(ours(texts), row) == hf(text)["input_ids"]
    assert real(ours(["a b"], ["c d"]), 0) == hf("a b", "c d")["input_ids"]
    encoded, _ = ours.encode_words(WORDS)
    for row, words in enumerate(WORDS):
        assert real(encoded, row) == hf(words, is_split_into_words=True)["input_ids"]


# Expected ids from transformers 4.57.6 (AutoTokenizer on the same edited folders); HF 5.25
# gives the same.
STATED_TOKEN_CASES = {
    "additional_new": ("bert", {"additional_special_tokens": ["[E1]", "<ent>"]},
                       {"a [E1] b": [2, 21, 155, 22, 3], "x<ent>y": [2, 44, 156, 45, 3]}),
    "additional_in_vocabulary": ("bert", {"additional_special_tokens": ["dog", "is"]},
                                 {"ais": [2, 21, 90, 3], "hotdog": [2, 28, 77, 82, 102, 3]}),
    "decoder_new": ("bert", {"added_tokens_decoder": {
        "155": {"content": "[E1]", "lstrip": True, "normalized": False, "rstrip": True,
                "single_word": False, "special": True},
        "156": {"content": "ent", "lstrip": False, "normalized": True, "rstrip": False,
                "single_word": True, "special": False}}},
        {"a [E1] b": [2, 21, 155, 22, 3], "the ent sky": [2, 89, 156, 106, 3]}),
    "roberta_additional_in_vocabulary": ("roberta", {"additional_special_tokens": ["is", "the"]},
                                         {"this is": [0, 88, 76, 265, 225, 265, 2],
                                          "theme": [0, 300, 81, 73, 2]}),
}


@pytest.mark.parametrize("case", sorted(STATED_TOKEN_CASES))
def test_tokens_the_config_states_and_tokenizer_json_lacks_are_added_as_hf_adds_them(
        tmp_path, case):
    """A folder edited by hand (or by another tool) may state tokens in tokenizer_config.json
    that its tokenizer.json lacks: HF's fast class adds them when it loads the folder, so a
    literal `[E1]` is that token, not `[UNK]` or word pieces."""
    import shutil
    from tests.helpers import GOLDEN
    family, edit, expected = STATED_TOKEN_CASES[case]
    folder = tmp_path / case
    shutil.copytree(GOLDEN / "families" / family / "base", folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    if "added_tokens_decoder" in edit:
        edit = {"added_tokens_decoder": config["added_tokens_decoder"] | edit["added_tokens_decoder"]}
    config_file.write_text(json.dumps(config | edit))
    tokenizer = Tokenizer.from_pretrained(folder)
    got = {text: tokenizer([text])["input_ids"][0].tolist() for text in expected}
    assert got == expected
    again = Tokenizer.from_pretrained(tokenizer.save(tmp_path / "saved"))  # kept when saved
    assert {text: again([text])["input_ids"][0].tolist() for text in expected} == expected


def test_a_stated_token_whose_id_is_not_the_one_it_gets_is_refused_naming_the_file(tmp_path):
    import shutil
    from tests.helpers import GOLDEN
    folder = tmp_path / "bert"
    shutil.copytree(GOLDEN / "families" / "bert" / "base", folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"]["999"] = {"content": "[E1]", "lstrip": False, "normalized": False,
                                            "rstrip": False, "single_word": False, "special": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"tokenizer_config\.json gives '\[E1\]' id 999, but the "
                                         r"tokenizer built from the vocabulary gives it 155"):
        Tokenizer.from_pretrained(folder)
