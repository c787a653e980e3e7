"""benchmarks/gemm.py --tune on the CPU (interpret mode, two candidates, a tiny shape): each
candidate's accumulator is checked before it is timed, the winner is recorded, and
--tune-seconds stops the sweep with what it has."""

from __future__ import annotations

import json

import pytest

from benchmarks import gemm
from pallas_kernels.int8_matmul import Config, tuning
from pallas_kernels.int8_matmul.tuning import tuned

OPTIONS = [Config(block_m=16, block_n=64, block_k=64), Config(block_m=16, block_n=128, block_k=32)]


@pytest.fixture
def two_candidates(monkeypatch):
    monkeypatch.setattr(tuning, "candidates", lambda *_: OPTIONS)


def test_the_sweep_records_a_checked_winner(tmp_path, capsys, two_candidates, monkeypatch):
    checked = []
    check = tuning.accumulator_check
    monkeypatch.setattr(gemm, "accumulator_check", lambda *a, **kw: (
        lambda config: checked.append(config) or check(*a, **kw)(config)))
    gemm.tune_all("cpu", (16,), ((128, 128),), repeats=1, interpret=True, directory=tmp_path)
    assert checked == OPTIONS
    assert tuned("triton", "cpu", 16, 128, 128, tmp_path) in OPTIONS
    assert list(json.loads((tmp_path / "cpu.json").read_text())["triton"]) == ["16x128x128"]
    assert "tuned triton  M=16" in capsys.readouterr().out


def test_tune_seconds_stops_the_sweep(tmp_path, capsys, two_candidates):
    gemm.tune_all("cpu", (16, 32), ((128, 128),), repeats=1, seconds=1e-9, interpret=True,
                  directory=tmp_path)
    assert not (tmp_path / "cpu.json").exists()
    assert "not tuned triton M=16 K=128 N=128" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--tune-seconds", "60"], ["--tune", "--tune-seconds", "0"]])
def test_tune_seconds_needs_tune_and_a_positive_time(argv, capsys):
    with pytest.raises(SystemExit) as info:
        gemm.main(argv)
    assert info.value.code == 2 and "--tune-seconds needs --tune" in capsys.readouterr().err
