"""`samp-jax predict` on a sentence-transformers CrossEncoder folder gives what
`CrossEncoder.predict` gives: the activation its folder states (or the default by num_labels)
applied to the logits, against sentence-transformers 5 itself
(`tests/golden/cross_encoder`, from `tools/golden_cross_encoder.py`); the activation survives
a quantized and a float copy; one it does not mirror is refused, naming the file and key."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from samp_jax import PrecisionMap, load, quantize
from samp_jax.app import predictions
from samp_jax.app.cli import main
from samp_jax.models import ConfigError
from samp_jax.models.checkpoint import save_pretrained
from samp_jax.models.cross_encoder import ACTIVATIONS, read_activation
from samp_jax.models.head_kinds import SEQUENCE_CLASSIFICATION, Readout, sigmoid
from tests.faults.cli_files import one_line_error
from tests.helpers import GOLDEN

CROSS = GOLDEN / "cross_encoder"
GOLDEN_RUNS = json.loads((CROSS / "golden.json").read_text())
TOLERANCE = 3e-6  # JAX against torch, float32; measured 8e-7 over every variant


def _folder(tmp_path, variant: str):
    """The variant's model with its files laid over it."""
    folder = tmp_path / variant
    shutil.copytree(CROSS / GOLDEN_RUNS["variants"][variant]["model"], folder)
    for file in (CROSS / "variants" / variant).iterdir():
        shutil.copy(file, folder)
    return folder


def _pairs_file(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"text": a, "text_pair": b}) + "\n"
                            for a, b in GOLDEN_RUNS["pairs"]))
    return data


def _scores(records):
    """What CrossEncoder.predict returns, from the records: one value or a row per record."""
    if "scores" in records[0]:
        return np.array([list(r["scores"].values()) for r in records])
    return np.array([r["score"] for r in records])


