"""Timing: variants taken in turns so drift hits them alike, the device a figure ran on, and a
timing tool told why host buffers are not kept."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import pytest

from samp_jax.serving import timing
from samp_jax.serving.timing import device_description, time_interleaved, time_ms


def test_variants_are_timed_in_turns_so_drift_hits_them_alike():
    calls = []

    def variant(name, seconds):
        def run():
            calls.append(name)
            time.sleep(seconds)
            return jnp.zeros(())
        return run

    ms = time_interleaved({"slow": variant("slow", 0.004), "fast": variant("fast", 0.0)},
                          warmup=1, repeats=4, inner=2)
    timed = calls[2:]  # after one warm-up call each
    assert timed == ["slow"] * 2 + ["fast"] * 2 + ["fast"] * 2 + ["slow"] * 2 \
        + ["slow"] * 2 + ["fast"] * 2 + ["fast"] * 2 + ["slow"] * 2  # each round starts further on
    assert ms["slow"] >= 4.0 > ms["fast"]
    assert time_ms(variant("one", 0.002), warmup=0, repeats=3, inner=1) >= 2.0


def test_a_figure_names_the_device_it_ran_on():
    device = jax.devices()[0]
    if device.platform == "cpu":  # "cpu" says nothing: the processor and its cores
        assert device_description().endswith(" cores") and device_description() != "cpu"
    else:
        assert device_description() == device.device_kind


@pytest.mark.parametrize("description, stem", [
    ("Intel(R) Xeon(R) CPU @ 2.20GHz (avx512_vnni), 2 cores",
     "Intel_R_Xeon_R_CPU_2.20GHz_avx512_vnni_2_cores"),
    ("NVIDIA H200", "NVIDIA_H200"),  # as benchmarks/gpu_check.sh names its files
])
def test_a_results_file_is_named_after_the_device_without_shell_characters(
        monkeypatch, description, stem):
    monkeypatch.setattr(timing, "device_description", lambda: description)
    assert timing.device_file_stem() == stem


def test_a_timing_tool_is_told_why_its_buffers_are_not_kept(monkeypatch, capsys):
    jax.devices()  # too late in this process: keep_cpu_buffers refuses
    assert timing.keep_cpu_buffers_for_timing("bench") is False
    assert "bench: note: host buffers are not kept" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="bench: could not keep host buffers"):
        timing.keep_cpu_buffers_for_timing("bench", required=True)
    monkeypatch.setattr(timing, "keep_cpu_buffers", lambda: True)
    assert timing.keep_cpu_buffers_for_timing("bench", required=True) is True
    assert capsys.readouterr().err == ""
