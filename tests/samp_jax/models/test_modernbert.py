"""ModernBERT's own pieces against HF's outputs and against each other: CLS vs mean pooling,
the `*_bias` flags, the two RoPE bases and the local window (each visibly changes the output),
blockwise local attention vs the band mask, masked-LM checkpoints, and config errors."""

import functools
import json
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from samp_jax import load_pretrained
from samp_jax.models import ConfigError, EncoderConfig, EncoderModel, make_head
from samp_jax.models.checkpoint import assign_state_dict, read_state_dict, save_pretrained
from samp_jax.models.layers import attention
from samp_jax.models.local_attention import blockwise_local_attention, use_blockwise
from samp_jax.models.rotary import apply_rotary, rotary_tables
from tests.helpers import FAMILY_CONFIGS, GOLDEN

FOLDER = GOLDEN / "families" / "modernbert"


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(FOLDER / "golden.npz"))


def _inputs(golden, batch):
    return golden[f"{batch}_input_ids"], golden[f"{batch}_attention_mask"]


def _copy_with_config(tmp_path, source, **changes):
    folder = tmp_path / source
    shutil.copytree(FOLDER / source, folder)
    config = json.loads((folder / "config.json").read_text()) | changes
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_golden_config_exercises_local_and_global_layers():
    config = EncoderConfig.from_hf_config(FOLDER / "base")
    assert [config.is_local_layer(i) for i in range(3)] == [False, True, False]
    assert [config.layer_rotary_theta(i) for i in range(3)] == [1000.0, 10.0, 1000.0]
    assert config.local_attention == 8 and config.norm_first and config.gated_ffn
    assert not (config.attention_bias or config.mlp_bias or config.norm_bias or config.classifier_bias)
    model = EncoderModel(config, rngs=nnx.Rngs(0))
    assert model.encoder.layers[0].ffn_in.shape == (30, 2 * 37)  # the gated ffn_in, 2x wide
    assert model.encoder.layers[0].attn_norm is None and model.encoder.layers[1].attn_norm is not None
    assert model.embeddings.position is None and model.embeddings.norm.bias is None


@pytest.mark.parametrize("batch", ["single", "pair"])
def test_cls_pooling_matches_hf(golden, batch, tmp_path):
    model = load_pretrained(_copy_with_config(tmp_path, "seqcls", classifier_pooling="cls"))
    assert model.head.pooling == "cls"
    logits = np.asarray(model(*_inputs(golden, batch)))
    assert np.abs(logits - golden[f"{batch}_seq_cls_logits"]).max() <= 1e-5


@pytest.mark.parametrize("batch", ["single", "pair"])
def test_every_bias_flag_on_matches_hf(golden, batch, tmp_path):
    model = load_pretrained(FOLDER / "biased")
    config = model.config
    assert config.attention_bias and config.mlp_bias and config.norm_bias and config.classifier_bias
    ids, mask = _inputs(golden, batch)
    valid = mask.astype(bool)
    hidden = np.asarray(model.encode(ids, mask))
    assert np.abs(hidden[valid] - golden[f"{batch}_biased_hidden"][valid]).max() <= 1e-5  # measured 2.6e-6
    assert np.abs(np.asarray(model(ids, mask)) - golden[f"{batch}_biased_seq_logits"]).max() <= 4e-6
    save_pretrained(model, tmp_path / "out")
    ours, _ = read_state_dict(tmp_path / "out")
    theirs, _ = read_state_dict(FOLDER / "biased")
    assert set(ours) == set(theirs)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["classifier_pooling"] == "mean"


@pytest.mark.parametrize("change", [
    {"global_rope_theta": 10.0, "local_rope_theta": 1000.0},  # the two bases swapped
    {"local_attention": 64},  # a window wider than the batch: every layer global in effect
    {"global_attn_every_n_layers": 1},  # no local layers
])
def test_each_piece_changes_the_output(golden, change, tmp_path):
    """The goldens see the RoPE bases and the window: getting either wrong misses them."""
    model = load_pretrained(_copy_with_config(tmp_path, "base", **change))
    ids, mask = _inputs(golden, "single")
    valid = mask.astype(bool)
    hidden = np.asarray(model(ids, mask))
    assert np.abs(hidden[valid] - golden["single_hidden"][valid]).max() > 1e-2


