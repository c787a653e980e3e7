"""Every registered family against HF's own outputs (goldens written by `make golden` from small
random configs: 2 layers, odd sizes, padding inside batches, pairs), and the family tables."""

import json

import numpy as np
import pytest

from samp_jax import Tokenizer, load, load_pretrained
from samp_jax.models import FAMILIES, ConfigError, EncoderConfig, detect_head, get_family, read_pooling
from samp_jax.models.checkpoint import read_state_dict, save_pretrained
from samp_jax.models.families import UnsupportedFamilyError
from tests.helpers import GOLDEN

FAMILY_GOLDEN = GOLDEN / "families"
MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "modernbert", "deberta-v2",
               "camembert", "data2vec-text", "ernie")
BATCHES = ("single", "pair")
WITH_FLAX = ("bert", "roberta", "xlm-roberta", "distilbert", "electra")  # HF has no FlaxMPNet
# The pooling each golden sentence-transformers folder declares.
DECLARED = {"bert": ("cls",), "roberta": ("mean",), "xlm-roberta": ("max",),
            "distilbert": ("mean_sqrt_len",), "electra": ("mean",), "mpnet": ("cls",),
            "modernbert": ("mean",), "deberta-v2": ("mean",), "camembert": ("cls",),
            "data2vec-text": ("max",), "ernie": ("mean",)}


@pytest.fixture(scope="module", params=MODEL_TYPES)
def family(request):
    """`(model_type, golden arrays)`."""
    return request.param, dict(np.load(FAMILY_GOLDEN / request.param / "golden.npz"))


def inputs(golden, batch):
    return tuple(golden[f"{batch}_{key}"] for key in ("input_ids", "attention_mask", "token_type_ids"))


def test_every_family_is_registered():
    assert set(MODEL_TYPES) <= set(FAMILIES)
    with pytest.raises(UnsupportedFamilyError, match="model_type='deberta' is not supported"):
        get_family("deberta")


# ------------------------------------------------------------------------ golden parity
@pytest.mark.parametrize("batch", BATCHES)
def test_base_hidden_states_match_hf(family, batch):
    model_type, golden = family
    model = load_pretrained(FAMILY_GOLDEN / model_type / "base")
    assert model.config.model_type == model_type and model.head_kind == "none"
    ids, mask, types = inputs(golden, batch)
    hidden = np.asarray(model(ids, mask, types))
    valid = mask.astype(bool)
    assert np.abs(hidden[valid] - golden[f"{batch}_hidden"][valid]).max() <= 1.5e-5  # measured 3.8e-6


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("head", ["seqcls", "tokcls"])
def test_classifier_logits_match_hf(family, batch, head):
    model_type, golden = family
    model = load_pretrained(FAMILY_GOLDEN / model_type / head)
    kind = {"seqcls": "sequence_classification", "tokcls": "token_classification"}[head]
    assert model.head_kind == kind and model.labels is not None
    ids, mask, types = inputs(golden, batch)
    logits = np.asarray(model(ids, mask, types))
    expected = golden[f"{batch}_{head[:3]}_logits"]
    assert logits.shape == expected.shape
    if head == "tokcls":  # padded positions carry no meaning
        logits, expected = logits[mask.astype(bool)], expected[mask.astype(bool)]
    assert np.abs(logits - expected).max() <= 1e-5


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("mode", ["cls", "mean", "max", "mean_sqrt_len"])
def test_every_pooling_mode_matches_sentence_transformers(family, batch, mode):
    model_type, golden = family
    model = load_pretrained(FAMILY_GOLDEN / model_type / "base", head="sentence_embedding",
                            pooling=mode, normalize=False)
    ids, mask, types = inputs(golden, batch)
    pooled = np.asarray(model(ids, mask, types))
    expected = golden[f"{batch}_pool_{mode}"]
    cosine = np.sum(pooled * expected, -1) / np.linalg.norm(pooled, axis=-1) / np.linalg.norm(expected, axis=-1)
    assert cosine.min() >= 1 - 1e-6
    np.testing.assert_allclose(pooled, expected, rtol=1e-6, atol=1e-5)  # measured 3.8e-6


def test_sentence_transformers_folder_pools_as_declared(family):
    model_type, golden = family
    folder = FAMILY_GOLDEN / model_type / "sentence"
    assert read_pooling(folder).modes == DECLARED[model_type]
    model = load(folder)  # its own tokenizer, its own pooling, no arguments
    assert model.head_kind == "sentence_embedding" and model.head.pooling == DECLARED[model_type]
    texts = json.loads((FAMILY_GOLDEN / model_type / "texts.json").read_text())
    for batch, rows in (("single", texts["single"]), ("pair", texts["pair_sentence_texts"])):
        encoded = model.tokenizer(rows, truncation=True)
        embedding = np.asarray(model(**encoded))
        cosine = np.sum(embedding * golden[f"{batch}_sentence"], -1)
        assert cosine.min() >= 1 - 1e-6, (batch, cosine.min())


