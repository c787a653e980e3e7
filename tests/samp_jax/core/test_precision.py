import json
import re

import jax
import numpy as np
import pytest
from flax import nnx

from calibrate import CALIBRATORS
from pallas_kernels.numerics import SCALE_EPS
from samp_jax import EncoderConfig, EncoderModel, PrecisionMap, PrecisionMapError, SitePrecision, quantize
from samp_jax.core.precision import CALIBRATOR_NAMES, SITES, AttentionPrecision, Rule


def test_presets():
    ffn = PrecisionMap.preset("quant_ffn_only", 6)
    for layer in range(6):
        assert ffn[layer, "ffn_in"] == ffn[layer, "ffn_out"] == SitePrecision("int8", "per_token_dynamic")
        assert ffn[layer, "qkv"] == ffn[layer, "attn_out"] == SitePrecision("fp16")
    full = PrecisionMap.preset("fully_quant", 3, activation="per_tensor_static")
    assert all(p == SitePrecision("int8", "per_tensor_static") for _, p in full.items())
    assert full.needs_calibration() and not PrecisionMap.preset("fully_quant", 3).needs_calibration()
    assert all(p.precision == "fp8_e4m3" for _, p in PrecisionMap.preset("fp8", 2).items())
    assert PrecisionMap.preset("bf16", 2)[1, "qkv"].precision == "bf16"
    with pytest.raises(PrecisionMapError, match="preset name='int4'"):
        PrecisionMap.preset("int4", 2)


def test_first_matching_rule_wins_and_default_fills():
    pmap = PrecisionMap.from_dict({
        "num_layers": 4, "default": {"precision": "fp16"},
        "rules": [{"layers": [0], "sites": "*", "precision": "fp32"},
                  {"layers": "*", "sites": ["ffn_in"], "precision": "int8", "activation": "per_tensor_static"}]})
    assert pmap[0, "ffn_in"].precision == "fp32"  # rule 0 shadows rule 1 on layer 0
    assert pmap[3, "ffn_in"] == SitePrecision("int8", "per_tensor_static")
    assert pmap[2, "qkv"].precision == "fp16"


def test_json_round_trip_is_exact(tmp_path):
    text = json.dumps({
        "num_layers": 6, "default": {"precision": "fp16"},
        "rules": [{"layers": [0, 5], "sites": "*", "precision": "bf16"},
                  {"layers": "*", "sites": ["ffn_in", "ffn_out"], "precision": "int8",
                   "activation": "per_token_dynamic"},
                  {"layers": [2], "sites": ["qkv"], "precision": "fp8_e4m3"}]}, indent=2)
    pmap = PrecisionMap.from_json(text)
    assert json.loads(pmap.to_json()) == json.loads(text)
    again = PrecisionMap.from_json(pmap.to_json())
    assert again.to_json() == pmap.to_json() and again == pmap
    pmap.save(tmp_path / "map.json")
    assert PrecisionMap.from_json(tmp_path / "map.json") == pmap


def test_from_table_writes_equivalent_rules():
    table = {(1, "qkv"): "int8-static", (1, "ffn_out"): "int8-static", (4, "attn_out"): "fp8_e4m3"}
    pmap = PrecisionMap.from_table(table, 6, default="fp16")
    assert pmap[1, "qkv"] == SitePrecision("int8", "per_tensor_static")
    assert pmap[4, "attn_out"].precision == "fp8_e4m3"
    assert sum(p.is_quantized for _, p in pmap.items()) == 3
    assert PrecisionMap.from_json(pmap.to_json()) == pmap
    with pytest.raises(PrecisionMapError, match="cells"):
        PrecisionMap.from_table({(9, "qkv"): "fp16"}, 6)


def test_equal_tables_are_equal_and_hash_alike():
    a = PrecisionMap.preset("fully_quant", 2)
    b = PrecisionMap(2, (Rule(None, tuple(SITES), SitePrecision("int8")),), SitePrecision("fp32"))
    assert a == b and hash(a) == hash(b)
    assert a != PrecisionMap.preset("fp16", 2)


