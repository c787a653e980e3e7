"""Each phase of the search alone (fakes where a model is not needed), and `search` as their sum."""

import dataclasses
import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from calibrate.search.candidates import SwitchableModel
from calibrate.search.latency import estimate_table, int8_flop_fraction, site_flops
from calibrate.search.objectives import Z_ONE_SIDED_95, UnlabelledObjective, selection_z
from calibrate.search.driver import search
from calibrate.search.latency_target import latency_greedy
from calibrate.search.phases import (ORDER_EPS, evaluate_presets, measure_sensitivity, move_gains,
                                     order_moves, preset_maps, single_site_moves)
from calibrate.search.result import SelectionGuard
from calibrate.search.runner import Evaluated, Kind, Move, Runner, move_key
from calibrate.search.static_clips import choose_static_calibration
from calibrate.search.strategies.greedy import tolerance_greedy
from calibrate.search.tolerance import acceptance, guard_selection
from samp_jax.core.precision import SITES, PrecisionMap, as_precision

OPTIONS = tuple(as_precision(o) for o in ("fp16", "int8-dynamic", "fp8_e4m3"))
from tests.helpers import TINY_CONFIG, random_batches

# ---- Kind

def test_kind_writes_the_same_strings_as_before():
    assert [k.value for k in Kind] == ["reference", "preset", "greedy", "candidate", "attention",
                                       "chosen"]
    assert Kind.GREEDY == "greedy" and f"{Kind.CHOSEN}" == "chosen"
    assert json.dumps({"kind": Kind.PRESET}) == '{"kind": "preset"}'


# ---- phase 1: presets

@pytest.mark.parametrize("options, expected", [
    (("fp16",), ["fp16"]),
    (("fp16", "int8-dynamic"), ["fp16", "quant_ffn_only", "fully_quant"]),
    (("fp16", "int8-static"), ["fp16", "quant_ffn_only_static", "fully_quant_static"]),
    (("fp32", "int8-static", "int8-dynamic"),
     ["fp32-sites", "quant_ffn_only", "fully_quant", "quant_ffn_only_static", "fully_quant_static"]),
    (("fp16", "fp8_e4m3"), ["fp16", "fp8"]),
    (("fp16", "int8-dynamic", "fp8_e4m3"), ["fp16", "quant_ffn_only", "fully_quant", "fp8"]),
])
def test_preset_maps_respect_the_options(options, expected):
    maps = preset_maps(options, 3)
    assert list(maps) == expected
    for pmap in maps.values():  # every cell is an option; float cells are the default option
        assert all(p in [as_precision(o) for o in options] for _, p in pmap.items())


def test_evaluate_presets_records_the_reference_then_the_presets(tiny, calibration):
    obj = UnlabelledObjective(tiny, random_batches(1))
    runner = Runner(SwitchableModel(tiny, OPTIONS, calibration), obj, estimate_table(TINY_CONFIG, 32, 128))
    reference, outputs = evaluate_presets(runner)
    assert [(e.name, e.kind) for e in runner.evaluated] == [
        ("fp32", Kind.REFERENCE), ("fp16", Kind.PRESET), ("quant_ffn_only", Kind.PRESET),
        ("fully_quant", Kind.PRESET), ("fp8", Kind.PRESET)]
    assert reference is runner.evaluated[0] and reference.metric is None and reference.proxy == 0.0
    assert list(outputs) == ["fp16", "quant_ffn_only", "fully_quant", "fp8"]
    fractions = [e.int8_fraction for e in runner.evaluated[1:]]
    # every GEMM site in INT8 leaves attention's share in float (`int8_flop_fraction`)
    assert fractions[0] == fractions[3] == 0.0 and 0 < fractions[1] < fractions[2] < 1.0
    assert fractions[2] == int8_flop_fraction(runner.evaluated[3].precision_map, TINY_CONFIG, seq_len=128)
    assert [e.proxy for e in runner.evaluated[1:]] == [obj.proxy(o) for o in outputs.values()]
    assert runner.switch.traces == 1


# ---- phase 2: sensitivity

