"""`samp-jax eval | search | predict --model DIR` on a folder of every family (the tiny HF
checkpoints `make golden` writes, each with its own family's tokenizer)."""

import json

import numpy as np
import pytest

from samp_jax.app.cli import main
from tests.helpers import GOLDEN, family_param

FAMILY_GOLDEN = GOLDEN / "families"
MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "modernbert", "deberta-v2",
               "camembert", "data2vec-text", "ernie")
# bert runs in `make test-fast`; the other families in `make test`, but those that run
# RoBERTa's code under another name (helpers.SAME_CODE_AS) in `make test-full`
FAMILY_PARAMS = [family_param(t) for t in MODEL_TYPES]
# The whole search runs on a folder of each family whose encoder runs code of its own: BERT's
# (absolute positions, token types), DistilBERT's (no token types), ELECTRA's (an embedding
# projection), MPNet's relative bias, ModernBERT's rotary and local layers, DeBERTa's relative
# terms. RoBERTa, XLM-R, CamemBERT, data2vec-text and ERNIE run BERT's encoder with other
# embeddings, weight names and tokenizers (checked by eval and predict above and below);
# tests/samp_jax/ptq/test_families.py checks, for these families, that the search's candidate
# program is the quantized model bit for bit. From the folder to the predictions the search runs
# the same code for every family: `make test` runs it on the two whose attention is most their
# own (ModernBERT's rotary and local layers, DeBERTa's relative terms), `make test-full` on all.
SEARCHED_FAMILIES = [family_param(t, fast=(), full=("bert", "distilbert", "electra", "mpnet"))
                     for t in ("bert", "distilbert", "electra", "mpnet", "modernbert", "deberta-v2")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """80 labelled rows (neg/neu/pos, the golden classifiers' labels) and 80 word-tagged rows,
    built from the words the golden tokenizers were trained on."""
    texts = json.loads((FAMILY_GOLDEN / "bert" / "texts.json").read_text())
    words = sorted({w.strip(".,;!?") for s in texts["single"] for w in s.split()} - {""})
    rng = np.random.default_rng(0)
    rows = [" ".join(rng.choice(words, 7)) for _ in range(80)]
    root = tmp_path_factory.mktemp("data")
    labels = rng.choice(["neg", "neu", "pos"], len(rows))
    (root / "reviews.csv").write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in zip(rows, labels)))
    with open(root / "tags.jsonl", "w") as f:
        for row in rows:
            tokens = row.split()
            f.write(json.dumps({"tokens": tokens, "tags": ["B-X" if w[0].isupper() else "O" for w in tokens]}) + "\n")
    return root


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("model_type", FAMILY_PARAMS)
def test_eval_on_a_folder_of_every_family(model_type, data, capsys):
    code, out, err = _run(capsys, "eval", "--model", FAMILY_GOLDEN / model_type / "seqcls",
                          "--data", data / "reviews.csv", "--precision", "fp16,fully_quant", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["task_type"] == "text_classification"
    assert [r["variant"] for r in result["rows"]] == ["fp32 (reference)", "fp16", "fully_quant / dynamic"]
    assert result["rows"][1]["agreement"] > 0.9  # fp16 barely changes a tiny model


@pytest.mark.slow
@pytest.mark.parametrize("model_type", SEARCHED_FAMILIES)
def test_search_then_predict_on_each_encoder(model_type, data, tmp_path, capsys):
    out = tmp_path / "search"
    code, _, err = _run(capsys, "search", "--model", FAMILY_GOLDEN / model_type / "seqcls",
                        "--data", data / "reviews.csv", "--tolerance", "5%", "--out", out, "--json")
    assert code == 0, err
    sidecar = json.loads((out / "model" / "quantization.json").read_text())
    assert sidecar["config"]["model_type"] == model_type
    predictions = tmp_path / "p.jsonl"
    code, _, err = _run(capsys, "predict", "--model", out / "model", "--data", data / "reviews.csv",
                        "--out", predictions)
    assert code == 0, err
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(lines) == 80 and {line["label"] for line in lines} <= {"neg", "neu", "pos"}


@pytest.mark.parametrize("model_type", FAMILY_PARAMS)
def test_predict_tags_and_embeddings_on_every_family(model_type, data, tmp_path, capsys):
    tags = tmp_path / "tags.jsonl"
    code, _, err = _run(capsys, "predict", "--model", FAMILY_GOLDEN / model_type / "tokcls",
                        "--data", data / "tags.jsonl", "--out", tags)
    assert code == 0, err
    first = json.loads(tags.read_text().splitlines()[0])
    assert len(first["tags"]) == len(first["tokens"]) == 7
    embeddings = tmp_path / "embeddings.jsonl"
    code, _, err = _run(capsys, "predict", "--model", FAMILY_GOLDEN / model_type / "sentence",
                        "--data", data / "reviews.csv", "--out", embeddings)
    assert code == 0, err
    written = json.loads(embeddings.read_text().splitlines()[0])["embedding"]
    vector = np.asarray(written)
    assert vector.shape == (30,) and abs(np.linalg.norm(vector) - 1) < 1e-5  # declared Normalize
    assert all(round(value, 6) == value for value in written)  # short digits, not a float32's


def test_pooling_option_embeds_a_folder_that_declares_none(data, tmp_path, capsys):
    out = tmp_path / "e.jsonl"
    code, _, err = _run(capsys, "predict", "--model", FAMILY_GOLDEN / "roberta" / "base",
                        "--data", data / "reviews.csv", "--out", out)
    assert code == 1 and "Traceback" not in err  # a headless model has nothing to predict
    code, _, err = _run(capsys, "predict", "--model", FAMILY_GOLDEN / "roberta" / "base",
                        "--data", data / "reviews.csv", "--pooling", "cls,mean", "--out", out)
    assert code == 0, err
    vector = np.asarray(json.loads(out.read_text().splitlines()[0])["embedding"])
    assert vector.shape == (60,)  # cls and mean, concatenated


def test_pooling_normalises_unless_no_normalize_is_given(data, tmp_path, capsys):
    """--pooling on a folder that declares none L2-normalises (its help says so);
    sentence-transformers mean-pools a plain HF folder without normalising: --no-normalize."""
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "it L2-normalises the embeddings, which sentence-transformers does not for a plain " \
           "HF folder: --no-normalize" in help_text
    norms = {}
    for flag in ((), ("--no-normalize",)):
        out = tmp_path / f"e{len(flag)}.jsonl"
        code, _, err = _run(capsys, "predict", "--model", FAMILY_GOLDEN / "roberta" / "base",
                            "--data", data / "reviews.csv", "--pooling", "mean", *flag, "--out", out)
        assert code == 0, err
        rows = [json.loads(line)["embedding"] for line in out.read_text().splitlines()]
        norms[flag] = np.linalg.norm(np.asarray(rows), axis=-1)
    assert np.allclose(norms[()], 1, atol=1e-5)
    assert not np.allclose(norms[("--no-normalize",)], 1, atol=1e-2)