@pytest.mark.parametrize("data, message", [
    ({"num_layers": 2, "rules": [{"sites": ["ffn"], "precision": "int8"}]}, "site='ffn' is not one of"),
    ({"num_layers": 2, "rules": [{"sites": ["embed_proj"], "precision": "int8"}]},
     "site='embed_proj' is not one of .* set by the map's own \"embedding_project\" key"),
    ({"num_layers": 2, "rules": [{"layers": [2], "precision": "int8"}]}, "layer=2 is out of range"),
    ({"num_layers": 2, "rules": [{"precision": "int4"}]}, "precision='int4' is not one of"),
    ({"num_layers": 2, "rules": [{"precision": "fp16", "activation": "per_token_dynamic"}]},
     "only allowed with precision 'int8'"),
    ({"num_layers": 2, "rules": [{"precision": "int8", "activation": "per_channel"}]},
     "activation='per_channel' is not one of"),
    ({"num_layers": 2, "rules": [{"precision": "fp16"}, {"layers": [1], "precision": "int8"}]},
     "rule 1 .* matches nothing"),
    ({"num_layers": 2, "rules": [{"precision": "fp16", "site": "qkv"}]}, r"unknown keys \['site'\]"),
    ({"num_layers": 0}, "num_layers=0 must be a positive integer"),
    ({"rules": []}, r"missing keys \['num_layers'\]"),
    ({"num_layers": 2, "rules": [{"layers": [], "precision": "fp16"}]}, "must be '\\*', a int"),
    # JSON's true is not one layer; rules must be a list, not null or one rule object
    ({"num_layers": True}, r"num_layers=True must be a positive integer \(a boolean is not a count\)"),
    ({"num_layers": 2, "rules": None}, r"precision map: rules is null, expected a JSON list of rule"),
    ({"num_layers": 2, "rules": {"layers": "*", "precision": "int8"}},
     r"precision map: rules is an object, expected a JSON list of rule objects"),
    ({"num_layers": 2, "rules": "*"}, r"precision map: rules is a string, expected a JSON list"),
    ({"num_layers": 2, "rules": [None]}, r"rule 0 must be a JSON object, got null"),
])
def test_validation_names_the_bad_entry(data, message):
    with pytest.raises(PrecisionMapError, match=message):
        PrecisionMap.from_dict(data)


def test_bad_json_and_missing_file(tmp_path):
    with pytest.raises(PrecisionMapError, match="not valid JSON"):
        PrecisionMap.from_json("{not json")
    with pytest.raises(FileNotFoundError, match="no precision map"):
        PrecisionMap.from_json(tmp_path / "absent.json")


@pytest.mark.parametrize("text, message", [
    ('[{"num_layers": 2}]', r"precision map must be a JSON object, got a list"),
    (' [1, 2]', r"precision map must be a JSON object, got a list"),
    ("", r"precision map is '': expected JSON text \(an object\) or the path of a \.json file"),
    ("  \n", r"precision map is '  \\n': expected JSON text"),
])
def test_json_text_that_is_not_an_object_is_named_as_such(text, message):
    """A JSON list, or no text at all, is named as such, not looked up as a file path."""
    with pytest.raises(PrecisionMapError, match=message):
        PrecisionMap.from_json(text)


def test_indexing_errors():
    pmap = PrecisionMap.preset("fp16", 2)
    with pytest.raises(PrecisionMapError, match="site='mlp'"):
        pmap[0, "mlp"]
    with pytest.raises(PrecisionMapError, match="layer=5 is out of range"):
        pmap[5, "qkv"]
    with pytest.raises(PrecisionMapError, match=r"the attention matmuls are pmap.attention\(1\)"):
        pmap[1, "attn_scores"]
    with pytest.raises(PrecisionMapError, match="layer=2 is out of range"):
        pmap.attention(2)


def test_map_is_a_static_jit_argument_compiled_once_per_map():
    config = EncoderConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4,
                           intermediate_size=64, max_position_embeddings=16)
    model = EncoderModel(config, rngs=nnx.Rngs(0))
    traces = []

    def forward(graphdef, state, ids):
        traces.append(1)  # runs only while tracing
        return nnx.merge(graphdef, state)(ids)

    static_forward = jax.jit(forward, static_argnums=0)
    ids = np.ones((2, 8), np.int32)
    outputs = {}
    for name in ("fully_quant", "fp16", "fully_quant", "fp16", "fully_quant"):
        graphdef, state = nnx.split(quantize(model, PrecisionMap.preset(name, 2)))
        outputs.setdefault(name, []).append(np.asarray(static_forward(graphdef, state, ids)))
    assert len(traces) == 2  # one compilation per distinct map, none when a map repeats
    np.testing.assert_array_equal(outputs["fully_quant"][0], outputs["fully_quant"][2])
    assert not np.array_equal(outputs["fully_quant"][0], outputs["fp16"][0])