def test_single_site_moves():
    moves = single_site_moves(3, OPTIONS)
    assert len(moves) == 3 * len(SITES) * 2 and moves[:3] == [(0, 0, 1), (0, 0, 2), (0, 1, 1)]
    assert single_site_moves(3, OPTIONS, "int8_fraction") == [
        Move(layer, si, 1) for layer in range(3) for si in range(len(SITES))]
    assert single_site_moves(2, ("fp16",)) == []
    assert move_key(Move(2, 3, 2), OPTIONS) == "2.ffn_out/fp8_e4m3"


def test_measure_sensitivity_scores_each_site_alone(tiny, calibration):
    obj = UnlabelledObjective(tiny, random_batches(2, seed=3))
    runner = Runner(SwitchableModel(tiny, OPTIONS[:2], calibration), obj, estimate_table(TINY_CONFIG, 32, 128))
    moves = [Move(0, 0, 1), Move(2, 3, 1)]
    sensitivity = measure_sensitivity(runner, moves, batches=1, fp32_metric=None)
    assert list(sensitivity) == moves and runner.evaluated == []
    assert all(set(s) == {"proxy"} and s["proxy"] > 0 for s in sensitivity.values())
    # the same single-site map, run by hand on the first batch only
    choices = np.zeros((1, 3, len(SITES)), np.int32)
    choices[0, 2, 3] = 1
    alone = runner.switch.evaluate(choices, obj.batches[0])
    assert sensitivity[moves[1]]["proxy"] == obj.subset(1).proxy([alone[0]])


# ---- phase 3: ordering

def test_order_moves_by_harm_per_gain_and_drops_moves_that_gain_nothing():
    moves = [Move(0, 0, 1), Move(0, 1, 1), Move(0, 2, 1), Move(0, 3, 1), Move(1, 0, 1), Move(1, 1, 1)]
    proxy = dict(zip(moves, [4.0, 1.0, 9.0, 2.0, 0.0, 0.0]))
    gain = dict(zip(moves, [2.0, 1.0, 0.0, 4.0, 1.0, 3.0]))  # harm/gain: 2, 1, -, 0.5, 0, 0
    assert order_moves(moves, proxy, gain) == [moves[5], moves[4], moves[3], moves[1], moves[0]]
    gain[moves[1]] = -0.5  # a move that costs time is dropped as well
    assert moves[1] not in order_moves(moves, proxy, gain)
    # equal harm per gain keeps the given order
    assert order_moves(moves[:2], {moves[0]: 2.0, moves[1]: 1.0},
                       {moves[0]: 2.0, moves[1]: 1.0}) == moves[:2]
    assert ORDER_EPS > 0


def test_move_gains_from_the_table_or_the_flops():
    table = estimate_table(TINY_CONFIG, 32, 128)
    moves = single_site_moves(3, OPTIONS)
    gains = move_gains(moves, OPTIONS, table, TINY_CONFIG)
    for move in moves:
        site = SITES[move.site]
        assert gains[move] == table.site(site, OPTIONS[0]) - table.site(site, OPTIONS[move.option])
    flops = move_gains(moves, OPTIONS, table, TINY_CONFIG, "int8_fraction")
    assert flops[Move(1, 2, 1)] == site_flops(TINY_CONFIG, 1)["ffn_in"]


# ---- phase 4: tolerance greedy

@dataclasses.dataclass
class FakeRunner:
    """Outputs are the candidate's own choices, so `acceptable` can see which moves it holds."""

    chunk: int
    num_layers: int = 3
    options: tuple = OPTIONS
    runs: list = dataclasses.field(default_factory=list)
    evaluated: list = dataclasses.field(default_factory=list)

    def run(self, choices, batches=None):
        self.runs.append(len(choices))
        return [[np.array(c)] for c in choices]

    def record(self, name, kind, choices, outputs):
        self.evaluated.append((name, kind, np.array(choices)))


def _harmless(harmful):
    return lambda outputs: not any(outputs[0][m.layer, m.site] == m.option for m in harmful)


# eight moves on eight distinct sites
MOVES = [Move(layer, si, 1 + (layer + si) % 2) for layer in range(2) for si in range(len(SITES))]


