"""sentence-transformers Dense projections after pooling, against SentenceTransformer's own
embeddings (`tests/golden/st_dense`: a tiny BERT, cls + mean pooling → Dense 60→20 tanh, saved
by sentence-transformers 5.x with its renamed type → Dense 20→12 identity without bias, the
classic type, weights in torch.save's pytorch_model.bin → Normalize); reading, the head,
save_pretrained, quantized folders, serving, and the folders refused."""

import json
import re
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

import samp_jax
from calibrate.search.objectives import UnlabelledObjective
from samp_jax import ConfigError, PrecisionMap, QuantizedModel, load, quantize
from samp_jax.models import CheckpointError, read_pooling
from samp_jax.models.checkpoint import save_pretrained
from samp_jax.models.heads import DENSE_ACTIVATIONS, DenseLayer, SentenceEmbedder, make_head
from samp_jax.models.st_dense import TORCH_ACTIVATIONS
from tests.helpers import GOLDEN, TINY_CONFIG

ST_DENSE = GOLDEN / "st_dense"
TEXTS = json.loads((ST_DENSE / "texts.json").read_text())
LAYERS = (DenseLayer(60, 20, True, "tanh"), DenseLayer(20, 12, False, "identity"))


@pytest.fixture(scope="module")
def model():
    return load(ST_DENSE / "sentence")


@pytest.fixture
def folder(tmp_path):
    """A copy of the golden folder, to damage."""
    return shutil.copytree(ST_DENSE / "sentence", tmp_path / "sentence")


def embed(model, rows):
    return np.asarray(model(**model.tokenizer(rows, truncation=True)))


# ------------------------------------------------------------------------ golden parity
def test_the_folder_declares_its_dense_modules_in_order():
    declared = read_pooling(ST_DENSE / "sentence")
    assert declared.modes == ("cls", "mean") and declared.normalize
    assert tuple(module.layer for module in declared.dense) == LAYERS
    assert [module.folder.name for module in declared.dense] == ["2_Dense", "3_Dense"]


@pytest.mark.parametrize("batch, rows", [("single", "single"), ("pair", "pair_sentence_texts")])
def test_embeddings_match_sentence_transformers(model, batch, rows):
    assert model.head.dense_layers == LAYERS and model.output_shape(3, 7) == (3, 12)
    embedding = embed(model, TEXTS[rows])
    expected = np.load(ST_DENSE / "golden.npz")[f"{batch}_sentence"]
    assert embedding.shape == expected.shape == (len(TEXTS[rows]), 12)
    assert np.abs(embedding - expected).max() <= 1e-5  # measured 4.3e-7


def test_dense_weights_stay_float32_in_a_half_precision_model():
    half = load(ST_DENSE / "sentence", dtype=jnp.bfloat16)
    assert all(site.kernel[...].dtype == jnp.float32 for site in half.head.dense)
    cosine = np.sum(embed(half, TEXTS["single"]) * np.load(ST_DENSE / "golden.npz")["single_sentence"], -1)
    assert cosine.min() > 0.99


# -------------------------------------------------------------------------- the head
@pytest.mark.parametrize("activation", DENSE_ACTIVATIONS)
def test_each_activation_is_torchs(activation):
    layers = [DenseLayer(2 * TINY_CONFIG.hidden_size, 8, True, activation), DenseLayer(8, 5, False, "identity")]
    head = make_head("sentence_embedding", TINY_CONFIG, pooling=("cls", "max"), normalize=False,
                     dense=[layer.spec() for layer in layers], rngs=nnx.Rngs(3))
    hidden = np.random.default_rng(0).normal(size=(3, 6, TINY_CONFIG.hidden_size)).astype(np.float32)
    mask = np.ones((3, 6), np.int32)
    pooled = np.asarray(head.pool(hidden, mask), np.float64)
    w0, b0 = (np.asarray(head.dense[0].kernel[...], np.float64), np.asarray(head.dense[0].bias[...]))
    y = pooled @ w0 + b0
    from scipy.special import erf
    y = {"identity": y, "tanh": np.tanh(y), "relu": np.maximum(y, 0), "sigmoid": 1 / (1 + np.exp(-y)),
         "gelu": 0.5 * y * (1 + erf(y / np.sqrt(2)))}[activation]
    expected = y @ np.asarray(head.dense[1].kernel[...], np.float64)
    np.testing.assert_allclose(np.asarray(head(hidden, mask)), expected, rtol=1e-5, atol=1e-6)
    assert head.dense[1].bias is None and head.output_width(TINY_CONFIG) == 5
    assert set(TORCH_ACTIVATIONS.values()) == set(DENSE_ACTIVATIONS)


