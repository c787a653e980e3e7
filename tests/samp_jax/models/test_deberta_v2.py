"""DeBERTa-v2/v3 beyond the shared family tests (`test_families.py` runs the v3-style golden
folders): the v2-style variant against HF, the log buckets, the position projections through
the `qkv` weights at every precision, pair token types, and the options samp-jax refuses."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from samp_jax import Tokenizer, load_pretrained
from samp_jax.core.precision import SitePrecision
from samp_jax.models import ConfigError, EncoderConfig, EncoderModel
from samp_jax.models.checkpoint import detect_head, read_state_dict, save_pretrained
from samp_jax.models.relative_attention import log_bucket_position, relative_positions
from samp_jax.ptq.quantized import QuantizedGemmSite, SiteCalibration
from tests.helpers import FAMILY_CONFIGS, GOLDEN

FOLDER = GOLDEN / "families" / "deberta-v2"
KEYS = ("input_ids", "attention_mask", "token_type_ids")


@pytest.mark.parametrize("batch", ["single", "pair"])
def test_v2_style_variant_matches_hf(batch):
    """Separate pos_key/pos_query projections, exact distances clipped at a span of 12 (the
    golden rows are up to 40 tokens), absolute positions and two token types."""
    golden = dict(np.load(FOLDER / "variant" / "golden.npz"))
    model = load_pretrained(FOLDER / "variant")
    config = model.config
    assert (config.share_att_key, config.position_biased_input, config.position_buckets,
            config.type_vocab_size, config.pos_att_type) == (False, True, -1, 2, ("c2p", "p2c"))
    ids, mask, types = (golden[f"{batch}_{key}"] for key in KEYS)
    hidden = np.asarray(model(ids, mask, types))
    real = mask.astype(bool)
    assert np.abs(hidden[real] - golden[f"{batch}_hidden"][real]).max() <= 5e-6  # measured 1.2e-6


def test_variant_round_trips_in_hf_naming(tmp_path):
    model = load_pretrained(FOLDER / "variant")
    save_pretrained(model, tmp_path)
    ours, _ = read_state_dict(tmp_path)
    theirs, _ = read_state_dict(FOLDER / "variant")
    assert set(ours) == set(theirs) - {"embeddings.position_ids"}
    assert "encoder.layer.1.attention.self.pos_query_proj.weight" in ours
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["pos_att_type"] == ["c2p", "p2c"] and config["share_att_key"] is False


def test_log_buckets_match_hf():
    """Reference values from HF's `make_log_bucket_position` (transformers 4.57)."""
    distances = np.array([0, 1, -1, 127, 128, 129, -129, 200, 300, 511, 600, -600, 5000])
    expected = [0, 1, -1, 127, 128, 129, -129, 169, 207, 255, 270, -270, 465]
    assert log_bucket_position(distances, 256, 512).tolist() == expected
    small = log_bucket_position(np.arange(-40, 41), 8, 40)
    assert small[40 + 4].tolist() == 4 and small[40 + 5].tolist() == 5
    assert small[40 + 9].tolist() == 6 and small[-1].tolist() == 8 and small[0].tolist() == -8
    relative = relative_positions(5, buckets=-1, max_distance=-1)  # by offset key - query
    assert relative.tolist() == [4, 3, 2, 1, 0, -1, -2, -3, -4]


def test_pair_token_types_are_hfs():
    """DeBERTa's tokenizer marks the second segment with type 1 as HF does (a v3 model with no
    token-type table ignores them)."""
    golden = dict(np.load(FOLDER / "golden.npz"))
    texts = json.loads((FOLDER / "texts.json").read_text())
    tokenizer = Tokenizer.from_pretrained(FOLDER / "seqcls")
    pair = tokenizer([a for a, _ in texts["pairs"]], [b for _, b in texts["pairs"]], truncation=True)
    assert golden["pair_token_type_ids"].max() == 1
    np.testing.assert_array_equal(pair["token_type_ids"], golden["pair_token_type_ids"])
    np.testing.assert_array_equal(pair["input_ids"], golden["pair_input_ids"])