@pytest.mark.parametrize("chunk, runs", [(1, [1] * 8), (3, [3, 3, 2]), (8, [8, 5, 2])])
def test_tolerance_greedy_backs_out_the_harmful_moves(chunk, runs):
    runner = FakeRunner(chunk)
    harmful = [MOVES[2], MOVES[5]]
    choices, outputs = tolerance_greedy(runner, MOVES, _harmless(harmful))
    kept = [m for m in MOVES if m not in harmful]
    expected = np.zeros((3, len(SITES)), np.int32)
    for m in kept:
        expected[m.layer, m.site] = m.option
    np.testing.assert_array_equal(choices, expected)
    np.testing.assert_array_equal(outputs[0], expected)  # the last accepted prefix is the map
    assert runner.runs == runs  # each chunk stops at its first failure, which is not retried
    assert [name for name, _, _ in runner.evaluated] == [f"greedy+{move_key(m, OPTIONS)}" for m in MOVES]
    assert {kind for _, kind, _ in runner.evaluated} == {Kind.GREEDY}


def test_tolerance_greedy_one_move_per_site_and_nothing_accepted():
    runner = FakeRunner(chunk=8)
    moves = [Move(0, 0, 1), Move(0, 0, 2), Move(0, 1, 2), Move(0, 1, 1)]
    choices, _ = tolerance_greedy(runner, moves, _harmless([moves[0]]))
    # 0.qkv/int8 fails, so its fp8 move is tried; 0.attn_out/fp8 passes, so its int8 move is not
    assert choices[0, 0] == 2 and choices[0, 1] == 2
    assert [n for n, _, _ in runner.evaluated] == [
        "greedy+0.qkv/int8-dynamic", "greedy+0.qkv/fp8_e4m3", "greedy+0.attn_out/fp8_e4m3"]
    choices, outputs = tolerance_greedy(FakeRunner(chunk=8), moves, lambda out: False)
    assert not choices.any() and outputs is None


def test_acceptance_bounds_the_guarded_drop_or_the_proxy():
    @dataclasses.dataclass
    class Fake:
        metric_name: str | None
        reference: tuple = ("ref",)

        def guarded_drop(self, outputs, base, *, z):
            assert base is self.reference and z == Z_ONE_SIDED_95  # the plain 95% margin
            return outputs[0]

        def proxy(self, outputs):
            return outputs[1]

    relative = acceptance(Fake("accuracy"), 0.8, 0.05, "relative")  # allows a drop of 0.04
    assert relative([0.04, 9.0]) and not relative([0.041, 0.0])
    absolute = acceptance(Fake("accuracy"), 0.8, 0.05, "absolute")
    assert absolute([0.05, 9.0]) and not absolute([0.051, 0.0])
    unlabelled = acceptance(Fake(None), None, 0.05, "relative")
    assert unlabelled([9.0, 0.05]) and not unlabelled([0.0, 0.051])


# ---- phase 5: latency greedy

def test_latency_greedy_stops_once_the_target_is_met():
    latency = lambda choices: 10.0 - np.count_nonzero(choices)  # noqa: E731  1 ms per move
    moves = [Move(0, 0, 1), Move(0, 0, 2), Move(0, 1, 1), Move(1, 0, 2), Move(2, 3, 1)]
    choices = latency_greedy(moves, latency, 8.0, 3)
    assert latency(choices) == 8.0
    assert choices[0, 0] == 1 and choices[0, 1] == 1 and np.count_nonzero(choices) == 2  # 0.qkv once
    assert not latency_greedy(moves, latency, 10.0, 3).any()  # met already
    assert np.count_nonzero(latency_greedy(moves, latency, 0.0, 3)) == 4  # unreachable: every site


# ---- search = its phases