def test_a_file_whose_name_starts_like_json_is_read_as_a_file(tmp_path, monkeypatch):
    pmap = PrecisionMap.preset("fully_quant", 2)
    (tmp_path / "[v2]map.json").write_text(pmap.to_json())
    monkeypatch.chdir(tmp_path)
    assert PrecisionMap.from_json("[v2]map.json") == pmap
    assert PrecisionMap.from_json(pmap.to_json() + " " * 300) == pmap  # too long for a name


# ------------------------------------------------------------------ what a hand-written map holds
@pytest.mark.parametrize("text, message", [
    ('{"num_layers": 2, "rules": [{"layers": "*", "precision": "int8", "precision": "fp32"}]}',
     r"rule 0: key 'precision' appears more than once in the object"),
    ('{"num_layers": 2, "rules": [{"precision": "int8", "activation": "dynamic"}], "rules": []}',
     r"precision map: key 'rules' appears more than once in the object"),
    ('{"num_layers": 2, "num_layers": 3}', r"precision map: key 'num_layers' appears more than once"),
    ('{"num_layers": 2, "default": {"precision": "fp16", "precision": "fp32"}}',
     r"default: key 'precision' appears more than once"),
    ('{"num_layers": 2, "embedding_project": {"precision": "fp16", "precision": "fp32"}}',
     r"embedding_project: key 'precision' appears more than once"),
], ids=["in a rule", "rules", "num_layers", "in the default", "in embedding_project"])
def test_a_key_given_twice_is_refused_naming_the_file_and_the_rule(tmp_path, text, message):
    """JSON keeps the last value of a repeated key and says nothing: the map a person reads
    (`"precision": "int8"` first) would not be the one that runs."""
    with pytest.raises(PrecisionMapError, match=message + r".*expected each key once"):
        PrecisionMap.from_json(text)
    path = tmp_path / "map.json"
    path.write_text(text)
    for given in (path, str(path)):  # a Path, and the string the CLI passes
        with pytest.raises(PrecisionMapError, match=re.escape(str(path)) + ": " + message):
            PrecisionMap.from_json(given)


@pytest.mark.parametrize("rule, message", [
    ({"precision": "int8", "activation": ["static"]},
     r"rule 0: activation=\['static'\] is a list, expected a string: one of \('per_tensor_static'"),
    ({"precision": "int8", "activation": {"static": 1}}, r"rule 0: activation=\{'static': 1\} is an object"),
    ({"precision": ["int8"]}, r"rule 0: precision=\['int8'\] is a list, expected a string: one of \('fp32'"),
    ({"precision": {"int8": 1}}, r"rule 0: precision=\{'int8': 1\} is an object, expected a string"),
    ({"precision": "int8", "activation": "static", "calibration": ["mse"]},
     r"rule 0: calibration=\['mse'\] is a list, expected a string: one of \('minmax'"),
    ({"precision": "int8", "activation": 1}, r"rule 0: activation=1 is an integer, expected a string"),
], ids=["activation list", "activation object", "precision list", "precision object",
        "calibration list", "activation number"])
def test_a_field_of_the_wrong_json_type_is_named(rule, message):
    with pytest.raises(PrecisionMapError, match=message):
        PrecisionMap.from_dict({"num_layers": 2, "rules": [rule]})
    with pytest.raises(PrecisionMapError, match=message.replace("rule 0", "default")):
        PrecisionMap.from_dict({"num_layers": 2, "default": rule})
    with pytest.raises(PrecisionMapError, match=r"compute_dtype=\['float32'\] is a list, expected a "
                                                r"string: one of \('float32'"):
        PrecisionMap.from_dict({"num_layers": 2, "compute_dtype": ["float32"]})


@pytest.mark.parametrize("clip", [None, 2.0])
def test_an_unknown_calibrator_is_refused_with_or_without_a_clip(clip):
    """With a clip the calibrator does not run, but the saved model would still name it."""
    rule = {"precision": "int8", "activation": "static", "calibration": "msee",
            **({} if clip is None else {"clip": clip})}
    with pytest.raises(PrecisionMapError, match=r"rule 0: calibration='msee' is not one of "
                                                r"\('minmax', 'percentile', 'mse', 'entropy'\)"):
        PrecisionMap.from_dict({"num_layers": 2, "rules": [rule]})
    assert tuple(CALIBRATORS) == CALIBRATOR_NAMES  # the names a map may give are calibrate's


