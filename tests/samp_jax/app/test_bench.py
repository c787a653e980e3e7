"""`samp-jax bench` on the CPU: every contender runs (the Pallas ones in interpret mode) on a
tiny model, so a contender that crashes fails here before a GPU run; `--shapes`; each row
reaches the results file as it finishes; compile time per row."""

from __future__ import annotations

import json

import jax.numpy as jnp
import pytest

from samp_jax import PrecisionMap, load, quantize
from samp_jax.app import bench
from samp_jax.app.cli import main
from tests.helpers import GOLDEN


@pytest.mark.slow
def test_every_contender_runs_on_a_tiny_model_in_interpret_mode():
    documents = []
    result = bench.run(models=("tiny",), shapes=((1, 32),), repeats=1, inner=1, warmup=1,
                       interpret=True, progress=None, sink=lambda d: documents.append(len(d["rows"])))
    rows = {r["contender"]: r for r in result["rows"]}
    assert set(rows) == set(bench.contender_names())
    assert documents == list(range(1, len(rows) + 1))  # the sink saw every row as it finished
    for name in bench.TORCH_CONTENDERS:  # no torch (or no CUDA) here: skipped, with the reason
        assert "torch" in rows[name]["skipped"] or "CUDA" in rows[name]["skipped"]
    for contender in bench.SAMP_CONTENDERS:
        row = rows[contender.name]
        assert "skipped" not in row, row
        assert row["median_ms"] > 0 and row["compile_s"] > 0 and row["lower_s"] > 0
        assert row["build_s"] > 0
        if contender.implementation == "pallas":  # the kernels ran (names in the traced program)
            assert "samp_int8_matmul" in row["kernels"] and "samp_layernorm_quant" in row["kernels"]
        if contender.implementation == "xla":
            assert row["kernels"] == []
    assert rows["samp_search_snli_1pct"]["kernels"]  # automatic: its INT8 sites take the kernels


def test_shapes_parse_and_bad_ones_are_refused():
    assert bench.parse_shapes("1x128, 8x128") == ((1, 128), (8, 128))
    for bad in ("8", "0x128", "8x", "axb", ""):
        with pytest.raises(ValueError, match="BATCHxSEQ|names no shape"):
            bench.parse_shapes(bad)


@pytest.mark.parametrize("argv, message", [(["--shapes", "8by128"], "'8by128' is not BATCHxSEQ"),
                                            (["--models", "gpt2"], "'gpt2'")])
