"""What a sentence-transformers folder does to texts before its transformer
(`sentence_bert_config.json`: `max_seq_length`, `do_lower_case`; the prompts of
`config_sentence_transformers.json`), against SentenceTransformer's own embeddings
(`tests/golden/families/roberta/sentence_settings`: a cased byte-level BPE tokenizer,
lowercased, truncated at 12 tokens; `sentence_prompts`: prompts over it)."""

import json
import shutil

import numpy as np
import pytest

from samp_jax import ConfigError, Tokenizer, load
from samp_jax.models.checkpoint import save_pretrained
from samp_jax.models.st_folder import PROMPTS_FILE
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
    plain = Tokenizer.from_pretrained(settings_folder, sentence_transformers=False)  # as HF's
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


@pytest.fixture
def prompts_folder(settings_folder):
    """The settings folder with the golden prompts (`tools/golden_st_prompts.py`) laid over it."""
    shutil.copy(ROBERTA / "sentence_prompts" / PROMPTS_FILE, settings_folder)
    return settings_folder


def _embed(model, texts=None):
    return np.asarray(model(**model.tokenizer(texts or _texts(), truncation=True)))


@pytest.mark.parametrize("prompt_name, key", [(None, "default"), ("passage", "prompt_passage"),
                                              ("document", "prompt_document"), ("", "none")])
def test_prompts_embed_as_sentence_transformers(prompts_folder, prompt_name, key):
    """The default prompt, a named one (no trailing space: merged into the first word), one of
    sentence-transformers 5's empty defaults, and none; lowercased and truncated with the text."""
    model = load(prompts_folder, prompt_name=prompt_name)
    expected = np.load(ROBERTA / "sentence_prompts" / "golden.npz")[key]
    assert np.abs(_embed(model) - expected).max() <= 1e-5  # measured 1e-7


def test_a_prompt_goes_before_the_text_and_the_first_of_a_pair(prompts_folder):
    tokenizer = load(prompts_folder).tokenizer
    assert tokenizer.prompt == "Query: " and tokenizer.prompts.active == "query"
    plain = Tokenizer.from_pretrained(prompts_folder, sentence_transformers=True, prompt_name="")
    assert plain.prompt == "" and "prompt" not in repr(plain)
    texts, pairs, prompted = ["a cat", "dogs"], ["sits", "run"], ["Query: a cat", "Query: dogs"]
    np.testing.assert_array_equal(tokenizer(texts)["input_ids"], plain(prompted)["input_ids"])
    np.testing.assert_array_equal(tokenizer(texts, pairs, truncation=True)["input_ids"],
                                  plain(prompted, pairs, truncation=True)["input_ids"])
    assert tokenizer(texts)["input_ids"].shape[1] > plain(texts)["input_ids"].shape[1]


def test_the_prompt_in_use_is_saved_as_the_default(prompts_folder, tmp_path):
    """A saved float or quantized model embeds with the prompt it was loaded with, and names
    the others (sentence-transformers reads the same default)."""
    from samp_jax import PrecisionMap, quantize
    model = load(prompts_folder, prompt_name="passage")
    save_pretrained(model, tmp_path / "float")
    saved = json.loads((tmp_path / "float" / PROMPTS_FILE).read_text())
    assert saved["default_prompt_name"] == "passage" and saved["prompts"]["query"] == "Query: "
    reloaded = load(tmp_path / "float")
    assert reloaded.tokenizer.prompt == "passage:"
    np.testing.assert_allclose(_embed(reloaded), _embed(model), atol=1e-6)
    quantized = quantize(reloaded, PrecisionMap.preset("fp32", reloaded.config.num_layers))
    quantized.save(tmp_path / "quantized")
    assert load(tmp_path / "quantized").tokenizer.prompt == "passage:"
    assert load(tmp_path / "quantized", prompt_name="query").tokenizer.prompt == "Query: "
    assert load(tmp_path / "quantized", prompt_name="").tokenizer.prompt == ""


def test_a_prompt_name_the_folder_lacks_is_refused_by_file(prompts_folder, tmp_path):
    with pytest.raises(ConfigError, match=r"prompt name 'search' is not one of the prompts of "
                                          r".*config_sentence_transformers.json: \['document', "
                                          r"'empty', 'passage', 'query'\]"):
        load(prompts_folder, prompt_name="search")
    config = json.loads((prompts_folder / PROMPTS_FILE).read_text())
    (prompts_folder / PROMPTS_FILE).write_text(json.dumps(config | {"default_prompt_name": "x"}))
    with pytest.raises(ConfigError, match="default_prompt_name='x' is not one of its prompts"):
        load(prompts_folder)
    (prompts_folder / PROMPTS_FILE).write_text(json.dumps(config | {"prompts": ["Query: "]}))
    with pytest.raises(ConfigError, match=r"prompts=\['Query: '\] must be an object"):
        load(prompts_folder)
    (prompts_folder / PROMPTS_FILE).unlink()
    with pytest.raises(ConfigError, match="prompt name 'query': prompts are a sentence embedder's"):
        load(prompts_folder, prompt_name="query")