@pytest.mark.parametrize("precision, clip, message", [
    ("int8", 1e300, r"clip=1e\+300 gives the activation scale clip / 127 = 7\.874e\+297, which float32 "
                    r"cannot hold; expected 0 < clip <= 4\.322e\+40"),
    ("int8", 1e39 * 127, r"clip=1\.27e\+41 gives .*which float32 cannot hold"),
    ("fp8_e4m3", 1e300, r"clip=1e\+300 gives the activation scale clip / 448 .*float32 cannot hold; "
                        r"expected 0 < clip <= 1\.524e\+41"),
], ids=["int8 1e300", "int8 1.27e41", "fp8 1e300"])
def test_a_clip_whose_scale_float32_cannot_hold_is_refused(precision, clip, message):
    """An overflowing scale is refused when the map is read, not inside `quantize`."""
    rule = {"layers": [1], "sites": "ffn_in", "precision": precision, "clip": clip,
            **({"activation": "static"} if precision == "int8" else {})}
    with pytest.raises(PrecisionMapError, match=r"rule 0: " + message):
        PrecisionMap.from_dict({"num_layers": 2, "rules": [rule]})


@pytest.mark.parametrize("precision, divisor", [("int8", 127.0), ("fp8_e4m3", 448.0)])
def test_the_extreme_clips_a_scale_can_take_are_read(precision, divisor):
    """Down to the tiniest: a calibrator's clip of an input that is all but zero (4.9e-12 from
    `percentile`) runs at the floor scale, as `quantize` floors every scale."""
    extra = {"activation": "static"} if precision == "int8" else {}
    for clip in (1e-300, 4.8828125e-12, SCALE_EPS * divisor, 3.0e38 * divisor):
        pmap = PrecisionMap.from_dict({"num_layers": 1, "rules": [{"precision": precision, "clip": clip, **extra}]})
        assert pmap[0, "qkv"].clip == clip


# ------------------------------------------------------------- hostile layer counts and files
@pytest.fixture
def per_layer_guard(monkeypatch):
    """Fails the test when a map is expanded per layer for more than 10^4 layers (a map of
    10^30 layers must be refused before, not grown until memory runs out)."""
    cells = PrecisionMap._cells

    def guarded(self):
        assert self.num_layers <= 10**4, f"expanded {self.num_layers} layers before any check"
        return cells(self)
    monkeypatch.setattr(PrecisionMap, "_cells", guarded)


@pytest.mark.parametrize("layers, shown", [(10**30, r"2\^99 or more"), (10**6, "1000000"), (1025, "1025")])
def test_an_absurd_layer_count_is_refused_before_any_expansion(tmp_path, per_layer_guard, layers, shown):
    from samp_jax.core.precision import MAX_LAYERS
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"num_layers": layers, "default": {"precision": "fp16"},
                                "rules": [{"layers": "*", "sites": "*", "precision": "int8"}]}))
    message = (rf"num_layers={shown} is more layers than any encoder has; expected the model's "
               rf"layer count \(at most {MAX_LAYERS}\)")
    with pytest.raises(PrecisionMapError, match=rf"^{re.escape(str(path))}: {message}$"):
        PrecisionMap.from_json(path)
    with pytest.raises(PrecisionMapError, match=message):
        PrecisionMap.preset("quant_ffn_only", layers)
    with pytest.raises(PrecisionMapError, match=message):
        PrecisionMap.from_table({}, layers)
    assert PrecisionMap.preset("quant_ffn_only", MAX_LAYERS).num_layers == MAX_LAYERS


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "JSON nested deeper than Python reads"),
    ('{"num_layers": 1' + "0" * 5000 + "}", r"an integer of 5001 digits, more than Python reads \(4300\)"),
])
def test_json_python_cannot_read_is_named_with_the_file(tmp_path, text, message):
    path = tmp_path / "map.json"
    path.write_text(text)
    with pytest.raises(PrecisionMapError, match=rf"^{re.escape(str(path))}: precision map: {message}$"):
        PrecisionMap.from_json(path)
    with pytest.raises(PrecisionMapError, match=rf"^precision map: {message}$"):
        PrecisionMap.from_json(text)


def test_a_map_path_that_is_not_a_regular_file_is_named(tmp_path):
    link = tmp_path / "map.json"
    link.symlink_to("/dev/null")  # a character device: /dev/zero would read forever
    with pytest.raises(ValueError, match=rf"^{re.escape(str(link))} is a character device, as "
                                         r"/dev/zero is, not a regular file"):
        PrecisionMap.from_json(link)
    with pytest.raises(ValueError, match=r"is a character device"):
        PrecisionMap.from_json(str(link))