def test_the_cli_refuses_bad_shapes_and_models_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "e2e.json"
    assert main(["bench", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_the_cli_refuses_an_out_where_its_plot_would_go(tmp_path, capsys):
    """The plot goes beside `--out` as .png: a `--out x.png` would be replaced by it."""
    out = tmp_path / "e2e.png"
    assert main(["bench", "--models", "tiny", "--out", str(out)]) == 2
    assert (f"--out {out} is where its plot goes (the .png beside --out); give the results a "
            f".json path, such as {out.with_suffix('.json')}") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_cli_writes_rows_with_compile_times(tmp_path):
    out = tmp_path / "e2e.json"
    # the shapes of --quick; a model named twice is benchmarked once
    assert main(["bench", "--models", "tiny,tiny", "--shapes", "1x32,2x32", "--contenders",
                 "samp_fp16", "--repeats", "1", "--inner", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [(r["batch"], r["seq"]) for r in result["rows"]] == [(1, 32), (2, 32)]
    assert result["complete"] and result["rows_planned"] == result["rows_done"] == 2
    assert all(r["compile_s"] > 0 and r["median_ms"] > 0 for r in result["rows"])
    assert result["command"].startswith("samp-jax bench") and out.with_suffix(".png").exists()


def test_contenders_run_in_the_order_given_and_a_failure_is_a_row(monkeypatch):
    """The first contenders named are the first measured (a short time box on a GPU then
    measures them), and one that fails to compile is recorded with its error while the next
    one runs (a compile error ended the whole bench)."""
    real, calls = bench.compile_samp, []

    def flaky(forward, state, batch):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("INTERNAL: planted compile failure\nsecond line")
        return real(forward, state, batch)

    monkeypatch.setattr(bench, "compile_samp", flaky)
    result = bench.run(models=("tiny",), shapes=((1, 32),), repeats=1, inner=1, warmup=1,
                       contenders=["samp_fully_quant_xla", "samp_fp16"], progress=None)
    failed, timed = result["rows"]  # in the order given (the table's own order is the reverse)
    assert failed["contender"] == "samp_fully_quant_xla" and "median_ms" not in failed
    assert failed["error"] == "RuntimeError: INTERNAL: planted compile failure"
    assert timed["contender"] == "samp_fp16" and timed["median_ms"] > 0


def test_the_cli_exits_1_when_a_row_failed_and_keeps_the_rows(tmp_path, monkeypatch, capsys):
    """A contender that fails to build is in the results file with its error, and the exit
    status says something failed (a GPU run's step summary reads it)."""
    def broken(*args, **kwargs):
        raise RuntimeError("planted build failure")

    monkeypatch.setattr(bench, "build_samp", broken)
    out = tmp_path / "e2e.json"
    assert main(["bench", "--models", "tiny", "--shapes", "1x32", "--contenders", "samp_fp16",
                 "--repeats", "1", "--inner", "1", "--out", str(out)]) == 1
    rows = json.loads(out.read_text())["rows"]
    assert rows == [{"model": "tiny", "batch": 1, "seq": 32, "contender": "samp_fp16",
                     "error": "RuntimeError: planted build failure"}]
    assert "1 of 1 rows failed (samp_fp16)" in capsys.readouterr().err


def test_a_random_weights_model_is_drawn_on_the_host_as_bert_initializes():
    import numpy as np
    from flax import nnx

    def params(seed):
        model = bench.random_weights(bench.TINY_CONFIG, seed=seed)
        return {".".join(map(str, p)): np.asarray(v.get_value())
                for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}

    drawn, again, other = params(0), params(0), params(1)
    assert drawn.keys() == again.keys() == other.keys() and len(drawn) == 77
    for name, value in drawn.items():
        np.testing.assert_array_equal(value, again[name])  # one seed, one model
        assert value.dtype == np.float32
        if name.endswith(".scale"):
            assert (value == 1).all(), name
        elif name.endswith(".bias"):
            assert (value == 0).all(), name
        else:  # BERT's 0.02 spread, cut at two of it
            assert np.abs(value).max() <= 0.04 + 1e-7 and 0.015 < value.std() < 0.021, name
            assert not np.array_equal(value, other[name]), name
    model = bench.random_weights(bench.TINY_CONFIG)
    ids = np.arange(1, 17, dtype=np.int32).reshape(2, 8)
    assert np.isfinite(np.asarray(model(ids, np.ones_like(ids)))).all()


# ------------------------------------------------------------------ your own model (--model)
TINY_BERT = GOLDEN / "families" / "bert" / "seqcls"  # 2 layers, rows of at most 40 tokens


def _own_rows(out) -> tuple[dict, dict]:
    result = json.loads(out.read_text())
    return result, {r["contender"]: r for r in result["rows"]}


def test_your_own_model_is_timed_at_each_precision_and_compared_with_the_first(tmp_path, capsys):
    """`--model` times the folder's model (its own head) at each `--precision` item, in the
    order given, each row naming the precision of its sites and the dtype between them; the
    ratios are to the first item, measured in the same run."""
    searched = tmp_path / "precision_map.json"  # a searched map: stored clips, FP32 between
    PrecisionMap.from_dict({"num_layers": 2, "default": {"precision": "fp32"},
                            "compute_dtype": "float32",
                            "rules": [{"layers": "*", "sites": ["ffn_in", "ffn_out"],
                                       "precision": "int8", "activation": "per_tensor_static",
                                       "calibration": "minmax", "clip": 2.5}]}).save(searched)
    hand = tmp_path / "hand.json"  # static sites with no clip, and no compute_dtype
    hand.write_text(json.dumps({"num_layers": 2, "default": {"precision": "fp16"},
                                "rules": [{"layers": [0], "sites": ["qkv"], "precision": "int8",
                                           "activation": "per_tensor_static"}]}))
    out = tmp_path / "own.json"
    assert main(["bench", "--model", str(TINY_BERT), "--precision",
                 f"fp32,fully_quant,{searched},{hand}", "--activation", "static",
                 "--shapes", "2x16", "--repeats", "2", "--inner", "1", "--out", str(out)]) == 0
    result, rows = _own_rows(out)
    assert [r["contender"] for r in result["rows"]] == [
        "fp32", "fully_quant / static", str(searched), str(hand)]
    assert result["baseline"] == "fp32" and result["model_source"] == str(TINY_BERT)
    assert result["complete"] and {r["model"] for r in result["rows"]} == {"seqcls"}
    base = rows["fp32"]["median_ms"]
    for row in rows.values():
        assert row["speedup_vs_baseline"] == pytest.approx(base / row["median_ms"], rel=1e-12)
        assert "speedup_vs_samp_fp16" not in row and "speedup_vs_torch_sdpa_fp16" not in row
        assert sum(row["gemm_executed"].values()) == 10  # 8 layer sites, pooler, classifier
    assert rows["fp32"]["site_precisions"] == {"fp32": 8}
    assert rows["fully_quant / static"]["site_precisions"] == {"int8": 8}
    assert rows[str(searched)]["site_precisions"] == {"fp32": 4, "int8": 4}
    assert rows[str(hand)]["site_precisions"] == {"fp16": 7, "int8": 1}
    # the CPU's float precision between the sites of an INT8 preset; a map file's own choice
    assert [r["compute_dtype"] for r in result["rows"]] == ["float32", "float32", "float32",
                                                            "float16"]
    # static scales from random ids where the map stores none (timing only)
    assert rows["fully_quant / static"]["static_sites_scaled_on_random_ids"] == 8
    assert rows[str(hand)]["static_sites_scaled_on_random_ids"] == 1
    assert "static_sites_scaled_on_random_ids" not in rows[str(searched)]
    assert "static_sites_scaled_on_random_ids" not in rows["fp32"]
    assert "median latency (speed-up vs fp32)" in capsys.readouterr().out


def test_a_quantized_folder_is_timed_as_it_was_saved(tmp_path, capsys):
    model = load(TINY_BERT)
    quantize(model, PrecisionMap.preset("quant_ffn_only", 2, float_precision="fp32"),
             dtype=jnp.float32).save(tmp_path / "q")
    out = tmp_path / "q.json"
    assert main(["bench", "--model", str(tmp_path / "q"), "--shapes", "1x8", "--repeats", "1",
                 "--inner", "1", "--out", str(out)]) == 0
    result, rows = _own_rows(out)
    assert list(rows) == ["saved"] and result["baseline"] is None
    assert rows["saved"]["site_precisions"] == {"fp32": 4, "int8": 4}
    assert rows["saved"]["compute_dtype"] == "float32" and rows["saved"]["median_ms"] > 0
    assert not any(key.startswith("speedup_vs") for key in rows["saved"])
    for given, said in ((["--precision", "fp32"], "--precision applies"),
                        (["--activation", "static"], "--activation applies")):
        assert main(["bench", "--model", str(tmp_path / "q"), *given,
                     "--out", str(tmp_path / "again.json")]) == 2
        assert (f"{said} to a float model; a quantized folder is timed as it was saved"
                in capsys.readouterr().err)
        assert not (tmp_path / "again.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--precision", "fp32"], "--precision apply to --model (your own model)"),
    (["--model", str(TINY_BERT), "--models", "tiny"],
     "--models name the bench's own models and contenders: give one or the other"),
    (["--model", str(TINY_BERT), "--precision", "fp32,nope"],
     "--precision 'nope' is neither a preset"),
    (["--model", str(TINY_BERT), "--precision", "fp32,,fp16"], "has an empty item"),
    (["--model", str(TINY_BERT), "--shapes", "1x32,2x64"],
     f"--shapes 2x64: longer than the 40-token limit of {TINY_BERT}"),
])
def test_own_model_options_are_checked_before_any_timing(tmp_path, capsys, argv, message):
    out = tmp_path / "own.json"
    assert main(["bench", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_the_own_model_file_name_keeps_to_safe_characters():
    assert bench.own_name("runs/my model (v2)/") == "my_model__v2_"
    assert bench.own_name("minilm") == "minilm"


def test_the_bench_module_times_your_own_model_without_the_cli(tmp_path):
    """`python benchmarks/e2e.py --model DIR` (`bench.main`) reads the folder itself."""
    out = tmp_path / "own.json"
    assert bench.main(["--model", str(TINY_BERT), "--precision", "fp32", "--shapes", "1x8",
                       "--repeats", "1", "--inner", "1", "--out", str(out)]) == 0
    assert [r["contender"] for r in json.loads(out.read_text())["rows"]] == ["fp32"]


def test_the_results_never_replace_the_model_or_a_map_they_time(tmp_path, capsys):
    """--out inside the --model folder, or on a --precision map file, is refused before any
    work, and both stay as they were (the results had replaced config.json, and a map)."""
    import shutil
    model = shutil.copytree(TINY_BERT, tmp_path / "mybert")
    pmap = tmp_path / "map.json"
    PrecisionMap.preset("fully_quant", 2).save(pmap)
    before = {p: p.read_bytes() for p in (model / "config.json", pmap)}
    for out in (model / "config.json", pmap):
        assert main(["bench", "--model", str(model), "--precision", f"fp32,{pmap}",
                     "--shapes", "1x8", "--out", str(out)]) == 1  # as every command's --out
        assert "--out" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before
    assert not list(tmp_path.glob("**/*.png"))


@pytest.mark.parametrize("text, said", [
    ('{"num_layers": 6, "default": {"precision": "fp32"}}',
     "the map has num_layers=6; the model has 2 layers"),
    ("x", "map.json"),  # not JSON: the file is named
    ('{"num_layers": 2, "default": {"precision": "int4"}}', "int4")])
def test_a_map_that_cannot_run_is_refused_before_any_timing(tmp_path, capsys, text, said):
    pmap = tmp_path / "map.json"
    pmap.write_text(text)
    out = tmp_path / "own.json"
    assert main(["bench", "--model", str(TINY_BERT), "--precision", f"fp32,{pmap}",
                 "--shapes", "1x8", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()


def test_attention_products_a_map_names_are_recorded(tmp_path, recwarn):
    """A map of INT8 attention only: its row says so (its GEMM sites are all FP32, as the
    baseline's), and stored clips need no calibration, so none warns of its few tokens."""
    pmap = tmp_path / "attention.json"
    pmap.write_text(json.dumps({"num_layers": 2, "default": {"precision": "fp32"},
                                "compute_dtype": "float32",
                                "rules": [{"layers": "*", "sites": ["attn_scores", "attn_context"],
                                           "precision": "int8"},
                                          {"layers": [1], "sites": ["ffn_in"], "precision": "int8",
                                           "activation": "per_tensor_static", "clip": 3.0}]}))
    out = tmp_path / "own.json"
    assert main(["bench", "--model", str(TINY_BERT), "--precision", f"fp32,{pmap}",
                 "--shapes", "1x8", "--repeats", "1", "--inner", "1", "--out", str(out)]) == 0
    rows = {r["contender"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows[str(pmap)]["attention_precisions"] == {"int8": 4}
    assert rows[str(pmap)]["site_precisions"] == {"fp32": 7, "int8": 1}
    assert "attention_precisions" not in rows["fp32"]
    assert not [w for w in recwarn if "calibration saw only" in str(w.message)]
