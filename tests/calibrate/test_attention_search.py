"""The search weighs INT8 attention: latency tables price each layer's attention float and INT8,
the candidate program switches a layer's attention without recompiling per map, and a tolerance
search keeps INT8 attention where the table prices it cheaper and the map stays within the
tolerance (`calibrate.search.attention_step`)."""

from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from calibrate.search import latency
from calibrate.search.candidates import SwitchableModel
from calibrate.search.driver import search
from calibrate.search.latency import (ATTENTION_FLOAT, ATTENTION_INT8, ATTENTION_KINDS,
                                      LatencyTable, estimate_table, validate_table)
from calibrate.search.report import write_report
from samp_jax.core.precision import ATTENTION_SITES, PrecisionMap
from samp_jax.models import int8_attention
from samp_jax.models.config import EncoderConfig
from samp_jax.ptq.quantized import quantize
from samp_jax.serving.forward import jit_forward
from tests.helpers import TINY_CONFIG, random_batches

LAYERS = TINY_CONFIG.num_layers
OPTIONS = ("fp16", "int8-dynamic")


def _priced(table: LatencyTable, float_ms, int8_ms) -> LatencyTable:
    """`table` with each layer's attention at `float_ms[layer]` and `int8_ms[layer]`."""
    return dataclasses.replace(table, attention_ms={
        f"{layer}/{kind}": (float_ms if kind == ATTENTION_FLOAT else int8_ms)[layer]
        for layer in range(LAYERS) for kind in ATTENTION_KINDS})


@pytest.fixture(scope="module")
def base_table():
    return estimate_table(TINY_CONFIG, 32, 128)


def _search(tiny, table, **settings):
    settings = {"tolerance": 0.3, "target": "h100", "options": OPTIONS, "latency_table": table,
                "progress": False, "sensitivity_batches": 1, **settings}
    return search(tiny, random_batches(2, seed=2), **settings)


def _int8_layers(pmap: PrecisionMap) -> list[int]:
    return [layer for layer in range(pmap.num_layers) if pmap.attention(layer).is_quantized]


# ---- pricing

def test_map_ms_adds_the_attention_the_map_names(base_table):
    table = _priced(base_table, [0.5, 0.5, 0.5], [0.2, 0.3, 0.6])
    fp16 = PrecisionMap.preset("fp16", LAYERS)
    assert table.map_ms(fp16) == pytest.approx(base_table.map_ms(fp16) - sum(
        base_table.attention(layer, ATTENTION_FLOAT) for layer in range(LAYERS)) + 1.5)
    int8 = "int8"
    cells = {(0, site): int8 for site in ATTENTION_SITES} | {(1, "attn_scores"): int8}
    named = PrecisionMap.from_table(cells, LAYERS, default="fp16")
    # layer 0 INT8, layer 1 half INT8 (scores), layer 2 float
    assert table.map_ms(named) == pytest.approx(table.map_ms(fp16) - 0.3 - 0.1)
    assert table.attention_gains() == pytest.approx({0: 0.3, 1: 0.2, 2: -0.1})


def test_estimated_h100_prices_int8_attention_below_float_where_float_runs_unfused():
    """INT8 attention halves the products' time at the tensor cores but runs on XLA, its
    scores in memory: the roofline prices it below FP16 where float attention runs on XLA
    too (a biased family: MPNet's relative bias) at long rows, and above FP16 flash attention."""
    mpnet = dataclasses.replace(EncoderConfig.bert_base(), relative_attention_num_buckets=32)
    table = estimate_table(mpnet, 32, 512)
    assert table.prices_attention and table.source == "estimated"
    for layer in range(mpnet.num_layers):
        assert table.attention(layer, ATTENTION_INT8) < table.attention(layer, ATTENTION_FLOAT)
    flash = estimate_table(EncoderConfig.bert_base(), 32, 512)
    assert flash.attention(0, ATTENTION_INT8) > flash.attention(0, ATTENTION_FLOAT)
    # the attention is no longer in other_ms
    fp16 = PrecisionMap.preset("fp16", 12)
    assert table.map_ms(fp16) > table.other_ms + 12 * table.attention(0, ATTENTION_FLOAT)


