"""Python settings a user's process may already have: warnings turned into errors
(`PYTHONWARNINGS=error`) and an ASCII locale with UTF-8 mode off (`LC_ALL=C PYTHONUTF8=0`)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import warnings

import numpy as np
import pytest

from samp_jax.app import cli
from samp_jax.app.cli import main, own_warnings_stay_warnings
from samp_jax.core.text import command_line, readable
from samp_jax.models import save_pretrained
from tests.helpers import ROOT, tiny_classifier

LABELS = ("neg", "pos")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, minilm_dir):
    """A tiny classifier with MiniLM's tokenizer and 60 short rows in `évals.csv` (too few
    tokens for a calibration: an advice)."""
    root = tmp_path_factory.mktemp("process_settings")
    save_pretrained(tiny_classifier(2), root / "model", tokenizer_dir=minilm_dir, labels=LABELS)
    rng = np.random.default_rng(0)
    words = "good bad fine awful movie plot".split()
    (root / "évals.csv").write_text("text,label\n" + "".join(
        f"{' '.join(rng.choice(words, 3))},{LABELS[i % 2]}\n" for i in range(60)),
        encoding="utf-8")
    return root


def test_an_error_filter_leaves_samp_jax_advice_a_warning_line(folder, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["calibrate", "--model", str(folder / "model"), "--data",
                     str(folder / "évals.csv"), "--precision", "quant_ffn_only", "--activation",
                     "static", "--out", str(folder / "q")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "samp-jax calibrate: warning: calibration saw only" in err
    assert "error" not in err


def test_own_warnings_stay_warnings_keeps_other_errors_and_ignores():
    def warn(module, message="advice"):
        warnings.warn_explicit(message, UserWarning, "x.py", 1, module=module, registry={})

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", "quiet")
        own_warnings_stay_warnings()
        warn("samp_jax.tasks.files")
        warn("calibrate.calibration.api")
        warn("samp_jax.tasks.files", "quiet please")  # the user's ignore still silences it
        for other in ("jax._src.config", "samp_jaxx", "__main__"):
            with pytest.raises(UserWarning):
                warn(other)
    assert [str(w.message) for w in seen] == ["advice", "advice"]


def test_readable_decodes_the_bytes_surrogateescape_carries():
    assert readable("c_locale/\udcc3\udca9vals.csv") == "c_locale/évals.csv"
    assert readable("évals") == "évals"  # text as it is
    assert readable("\udcff.csv") == "\ufffd.csv"  # not UTF-8
    assert readable("\ud800") == "?"


def test_command_line_is_one_line_a_shell_splits_back_into_the_words():
    words = ["samp-jax", "search", "--out", "/tmp/a search é", "--tolerance", "5%", "--data", "x;y"]
    line = command_line(words)
    assert line == "samp-jax search --out '/tmp/a search é' --tolerance 5% --data 'x;y'"
    assert shlex.split(line) == words
    assert command_line(["--data", "c_locale/\udcc3\udca9vals.csv"]) == "--data 'c_locale/évals.csv'"


def test_search_records_its_command_as_a_shell_runs_it_again(folder, tmp_path, monkeypatch,
                                                              capsys):
    """The command summary.json and report.md record (`run_search(command=...)`) is quoted:
    an --out with a space was recorded as two words."""
    seen = {}

    def run_search(*args, command, **kwargs):
        seen["command"] = command
        raise RuntimeError("stopped before the search")
    monkeypatch.setattr(cli, "run_search", run_search)
    argv = ["search", "--model", str(folder / "model"), "--data", str(folder / "évals.csv"),
            "--tolerance", "5%", "--out", str(tmp_path / "a search é")]
    monkeypatch.setattr(sys, "argv", ["samp-jax", *argv])
    assert main(argv) == 1
    assert "stopped before the search" in capsys.readouterr().err
    assert shlex.split(seen["command"]) == ["samp-jax", *argv]


def test_a_non_ascii_file_name_is_text_under_the_c_locale(folder, tmp_path):
    env = os.environ | {"LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONPATH": str(ROOT),
                        "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "samp_jax.app", "eval", "--model", "model",
                          "--data", "évals.csv", "--precision", "fp16", "--json"],
                         cwd=folder, env=env, capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    result = json.loads(run.stdout)
    assert result["task"] == "évals"
    assert result["data"].startswith("évals.csv (60 rows")