def test_position_projections_use_the_qkv_weights():
    """With share_att_key, the position keys/queries are the relative table through the
    layer's query/key weights and biases."""
    model = EncoderModel(FAMILY_CONFIGS["deberta-v2"], rngs=nnx.Rngs(0))
    relative, layer = model.encoder.relative, model.encoder.layers[1]
    table = relative.table()
    terms = relative.terms(1, layer.qkv, table)
    hidden, heads = model.config.hidden_size, model.config.num_heads
    kernel, bias = np.asarray(layer.qkv.kernel[...]), np.asarray(layer.qkv.bias[...])
    query = np.asarray(table) @ kernel[:, :hidden] + bias[:hidden]
    key = np.asarray(table) @ kernel[:, hidden:2 * hidden] + bias[hidden:2 * hidden]
    np.testing.assert_allclose(np.asarray(terms.pos_query), query.reshape(-1, heads, hidden // heads),
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(terms.pos_key), key.reshape(-1, heads, hidden // heads),
                               atol=1e-6)
    assert terms.scale_factor == 3


@pytest.mark.parametrize("precision", [SitePrecision("int8", "per_tensor_static"), SitePrecision("fp8_e4m3")])
def test_quantized_qkv_gives_its_dequantized_unsmoothed_weights(precision):
    """A quantized `qkv` hands the position projections its stored weights dequantized, with
    SmoothQuant's per-channel factor (folded into the kernel) undone."""
    model = EncoderModel(FAMILY_CONFIGS["deberta-v2"], rngs=nnx.Rngs(0))
    source = model.encoder.layers[0].qkv
    n_in = source.shape[0]
    input_scale = np.linspace(0.25, 4.0, n_in).astype(np.float32)
    calibration = SiteCalibration(absmax=3.0, amax=2.0, input_scale=input_scale)
    site = QuantizedGemmSite.from_float(source, precision, dtype=jnp.float32, calibration=calibration)
    kernel, bias = site.dense_weight()
    float_kernel = np.asarray(source.kernel[...])
    step = np.abs(float_kernel / input_scale[:, None]).max() / (127 if precision.precision == "int8" else 8)
    assert np.abs(np.asarray(kernel) - float_kernel).max() <= step * input_scale.max()
    np.testing.assert_array_equal(np.asarray(bias), np.asarray(source.bias[...]))


def test_a_v3_checkpoint_with_an_unused_position_table_loads(tmp_path):
    """Released v3 checkpoints carry `embeddings.position_embeddings` although
    `position_biased_input` is false; HF ignores it, and so does a strict load here."""
    folder = tmp_path / "v3"
    shutil.copytree(FOLDER / "base", folder)
    state, _ = read_state_dict(folder)
    state["embeddings.position_embeddings.weight"] = np.ones((40, 30), np.float32)
    save_file(state, str(folder / "model.safetensors"))
    golden = dict(np.load(FOLDER / "golden.npz"))
    ids, mask, types = (golden[f"single_{key}"] for key in KEYS)
    hidden = np.asarray(load_pretrained(folder)(ids, mask, types))
    np.testing.assert_array_equal(hidden, np.asarray(load_pretrained(FOLDER / "base")(ids, mask, types)))


@pytest.mark.parametrize("key, value, says", [
    ("conv_kernel_size", 3, "convolution branch"),
    ("embedding_size", 16, "embed_proj"),
    ("pooler_hidden_act", "mish", "pooler_hidden_act='mish' is not one of"),
    ("pooler_hidden_size", 8, "pooler_hidden_size"),
    ("attention_head_size", 7, "attention_head_size=7"),
    ("pos_att_type", ["c2p", "p2p"], "pos_att_type"),
    ("norm_rel_ebd", "batch_norm", None),
])
def test_unsupported_options_are_refused(key, value, says, tmp_path):
    hf = json.loads((FOLDER / "seqcls" / "config.json").read_text())
    if says is None:  # an unknown norm is HF's "none" too (it only looks for 'layer_norm')
        assert EncoderConfig.from_hf_config(hf | {key: value}).norm_rel_ebd == "none"
        return
    shutil.copytree(FOLDER / "seqcls", tmp_path / "seqcls")
    (tmp_path / "seqcls" / "config.json").write_text(json.dumps(hf | {key: value}))
    with pytest.raises(ConfigError, match=f"seqcls/config.json: .*{says}"):
        load_pretrained(tmp_path / "seqcls")


@pytest.mark.parametrize("batch", ["single", "pair"])
def test_without_relative_attention_matches_hf(batch):
    """`relative_attention: false` with `pos_att_type` set: HF still divides the scores by
    sqrt(3 head_dim) and still stores the relative table's LayerNorm; the ContextPooler
    applies `pooler_hidden_act: tanh`."""
    golden = dict(np.load(FOLDER / "golden.npz"))
    expected = dict(np.load(FOLDER / "nonrelative" / "golden.npz"))
    model = load_pretrained(FOLDER / "nonrelative")
    assert not model.config.disentangled_attention and model.config.score_scale_factor == 3
    assert model.head.activation == "tanh"
    # HF writes no id2label for its default two labels: a classifier still has two
    assert "id2label" not in json.loads((FOLDER / "nonrelative" / "config.json").read_text())
    assert model.head.num_labels == 2 and detect_head(FOLDER / "nonrelative") == ("sequence_classification", 2)
    assert model.labels == ("LABEL_0", "LABEL_1")  # as HF names them
    ids, mask, types = (golden[f"{batch}_{key}"] for key in KEYS)
    logits = np.asarray(model(ids, mask, types))
    assert np.abs(logits - expected[f"{batch}_logits"]).max() <= 5e-6  # measured 6e-7
    if batch == "pair":
        encoder = load_pretrained(FOLDER / "nonrelative", head="none", strict=False)
        hidden, real = np.asarray(encoder(ids, mask, types)), mask.astype(bool)
        assert np.abs(hidden[real] - expected["pair_hidden"][real]).max() <= 5e-6


def test_the_pooler_activation_round_trips(tmp_path):
    save_pretrained(load_pretrained(FOLDER / "nonrelative"), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["pooler_hidden_act"], config["relative_attention"]) == ("tanh", False)
    assert load_pretrained(tmp_path).head.activation == "tanh"


def test_a_folder_with_only_a_damaged_sentencepiece_model_names_it(tmp_path):
    """A folder with only spm.model (and config.json) converts it as HF does
    (`test_slow_tokenizer.py`, the deberta-v2 cases); a damaged one is refused, naming it."""
    shutil.copy(FOLDER / "base" / "config.json", tmp_path / "config.json")
    (tmp_path / "spm.model").write_bytes(b"\x00")
    with pytest.raises(ValueError, match=r"spm.model is not a valid SentencePiece model: "
                                         r"ModelProto has a field number 0"):
        Tokenizer.from_pretrained(tmp_path)