@pytest.mark.parametrize("seq, window", [(16, 8), (37, 8), (40, 6), (25, 128), (9, 1)])
def test_blockwise_local_attention_matches_the_band_mask(seq, window):
    rng = np.random.default_rng(seq)
    q, k, v = (jnp.asarray(rng.normal(size=(3, seq, 2, 8)), jnp.float32) for _ in range(3))
    lengths = np.array([seq, seq - 3, 2])
    mask = jnp.asarray(np.arange(seq)[None] < lengths[:, None])
    positions = np.arange(seq)
    band = np.abs(positions[:, None] - positions[None, :]) <= window // 2
    # the reference: plain masked softmax over the band, numpy float64
    logits = np.einsum("bqhd,bkhd->bhqk", np.float64(q), np.float64(k)) / np.sqrt(8)
    allowed = band[None, None] & np.asarray(mask)[:, None, None, :]
    logits = np.where(allowed, logits, -1e30)  # padded queries with no key: finite garbage
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    expected = np.einsum("bhqk,bkhd->bqhd", weights / weights.sum(-1, keepdims=True), np.float64(v))
    # each jitted, as inside the model: one compilation per case instead of one per op
    blocked = np.asarray(jax.jit(functools.partial(blockwise_local_attention, window=window))(
        q, k, v, mask))
    dense = np.asarray(jax.jit(functools.partial(attention, window=window))(
        q, k, v, mask.astype(jnp.int32)))
    # jax's own attention with the window `attention` hands cuDNN (left, right) = (w//2, w//2)
    half = window // 2
    theirs = np.asarray(jax.jit(lambda q, k, v, lengths: jax.nn.dot_product_attention(
        q, k, v, query_seq_lengths=lengths, key_value_seq_lengths=lengths,
        local_window_size=(half, half), implementation="xla"))(
        q, k, v, jnp.asarray(lengths, jnp.int32)))
    real = np.asarray(mask)
    np.testing.assert_allclose(blocked[real], expected[real], atol=2e-6)
    np.testing.assert_allclose(dense[real], expected[real], atol=2e-6)
    np.testing.assert_allclose(theirs[real], expected[real], atol=2e-6)
    assert use_blockwise(seq, window) == (seq > 3 * max(window // 2, 1))


def test_rotary_scores_depend_on_the_offset_only():
    rng = np.random.default_rng(0)
    q, k = (jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32) for _ in range(2))
    cos, sin = rotary_tables(40, 16, 100.0)

    def score(p, r):  # q at position p, k at position r
        qp = apply_rotary(jnp.broadcast_to(q, (1, 40, 1, 16)), cos, sin)[0, p, 0]
        kr = apply_rotary(jnp.broadcast_to(k, (1, 40, 1, 16)), cos, sin)[0, r, 0]
        return float(jnp.dot(qp, kr))
    assert score(5, 2) == pytest.approx(score(30, 27), abs=1e-6)  # measured 2.4e-7
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)


def test_masked_lm_checkpoints_seed_a_classifier_as_hf_does(tmp_path):
    """HF's masked-LM checkpoints carry `head.*` (the same prediction head) and `decoder.*`: a
    base model ignores both; a new classifier keeps `head.*` and starts only `classifier.*`."""
    state, _ = read_state_dict(FOLDER / "seqcls")
    mlm = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    mlm["decoder.bias"] = np.zeros(305, np.float32)
    config = EncoderConfig.from_hf_config(FOLDER / "seqcls")
    base = EncoderModel(config, rngs=nnx.Rngs(0))
    assign_state_dict(base, mlm)
    rngs = nnx.Rngs(0)
    head = make_head("sequence_classification", config, num_labels=2, pooling="mean", norm=True,
                     activation="gelu", rngs=rngs)
    model = EncoderModel(config, head, rngs=rngs)
    new = assign_state_dict(model, mlm, allow_new_head=True)
    assert sorted(new) == ["classifier.bias", "classifier.weight"]
    np.testing.assert_array_equal(np.asarray(model.head.pooler.kernel[...]), state["head.dense.weight"].T)