# ------------------------------------------------------------------- attention matmuls

ATTENTION_RULE = {"layers": "*", "sites": ["attn_scores", "attn_context"], "precision": "int8"}


def test_attention_sites_are_reached_only_by_naming_them():
    """`"*"` and `default` keep meaning the four GEMM sites: a map without attention rules
    leaves every layer's attention unset, and a rule naming them sets exactly those cells."""
    full = PrecisionMap.preset("fully_quant", 3)
    assert not full.sets_attention
    assert all(not full.attention(layer).is_set for layer in range(3))
    data = full.to_dict()
    data["rules"] = [{"layers": [1], "sites": ["attn_scores"], "precision": "int8"},
                     {"layers": "*", "sites": ["attn_context", "ffn_in"], "precision": "fp32"}]
    pmap = PrecisionMap.from_dict(data)
    every = PrecisionMap.from_dict({**data, "rules": [{"layers": "*", "sites": "*", "precision": "bf16"}]})
    assert not every.sets_attention and every[2, "qkv"].precision == "bf16"
    assert pmap.attention(0) == AttentionPrecision(None, SitePrecision("fp32"))
    assert pmap.attention(1) == AttentionPrecision(SitePrecision("int8", "per_token_dynamic"),
                                                   SitePrecision("fp32"))
    assert pmap.attention(1).is_quantized and not pmap.attention(0).is_quantized
    assert pmap[2, "ffn_in"].precision == "fp32" and pmap[2, "qkv"] == SitePrecision("int8")
    assert "attn_scores=int8-dynamic attn_context=fp32" in pmap.summary().splitlines()[1]
    # the same GEMM table with and without attention: different maps (a static jit argument)
    plain = PrecisionMap.from_dict({**data, "rules": data["rules"][1:]})
    assert plain != pmap and hash(plain) != hash(pmap)
    assert plain.attention(1) == AttentionPrecision(None, SitePrecision("fp32"))


def test_attention_rules_round_trip_through_json_tables_and_calibration(tmp_path):
    data = PrecisionMap.preset("fully_quant", 2, activation="static").to_dict()
    data["rules"] = [ATTENTION_RULE]
    pmap = PrecisionMap.from_dict(data)
    assert PrecisionMap.from_json(pmap.to_json()) == pmap
    assert json.loads(pmap.to_json())["rules"][0]["sites"] == ["attn_scores", "attn_context"]
    pmap.save(tmp_path / "map.json")
    assert PrecisionMap.from_json(tmp_path / "map.json") == pmap
    # writing clips in (what calibrate and search do) keeps the attention cells
    clipped = pmap.with_calibration({(0, "qkv"): "mse"}, {(0, "qkv"): 2.5})
    assert clipped == pmap and clipped.attention(1) == pmap.attention(1)
    assert PrecisionMap.from_json(clipped.to_json()) == pmap
    # and dropping them (another model's clips, `quantize`) keeps them too
    assert clipped.without_clips() == pmap and clipped.without_clips().attention(1) == pmap.attention(1)
    table = {(0, "ffn_in"): "int8-dynamic", (1, "attn_context"): "int8-dynamic"}
    built = PrecisionMap.from_table(table, 2, default="fp16")
    assert built.attention(1) == AttentionPrecision(None, SitePrecision("int8"))
    assert not built.attention(0).is_set and PrecisionMap.from_json(built.to_json()) == built


@pytest.mark.parametrize("rule, message", [
    ({"sites": ["attn_scores"], "precision": "fp8_e4m3"},
     r"rule 0 \(sites \['attn_scores'\]\): precision='fp8_e4m3' is not supported"),
    ({"sites": ["attn_context"], "precision": "int8", "activation": "static"},
     r"rule 0 \(sites \['attn_context'\]\): activation='per_tensor_static' is not supported"),
    ({"sites": ["attn_context", "qkv"], "precision": "int8", "activation": "static", "clip": 2.0},
     "activation='per_tensor_static' is not supported at the attention sites"),
    ({"sites": ["attn_scores"], "precision": "int8", "calibration": "mse"},
     "rule 0: calibration='mse' is only for int8 sites with per_tensor_static"),
    ({"sites": ["attn_score"], "precision": "int8"}, "site='attn_score' is not one of"),
])
def test_attention_sites_refuse_what_they_cannot_run(rule, message):
    with pytest.raises(PrecisionMapError, match=message):
        PrecisionMap.from_dict({"num_layers": 2, "rules": [rule]})
