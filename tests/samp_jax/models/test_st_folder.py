"""Layouts of sentence-transformers folders as users have them (`samp_jax.models.st_folder`):
the 1.x layout, whose transformer lives in the subfolder `modules.json` names
(`0_Transformer/`), against SentenceTransformer's own embeddings of the golden folders (moving
the files changes nothing for sentence-transformers: checked once with its own `encode`, max
abs 3e-7); and a pooling config without `modules.json`, which sentence-transformers ignores."""

import json
import shutil
import warnings

import numpy as np
import pytest

from samp_jax import ConfigError, Tokenizer, load
from samp_jax.models import read_pooling
from samp_jax.models.checkpoint import detect_head, save_pretrained
from samp_jax.models.st_folder import transformer_folder
from tests.helpers import GOLDEN

ST_DENSE = GOLDEN / "st_dense"
ROBERTA = GOLDEN / "families" / "roberta"
BERT_SENTENCE = GOLDEN / "families" / "bert" / "sentence"
ROOT_FILES = ("modules.json", "config_sentence_transformers.json")  # the rest is the transformer's


def _v1_layout(source, folder, *, root_config=True):
    """A copy of the sentence-transformers folder `source` laid out as sentence-transformers
    1.x wrote it: config.json, weights, tokenizer and sentence_bert_config.json in
    `0_Transformer/`, named there by `modules.json`; a root config.json of `__version__` alone
    (none with `root_config=False`)."""
    shutil.copytree(source, folder)
    inner = folder / "0_Transformer"
    inner.mkdir()
    for file in list(folder.iterdir()):
        if file.is_file() and file.name not in ROOT_FILES:
            file.rename(inner / file.name)
    modules = json.loads((folder / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    (folder / "modules.json").write_text(json.dumps(modules))
    if root_config:
        (folder / "config.json").write_text(json.dumps({"__version__": "1.2.0"}))
    return folder


# ------------------------------------------------------------ the sentence-transformers 1.x layout
@pytest.mark.parametrize("root_config", [True, False])
def test_the_v1_layout_embeds_as_sentence_transformers(tmp_path, root_config):
    """Pooling, two Dense modules (one in torch.save's pickle) and Normalize at the root."""
    folder = _v1_layout(ST_DENSE / "sentence", tmp_path / "v1", root_config=root_config)
    assert transformer_folder(folder) == folder / "0_Transformer"
    assert detect_head(folder) == ("sentence_embedding", None)
    model = load(folder)
    texts = json.loads((ST_DENSE / "texts.json").read_text())["single"]
    embedding = np.asarray(model(**model.tokenizer(texts, truncation=True)))
    expected = np.load(ST_DENSE / "golden.npz")["single_sentence"]
    assert embedding.shape == expected.shape
    assert np.abs(embedding - expected).max() <= 1e-5  # measured 4e-7
    # saved in the usual layout, it loads to the same embeddings
    again = load(save_pretrained(model, tmp_path / "saved"))
    np.testing.assert_allclose(np.asarray(again(**again.tokenizer(texts, truncation=True))),
                               embedding, atol=1e-6)


def test_the_v1_layout_reads_its_transformers_sentence_bert_config(tmp_path):
    """max_seq_length 12 and do_lower_case, stated in 0_Transformer/ beside the tokenizer."""
    source = shutil.copytree(ROBERTA / "sentence", tmp_path / "source")
    shutil.copy(ROBERTA / "sentence_settings" / "sentence_bert_config.json", source)
    folder = _v1_layout(source, tmp_path / "v1")
    model = load(folder)
    assert model.tokenizer.max_length == 12
    assert Tokenizer.from_pretrained(folder).max_length == 12
    texts = json.loads((ROBERTA / "texts.json").read_text())["single"]
    embedding = np.asarray(model(**model.tokenizer(texts, truncation=True)))
    expected = np.load(ROBERTA / "sentence_settings" / "golden.npz")["single_sentence"]
    assert np.abs(embedding - expected).max() <= 1e-5  # measured 1e-7


@pytest.mark.parametrize("path", ["../elsewhere", "/abs"])
def test_a_transformer_path_outside_the_folder_is_refused(tmp_path, path):
    folder = _v1_layout(BERT_SENTENCE, tmp_path / "v1")
    modules = json.loads((folder / "modules.json").read_text())
    modules[0]["path"] = path
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match=rf"modules.json: module '0' has path='{path}'; expected "
                                          "a folder inside the model folder"):
        load(folder)


def test_a_transformer_folder_without_a_config_is_named(tmp_path):
    folder = _v1_layout(BERT_SENTENCE, tmp_path / "v1")
    (folder / "0_Transformer" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"v1/modules.json puts the sentence-transformers "
                                                r"Transformer module in .*v1/0_Transformer, which "
                                                r"has no config.json"):
        load(folder)


# ------------------------------------------------------- a pooling config without modules.json
def test_a_pooling_config_without_modules_json_is_read_with_a_warning(tmp_path):
    """sentence-transformers ignores 1_Pooling/ without modules.json and mean-pools; samp-jax
    keeps the declared (cls) pooling and says that they differ, once per load."""
    folder = shutil.copytree(BERT_SENTENCE, tmp_path / "no_modules")
    (folder / "modules.json").unlink()
    assert read_pooling(folder).modes == ("cls",)
    with pytest.warns(UserWarning) as caught:
        model = load(folder)
    said = [str(w.message) for w in caught if "modules.json" in str(w.message)]
    assert len(said) == 1
    assert said[0].startswith(f"{folder / '1_Pooling' / 'config.json'} declares pooling ['cls'], "
                              "which samp-jax uses, but the folder has no modules.json: "
                              "sentence-transformers ignores that file and mean-pools this folder")
    assert model.head.pooling == ("cls",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(folder, pooling="mean").head.pooling == ("mean",)  # as ST embeds it: no warning
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        pooling |= {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
        assert load(folder).head.pooling == ("mean",)  # what ST does too: no warning