# The tiny random model's proxies are about 1e-11: 0 accepts nothing (the fp16 preset is the
# answer), 2e-11 accepts some moves and backs out others.
@pytest.mark.slow
@pytest.mark.parametrize("tolerance", [0.0, 2e-11])
def test_search_is_the_composition_of_its_phases(tiny, calibration, tolerance):
    batches, table = random_batches(3, seed=2), estimate_table(TINY_CONFIG, 32, 128)
    options = ("fp16", "int8-dynamic")
    result = search(tiny, batches, tolerance=tolerance, target="h100", options=options, calibration=calibration,
                    latency_table=table, chunk=4, sensitivity_batches=1, progress=False,
                    strategy="greedy")

    options = tuple(as_precision(o) for o in options)
    obj = UnlabelledObjective(tiny, batches)
    runner = Runner(SwitchableModel(tiny, options, calibration), obj, table, chunk=4)
    reference, preset_outputs = evaluate_presets(runner)
    assert "fp8" not in preset_outputs
    moves = single_site_moves(3, options)
    sensitivity = measure_sensitivity(runner, moves, batches=1, fp32_metric=reference.metric)
    ordered = order_moves(moves, {m: s["proxy"] for m, s in sensitivity.items()},
                          move_gains(moves, options, table, TINY_CONFIG))
    choices, outputs = tolerance_greedy(runner, ordered, acceptance(obj, reference.metric, tolerance, "relative"))
    chosen = runner.record("chosen", Kind.CHOSEN, choices, outputs or preset_outputs["fp16"])

    assert result.precision_map == chosen.precision_map
    assert [(e.name, e.kind) for e in result.evaluated] == [(e.name, e.kind) for e in runner.evaluated]
    assert [e.proxy for e in result.evaluated] == [e.proxy for e in runner.evaluated]
    assert result.sensitivity == {move_key(m, options): s for m, s in sensitivity.items()}
    assert result.compilations == runner.switch.traces == 1
    assert result.chosen.proxy <= tolerance or not choices.any()


# ---- phase 4b: the selection guard

def test_selection_z_widens_the_margin_with_the_maps_compared():
    assert selection_z(1) == Z_ONE_SIDED_95  # one map: the plain one-sided 95%
    assert selection_z(20) == pytest.approx(scipy_stats.norm.ppf(1 - 0.05 / 20), rel=1e-9)  # 2.807
    assert selection_z(20, confidence=0.9) == pytest.approx(scipy_stats.norm.ppf(1 - 0.1 / 20), rel=1e-9)
    zs = [selection_z(m) for m in (1, 2, 5, 17, 100)]
    assert zs == sorted(zs) and zs[-1] > 3.2
    with pytest.raises(ValueError, match="compared=0"):
        selection_z(0)
    with pytest.raises(ValueError, match="confidence=1.0"):
        selection_z(3, confidence=1.0)