def test_a_measured_table_of_a_tiny_model_times_each_layers_attention(tiny, monkeypatch):
    monkeypatch.setattr(latency, "_time_sites", lambda config, b, s, precisions, **kw: (
        {f"{site}/{p}": 1.0 for p in precisions for site in latency.SITES}, {}))
    monkeypatch.setattr(latency, "_time_forwards", lambda model, b, s, precisions, **kw: (
        {str(p): 30.0 + i for i, p in enumerate(precisions)}, {}))
    table = latency.measure_table(tiny, 2, 8, precisions=[latency.SitePrecision("fp32")],
                                  repeats=2, dtype=jnp.float32)
    assert table.prices_attention
    assert set(table.attention_ms) == {f"{layer}/{kind}" for layer in range(LAYERS)
                                       for kind in ATTENTION_KINDS}
    assert all(ms > 0 for ms in table.attention_ms.values())
    # the float attention is taken out of other_ms: the all-fp32 map is still its forward
    assert table.map_ms(PrecisionMap.preset("fp32", LAYERS)) == pytest.approx(30.0)
    assert LatencyTable.from_json(table.to_json()) == table


def test_an_old_table_without_attention_prices_loads_and_prices_attention_as_float(base_table):
    old = json.loads(base_table.to_json())
    del old["attention_ms"]  # a table written before tables priced attention
    table = validate_table(old)
    assert not table.prices_attention and table.attention_gains() == {}
    int8 = PrecisionMap.from_table({(0, s): "int8" for s in ATTENTION_SITES}, LAYERS)
    assert table.map_ms(int8) == table.map_ms(PrecisionMap.preset("fp16", LAYERS))
    partial = {**old, "attention_ms": {"0/float": 1.0}}
    with pytest.raises(ValueError, match="attention_ms has 1 entries"):
        validate_table(partial)


# ---- the candidate program

def test_the_switched_attention_is_the_quantized_models(tiny):
    switch = SwitchableModel(tiny, OPTIONS)
    batch = random_batches(1)[0]
    choices = np.zeros((2, LAYERS, 4), np.int32)
    choices[1, :, 2] = 1
    attention = np.array([[0, 0, 0], [1, 0, 1]], np.int32)
    out = switch.evaluate(choices, batch, attention=attention)
    for i in range(2):
        pmap = switch.map_for(choices[i], attention[i])
        assert _int8_layers(pmap) == list(np.flatnonzero(attention[i]))
        np.testing.assert_array_equal(switch.attention_for(pmap), attention[i])
        real = jit_forward(quantize(tiny, pmap, dtype=jnp.float16))(batch)
        np.testing.assert_array_equal(np.asarray(real), out[i])  # bit-exact with quantize()
    assert not np.array_equal(out[1], switch.evaluate(choices[1:], batch)[0])


# ---- the search

def test_the_search_keeps_int8_attention_priced_cheaper_within_tolerance(tiny, base_table, tmp_path):
    table = _priced(base_table, [0.5] * LAYERS, [0.2] * LAYERS)
    result = _search(tiny, table)
    assert _int8_layers(result.precision_map) == [0, 1, 2]
    assert result.attention.int8_layers == (0, 1, 2) and result.tolerance_met
    gemm_only = PrecisionMap.from_table(dict(result.precision_map.items()), LAYERS)
    assert result.chosen.latency_ms == pytest.approx(table.map_ms(gemm_only) - 3 * 0.3)
    rules = result.precision_map.to_dict()["rules"]
    assert any(set(rule["sites"]) >= set(ATTENTION_SITES) and rule["precision"] == "int8"
               for rule in rules if rule["sites"] != "*")
    summary = write_report(result, tmp_path)
    assert summary["attention"]["int8_layers"] == [0, 1, 2]
    assert summary["attention"]["priced_ms"]["0"] == {"float": 0.5, "int8": 0.2}
    assert "- INT8 attention: INT8 attention in layers [0, 1, 2]" in (tmp_path / "report.md").read_text()
    saved = PrecisionMap.from_json(tmp_path / "precision_map.json")
    assert _int8_layers(saved) == [0, 1, 2]
    off = _search(tiny, table, attention="float")
    assert _int8_layers(off.precision_map) == [] and "attention='float'" in off.attention.note


def test_int8_attention_priced_slower_is_not_tried(tiny, base_table):
    result = _search(tiny, _priced(base_table, [0.2] * LAYERS, [0.5] * LAYERS))
    assert _int8_layers(result.precision_map) == []
    assert result.attention.maps_compared == 0 and "no cheaper than float" in result.attention.note
    assert all(e.kind != "attention" for e in result.evaluated)


def test_int8_attention_that_breaks_the_tolerance_is_left_out_layer_by_layer(tiny, base_table,
                                                                            monkeypatch):
    """A fault makes layer 1's INT8 context NaN: the map with INT8 attention everywhere misses
    the tolerance, and the layers are then added in order of gain (2, 1, 0), layer 1 left out."""
    real, calls = int8_attention.int8_context, [0]

    def faulty(unnormalised, v, key_mask):
        layer = calls[0] % LAYERS  # traced layer by layer, in order
        calls[0] += 1
        out = real(unnormalised, v, key_mask)
        return out * jnp.nan if layer == 1 else out
    monkeypatch.setattr(int8_attention, "int8_context", faulty)
    result = _search(tiny, _priced(base_table, [0.5] * LAYERS, [0.3, 0.2, 0.1]))
    assert _int8_layers(result.precision_map) == [0, 2] and result.tolerance_met
    assert result.attention.tried == (((0, 1, 2), False), ((2,), True), ((1, 2), False),
                                      ((0, 2), True))
    assert np.isfinite(result.chosen.proxy)