def test_a_pooling_without_the_prompt_runs_only_without_one(prompts_folder):
    """`include_prompt` false leaves the prompt's tokens out of the pooling: without a prompt
    that changes nothing, so the folder loads; with one it is refused."""
    pooling = prompts_folder / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps(json.loads(pooling.read_text()) | {"include_prompt": False}))
    with pytest.raises(ConfigError, match=r"include_prompt=false.* 'query' is in use"):
        load(prompts_folder)
    expected = np.load(ROBERTA / "sentence_prompts" / "golden.npz")["none"]
    model = load(prompts_folder, prompt_name="")
    assert np.abs(_embed(model) - expected).max() <= 1e-5


def test_a_pooling_without_the_prompt_keeps_its_copies_without_prompts(prompts_folder, tmp_path):
    """A model loaded without a prompt from such a folder names no prompts, so neither its
    saved nor its quantized copy can take one up later (its pooling would leave it out)."""
    from samp_jax import PrecisionMap, quantize
    pooling = prompts_folder / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps(json.loads(pooling.read_text()) | {"include_prompt": False}))
    model = load(prompts_folder, prompt_name="")
    assert model.tokenizer.prompts is None
    save_pretrained(model, tmp_path / "float")
    save_pretrained(model, tmp_path / "copied", tokenizer_dir=prompts_folder)
    quantize(model, PrecisionMap.preset("fp32", model.config.num_layers)).save(tmp_path / "q")
    for saved in ("float", "copied", "q"):
        assert not (tmp_path / saved / PROMPTS_FILE).exists(), saved
        with pytest.raises(ConfigError, match="prompt name 'query': prompts are a sentence"):
            load(tmp_path / saved, prompt_name="query")


def test_save_pretrained_with_a_tokenizer_folder_keeps_the_prompt_in_use(prompts_folder, tmp_path):
    model = load(prompts_folder, prompt_name="passage")
    save_pretrained(model, tmp_path / "saved", tokenizer_dir=prompts_folder)
    assert json.loads((tmp_path / "saved" / PROMPTS_FILE).read_text())["default_prompt_name"] == "passage"
    assert load(tmp_path / "saved").tokenizer.prompt == "passage:"


def test_other_heads_read_no_prompts(prompts_folder):
    assert load(prompts_folder, head="none").tokenizer.prompt == ""
    with pytest.raises(ConfigError, match="the tokenizer of .* has none"):
        load(prompts_folder, head="none", prompt_name="query")


def test_the_command_line_embeds_with_the_prompt_named(prompts_folder, tmp_path, capsys):
    from samp_jax.app.cli import main
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in _texts()))
    golden = np.load(ROBERTA / "sentence_prompts" / "golden.npz")
    for argv, key in (([], "default"), (["--prompt-name", "passage"], "prompt_passage"),
                      (["--prompt-name", ""], "none")):
        out = tmp_path / f"{key}.jsonl"
        assert main(["predict", "--model", str(prompts_folder), "--data", str(data), "--out",
                     str(out), *argv]) == 0, capsys.readouterr().err
        got = np.array([json.loads(line)["embedding"] for line in out.read_text().splitlines()])
        assert np.abs(got - golden[key]).max() <= 1e-5
    assert main(["predict", "--model", str(prompts_folder), "--data", str(data), "--out",
                 str(tmp_path / "x.jsonl"), "--prompt-name", "search"]) != 0
    err = capsys.readouterr().err
    assert "prompt name 'search' is not one of the prompts" in err and "Traceback" not in err
    assert not (tmp_path / "x.jsonl").exists()


