"""What an unattended pipeline reads of a run: the versions and time every JSON result
records, the defaults `--help` shows for an output left out, and Matplotlib kept inside the
cache folder (no warnings of its own on stderr)."""

from __future__ import annotations

import datetime
import logging
import os

import flax
import jax
import jaxlib
import pytest

from samp_jax.app import cli
from samp_jax.app.parser import build_parser
from samp_jax.core.version import __version__, run_record


def test_a_run_record_names_the_versions_and_the_utc_time():
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    record = run_record()
    created = datetime.datetime.fromisoformat(record["created"].replace("Z", "+00:00"))
    assert record["created"].endswith("Z") and before <= created <= before + datetime.timedelta(seconds=5)
    assert record["versions"] == {"samp_jax": __version__, "jax": jax.__version__,
                                  "jaxlib": jaxlib.__version__, "flax": flax.__version__}


@pytest.mark.parametrize("command, default", [("search", "./search_out"),
                                              ("calibrate", "./quantized_model")])
def test_help_says_where_an_output_left_out_goes(command, default, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert f"(default: {default}" in " ".join(capsys.readouterr().out.split())


def test_matplotlib_keeps_its_files_in_the_cache_folder_while_a_command_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", "x")
    monkeypatch.delenv("MPLCONFIGDIR")  # unset now, and unset again after the test
    monkeypatch.setenv("SAMP_JAX_CACHE", str(tmp_path / "cache"))
    logger = logging.getLogger("matplotlib")
    before = logger.level
    with cli._matplotlib_in_cache():
        assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "cache" / "matplotlib")
        assert (tmp_path / "cache" / "matplotlib").is_dir() and logger.level == logging.ERROR
    assert "MPLCONFIGDIR" not in os.environ and logger.level == before  # as it was, after
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mine"))  # the user's own is kept
    with cli._matplotlib_in_cache():
        assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mine")
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mine")


def test_matplotlib_finds_its_own_folder_when_the_cache_is_read_only(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", "x")
    monkeypatch.delenv("MPLCONFIGDIR")
    monkeypatch.setenv("SAMP_JAX_CACHE", str(tmp_path / "file" / "cache"))
    (tmp_path / "file").write_text("a file where the cache's parent folder would be")
    with cli._matplotlib_in_cache():
        assert "MPLCONFIGDIR" not in os.environ
        assert logging.getLogger("matplotlib").level == logging.ERROR


def test_a_command_that_draws_nothing_leaves_matplotlib_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", "x")
    monkeypatch.delenv("MPLCONFIGDIR")
    monkeypatch.setenv("SAMP_JAX_CACHE", str(tmp_path / "cache"))
    with cli._matplotlib_in_cache(plotting=False):
        assert "MPLCONFIGDIR" not in os.environ and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("chosen, fp32, mode, tolerance, higher, within", [
    (0.895, 0.90, "relative", 0.01, True, True),     # drop 0.005 <= 0.009
    (0.890, 0.90, "relative", 0.01, True, False),    # drop 0.010 > 0.009
    (0.8911, 0.90, "relative", 0.01, True, True),    # drop 0.0089, just inside
    (0.95, 0.90, "relative", 0.0, True, True),       # a gain
    (-0.905, -0.90, "relative", 0.01, True, True),   # a negative metric: |fp32| sizes it
    (-0.92, -0.90, "relative", 0.01, True, False),
    (0.86, 0.90, "absolute", 0.05, True, True),      # metric units
    (0.84, 0.90, "absolute", 0.05, True, False),
    (0.905, 0.90, "absolute", 0.004, False, False),  # lower is better: a rise is the drop
    (0.895, 0.90, "absolute", 0.004, False, True),
    (float("nan"), 0.90, "relative", 0.01, True, False),
])
def test_the_test_split_verdict_bounds_the_drop_as_the_search_does(chosen, fp32, mode, tolerance,
                                                                   higher, within):
    import dataclasses

    from calibrate.search.config import SearchConfig
    from samp_jax.tasks.metrics import get_metric
    from samp_jax.workflows.pipeline import within_tolerance
    metric = dataclasses.replace(get_metric("accuracy"), higher_is_better=higher)
    config = SearchConfig(tolerance=tolerance, tolerance_mode=mode)
    assert within_tolerance(chosen, fp32, config, metric) is within


def test_a_latency_target_gives_no_test_split_verdict():
    from calibrate.search.config import SearchConfig
    from samp_jax.tasks.metrics import get_metric
    from samp_jax.workflows.pipeline import within_tolerance
    assert within_tolerance(0.1, 0.9, SearchConfig(latency_target_ms=3.0),
                            get_metric("accuracy")) is None
