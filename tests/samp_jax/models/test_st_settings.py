"""What a sentence-transformers folder does to texts before its transformer
(`sentence_bert_config.json`: `max_seq_length`, `do_lower_case`; a default prompt), against
SentenceTransformer's own embeddings (`tests/golden/families/roberta/sentence_settings`: a
cased byte-level BPE tokenizer, lowercased, truncated at 12 tokens)."""

import json
import shutil

import numpy as np
import pytest

from samp_jax import ConfigError, Tokenizer, load
from samp_jax.models.checkpoint import save_pretrained
from tests.helpers import GOLDEN

ROBERTA = GOLDEN / "families" / "roberta"


@pytest.fixture
def settings_folder(tmp_path):
    """The roberta sentence folder with the golden `sentence_bert_config.json` laid over it."""
    folder = tmp_path / "sentence"
    shutil.copytree(ROBERTA / "sentence", folder)
    shutil.copy(ROBERTA / "sentence_settings" / "sentence_bert_config.json", folder)
    return folder


def _texts():
    return json.loads((ROBERTA / "texts.json").read_text())["single"]


def test_max_seq_length_and_lowercasing_match_sentence_transformers(settings_folder):
    model = load(settings_folder)
    assert model.head_kind == "sentence_embedding" and model.tokenizer.max_length == 12
    embedding = np.asarray(model(**model.tokenizer(_texts(), truncation=True)))
    expected = np.load(ROBERTA / "sentence_settings" / "golden.npz")["single_sentence"]
    assert np.abs(embedding - expected).max() <= 1e-5  # measured 1e-7


def test_lowercasing_changes_the_ids_of_a_cased_tokenizer(settings_folder):
    plain = Tokenizer.from_pretrained(settings_folder)  # as HF's tokenizer: the settings are ST's
    lowered = Tokenizer.from_pretrained(settings_folder, sentence_transformers=True)
    texts = ["Élodie's Café", "THE SKY"]
    ids = lowered(texts, padding=12, truncation=True)["input_ids"]
    assert (ids != plain(texts, padding=12, truncation=True)["input_ids"]).any()
    lower = [t.lower() for t in texts]
    np.testing.assert_array_equal(ids, plain(lower, padding=12, truncation=True)["input_ids"])


def test_the_settings_survive_save_pretrained(settings_folder, tmp_path):
    """The saved folder states no sentence_bert_config.json; its tokenizer files carry both."""
    model = load(settings_folder)
    save_pretrained(model, tmp_path / "saved")
    reloaded = load(tmp_path / "saved")
    assert reloaded.tokenizer.max_length == 12
    texts = _texts()
    np.testing.assert_array_equal(reloaded.tokenizer(texts, truncation=True)["input_ids"],
                                  model.tokenizer(texts, truncation=True)["input_ids"])


def test_other_heads_tokenize_as_hf_does(settings_folder):
    """The settings belong to the sentence-transformers pipeline: the same folder loaded as an
    encoder (or as the base of a classifier) keeps the HF tokenizer's limit and case."""
    model = load(settings_folder, head="none")
    assert model.tokenizer.max_length == 40
    ids = model.tokenizer(["THE SKY"])["input_ids"]
    np.testing.assert_array_equal(ids, Tokenizer.from_pretrained(ROBERTA / "sentence")(["THE SKY"])["input_ids"])


@pytest.mark.parametrize("settings, says", [
    ({"max_seq_length": 0}, "max_seq_length=0 must be a positive integer"),
    ({"do_lower_case": "yes"}, "do_lower_case='yes' must be true or false"),
])
def test_malformed_settings_are_refused(settings_folder, settings, says):
    (settings_folder / "sentence_bert_config.json").write_text(json.dumps(settings))
    with pytest.raises(ConfigError, match=f"sentence_bert_config.json: {says}"):
        load(settings_folder)


def test_a_default_prompt_is_refused(settings_folder):
    file = settings_folder / "config_sentence_transformers.json"
    config = json.loads(file.read_text())
    file.write_text(json.dumps(config | {"prompts": {"query": "query: ", "empty": ""},
                                         "default_prompt_name": "query"}))
    with pytest.raises(ConfigError, match=r"config_sentence_transformers.json: "
                                          r"default_prompt_name='query' .* 'query: '"):
        load(settings_folder)
    file.write_text(json.dumps(config | {"prompts": {"query": "query: ", "empty": ""},
                                         "default_prompt_name": "empty"}))
    assert load(settings_folder).head_kind == "sentence_embedding"  # an empty prompt adds nothing