def test_a_table_without_attention_prices_leaves_attention_float_and_says_so(tiny, base_table,
                                                                           tmp_path):
    old = dataclasses.replace(base_table, attention_ms={})
    result = _search(tiny, old)
    assert _int8_layers(result.precision_map) == []
    assert "prices no attention" in result.attention.note
    write_report(result, tmp_path)
    assert "- INT8 attention: not offered: the latency table prices no attention" in \
        (tmp_path / "report.md").read_text()


# ---- review fixes: the budget, a fit with nothing outside the sites, a cuDNN-pinned model

def test_the_allocation_budget_leaves_out_the_float_attention_its_maps_run(base_table):
    """`site_budget_ms` compares with GEMM-site costs: the ceiling (a preset's map_ms, float
    attention included) less other_ms and every layer's float attention."""
    from types import SimpleNamespace

    from calibrate.search.strategy import AllocationProblem, site_budget_ms
    table = _priced(base_table, [0.5, 0.5, 0.5], [0.2, 0.3, 0.6])
    fp16 = PrecisionMap.preset("fp16", LAYERS)
    ceiling = table.map_ms(fp16)
    problem = AllocationProblem(runner=SimpleNamespace(table=table), ordered=(), sensitivity={},
                                acceptable=lambda outputs: True, ceiling_ms=ceiling)
    sites = sum(table.site(site, p) for (_, site), p in fp16.items())
    assert site_budget_ms(problem) == pytest.approx(sites)  # the preset's own sites, no more
    assert table.fixed_ms == pytest.approx(table.other_ms + 1.5)
    unpriced = dataclasses.replace(table, attention_ms={})
    assert unpriced.fixed_ms == unpriced.other_ms


def test_a_fit_with_nothing_outside_the_sites_prices_attention_at_zero():
    """The sites already hold the whole forward: attention is not added again on top."""
    timed = {f"{layer}/{kind}": ms for layer in range(2)
             for kind, ms in ((ATTENTION_FLOAT, 1.0), (ATTENTION_INT8, 0.5))}
    other, priced = latency._take_attention_out(0.0, timed, 2)
    assert other == 0 and set(priced.values()) == {0.0}
    other, priced = latency._take_attention_out(1.0, timed, 2)  # half the float attention fits
    assert other == 0 and priced[f"0/{ATTENTION_FLOAT}"] == 0.5 and priced[f"0/{ATTENTION_INT8}"] == 0.25
    other, priced = latency._take_attention_out(3.0, timed, 2)
    assert other == 1.0 and priced == timed


def test_a_table_with_attention_priced_at_zero_is_written_and_read_back(base_table):
    """The zero prices of a fit with nothing outside the sites are a valid table: it is cached
    and read back as it was; a negative or NaN price is still refused."""
    zero = _priced(base_table, [0.0] * LAYERS, [0.0] * LAYERS)
    assert LatencyTable.from_json(zero.to_json()) == zero
    fp16 = PrecisionMap.preset("fp16", LAYERS)  # attention adds nothing on top of the sites
    assert zero.map_ms(fp16) == pytest.approx(dataclasses.replace(zero, attention_ms={}).map_ms(fp16))
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="attention_ms entry '0/float'"):
            validate_table(_priced(base_table, [bad] + [0.0] * (LAYERS - 1), [0.0] * LAYERS))


def test_a_model_pinned_to_cudnn_times_its_int8_attention_on_xla(monkeypatch):
    """A layer pinned to cuDNN runs float attention there; INT8 attention runs on XLA (cuDNN
    cannot take INT8 operands), so the table times it there instead of failing."""
    from types import SimpleNamespace
    calls = []

    def run(q, k, v, mask, *, bias, implementation, window, precision):
        calls.append((implementation, precision is not None))
        return q

    monkeypatch.setattr(latency, "run_attention", run)
    model = SimpleNamespace(config=TINY_CONFIG, encoder=SimpleNamespace(layers=[
        SimpleNamespace(window=None, attention_impl="cudnn") for _ in range(LAYERS)]))
    timed = latency._time_attention(model, 1, 8, repeats=1, dtype=jnp.float32)
    assert set(calls) == {("cudnn", False), (None, True)}
    assert set(timed) == {f"{layer}/{kind}" for layer in range(LAYERS) for kind in ATTENTION_KINDS}