def test_a_head_without_the_norm_cannot_be_exported(tmp_path):
    config = FAMILY_CONFIGS["modernbert"]
    rngs = nnx.Rngs(0)
    model = EncoderModel(config, make_head("sequence_classification", config, num_labels=2,
                                           activation="gelu", rngs=rngs), rngs=rngs)
    with pytest.raises(ConfigError, match="has a LayerNorm in its head; this head has none"):
        save_pretrained(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, message", [
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling=.* is not supported"),
    ({"classifier_pooling": "max"}, "classifier_pooling='max' is not one of"),
    ({"classifier_activation": "mish"}, "classifier_activation='mish' is not one of"),
    ({"hidden_size": 30, "num_attention_heads": 2}, "even head_dim"),
    ({"global_attn_every_n_layers": 0}, "global_attn_every_n_layers=0 must be a positive"),
    ({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e4}}},
     r"rope_parameters\['full_attention'\]=.* is not supported; only default RoPE"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e4}},
     r"rope_parameters=.* is not supported: samp-jax reads a dict with \['full_attention', "
     r"'sliding_attention'\] entries"),
    ({"layer_types": ["full_attention", "sliding_attention"]}, r"layer_types=.* must name 3 layers"),
    ({"layer_types": ["full_attention", "chunked_attention", "full_attention"]},
     r"layer_types=.* each 'full_attention' or 'sliding_attention'"),
    ({"layer_types": "full_attention"}, r"layer_types='full_attention' must be a list"),
    ({"local_attention": 0}, r"local_attention=0 with local \(sliding-window\) layers"),
    ({"local_attention": 0, "layer_types": ["full_attention", "sliding_attention", "full_attention"]},
     r"local_attention=0 with local"),
    ({"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": None}}},
     r"rope_parameters\['full_attention'\]\['rope_theta'\]=None must be a positive number"),
])
def test_bad_configs_are_refused_with_the_key(change, message, tmp_path):
    folder = _copy_with_config(tmp_path, "seqcls", **change)
    with pytest.raises(ConfigError, match=message):
        load_pretrained(folder)


# ------------------------------------------------ configs written by transformers 5
V5 = FOLDER / "transformers5"  # tools/golden_modernbert_v5.py: configs and logits of transformers 5


def _with_v5_config(tmp_path, name, drop=()):
    folder = tmp_path / name
    shutil.copytree(FOLDER / "seqcls", folder)
    config = {k: v for k, v in json.loads((V5 / name / "config.json").read_text()).items()
              if k not in drop}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("name, drop", [
    ("resaved", ()),
    # transformers 5 writes global_attn_every_n_layers only when it was set explicitly
    ("resaved", ("global_attn_every_n_layers",)),
    # layers (sliding, full, full), which no global_attn_every_n_layers gives, over the file's
    # global_attn_every_n_layers=2; RoPE bases 500 and 20 in rope_parameters only
    ("irregular", ()),
])
def test_a_transformers5_config_gives_transformers5s_logits(golden, name, drop, tmp_path):
    """RoPE bases from `rope_parameters` and the layers' attention from `layer_types`, which
    transformers 5 writes in place of 4.57's keys (read as 4.57's defaults, the outputs moved
    by O(1) without an error)."""
    expected = dict(np.load(V5 / "golden.npz"))
    model = load_pretrained(_with_v5_config(tmp_path, name, drop))
    for batch in ("single", "pair"):
        logits = np.asarray(model(*_inputs(golden, batch)))
        assert np.abs(logits - expected[f"{name}_{batch}_logits"]).max() <= 4e-6  # measured 1.3e-6
    if name == "resaved":  # the same model as 4.57's golden (HF 5 against 4.57: 1.2e-6)
        assert np.abs(expected["resaved_single_logits"] - golden["single_seq_logits"]).max() <= 3e-6


def test_layer_types_are_kept_per_layer_only_when_no_pattern_gives_them(tmp_path):
    regular = EncoderConfig.from_hf_config(_with_v5_config(tmp_path, "resaved", ("global_attn_every_n_layers",)))
    assert regular.layer_types is None and regular.global_attn_every_n_layers == 2
    assert "layer_types" not in regular.to_hf_dict()  # 4.57 reads the saved config alike
    irregular = EncoderConfig.from_hf_config(V5 / "irregular")
    assert irregular.layer_types == ("sliding_attention", "full_attention", "full_attention")
    assert [irregular.is_local_layer(i) for i in range(3)] == [True, False, False]
    assert [irregular.layer_rotary_theta(i) for i in range(3)] == [20.0, 500.0, 500.0]
    assert EncoderConfig.from_hf_config(irregular.to_hf_dict()) == irregular
    # 4.57 reads global_attn_every_n_layers and not layer_types: None makes it refuse the file
    # rather than run the file's stale pattern (2: full, sliding, full)
    assert irregular.to_hf_dict()["global_attn_every_n_layers"] is None
    assert irregular.replace(layer_types=list(irregular.layer_types)) == irregular
    # transformers 5 reads no rope_theta alias once rope_parameters is there
    only_local = {"rope_parameters": {"sliding_attention": {"rope_theta": 7.0}}, "rope_theta": 999.0}
    without_bases = {k: v for k, v in irregular.to_hf_dict().items() if not k.endswith("rope_theta")}
    config = EncoderConfig.from_hf_config(without_bases | only_local)
    assert (config.rotary_theta, config.local_rotary_theta) == (160000.0, 7.0)
    every_layer_global = {"layer_types": ["full_attention"] * 3}
    assert not EncoderConfig.from_hf_config(irregular.to_hf_dict() | every_layer_global).has_local_layers