@dataclasses.dataclass
class PlantedRunner:
    """Maps are named by what they were recorded as; a map's 'outputs' are its planted
    (drop, standard error), so the guarded drop at z is `drop + z * se`."""

    planted: dict  # name -> (kind, latency_ms, drop, se)
    num_layers: int = 2
    runs: int = 0

    def __post_init__(self):
        self.evaluated, self.switch = [], self
        for i, (name, (kind, ms, drop, se)) in enumerate(self.planted.items()):
            cells = {(0, SITES[i % 4]): "int8-dynamic", (1, SITES[i // 4]): "int8-static"}
            pmap = PrecisionMap.from_table(cells, self.num_layers, default="fp16")
            self.evaluated.append(Evaluated(name, kind, pmap, None, 0.0, ms, 0.0))

    def choices_for(self, pmap):
        index = next(i for i, e in enumerate(self.evaluated) if e.precision_map == pmap)
        return np.full((self.num_layers, len(SITES)), index, np.int32)

    def run(self, choices):
        self.runs += 1
        entry = self.evaluated[int(choices[0, 0, 0])]
        return [self.planted[entry.name][2:]]


def _guarded(outputs, z):
    drop, se = outputs
    return drop + z * se


def test_guard_selection_steps_back_from_a_pick_that_only_passes_at_95_percent():
    runner = PlantedRunner({
        "fp16": (Kind.PRESET, 100.0, 0.0, 0.0),  # presets are not the allocation's to pick
        "fully_quant": (Kind.PRESET, 10.0, 0.0, 0.0),
        "knapsack#1": (Kind.CANDIDATE, 50.0, 0.001, 0.004),  # passes at 1.645, not at z(3)
        "knapsack#2": (Kind.CANDIDATE, 40.0, 0.02, 0.0),  # fails at any z
        "knapsack#3": (Kind.CANDIDATE, 60.0, 0.0, 0.004),  # passes at z(3) = 2.128
    })
    z3 = selection_z(3)
    assert 0.001 + Z_ONE_SIDED_95 * 0.004 <= 0.009 < 0.001 + z3 * 0.004
    choices, outputs, guard = guard_selection(runner, _guarded, allowed=0.009)
    assert guard == SelectionGuard(3, z3, "knapsack#1", "knapsack#3") and guard.stepped_back
    assert outputs == (0.0, 0.004) and (choices == 4).all()
    # a looser tolerance: the pick holds at the wider margin too
    _, outputs, guard = guard_selection(runner, _guarded, allowed=0.01)
    assert guard.kept == guard.allocation_pick == "knapsack#1" and not guard.stepped_back
    # nothing passes at the wider margin: the all-default map, and the search falls back to
    # the fastest passing preset (or that map)
    choices, outputs, guard = guard_selection(runner, _guarded, allowed=0.007)
    assert outputs is None and not choices.any()
    assert guard.allocation_pick == "knapsack#3" and guard.kept is None and guard.stepped_back


def test_guard_selection_counts_each_distinct_map_once_and_greedy_prefixes_too():
    runner = PlantedRunner({
        "greedy+a": (Kind.GREEDY, 30.0, 0.0, 0.001),
        "greedy+b": (Kind.GREEDY, 20.0, 0.0, 0.003),
    })
    runner.evaluated.append(dataclasses.replace(runner.evaluated[1], name="greedy+b again"))
    _, outputs, guard = guard_selection(runner, _guarded, allowed=0.005)
    assert guard.maps_compared == 2 and guard.z == selection_z(2)
    assert guard.allocation_pick == "greedy+b" and guard.kept == "greedy+a"
    _, _, empty = guard_selection(PlantedRunner({}), _guarded, allowed=1.0)
    assert empty == SelectionGuard(0, Z_ONE_SIDED_95, None, None) and not empty.stepped_back


# ---- phase 0: each static site's calibrator

STATIC = tuple(as_precision(o) for o in ("fp16", "int8-static"))


def _broken_at(calibration, key, factor=1e-3):
    """`calibration` with the clip at `key` shrunk `factor` times (a planted harmful clip)."""
    sites = dict(calibration.sites)
    sites[key] = dataclasses.replace(sites[key], amax=sites[key].amax * factor)
    return dataclasses.replace(calibration, method="broken", sites=sites)


def test_set_calibration_swaps_static_scales_without_recompiling(tiny, calibration):
    batch = random_batches(1, seed=4)[0]
    every_site_static = np.ones((1, 3, len(SITES)), np.int32)
    other = _broken_at(calibration, (1, "ffn_in"), 0.5)
    switch = SwitchableModel(tiny, STATIC, calibration)
    before = switch.evaluate(every_site_static, batch)
    switch.set_calibration(other)
    swapped = switch.evaluate(every_site_static, batch)
    fresh = SwitchableModel(tiny, STATIC, other).evaluate(every_site_static, batch)
    np.testing.assert_array_equal(swapped, fresh)
    assert not np.array_equal(swapped, before) and switch.traces == 1
    switch.set_calibration(calibration)
    np.testing.assert_array_equal(switch.evaluate(every_site_static, batch), before)


def test_set_calibration_refuses_what_it_cannot_swap(tiny, calibration):
    with pytest.raises(ValueError, match="no static scales"):
        SwitchableModel(tiny, OPTIONS[:2], calibration).set_calibration(calibration)
    switch = SwitchableModel(tiny, STATIC, calibration)
    with pytest.raises(ValueError, match="smoothing"):
        switch.set_calibration(dataclasses.replace(calibration, smoothing=0.5))
    partial = dict(calibration.sites)
    del partial[(2, "qkv")]
    with pytest.raises(ValueError, match="layer 2 site 'qkv'"):
        switch.set_calibration(dataclasses.replace(calibration, sites=partial))


def test_choose_static_calibration_keeps_each_sites_least_harmful_clip(tiny, calibration):
    # "broken" is listed first, so it wins every tie (its clips equal minmax's everywhere
    # but at the planted site); at 1.ffn_in its clip is 1000x too small and minmax must win
    broken = _broken_at(calibration, (1, "ffn_in"))
    candidates = {"broken": broken, "minmax": calibration}
    obj = UnlabelledObjective(tiny, random_batches(2, seed=3))
    runner = Runner(SwitchableModel(tiny, STATIC, broken), obj, estimate_table(TINY_CONFIG, 32, 128))
    choice, sensitivity = choose_static_calibration(runner, candidates, batches=1, fp32_metric=None)

    methods = dict(choice.calibration.options["methods"])
    assert methods.pop("1.ffn_in") == "minmax" and set(methods.values()) == {"broken"}
    assert choice.counts() == {"broken": 3 * len(SITES) - 1, "minmax": 1}
    assert choice.proxy["1.ffn_in"]["broken"] > 10 * choice.proxy["1.ffn_in"]["minmax"]
    assert choice.proxy["0.qkv"]["broken"] == choice.proxy["0.qkv"]["minmax"]
    assert runner.evaluated == [] and runner.maps_run == 0 and runner.switch.traces == 1
    # the switch now runs the merged clips, and the returned sensitivity is theirs
    again = measure_sensitivity(runner, list(sensitivity), batches=1, fp32_metric=None)
    assert again == sensitivity and len(sensitivity) == 3 * len(SITES)


@pytest.mark.slow
def test_search_picks_static_clips_per_site_from_candidate_calibrations(tiny, calibration):
    broken = _broken_at(calibration, (1, "ffn_in"))
    batches, table = random_batches(2, seed=2), estimate_table(TINY_CONFIG, 32, 128)
    kwargs = dict(target="h100", options=("fp16", "int8-dynamic", "int8-static"), latency_table=table,
                  tolerance=1e-3, sensitivity_batches=1, progress=False)
    result = search(tiny, batches, calibration={"broken": broken, "minmax": calibration}, **kwargs)
    assert result.calibration.method == "per-site"
    assert result.calibration.sites[(1, "ffn_in")] == calibration.sites[(1, "ffn_in")]
    assert result.static_calibration.counts()["minmax"] >= 1
    summary = json.loads(json.dumps(result.summary()))
    assert summary["static_calibration"]["site_methods"]["1.ffn_in"] == "minmax"
    assert summary["calibration"] == "per-site" and result.compilations == 1
    # the map names only calibrators `calibrate` runs; the caller's "broken" clips stand alone
    written = result.precision_map
    assert set(written.site_methods().values()) <= {"minmax"} and written.stored_clips()
    assert PrecisionMap.from_json(written.to_json()).stored_clips() == written.stored_clips()
    # one calibration: used as given, nothing picked
    single = search(tiny, batches, calibration=calibration, **kwargs)
    assert single.calibration is calibration and single.static_calibration is None
    assert single.summary()["static_calibration"] is None


def test_guard_selection_ranks_by_the_objectives_cost():
    """Under objective='int8_fraction' the map kept is the one with the most INT8 that passes
    at the wider margin, however slow: the ranking is the objective's (`objective_cost`)."""
    runner = PlantedRunner({
        "greedy+fast": (Kind.GREEDY, 10.0, 0.0, 0.001),  # fast, little INT8
        "greedy+int8": (Kind.GREEDY, 90.0, 0.0, 0.001),  # slow, all INT8
    })
    share = {0: 0.25, 1: 1.0}  # choices hold the entry's index (PlantedRunner.choices_for)
    cost = lambda choices: 1.0 - share[int(choices[0, 0])]  # noqa: E731
    _, outputs, by_latency = guard_selection(runner, _guarded, allowed=0.01)
    assert by_latency.allocation_pick == by_latency.kept == "greedy+fast"
    _, _, by_int8 = guard_selection(runner, _guarded, allowed=0.01, cost=cost)
    assert by_int8.allocation_pick == by_int8.kept == "greedy+int8"