def test_a_cross_encoder_puts_its_prompt_before_the_first_text(tmp_path):
    """sentence-transformers' CrossEncoder (5.x) with a default prompt, against its logits
    (`tests/golden/families/roberta/cross_encoder_prompts`, over the family's classifier)."""
    folder = tmp_path / "cross_encoder"
    shutil.copytree(ROBERTA / "seqcls", folder)
    shutil.copy(ROBERTA / "cross_encoder_prompts" / PROMPTS_FILE, folder)
    golden = np.load(ROBERTA / "cross_encoder_prompts" / "golden.npz")
    pairs = json.loads((ROBERTA / "texts.json").read_text())["pairs"]
    for prompt_name, key in ((None, "default"), ("", "none")):
        model = load(folder, prompt_name=prompt_name)
        batch = model.tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation=True)
        assert np.abs(np.asarray(model(**batch)) - golden[key]).max() <= 1e-5, key
    save_pretrained(load(folder), tmp_path / "saved")  # the prompt travels with the classifier
    assert load(tmp_path / "saved").tokenizer.prompt.startswith("Instruct: find the answer")
    plain = tmp_path / "plain"  # an HF classifier reads no prompts file
    shutil.copytree(ROBERTA / "seqcls", plain)
    (plain / PROMPTS_FILE).write_text(json.dumps({"prompts": {"q": "q: "}, "default_prompt_name": "q"}))
    assert load(plain).tokenizer.prompt == ""


@pytest.mark.parametrize("modes, listed", [
    (("cls", "mean"), None),  # the flags' own order: true/false flags, which every version reads
    (("mean", "cls"), ["mean", "cls"]),  # another: sentence-transformers 5.x's ordered list
    (("mean_sqrt_len", "max"), ["mean_sqrt_len_tokens", "max"]),
])
def test_save_pretrained_keeps_the_order_of_concatenated_pooling_modes(tmp_path, modes, listed):
    from flax import nnx

    from samp_jax import EncoderModel, load_pretrained
    from samp_jax.models.heads import make_head
    from tests.helpers import TINY_CONFIG
    rngs = nnx.Rngs(0)
    model = EncoderModel(TINY_CONFIG, make_head("sentence_embedding", TINY_CONFIG, pooling=modes,
                                                normalize=False, rngs=rngs), rngs=rngs)
    save_pretrained(model, tmp_path / "m")
    pooling = json.loads((tmp_path / "m" / "1_Pooling" / "config.json").read_text())
    assert pooling.get("pooling_mode") == listed
    assert (pooling.get("word_embedding_dimension") or pooling.get("embedding_dimension")) == 32
    loaded = load_pretrained(tmp_path / "m")
    assert tuple(loaded.head.pooling) == modes
    ids = np.arange(1, 9, dtype=np.int32)[None]
    np.testing.assert_array_equal(np.asarray(loaded(ids)), np.asarray(model(ids)))


def test_a_folders_own_tokenizer_reads_it_as_load_does(prompts_folder, tmp_path, minilm_dir):
    """`Tokenizer.from_pretrained(folder)` alone (the examples' route) follows a sentence
    embedder's settings and prompt and a CrossEncoder's prompt, as `load(folder).tokenizer`."""
    cross = tmp_path / "cross_encoder"
    shutil.copytree(ROBERTA / "seqcls", cross)
    shutil.copy(ROBERTA / "cross_encoder_prompts" / PROMPTS_FILE, cross)
    texts = _texts() + ["Some Words " * 40]
    for folder in (prompts_folder, cross, minilm_dir):
        alone, loaded = Tokenizer.from_pretrained(folder), load(folder).tokenizer
        assert (alone.max_length, alone.prompt) == (loaded.max_length, loaded.prompt), folder
        for key, value in alone(texts, truncation=True).items():
            np.testing.assert_array_equal(value, loaded(texts, truncation=True)[key])
    assert Tokenizer.from_pretrained(prompts_folder).max_length == 12
    assert Tokenizer.from_pretrained(cross).prompt.startswith("Instruct: find the answer")
    assert Tokenizer.from_pretrained(minilm_dir).max_length == 256  # its max_seq_length
    # False: the plain HF tokenizer (to train another head on a sentence embedder), no prompt
    plain = Tokenizer.from_pretrained(minilm_dir, sentence_transformers=False)
    assert (plain.max_length, plain.prompt) == (512, "")
    assert Tokenizer.from_pretrained(cross, sentence_transformers=False).prompt == ""
    # modules samp-jax cannot run as an embedder: the model is refused, the tokenizer is plain
    odd = tmp_path / "odd"
    shutil.copytree(minilm_dir, odd)
    modules = json.loads((odd / "modules.json").read_text())
    (odd / "modules.json").write_text(json.dumps(modules + [{
        "idx": len(modules), "name": "9", "path": "9_LayerNorm",
        "type": "sentence_transformers.models.LayerNorm"}]))
    assert Tokenizer.from_pretrained(odd).max_length == 512
    with pytest.raises(ConfigError, match="LayerNorm"):
        load(odd)
