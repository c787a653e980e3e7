"""The `samp-jax` command line: JSON output, exit codes, help."""

import argparse
import json
import shlex

import pytest

import samp_jax as sj
from calibrate.search.targets import resolve_target
from samp_jax import PrecisionMap, QuantizedModel
from samp_jax.app.cli import _measure_command, main
from samp_jax.app.search_command import bench_command, chosen_check_line, print_summary
from tests.helpers import GOLDEN


@pytest.mark.slow
def test_eval_json_on_real_snli(capsys):
    code = main(["eval", "--model", "minilm", "--data", "snli-embed", "--precision",
                 "fp16,quant_ffn_only", "--max-examples", "120", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 120 and result["metric"] == "roc_auc"
    variants = [row["variant"] for row in result["rows"]]
    assert variants == ["fp32 (reference)", "fp16", "quant_ffn_only / dynamic"]
    reference, fp16, ffn = result["rows"]
    assert 0.6 < reference["value"] <= 1.0
    assert abs(fp16["relative_change"]) < 0.01 and fp16["agreement"] > 0.999
    assert ffn["agreement"] > 0.99
    assert ffn["param_mb"] < fp16["param_mb"] < reference["param_mb"]  # FP32's own size too


@pytest.mark.slow
def test_eval_with_a_map_file_and_static_calibration(tmp_path, capsys):
    path = tmp_path / "map.json"
    PrecisionMap.preset("quant_ffn_only", 6, activation="per_tensor_static").save(path)
    code = main(["eval", "--model", "minilm", "--data", "snli-embed", "--precision", str(path),
                 "--calibration", "minmax", "--max-examples", "60", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows[1]["variant"] == str(path) and rows[1]["agreement"] > 0.98  # the path as given


@pytest.mark.parametrize("precision, message", [
    ("int4", "--precision 'int4' is neither a preset (fp32, fp16, bf16, fully_quant, "
             "quant_ffn_only, fp8) nor a precision-map JSON file (no such file)"),
])
def test_eval_errors_exit_1_with_a_message(precision, message, capsys):
    assert main(["eval", "--model", "minilm", "--data", "snli-embed", "--precision", precision,
                 "--max-examples", "60"]) == 1
    assert message in capsys.readouterr().err


def test_bad_map_file_is_reported(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"num_layers": 6, "rules": [{"sites": ["mlp"], "precision": "int8"}]}')
    assert main(["eval", "--model", "minilm", "--data", "snli-embed", "--precision", str(path)]) == 1
    assert "site='mlp' is not one of" in capsys.readouterr().err


def test_a_model_folder_that_does_not_exist_is_named(capsys):
    assert main(["eval", "--model", "/some/folder", "--data", "snli-embed"]) == 1
    err = capsys.readouterr().err
    assert "/some/folder" in err and "Traceback" not in err


def test_own_data_without_a_model_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("text,label\na,0\n")
    assert main(["eval", "--data", str(tmp_path / "d.csv")]) == 2
    assert "--model is required" in capsys.readouterr().err


def test_search_rejects_an_absurd_tolerance_before_any_work(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("samp_jax.app.cli.run_search", lambda *a, **k: pytest.fail("searched"))
    monkeypatch.setattr("samp_jax.app.cli.resolve_model", lambda *a, **k: pytest.fail("loaded"))
    assert main(["search", "--data", "snli-embed", "--tolerance", "80%", "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: samp-jax search") and "--tolerance: tolerance=0.8 would allow " \
        "losing half the metric or more" in err
    assert not (tmp_path / "o").exists()
    monkeypatch.undo()  # the absolute check needs the model and data: only the search is barred
    monkeypatch.setattr("samp_jax.app.cli.run_search", lambda *a, **k: pytest.fail("searched"))
    assert main(["search", "--data", "snli-embed", "--tolerance", "0.6", "--tolerance-mode",
                 "absolute", "--out", str(tmp_path / "o")]) == 2  # past half of ROC-AUC's range
    assert "--tolerance: tolerance=0.6 (absolute) would allow losing half or more of the " \
        "largest value roc_auc takes (1)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # negative in either mode: refused as it is parsed
        main(["search", "--data", "snli-embed", "--tolerance=-1", "--tolerance-mode", "absolute"])
    assert info.value.code == 2 and "must be a finite number >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["search", "--tolerance", "lots"])
    assert info.value.code == 2


def test_version(capsys):
    import flax
    import jax

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == (f"samp-jax {sj.__version__} (jax {jax.__version__}, "
                                       f"flax {flax.__version__})\n")


def test_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--help"])
    assert info.value.code == 0
    assert "--precision" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["eval", "--calibration", "magic"])
    assert info.value.code == 2


@pytest.mark.slow
def test_calibrate_saves_a_quantized_model_that_loads(tmp_path, capsys):
    out = tmp_path / "q"
    code = main(["calibrate", "--model", "minilm", "--data", "snli-embed", "--precision",
                 "quant_ffn_only", "--activation", "static",
                 "--method", "minmax", "--max-batches", "2", "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["calibration"]["method"] == "minmax" and summary["saved_to"] == str(out)
    loaded = QuantizedModel.load(out)
    assert loaded.precision_map[(0, "ffn_in")].precision == "int8"
    assert loaded.precision_map[(0, "qkv")].precision == "fp16"


def test_calibrate_errors_exit_1(tmp_path, capsys):
    assert main(["calibrate", "--model", "minilm", "--data", "snli-embed", "--precision", "int4",
                 "--out", str(tmp_path / "q")]) == 1
    assert "int4" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()  # nothing written on error


def test_bench_help_lists_the_contenders(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "torch_sdpa_fp16" in text and "samp_fully_quant_pallas" in text and "--quick" in text


def test_the_search_prints_the_numbers_behind_its_verdict():
    passed = {"map": "chosen", "drop": 0.004, "margin": 0.0065, "bounded": 0.0105,
              "allowed": 0.011, "passes": True}
    assert chosen_check_line(passed) == ("yes (drop 0.004 + margin 0.0065 = 0.0105 <= allowed "
                                         "0.011, on the search split)")
    missed = {"map": "chosen", "drop": None, "margin": None, "bounded": 0.2, "allowed": 0.05,
              "passes": False}
    assert chosen_check_line(missed) == "no (proxy 0.2 > allowed 0.05)"


def test_the_search_summary_names_the_command_that_measures_its_speed_up(tmp_path, capsys):
    """The search's speed-up is the latency model's estimate; its summary names the `samp-jax
    bench` command that measures the searched map against the all-default one here, and that
    command runs as printed."""
    model = GOLDEN / "families" / "bert" / "seqcls"
    out = tmp_path / "search out"
    out.mkdir()
    PrecisionMap.preset("quant_ffn_only", 2, float_precision="fp32").save(out / "precision_map.json")
    command = bench_command(str(model), out, "fp32", (1, 8))  # at the latency table's shape
    assert command == (f"samp-jax bench --model {model} --precision "
                       f"'fp32,{out / 'precision_map.json'}' --shapes 1x8")
    summary = {"quantized_model": "model", "target": "cpu", "chosen_from": "allocation",
               "max_length": 128, "fp32_search_metric": 0.9, "chosen_search_metric": 0.9,
               "int8_flop_fraction": 0.5, "estimated_speedup_vs_default": 1.2,
               "latency_source": "measured", "search_seconds": 1.0, "test": {"fp32": 0.9}}
    print_summary(out, summary, command)
    assert ("  estimated_speedup_vs_default: 1.2\n  (estimated by the latency model; measured "
            f"end to end: {command})\n") in capsys.readouterr().out
    results = tmp_path / "bench.json"
    assert main(shlex.split(command)[1:] + ["--repeats", "1", "--inner", "1",
                                            "--out", str(results)]) == 0
    rows = json.loads(results.read_text())["rows"]
    assert [r["contender"] for r in rows] == ["fp32", str(out / "precision_map.json")]
    assert rows[1]["site_precisions"] == {"fp32": 4, "int8": 4}
    # none where the bench would not time what the search did
    args = argparse.Namespace(model=str(model), head=None)
    cpu = resolve_target("auto")  # this machine
    other = next(t for t in map(resolve_target, ("cpu", "l4")) if not t.is_current())
    assert _measure_command(args, other, out, {"default_option": "fp16"}) is None  # elsewhere
    assert _measure_command(argparse.Namespace(model=str(model), head="sentence_embedding"),
                            cpu, out, {"default_option": "fp32"}) is None  # loaded otherwise
    assert _measure_command(argparse.Namespace(model=None), cpu, out,
                            {"default_option": "fp32"}) is None  # a built-in model
    moved = {"default_option": "fp32", "tolerance_met": True, "int8_flop_fraction": 0.5,
             "estimated_speedup_vs_default": 1.2}
    assert _measure_command(args, cpu, out, moved, (1, 8)) == command
    assert _measure_command(args, cpu, out, moved | {"tolerance_met": False}) is None  # missed
    assert _measure_command(args, cpu, out, moved | {"int8_flop_fraction": 0.0,  # the default
                                                     "estimated_speedup_vs_default": 1.0}) is None


def test_the_search_summary_says_what_the_attention_step_chose(capsys):
    summary = {"quantized_model": "model", "target": "cpu", "chosen_from": "allocation",
               "max_length": 128, "fp32_search_metric": 0.9, "chosen_search_metric": 0.9,
               "int8_flop_fraction": 0.5, "estimated_speedup_vs_default": 1.2,
               "latency_source": "measured", "search_seconds": 1.0, "test": {"fp32": 0.9},
               "attention": {"note": "INT8 attention in layers [0, 2]", "int8_layers": [0, 2]}}
    print_summary("out", summary)
    assert "  attention: INT8 attention in layers [0, 2]\n" in capsys.readouterr().out
    print_summary("out", {**summary, "attention": None})  # a search without the step
    assert "attention" not in capsys.readouterr().out


@pytest.mark.parametrize("examples, units, said", [
    (6, "rows", "the test split has 6 rows: one of them moves accuracy by about 0.167"),
    (40, "queries", "the test split has 40 queries: one of them moves accuracy by about 0.025"),
    (100, "rows", None), (2000, "rows", None)])
def test_eval_says_when_its_test_split_moves_in_steps_past_one_percent(capsys, examples, units,
                                                                       said):
    from types import SimpleNamespace

    from samp_jax.app.figure_warnings import warn_if_coarse
    warn_if_coarse("eval", SimpleNamespace(metric="accuracy"), examples, units)
    err = capsys.readouterr().err
    assert (said in err) if said else err == ""
    warn_if_coarse("eval", SimpleNamespace(metric=None), 6)  # no metric: no figure to doubt
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["calibrate", "finetune"])
def test_a_model_is_not_written_over_a_search_outputs_model(command, tmp_path, capsys,
                                                            monkeypatch):
    """The report, map and summary of a search describe its `model` folder: calibrate or
    finetune into that folder alone is refused before any model is read, and changes nothing."""
    search = tmp_path / "s"
    (search / "model").mkdir(parents=True)
    for name in ("summary.json", "precision_map.json", "report.md"):
        (search / name).write_text("{}")
    (search / "model" / "quantization.json").write_text("{}")
    monkeypatch.setattr("samp_jax.app.cli.resolve_model", lambda *a, **k: pytest.fail("read"))
    monkeypatch.setattr("samp_jax.app.cli.load", lambda *a, **k: pytest.fail("read"))
    code = main([command, "--model", "minilm", "--data", "snli", "--out", str(search / "model")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"--out {search / 'model'} is the model of the search output {search}" in err
    assert (search / "model" / "quantization.json").read_text() == "{}"
