"""`samp-jax bench` on the CPU: every contender runs (the Pallas ones in interpret mode) on a
tiny model, so a contender that crashes fails here before a GPU run; `--shapes`; each row
reaches the results file as it finishes; compile time per row."""

from __future__ import annotations

import json

import pytest

from samp_jax.app import bench
from samp_jax.app.cli import main


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
