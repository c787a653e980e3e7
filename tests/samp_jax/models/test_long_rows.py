"""Rows longer than `max_position_embeddings` in the families without a position table.

DeBERTa-v3 (relative positions only) and ModernBERT (rotary) take any length in HF; samp-jax
cuts at `max_position_embeddings` by default and takes longer rows when asked (a tokenizer with
a larger `max_length`, `--max-length`). `tests/golden/families/<family>/long_rows.npz` holds
HF's logits on two rows of 274-525 tokens, 6-10 times the tiny models' positions
(`tools/golden_long_rows.py`)."""

import json
import shutil

import numpy as np
import pytest

import samp_jax as sj
from samp_jax import Tokenizer, load_pretrained
from samp_jax.app.cli import main
from tests.helpers import GOLDEN

FAMILIES = ("deberta-v2", "modernbert")


def _golden(family):
    folder = GOLDEN / "families" / family
    arrays = dict(np.load(folder / "long_rows.npz"))
    return folder / "seqcls", arrays, json.loads((folder / "long_rows.json").read_text())


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_past_the_positions_match_hf(family):
    folder, golden, _ = _golden(family)
    model = load_pretrained(folder)
    assert model.config.position_limit is None
    assert golden["attention_mask"].sum(1).min() > 4 * model.config.max_position_embeddings
    ids, mask = golden["input_ids"], golden["attention_mask"]
    logits = np.asarray(model(ids, mask, np.zeros_like(ids)))
    np.testing.assert_allclose(logits, golden["logits"], atol=5e-6)  # measured 7e-7


def test_a_model_with_a_position_table_still_refuses_longer_rows():
    model = load_pretrained(GOLDEN / "families" / "bert" / "seqcls")
    limit = model.config.position_limit
    assert limit == model.config.max_sequence_length
    ids = np.ones((1, limit + 1), np.int32)
    with pytest.raises(ValueError, match=f"sequence length {limit + 1} exceeds the model's maximum"):
        model(ids, np.ones_like(ids), np.zeros_like(ids))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_default_length_is_the_position_count_and_a_tokenizer_may_raise_it(family):
    folder, golden, _ = _golden(family)
    model = sj.load(folder)
    assert model.tokenizer.max_length == 40  # what its tokenizer_config.json states
    longest = int(golden["attention_mask"].sum(1).max())
    tokenizer = Tokenizer.from_pretrained(folder, max_length=longest)
    engine = sj.compile(model, tokenizer=tokenizer, seq_buckets=(longest,), batch_size=2)
    ids = [list(row[mask.astype(bool)]) for row, mask in zip(golden["input_ids"],
                                                              golden["attention_mask"])]
    np.testing.assert_allclose(np.asarray(engine(ids).logits), golden["logits"], atol=5e-6)
    with pytest.raises(ValueError, match="more than the tokenizer's max_length of 40"):
        sj.compile(model, seq_buckets=(64,), batch_size=2)


def test_a_position_free_model_whose_tokenizer_states_no_length_defaults_to_its_positions(tmp_path):
    folder, _, _ = _golden("deberta-v2")
    for file in folder.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["model_max_length"] = int(1e30)  # HF's VERY_LARGE_INTEGER: no length stated
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert Tokenizer.from_pretrained(tmp_path).max_length == 40


def test_with_max_length_copies_and_saves_the_new_length(tmp_path):
    folder, _, _ = _golden("deberta-v2")
    tokenizer = Tokenizer.from_pretrained(folder)
    longer = tokenizer.with_max_length(300)
    assert (tokenizer.max_length, longer.max_length) == (40, 300)
    text = ["Quantization makes inference cheaper without retraining."]
    assert longer(text)["input_ids"].tolist() == tokenizer(text)["input_ids"].tolist()
    long_text = [" ".join(text * 30)]
    cut = longer(long_text, truncation=True, return_truncated=True)
    assert cut["input_ids"].shape[1] == 300 and cut["truncated"].tolist() == [True]
    assert tokenizer(long_text, truncation=True)["input_ids"].shape[1] == 40
    assert Tokenizer.from_pretrained(longer.save(tmp_path)).max_length == 300
    with pytest.raises(ValueError, match="max_length=0 must be a positive int"):
        tokenizer.with_max_length(0)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_predict_with_max_length_serves_the_whole_row_as_hf_does(family, tmp_path, capsys):
    folder, golden, meta = _golden(family)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in meta["texts"]))
    out = tmp_path / "p.jsonl"
    code = main(["predict", "--model", str(folder), "--data", str(data), "--out", str(out),
                 "--max-length", "1024", "--json"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "truncated" not in err
    probabilities = [list(json.loads(line)["probabilities"].values())
                     for line in out.read_text().splitlines()]
    logits = golden["logits"]
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, atol=2e-6)
    code = main(["predict", "--model", str(folder), "--data", str(data), "--out", str(out)])
    assert code == 0
    assert "2 of 2 input rows are longer than 40 tokens and were truncated" in capsys.readouterr().err


def test_a_sentence_embedder_without_max_seq_length_is_cut_at_its_positions(tmp_path):
    """sentence-transformers cuts at min(max_position_embeddings, model_max_length) when its
    folder states no `max_seq_length`, a position table or not; with one, at it."""
    source = GOLDEN / "families" / "deberta-v2" / "sentence"
    folder = tmp_path / "sentence"
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 16}))
    settings = json.loads((folder / "sentence_bert_config.json").read_text())
    settings.pop("max_seq_length", None)
    (folder / "sentence_bert_config.json").write_text(json.dumps(settings))
    assert sj.load(folder).tokenizer.max_length == 16
    assert Tokenizer.from_pretrained(folder, sentence_transformers=False).max_length == 40  # HF's: 40
    (folder / "sentence_bert_config.json").write_text(json.dumps(settings | {"max_seq_length": 30}))
    assert sj.load(folder).tokenizer.max_length == 30
