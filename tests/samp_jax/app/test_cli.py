"""The `samp-jax` command line: JSON output, exit codes, help."""

import json

import numpy as np
import pytest

from calibrate.search.runner import Kind

from calibrate import SearchConfig
from samp_jax import PrecisionMap, QuantizedModel, quantize
from samp_jax.serving.forward import jit_forward
from samp_jax.app.cli import main
from calibrate import AUTO_METHODS
from samp_jax.workflows.experiments import make_evaluator
from samp_jax.workflows.pipeline import builtin_model, run_search
from samp_jax.tasks import get_task
from tests.helpers import run_benchmark_quick


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
    assert ffn["param_mb"] < fp16["param_mb"]


@pytest.mark.slow
def test_eval_with_a_map_file_and_static_calibration(tmp_path, capsys):
    path = tmp_path / "map.json"
    PrecisionMap.preset("quant_ffn_only", 6, activation="per_tensor_static").save(path)
    code = main(["eval", "--model", "minilm", "--data", "snli-embed", "--precision", str(path),
                 "--calibration", "minmax", "--max-examples", "60", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows[1]["variant"] == "map.json" and rows[1]["agreement"] > 0.98


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


def test_search_rejects_an_absurd_tolerance_before_any_work(capsys, tmp_path):
    assert main(["search", "--data", "snli-embed", "--tolerance", "80%", "--out", str(tmp_path / "o")]) == 1
    assert "would allow losing half" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as info:
        main(["search", "--tolerance", "lots"])
    assert info.value.code == 2


def test_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--help"])
    assert info.value.code == 0
    assert "--precision" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["eval", "--calibration", "magic"])
    assert info.value.code == 2


@pytest.mark.slow
def test_full_search_pipeline_on_zero_shot_snli(tmp_path):
    """fetch → calibrate → search → quantize → test split → report, at a small size."""
    model, tokenizer, description = builtin_model("snli-embed")
    config = SearchConfig(tolerance=0.01, progress=False, max_search_examples=64, target="h100")
    run = run_search(model, tokenizer, get_task("snli-embed"), config, description=description,
                     out=tmp_path / "o", max_test_examples=64, compare_presets=False)
    summary = run.summary
    assert QuantizedModel.load(tmp_path / "o" / "model").precision_map == \
        PrecisionMap.from_json(tmp_path / "o" / "precision_map.json")
    assert summary["test_examples"] == 64
    assert set(summary["test"]) == {"fp32", "chosen", "chosen_relative_change"}
    assert 0.5 < summary["test"]["fp32"] <= 1.0
    pmap = PrecisionMap.from_json(tmp_path / "o" / "precision_map.json")
    assert pmap.num_layers == 6
    assert summary["compilations"] >= 1 and summary["maps_evaluated"] >= 4
    assert (tmp_path / "o" / "pareto.png").is_file() and (tmp_path / "o" / "report.md").is_file()
    # within tolerance on the search split (snli-embed's ROC AUC: the plain relative drop)
    fp32 = summary["fp32_search_metric"]
    assert summary["chosen_search_metric"] >= fp32 * 0.99 - 1e-12
    # never slower than a preset that passes: when all-INT8 passes, the map quantizes
    presets = [e for e in run.result.evaluated if e.kind == Kind.PRESET]
    passing = [e for e in presets if e.metric >= fp32 * 0.99 - 1e-12]
    assert run.result.chosen.latency_ms <= min(e.latency_ms for e in passing) * (1 + 1e-9)
    if any(e.name.startswith("fully_quant") for e in passing):  # INT8 or FP8 (equal H100 peaks)
        quantized = [p.is_quantized for _, p in run.result.precision_map.items()]
        assert sum(quantized) > len(quantized) / 2
    assert summary["target"] == "h100" and summary["latency_source"].startswith("estimated")
    # static INT8 clips were picked per site, and the map alone carries them: each static site's
    # calibrator and clip, so it rebuilds the quantized model without the summary
    static = summary["static_calibration"]
    assert summary["calibration"] == "per-site" and static["methods"] == list(AUTO_METHODS)
    assert sum(static["sites_per_method"].values()) == len(static["site_methods"]) == 6 * 4
    assert "- static INT8 clips:" in (tmp_path / "o" / "report.md").read_text()
    sites = run.result.calibration.sites
    assert pmap.stored_clips() == {key: sites[key].absmax if p.precision == "fp8_e4m3" else sites[key].amax
                                   for key, p in pmap.items() if p.needs_calibration}
    assert {f"{l}.{s}": m for (l, s), m in pmap.site_methods().items()} == {
        key: m for key, m in static["site_methods"].items()
        if pmap[int(key.split(".")[0]), key.split(".")[1]].activation == "per_tensor_static"}
    rebuilt = quantize(model, pmap)
    batch = make_evaluator(get_task("snli-embed"), tokenizer, max_examples=64).calibration_batches()[0]
    assert np.array_equal(jit_forward(rebuilt)(batch), jit_forward(run.quantized)(batch))
    # the allocation's pick was judged at the margin widened for the maps it compared
    if summary["stopped_early"] is None:
        selection = summary["selection"]
        assert selection["z"] >= 1.645 and selection["maps_compared"] >= 0
        assert "- selection margin:" in (tmp_path / "o" / "report.md").read_text()
    else:
        assert summary["selection"] is None


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


@pytest.mark.slow
def test_e2e_benchmark_quick_smoke(tmp_path):
    """CPU smoke of benchmarks/e2e.py --quick: the script works (not its speed); contenders that
    cannot run here (torch FP16 needs CUDA; Pallas needs a GPU) are skipped with a reason."""

    out = tmp_path / "e2e.json"
    result = run_benchmark_quick("e2e.py", out, timeout=900)
    assert out.with_suffix(".png").stat().st_size > 0
    rows = result["rows"]
    assert {(r["batch"], r["seq"]) for r in rows} == {(1, 32), (2, 32)}
    timed = {r["contender"] for r in rows if "median_ms" in r}
    assert {"samp_fp16", "samp_fully_quant_xla", "samp_fp8", "samp_search_snli_1pct"} <= timed
    for r in rows:
        assert ("median_ms" in r) != ("skipped" in r)
        if "median_ms" in r:
            assert r["median_ms"] > 0 and r["speedup_vs_samp_fp16"] > 0
            assert r["sequences_per_s"] == pytest.approx(r["batch"] / (r["median_ms"] / 1e3))
            if r["contender"].startswith("samp"):  # what really ran each GEMM site
                assert r["gemm_executed"] and set(r["gemm_executed"]) <= {"pallas_mosaic",
                                                                          "pallas_triton", "xla"}