@pytest.mark.parametrize("variant", sorted(GOLDEN_RUNS["variants"]))
def test_predict_gives_what_cross_encoder_predict_gives(variant, tmp_path, capsys):
    golden = GOLDEN_RUNS["variants"][variant]
    folder = _folder(tmp_path, variant)
    hf = json.loads((folder / "config.json").read_text())
    name = read_activation(folder, hf, len(np.atleast_1d(golden["scores"][0])))
    assert ACTIVATIONS[name][0] == golden["activation"]  # the one sentence-transformers chose
    out = tmp_path / "p.jsonl"
    code = main(["predict", "--model", str(folder), "--data", str(_pairs_file(tmp_path)),
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert np.abs(_scores(records) - np.array(golden["scores"])).max() <= TOLERANCE
    if golden["model"] == "one":
        assert list(records[0]) == ["text", "text_pair", "score", "logit", "truncated"]
        logits = np.array([r["logit"] for r in records])
        assert (name == "Identity") == np.allclose(logits, _scores(records), atol=1e-9, rtol=0)
    else:  # the readout's fields stay, with the activation's values by label name
        assert list(records[0]) == ["text", "text_pair", "label", "score", "probabilities",
                                    "scores", "truncated"]
        assert list(records[0]["scores"]) == ["neg", "neu", "pos"]


def test_a_quantized_and_a_float_copy_keep_the_activation(tmp_path):
    folder = _folder(tmp_path, "one_old_tanh_short_path")
    model = load(folder)
    assert model.cross_encoder_activation == "Tanh"
    save_pretrained(model, tmp_path / "float")  # stated where sentence-transformers 4 and 5 read it
    config = json.loads((tmp_path / "float" / "config.json").read_text())
    assert config["sentence_transformers"] == {"activation_fn": "torch.nn.modules.activation.Tanh"}
    assert load(tmp_path / "float").cross_encoder_activation == "Tanh"
    quantized = quantize(model, PrecisionMap.preset("fp32", model.config.num_layers),
                         dtype="float32")
    quantized.save(tmp_path / "quantized")
    reloaded = load(tmp_path / "quantized")
    assert reloaded.cross_encoder_activation == "Tanh"
    rows = [{"text": a, "text_pair": b} for a, b in GOLDEN_RUNS["pairs"]]
    records = predictions.records(reloaded, rows)
    logits = np.array([r["logit"] for r in records])
    # written as float32 values (predictions._number): tanh of the logit up to float32 rounding
    np.testing.assert_allclose(_scores(records), np.tanh(logits), rtol=3e-7, atol=0)
    expected = GOLDEN_RUNS["variants"]["one_old_tanh_short_path"]["scores"]
    assert np.abs(_scores(records) - expected).max() <= TOLERANCE


def test_a_plain_classifier_is_no_cross_encoder():
    folder = GOLDEN / "families" / "bert" / "seqcls"
    assert read_activation(folder, json.loads((folder / "config.json").read_text()), 3) is None
    assert load(folder).cross_encoder_activation is None


@pytest.mark.parametrize("file, key, where", [
    ("config_sentence_transformers.json", "activation_fn",
     "config_sentence_transformers.json: activation_fn"),
    ("config.json", "sentence_transformers", "config.json: sentence_transformers.activation_fn"),
    ("config.json", "sbert_ce_default_activation_function",
     "config.json: sbert_ce_default_activation_function"),
])
def test_an_activation_samp_jax_does_not_run_is_refused_before_the_weights(
        file, key, where, tmp_path, capsys):
    folder = _folder(tmp_path, "one_st5_over_config")
    for name in ("config.json", "config_sentence_transformers.json"):  # stated there alone
        config = json.loads((folder / name).read_text())
        config.pop("activation_fn", None), config.pop("sentence_transformers", None)
        config.pop("sbert_ce_default_activation_function", None)
        (folder / name).write_text(json.dumps(config))
    config = json.loads((folder / file).read_text())
    path = "torch.nn.modules.activation.ReLU"
    config[key] = {"activation_fn": path} if key == "sentence_transformers" else path
    (folder / file).write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"not read")  # refused before the weights
    with pytest.raises(ConfigError, match=f"{where}='torch.nn.modules.activation.ReLU' is not "
                                          "an activation samp-jax runs; expected one of"):
        load(folder)
    code = main(["predict", "--model", str(folder), "--data", str(_pairs_file(tmp_path)),
                 "--out", str(tmp_path / "p.jsonl")])
    one_line_error(capsys, code, 1, where, "torch.nn.Sigmoid")


class _LabelSetEngine:
    """A stand-in engine of a multi-label CrossEncoder whose folder states no activation
    (Identity: `CrossEncoder.predict` returns the logits)."""

    head_kind, readout, labels = SEQUENCE_CLASSIFICATION.name, Readout.LABELS, ("a", "b", "c")
    cross_encoder_activation = "Identity"

    def __call__(self, inputs):
        logits = np.array([[2.0, -1.0, 0.5]] * len(inputs), np.float32)
        return SimpleNamespace(logits=logits, labels=sigmoid(logits) >= 0.5,
                               truncated=[False] * len(inputs),
                               non_finite=np.zeros(len(inputs), bool))


def test_a_multi_label_cross_encoder_keeps_its_labels_and_sigmoids_and_adds_its_activation():
    [record] = predictions._predict(_LabelSetEngine(), [{"text": "q", "text_pair": "d"}])
    sigmoids = {name: float(sigmoid(np.float32(v))) for name, v in zip("abc", (2.0, -1.0, 0.5))}
    assert record.keys() == {"text", "text_pair", "labels", "scores", "cross_encoder_scores",
                             "truncated"}
    assert record["labels"] == ["a", "c"] and record["scores"] == pytest.approx(sigmoids)
    # the labels are read from "scores"; CrossEncoder.predict's values (Identity) beside them
    assert record["cross_encoder_scores"] == {"a": 2.0, "b": -1.0, "c": 0.5}