@pytest.mark.parametrize("model_type", WITH_FLAX)
def test_flax_msgpack_checkpoints_match_safetensors(model_type):
    golden = dict(np.load(FAMILY_GOLDEN / model_type / "golden.npz"))
    model = load_pretrained(FAMILY_GOLDEN / model_type / "seqcls_msgpack")
    ids, mask, types = inputs(golden, "pair")
    assert np.abs(np.asarray(model(ids, mask, types)) - golden["pair_seq_logits"]).max() <= 3e-6


def test_tokenizer_reproduces_hf_input_ids(family):
    """Our tokenizer on the folder's tokenizer.json gives HF's ids, pair format included."""
    model_type, golden = family
    folder = FAMILY_GOLDEN / model_type / "seqcls"
    tokenizer = Tokenizer.from_pretrained(folder)
    texts = json.loads((FAMILY_GOLDEN / model_type / "texts.json").read_text())
    single = tokenizer(texts["single"], truncation=True)
    pair = tokenizer([a for a, _ in texts["pairs"]], [b for _, b in texts["pairs"]], truncation=True)
    for batch, encoded in (("single", single), ("pair", pair)):
        ids, mask, types = inputs(golden, batch)
        np.testing.assert_array_equal(encoded["input_ids"], ids)
        np.testing.assert_array_equal(encoded["attention_mask"], mask)
        if EncoderConfig.from_hf_config(folder).type_vocab_size > 1:
            np.testing.assert_array_equal(encoded["token_type_ids"], types)


# --------------------------------------------------------------------------- head detection
@pytest.mark.parametrize("head,expected", [("base", ("none", None)), ("seqcls", ("sequence_classification", 3)),
                                           ("tokcls", ("token_classification", 5)),
                                           ("sentence", ("sentence_embedding", None))])
def test_heads_are_detected_for_every_family(family, head, expected):
    assert detect_head(FAMILY_GOLDEN / family[0] / head) == expected


def test_undeclared_pooling_needs_an_explicit_choice(family):
    with pytest.raises(ConfigError, match="declares no sentence-transformers pooling"):
        load_pretrained(FAMILY_GOLDEN / family[0] / "base", head="sentence_embedding")


# ------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("head", ["base", "seqcls", "tokcls", "sentence"])
def test_save_pretrained_round_trips_in_the_familys_naming(family, head, tmp_path):
    model_type, golden = family
    source = FAMILY_GOLDEN / model_type / head
    model = load(source)
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    original = json.loads((source / "config.json").read_text())
    assert config["model_type"] == model_type
    assert config["architectures"] == original["architectures"]
    # the same tensors under the same names as HF wrote them (buffers and unused poolers aside)
    ours, _ = read_state_dict(tmp_path)
    theirs, _ = read_state_dict(source)
    assert set(ours) <= set(theirs)
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    reloaded = load(tmp_path)
    assert reloaded.head_kind == model.head_kind and reloaded.labels == model.labels
    ids, mask, types = inputs(golden, "pair")
    np.testing.assert_array_equal(np.asarray(reloaded(ids, mask, types)), np.asarray(model(ids, mask, types)))


def test_pre_split_words_tokenize_as_hf_does(family):
    """Token classification input as a tagger is trained on it: RoBERTa's class (which needs
    add_prefix_space=True for is_split_into_words) encodes each word as following a space,
    ModernBERT's as its tokenizer is set; our tokenizer does the same."""
    model_type, golden = family
    tokenizer = Tokenizer.from_pretrained(FAMILY_GOLDEN / model_type / "tokcls")
    words = json.loads((FAMILY_GOLDEN / model_type / "texts.json").read_text())["words"]
    encoded, word_ids = tokenizer.encode_words(words, truncation=True)
    np.testing.assert_array_equal(encoded["input_ids"], golden["words_input_ids"])
    np.testing.assert_array_equal(word_ids, golden["words_word_ids"])


@pytest.mark.parametrize("model_type, prefixed", [("roberta", True), ("modernbert", False),
                                                  ("bert", False), ("data2vec-text", True),
                                                  ("camembert", False), ("ernie", False)])
def test_a_quantized_copy_splits_words_as_its_source(model_type, prefixed, tmp_path):
    """A quantized folder has no config.json: the tokenizer class that decides how pre-split
    words are read (here named by config.json's model type alone) comes from the model type
    it records."""
    import shutil
    from samp_jax import PrecisionMap, quantize
    folder = shutil.copytree(FAMILY_GOLDEN / model_type / "tokcls", tmp_path / "source")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("tokenizer_class", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    source = load(folder)
    assert source.tokenizer.words_prefix_space is prefixed
    fp16 = PrecisionMap.preset("fp16", source.config.num_layers)
    copy = load(quantize(source, fp16).save(tmp_path / "q"))
    assert copy.tokenizer.words_prefix_space is prefixed
    words = json.loads((FAMILY_GOLDEN / model_type / "texts.json").read_text())["words"]
    np.testing.assert_array_equal(
        copy.tokenizer.encode_words(words, truncation=True)[0]["input_ids"],
        source.tokenizer.encode_words(words, truncation=True)[0]["input_ids"])
