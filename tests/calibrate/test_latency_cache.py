"""The latency table cache: a cached table is reused only when it passes `validate_table`; a
damaged one is measured again and rewritten with one warning naming it; a cache that cannot be
written is a warning, and the table measured now is used. A table a caller gives the search is
checked by the same function."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import re
import warnings

import jax.numpy as jnp
import pytest

from calibrate.search import latency
from calibrate.search.config import SearchConfig
from calibrate.search.latency import (LatencyTable, LatencyTableMismatch, architecture_of,
                                      estimate_table, table_for_target, validate_table)
from calibrate.search.plan import plan_search
from samp_jax.core import atomic
from samp_jax.core.precision import SITES, as_precision
from tests.helpers import TINY_CONFIG

OPTIONS = tuple(as_precision(o) for o in ("fp32", "int8-dynamic"))
BATCH, SEQ = 2, 8
ATTENTION_MS = {f"{layer}/{kind}": 0.125 for layer in range(TINY_CONFIG.num_layers)
                for kind in latency.ATTENTION_KINDS}


@pytest.fixture
def measured(tiny, monkeypatch):
    """`measure_table` replaced by a fixed valid table (no timing); the calls are counted."""
    table = LatencyTable(
        device="test cpu", source="measured", batch=BATCH, seq=SEQ,
        num_layers=TINY_CONFIG.num_layers, other_ms=0.5,
        site_ms={f"{s}/{p}": 0.25 + i for i, p in enumerate(OPTIONS) for s in SITES},
        forward_ms={str(p): 3.0 for p in OPTIONS},
        executed={f"{s}/{p}": "xla" for p in OPTIONS for s in SITES},
        architecture=architecture_of(TINY_CONFIG), attention_ms=ATTENTION_MS)
    calls = []

    def measure(*args, **kwargs):
        calls.append(args)
        return table
    monkeypatch.setattr(latency, "measure_table", measure)
    return table, calls


def _cached(tiny, tmp_path):
    return table_for_target(tiny, "cpu", BATCH, SEQ, options=OPTIONS, cache_dir=tmp_path)


def _only_file(tmp_path):
    files = list((tmp_path / "latency").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def test_a_valid_cached_table_is_reused_without_measuring(tiny, tmp_path, measured):
    table, calls = measured
    assert _cached(tiny, tmp_path) == table and len(calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _cached(tiny, tmp_path) == table
    assert len(calls) == 1


def test_measure_again_replaces_a_valid_cached_table(tiny, tmp_path, measured):
    table, calls = measured
    _cached(tiny, tmp_path)
    path = _only_file(tmp_path)
    path.write_text(dataclasses.replace(table, other_ms=9.0).to_json())  # valid, but old
    again = table_for_target(tiny, "cpu", BATCH, SEQ, options=OPTIONS, cache_dir=tmp_path,
                             measure_again=True)
    assert again == table and len(calls) == 2
    assert LatencyTable.from_json(path.read_text()) == table  # the cache holds the new one
    assert _cached(tiny, tmp_path) == table and len(calls) == 2  # and is read back


def test_a_cached_table_without_attention_prices_is_measured_again(tiny, tmp_path, measured):
    """A cached table whose attention is in other_ms (no attention_ms) would price INT8
    attention as float: it is measured again and replaced, not used."""
    table, calls = measured
    _cached(tiny, tmp_path)
    path = _only_file(tmp_path)
    old = dataclasses.replace(table, attention_ms={}, other_ms=9.0)
    path.write_text(old.to_json())
    assert validate_table(json.loads(path.read_text())) == old  # it loads and validates
    assert _cached(tiny, tmp_path) == table and len(calls) == 2
    assert LatencyTable.from_json(path.read_text()) == table


def test_a_table_of_fewer_options_is_cached_apart_and_a_whole_one_covers_it(tiny, tmp_path,
                                                                           monkeypatch):
    from calibrate.search.targets import resolve_target
    every = (*resolve_target("cpu").allowed(), as_precision("fp32"))
    calls = []

    def measure(model, batch, seq, *, precisions, **kwargs):
        calls.append(tuple(str(p) for p in precisions))
        return LatencyTable(device="test cpu", source="measured", batch=BATCH, seq=SEQ,
                            num_layers=TINY_CONFIG.num_layers, other_ms=0.5,
                            site_ms={f"{s}/{p}": 1.0 for p in precisions for s in SITES},
                            executed={f"{s}/{p}": "xla" for p in precisions for s in SITES},
                            attention_ms=ATTENTION_MS)
    monkeypatch.setattr(latency, "measure_table", measure)

    def table(options):
        return table_for_target(tiny, "cpu", BATCH, SEQ, options=options, cache_dir=tmp_path)
    table(every)
    table(OPTIONS)  # the whole table covers the narrowed options: not measured
    assert len(calls) == 1 and len(list((tmp_path / "latency").glob("*.json"))) == 1
    (whole,) = (tmp_path / "latency").glob("*.json")
    whole.unlink()
    table(OPTIONS)  # measured, and cached under a name of its own
    table(every)  # the narrowed table does not stand in for the whole one
    table(every)
    assert calls[1:] == [tuple(str(p) for p in OPTIONS), tuple(str(p) for p in every)]
    narrowed = sorted(p.name for p in (tmp_path / "latency").glob("*.json") if p != whole)
    assert whole.is_file() and len(narrowed) == 1
    assert narrowed[0].startswith(whole.stem + "-options_")


def test_a_narrowed_table_measured_again_is_used_over_the_older_whole_one(tiny, tmp_path,
                                                                         monkeypatch):
    from calibrate.search.targets import resolve_target
    every = (*resolve_target("cpu").allowed(), as_precision("fp32"))
    measured = []

    def measure(model, batch, seq, *, precisions, **kwargs):
        measured.append(len(measured))
        return LatencyTable(device="test cpu", source="measured", batch=BATCH, seq=SEQ,
                            num_layers=TINY_CONFIG.num_layers, other_ms=float(len(measured)),
                            site_ms={f"{s}/{p}": 1.0 for p in precisions for s in SITES},
                            executed={f"{s}/{p}": "xla" for p in precisions for s in SITES},
                            attention_ms=ATTENTION_MS)
    monkeypatch.setattr(latency, "measure_table", measure)

    def table(options, again=False):
        return table_for_target(tiny, "cpu", BATCH, SEQ, options=options, cache_dir=tmp_path,
                                measure_again=again)
    assert table(every).other_ms == 1.0
    assert table(OPTIONS, again=True).other_ms == 2.0  # the machine was busy: measured again
    assert table(OPTIONS).other_ms == 2.0  # the new one, not the older whole table
    assert table(every).other_ms == 1.0  # the whole table still serves the whole options


def test_a_measured_table_says_when_and_how_busy_the_machine_was(tiny, monkeypatch):
    monkeypatch.setattr(latency, "_time_sites", lambda config, b, s, precisions, **kw: (
        {f"{site}/{p}": 1.0 for p in precisions for site in SITES},
        {f"{site}/{p}": "xla" for p in precisions for site in SITES}))
    monkeypatch.setattr(latency, "_time_forwards", lambda model, b, s, precisions, **kw: (
        {str(p): 30.0 for p in precisions}, {}))
    monkeypatch.setattr(latency.os, "getloadavg", lambda: (7.0, 0.0, 0.0))
    monkeypatch.setattr(latency.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(latency.time, "process_time", lambda: 0.0)  # this process: idle
    table = latency.measure_table(tiny, BATCH, SEQ, precisions=OPTIONS, repeats=1,
                                  dtype=jnp.float32)
    assert table.load_per_core == 3.5
    # this process's own use of the cores is not other work: here one core, all its life
    monkeypatch.setattr(latency.time, "process_time",
                        lambda: latency.time.monotonic() - latency._STARTED)
    assert latency._load_per_core() == 3.0
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", table.measured_at)
    assert isinstance(table.load_per_core, float) and table.load_per_core >= 0
    assert LatencyTable.from_json(table.to_json()) == table
    described = dataclasses.replace(table, load_per_core=3.5).describe()
    assert f"measured {table.measured_at} UTC" in described
    assert "load 3.5 per core: busy, --measure-latency-again when idle" in described
    quiet = dataclasses.replace(table, load_per_core=0.25).describe()
    assert quiet.endswith("load 0.25 per core)") and "busy" not in quiet


def test_a_search_config_asks_its_plan_to_measure_again(tiny, tmp_path, measured, monkeypatch):
    _, calls = measured
    monkeypatch.setattr(latency, "default_cache", lambda: tmp_path)
    for again, expected_calls in ((False, 1), (False, 1), (True, 2)):
        plan_search(tiny, SearchConfig(target="cpu", options=("int8-dynamic",), batch=BATCH,
                                       seq=SEQ, measure_again=again))
        assert len(calls) == expected_calls


def _set(path: str, value):
    def damage(data: dict) -> dict:
        *parents, last = path.split(".")
        holder = data
        for key in parents:
            holder = holder[key]
        holder[last] = value
        return data
    return damage


DAMAGES = {
    "nan": (_set("site_ms.qkv/int8-dynamic", math.nan), "'qkv/int8-dynamic' is nan"),
    "negative": (_set("site_ms.ffn_in/fp32", -1.0), "'ffn_in/fp32' is -1.0"),
    "zero": (_set("site_ms.attn_out/fp32", 0), "'attn_out/fp32' is 0"),
    "a string": (_set("site_ms.ffn_out/fp32", "fast"), "'ffn_out/fp32' is 'fast'"),
    "infinite forward": (_set("forward_ms.fp32", math.inf), "'fp32' is inf"),
    "other_ms nan": (_set("other_ms", math.nan), "other_ms is nan"),
    "a list of entries": (_set("site_ms", [1.0]), "site_ms is a list"),
    "another layer count": (_set("num_layers", 12), "num_layers is 12; expected 3"),
    "another shape": (_set("seq", 16), "its shape is 2x16; expected 2x8"),
    "a date that is no text": (_set("measured_at", 2026), "measured_at is 2026"),
    "a negative load": (_set("load_per_core", -1.0), "load_per_core is -1.0"),
    "a field missing": (lambda d: {k: v for k, v in d.items() if k != "other_ms"},
                        "['other_ms'] are missing"),
    "not an object": (lambda d: [d], "a list, not an object"),
    "another architecture": (_set("architecture.hidden_size", 64),
                             "was made for another model: hidden_size 64, expected 32"),
    "an architecture of other keys": (_set("architecture", {"hidden": 32}),
                                      "architecture is ['hidden']; expected an object of"),
    "an architecture of other layers": (_set("architecture.num_layers", 2),
                                        "num_layers 2, expected 3"),
    "an architecture of no width": (_set("architecture.hidden_size", True),
                                    "architecture.hidden_size is True; expected a positive"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_cached_table_is_named_measured_again_and_rewritten(tiny, tmp_path, measured,
                                                                      damage):
    table, calls = measured
    _cached(tiny, tmp_path)
    path = _only_file(tmp_path)
    change, reason = DAMAGES[damage]
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    with pytest.warns(UserWarning) as caught:
        assert _cached(tiny, tmp_path) == table
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and f"ignoring the cached latency table {path} (" in said[0], said
    assert reason in said[0] and said[0].endswith("measuring it again"), said
    assert len(calls) == 2  # measured again
    assert LatencyTable.from_json(path.read_text()) == table  # and rewritten


@pytest.mark.parametrize("text, reason", [('{"device": "cpu", "source": "meas', "not JSON: "),
                                          (b"\xff\xfe{}", "utf-8")], ids=["truncated", "not utf-8"])
def test_an_unreadable_cached_table_is_named_measured_again_and_rewritten(tiny, tmp_path,
                                                                          measured, text, reason):
    table, calls = measured
    _cached(tiny, tmp_path)
    path = _only_file(tmp_path)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.warns(UserWarning, match=f"ignoring the cached latency table {path} .*{reason}"):
        assert _cached(tiny, tmp_path) == table
    assert len(calls) == 2 and LatencyTable.from_json(path.read_text()) == table


@pytest.mark.parametrize("error", [errno.EROFS, errno.ENOSPC])
def test_a_cache_that_cannot_be_written_is_a_warning_and_the_table_is_used(tiny, tmp_path,
                                                                           measured, monkeypatch,
                                                                           error):
    table, _ = measured

    def fail(target, text):
        raise OSError(error, os.strerror(error))
    monkeypatch.setattr(atomic, "write_text_atomic", fail)
    with pytest.warns(UserWarning) as caught:
        assert _cached(tiny, tmp_path) == table
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "could not write the latency table " in said[0], said
    assert str(tmp_path / "latency") in said[0] and os.strerror(error) in said[0]


def test_a_table_given_to_the_search_is_checked_by_the_same_function(tiny):
    table = estimate_table(TINY_CONFIG, 32, 128)
    assert validate_table(table) == table
    assert plan_search(tiny, SearchConfig(target="h100"), table).table == table
    damaged = dataclasses.replace(table, site_ms={**table.site_ms, "qkv/fp16": math.nan})
    with pytest.raises(ValueError, match="latency_table: site_ms entry 'qkv/fp16' is nan; "
                                         "expected a positive number of ms"):
        plan_search(tiny, SearchConfig(target="h100"), damaged)
    partial = dataclasses.replace(table, site_ms={k: v for k, v in table.site_ms.items()
                                                  if "fp8" not in k})
    with pytest.raises(ValueError, match="latency_table: site_ms has no entry 'qkv/fp8_e4m3'"):
        plan_search(tiny, SearchConfig(target="h100"), partial)
    other = estimate_table(TINY_CONFIG.replace(num_layers=2), 32, 128)
    with pytest.raises(ValueError, match="num_layers is 2; expected 3"):
        plan_search(tiny, SearchConfig(target="h100"), other)


def test_other_xla_flags_time_differently_so_they_name_another_table(monkeypatch):
    from calibrate.search.targets import resolve_target
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    plain = latency.table_name(TINY_CONFIG, resolve_target("cpu"), 8, 16)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    single = latency.table_name(TINY_CONFIG, resolve_target("cpu"), 8, 16)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    devices = latency.table_name(TINY_CONFIG, resolve_target("cpu"), 8, 16)
    assert len({plain, single, devices}) == 3 and "-xla_" not in plain and "-xla_" in single


def test_a_registered_gemm_implementation_names_another_table(tiny, tmp_path, measured, monkeypatch):
    """A table measured with samp-jax's implementations is not reused (and labelled measured)
    once another implementation runs first, is replaced, or is added in front of xla."""
    from samp_jax.ops import base, dispatch, register_gemm_implementation
    from calibrate.search.targets import resolve_target
    monkeypatch.setattr(dispatch, "_REGISTRY", dict(dispatch._REGISTRY))
    monkeypatch.setattr(dispatch, "_ORDER", list(dispatch._ORDER))
    table, calls = measured
    plain = latency.table_name(TINY_CONFIG, resolve_target("cpu"), BATCH, SEQ)
    assert "-impl_" not in plain
    _cached(tiny, tmp_path)
    assert len(calls) == 1

    def counting(x, weight, **kwargs):
        return base.xla_gemm(x, weight, **kwargs)
    register_gemm_implementation("counting", counting, first=True)
    first = latency.table_name(TINY_CONFIG, resolve_target("cpu"), BATCH, SEQ)
    assert "-impl_" in first and first != plain
    _cached(tiny, tmp_path)
    assert len(calls) == 2  # measured again, not read from the xla table
    _cached(tiny, tmp_path)
    assert len(calls) == 2  # and that table is reused under its own name
    register_gemm_implementation("counting", base.xla_gemm, replace=True)  # another function
    assert latency.table_name(TINY_CONFIG, resolve_target("cpu"), BATCH, SEQ) not in (plain, first)
    dispatch._ORDER.remove("counting")
    del dispatch._REGISTRY["counting"]
    assert latency.table_name(TINY_CONFIG, resolve_target("cpu"), BATCH, SEQ) == plain


class _Tiled:
    """A callable implementation with a setting: two settings run other code."""

    def __init__(self, tile: int):
        self.tile = tile

    def __call__(self, x, weight, **kwargs):
        from samp_jax.ops import base
        return base.xla_gemm(x, weight, **kwargs)


def test_an_implementation_is_described_alike_in_every_process():
    """The cache key names what runs without memory addresses (a `functools.partial` of a
    function, an object: their reprs differ per process, so a table would never be reused),
    and tells apart instances of one class with other settings (one table would be reused for
    both)."""
    import functools
    import subprocess
    import sys

    from samp_jax.ops import base, dispatch
    script = ("import functools, sys; sys.path.insert(0, '.'); "
              "from samp_jax.ops import base, dispatch; "
              "from tests.calibrate.test_latency_cache import _Tiled; "
              "print(dispatch._callable_name(functools.partial(_Tiled(64), inner=base.xla_gemm, "
              "tiles=(_Tiled(8), None))))")
    here = dispatch._callable_name(functools.partial(_Tiled(64), inner=base.xla_gemm,
                                                     tiles=(_Tiled(8), None)))
    there = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert here == there and " at 0x" not in here
    assert "_Tiled(tile=64)" in here and "inner=samp_jax.ops.base.xla_gemm" in here
    assert dispatch._callable_name(_Tiled(64)) != dispatch._callable_name(_Tiled(128))


def test_a_table_names_the_architecture_it_was_made_for(tiny, tmp_path, measured):
    table = estimate_table(TINY_CONFIG, 32, 128)
    assert table.architecture == {"model_type": "bert", "num_layers": 3, "hidden_size": 32,
                                  "intermediate_size": 64, "num_heads": 4, "embedding_size": None,
                                  "digest": latency.architecture_digest(TINY_CONFIG)}
    assert LatencyTable.from_json(table.to_json()) == table
    assert latency.architecture_digest(TINY_CONFIG) in latency.table_name(
        TINY_CONFIG, latency.resolve_target("cpu"), 2, 8)  # the digest that keys the cache
    # a cached table from before tables named it: its file name's digest vouches for it
    _cached(tiny, tmp_path)
    path = _only_file(tmp_path)
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items()
                                if k != "architecture"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _cached(tiny, tmp_path) == measured[0]


@pytest.mark.parametrize("change, found", [
    (dict(hidden_size=64, intermediate_size=128), "hidden_size 64, expected 32; "
                                                  "intermediate_size 128, expected 64"),
    (dict(model_type="roberta", num_heads=2), "model_type 'roberta', expected 'bert'; "
                                              "num_heads 2, expected 4"),
    (dict(hidden_act="relu"), r"digest '\w+', expected '\w+'"),  # beyond the readable fields
])
def test_a_given_table_of_another_architecture_is_refused(tiny, change, found):
    other = estimate_table(TINY_CONFIG.replace(**change), 32, 128)
    with pytest.raises(LatencyTableMismatch, match=(
            f"the latency table given was made for another model: {found} \\(this model: "
            r"model_type bert, num_layers 3, hidden_size 32, .*\); its costs would price")):
        plan_search(tiny, SearchConfig(target="h100"), other)


def test_a_given_table_without_architecture_or_of_another_device_is_used_with_a_warning(tiny):
    table = estimate_table(TINY_CONFIG, 32, 128)
    config = SearchConfig(target="h100")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # this model's estimate: nothing to say
        assert plan_search(tiny, config, table).table == table
    old = dataclasses.replace(table, architecture=None)
    with pytest.warns(UserWarning, match=r"the latency table given records no architecture .*"
                                         r"cannot be checked against this model \(model_type bert, "
                                         r"num_layers 3, hidden_size 32.*measure it again"):
        assert plan_search(tiny, config, old).table == old
    elsewhere = dataclasses.replace(table, source="measured", device="NVIDIA B200")
    here = latency.device_description()
    with pytest.warns(UserWarning) as caught:
        assert plan_search(tiny, config, elsewhere).table == elsewhere
    said = [str(w.message) for w in caught]
    assert said == [f"the latency table given was measured on 'NVIDIA B200', not on this machine "
                    f"({here!r}): its latencies price the maps for that device"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # measured here
        plan_search(tiny, config, dataclasses.replace(elsewhere, device=here))