def test_the_head_checks_its_widths():
    with pytest.raises(ValueError, match=r"Dense layer 0 has in_features=32, expected 64 "
                                         r"\(hidden_size 32 × 2 pooling modes \['cls', 'mean'\]\)"):
        make_head("sentence_embedding", TINY_CONFIG, pooling=("cls", "mean"),
                  dense=[DenseLayer(32, 8)], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"Dense layer 1 has in_features=7, expected 8"):
        SentenceEmbedder(dense=[DenseLayer(32, 8), DenseLayer(7, 4)], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs rngs="):
        SentenceEmbedder(dense=[DenseLayer(32, 8)])
    with pytest.raises(ValueError, match=r"activation='swish' is not one of"):
        DenseLayer(32, 8, activation="swish")
    assert SentenceEmbedder().spec() == {"pooling": ["mean"], "normalize": True}  # no "dense" key


# ------------------------------------------------------------------------- round trips
def test_save_pretrained_writes_folders_that_load_to_the_same_embeddings(model, tmp_path):
    saved = save_pretrained(model, tmp_path / "saved")
    modules = json.loads((saved / "modules.json").read_text())
    assert [(m["path"], m["type"].rsplit(".", 1)[-1]) for m in modules] == [
        ("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Dense", "Dense"), ("3_Dense", "Dense"),
        ("4_Normalize", "Normalize")]
    assert json.loads((saved / "3_Dense" / "config.json").read_text()) == {
        "in_features": 20, "out_features": 12, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity"}
    assert set(load_file(str(saved / "3_Dense" / "model.safetensors"))) == {"linear.weight"}
    assert load_file(str(saved / "2_Dense" / "model.safetensors"))["linear.weight"].shape == (20, 60)
    assert "linear" not in " ".join(load_file(str(saved / "model.safetensors")))  # not in the encoder's
    reloaded = load(saved)
    assert reloaded.head.spec() == model.head.spec()
    np.testing.assert_array_equal(embed(reloaded, TEXTS["single"]), embed(model, TEXTS["single"]))


def test_quantized_folders_keep_the_dense_layers(model, tmp_path):
    q = quantize(model, PrecisionMap.preset("fully_quant", model.config.num_layers))
    assert all(site.kernel[...].dtype == jnp.float32 for site in q.model.head.dense)
    folder = q.save(tmp_path / "q")
    sidecar = json.loads((folder / "quantization.json").read_text())
    assert sidecar["head"]["spec"]["dense"] == [layer.spec() for layer in LAYERS]
    loaded = QuantizedModel.load(folder)
    assert loaded.model.head.dense_layers == LAYERS and loaded.output_shape(2, 5) == (2, 12)
    batch = model.tokenizer(TEXTS["single"], truncation=True)
    np.testing.assert_array_equal(np.asarray(loaded(**batch)), np.asarray(q(**batch)))
    cosine = np.sum(np.asarray(q(**batch)) * np.load(ST_DENSE / "golden.npz")["single_sentence"], -1)
    assert cosine.min() > 0.98


@pytest.mark.slow
def test_the_engine_and_the_search_proxy_read_the_projected_width(model):
    engine = samp_jax.compile(model, seq_buckets=(16, 40), batch_buckets=(4,), truncate=True)
    result = engine(TEXTS["single"])
    assert np.asarray(result.embeddings).shape == (len(TEXTS["single"]), 12)
    np.testing.assert_allclose(result.embeddings, embed(model, TEXTS["single"]), atol=1e-6)
    batches = [dict(model.tokenizer(TEXTS["single"][:8], padding=40, truncation=True))]
    objective = UnlabelledObjective(model, batches)
    assert objective.proxy_kind.name == "cosine"
    q = quantize(model, PrecisionMap.preset("fully_quant", model.config.num_layers))
    assert 0.0 <= objective.proxy([np.asarray(q(**batches[0]))]) < 0.05


# ------------------------------------------------------------------------------ refusals
def _edit_config(folder, name, **changes):
    file = folder / name / "config.json"
    config = json.loads(file.read_text()) | changes
    file.write_text(json.dumps({k: v for k, v in config.items() if v is not None}))


@pytest.mark.parametrize("activation, message", [
    ("torch.nn.modules.activation.SiLU", "is not one samp-jax runs; it runs"),
    ("my_package.Swish", r"sentence-transformers runs tanh in its place unless the model's code is trusted"),
])
def test_an_activation_samp_jax_does_not_run_is_refused_by_file(folder, activation, message):
    _edit_config(folder, "2_Dense", activation_function=activation)
    with pytest.raises(ConfigError, match=rf"/2_Dense/config\.json: activation_function='{activation}' .*{message}"):
        load(folder)


def test_short_torch_paths_and_the_default_activation_are_read(folder):
    _edit_config(folder, "2_Dense", activation_function="torch.nn.Tanh")
    _edit_config(folder, "3_Dense", activation_function=None)  # sentence-transformers' default: tanh
    assert [m.layer.activation for m in read_pooling(folder).dense] == ["tanh", "tanh"]


def test_in_features_that_do_not_fit_the_width_before_are_refused(folder):
    _edit_config(folder, "3_Dense", in_features=30)
    with pytest.raises(ConfigError, match=r"/3_Dense/config\.json: in_features=30, expected 20 "
                                          r"\(the width of 2_Dense's out_features\)"):
        load(folder)
    _edit_config(folder, "3_Dense", in_features=20)
    with pytest.raises(ConfigError, match=r"/2_Dense/config\.json: in_features=60, expected 30 "
                                          r"\(the width of pooling \['cls'\] of hidden_size 30\)"):
        load(folder, pooling="cls")  # a pooling other than the folder's: the Dense no longer fits


@pytest.mark.parametrize("change, message", [
    ({"module_input_name": "token_embeddings"}, "module_input_name='token_embeddings'; samp-jax runs"),
    ({"out_features": "12"}, r"Dense out_features='12' must be a positive integer"),
    ({"in_features": None}, r"states no \['in_features'\]"),
    ({"init_weight": [1.0]}, r"keys \['init_weight'\] are not Dense settings samp-jax knows"),
])
def test_malformed_dense_configs_are_refused_by_file(folder, change, message):
    _edit_config(folder, "3_Dense", **change)
    with pytest.raises(ConfigError, match=rf"/3_Dense/config\.json.*{message}"):
        read_pooling(folder)


def test_missing_weights_are_refused_by_folder(folder):
    (folder / "3_Dense" / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"Dense module .*/3_Dense has no weights: looked for "
                                                r"model\.safetensors and pytorch_model\.bin"):
        load(folder)


@pytest.mark.parametrize("damage, message", [
    (lambda s: s | {"linear.weight": s["linear.weight"][:, :59]},
     r"wrong shape: linear\.weight has \(20, 59\), expected \(20, 60\)"),
    (lambda s: {"linear.weight": s["linear.weight"]}, r"missing keys \(1\): \['linear\.bias'\]"),
    (lambda s: s | {"linear.scale": s["linear.bias"]}, r"unexpected keys \(1\): \['linear\.scale'\]"),
    (lambda s: s | {"linear.bias": np.full_like(s["linear.bias"], np.nan)},
     r"tensor linear\.bias has non-finite values"),
    (lambda s: s | {"linear.bias": s["linear.bias"].astype(np.int32)}, r"tensor linear\.bias has dtype int32"),
])
def test_damaged_dense_weights_are_refused_by_file(folder, damage, message):
    file = folder / "2_Dense" / "model.safetensors"
    save_file(damage(load_file(str(file))), str(file))
    with pytest.raises(CheckpointError, match=rf"(?s)checkpoint .*/2_Dense/model\.safetensors .*{message}"):
        load(folder)


def test_a_damaged_pickle_is_refused_by_file(folder):
    (folder / "3_Dense" / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match=r"/3_Dense/pytorch_model\.bin"):
        load(folder)


@pytest.mark.parametrize("order", [(0, 2, 1, 3, 4), (0, 1, 4, 2, 3), (0, 1, 2, 4, 4)])
def test_modules_out_of_order_are_refused(folder, order):
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps([modules[i] for i in order]))
    with pytest.raises(ConfigError, match=r"modules\.json declares the modules \[.*\]; samp-jax runs "
                                          r"them in the order Transformer, Pooling, any Dense"):
        read_pooling(folder)


def test_a_module_kind_still_unknown_is_refused_by_name(folder):
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(4, {"idx": 4, "name": "4", "path": "4_LayerNorm",
                       "type": "sentence_transformers.models.LayerNorm"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match=r"modules\.json declares modules "
                                          r"\['sentence_transformers\.models\.LayerNorm'\] that samp-jax "
                                          r"does not implement \(it runs sentence-transformers' "
                                          r"Transformer, Pooling, Dense, Normalize\)"):
        read_pooling(folder)


def test_a_dense_path_outside_the_folder_is_refused(folder):
    modules = json.loads((folder / "modules.json").read_text())
    modules[2]["path"] = "../2_Dense"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match=r"module '2' has path='\.\./2_Dense'; expected a folder inside"):
        read_pooling(folder)


@pytest.mark.parametrize("path", ["../elsewhere", "ABS", "1_Pooling/../../elsewhere", ""])
def test_a_pooling_path_outside_the_folder_is_refused(folder, tmp_path, path):
    elsewhere = tmp_path / "elsewhere"  # a pooling config samp-jax must not read
    elsewhere.mkdir()
    (elsewhere / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    path = str(elsewhere) if path == "ABS" else path
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["path"] = path
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match=rf"modules\.json: module '1' has path="
                                          rf"{re.escape(repr(path))}; expected a folder inside"):
        read_pooling(folder)
    del modules[1]["path"]  # sentence-transformers' default folder
    (folder / "modules.json").write_text(json.dumps(modules))
    assert read_pooling(folder).modes == ("cls", "mean")
