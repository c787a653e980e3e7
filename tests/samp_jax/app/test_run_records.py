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


def test_matplotlib_keeps_its_files_in_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("SAMP_JAX_CACHE", str(tmp_path / "cache"))
    logger = logging.getLogger("matplotlib")
    monkeypatch.setattr(logger, "level", logger.level)  # restored after the test
    cli._matplotlib_in_cache()
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "cache" / "matplotlib")
    assert (tmp_path / "cache" / "matplotlib").is_dir() and logger.level == logging.ERROR


def test_matplotlib_finds_its_own_folder_when_the_cache_is_read_only(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("SAMP_JAX_CACHE", str(tmp_path / "file" / "cache"))
    (tmp_path / "file").write_text("a file where the cache's parent folder would be")
    logger = logging.getLogger("matplotlib")
    monkeypatch.setattr(logger, "level", logger.level)
    cli._matplotlib_in_cache()
    assert "MPLCONFIGDIR" not in os.environ and logger.level == logging.ERROR