def test_a_saved_transformers5_model_keeps_its_layers_and_bases(golden, tmp_path):
    model = load_pretrained(_with_v5_config(tmp_path, "irregular"))
    save_pretrained(model, tmp_path / "saved")
    again = load_pretrained(tmp_path / "saved")
    assert again.config == model.config
    ids, mask = _inputs(golden, "single")
    np.testing.assert_array_equal(np.asarray(again(ids, mask)), np.asarray(model(ids, mask)))


def test_the_special_token_ids_of_config_json_survive_an_export_and_a_quantized_save(tmp_path):
    import samp_jax as sj
    source = json.loads((FOLDER / "seqcls" / "config.json").read_text())
    ids = {key: source[key] for key in ("bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id")}
    assert ids == {"bos_token_id": 301, "eos_token_id": 302, "cls_token_id": 301, "sep_token_id": 302}
    model = load_pretrained(FOLDER / "seqcls")
    exported = json.loads((save_pretrained(model, tmp_path / "hf") / "config.json").read_text())
    assert {key: exported.get(key) for key in ids} == ids  # not ModernBERT's 50281 / 50282
    quantized = sj.quantize(model, sj.PrecisionMap.preset("fp32", model.config.num_layers))
    assert sj.QuantizedModel.load(quantized.save(tmp_path / "q")).config == model.config
    assert dict(model.config.token_ids) == ids
    plain = EncoderConfig.from_hf_config(source | {"bos_token_id": None, "eos_token_id": [1, 2]})
    assert dict(plain.token_ids) == {"cls_token_id": 301, "sep_token_id": 302}  # ints only
    for bad in ([("mask_token_id", 3)], [("cls_token_id", -1)], [("cls_token_id", True)],
                [("cls_token_id", 1), ("cls_token_id", 2)]):
        with pytest.raises(ConfigError, match="must pair distinct keys of"):
            EncoderConfig(token_ids=bad)


def test_local_layers_never_build_seq_by_seq_logits_past_three_blocks():
    """A long input (past 3 blocks of window // 2) runs the local layers blockwise: no
    `[.., seq, seq]` intermediate in the program."""
    config = FAMILY_CONFIGS["modernbert"].replace(max_position_embeddings=256, num_layers=2)
    model = EncoderModel(config, rngs=nnx.Rngs(0))
    layer = model.encoder.layers[1]
    assert layer.window == 8
    x = jnp.zeros((1, 200, config.hidden_size), jnp.float32)
    jaxpr = str(jax.make_jaxpr(lambda x: layer(x, jnp.ones((1, 200), jnp.int32)))(x))
    assert "200,200" not in jaxpr.replace(" ", "") and "4,12" in jaxpr.replace(" ", "")


def test_modernbert_head_options_are_refused_where_hf_cannot_express_them(tmp_path):
    """BERT's HF classes pool the first token and have no head norm: such a head is not saved
    as one (nothing written), rather than exported without what makes it differ."""
    config = FAMILY_CONFIGS["bert"]
    rngs = nnx.Rngs(0)
    for spec in ({"pooling": "mean"}, {"norm": True}):
        head = make_head("sequence_classification", config, num_labels=2, rngs=rngs, **spec)
        with pytest.raises(ConfigError, match=re.escape(f"cannot express this head's {list(spec)}")):
            save_pretrained(EncoderModel(config, head, rngs=rngs), tmp_path / "out")
    head = make_head("token_classification", config, num_labels=2, activation="gelu", rngs=rngs)
    with pytest.raises(ConfigError, match=re.escape("cannot express this head's ['activation']")):
        save_pretrained(EncoderModel(config, head, rngs=rngs), tmp_path / "out")
    assert not (tmp_path / "out").exists()
