"""Targets decide the options, the dtype between sites and the latency model; the search never
returns a map slower than the fastest preset that passes; the guarded drop's paired margin."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

import samp_jax
from pallas_kernels import devices
from pallas_kernels.int8_matmul import is_hopper

from calibrate.search.candidates import SwitchableModel
from calibrate.search.report import tolerance_table
from calibrate.search.latency import estimate_table, table_for_target, table_name
from calibrate.search.objectives import Z_ONE_SIDED_95, EvaluationObjective, UnlabelledObjective, selection_z
from samp_jax.data.wnut16 import entity_counts, entity_f1
from calibrate.search.driver import search
from calibrate.search.phases import (evaluate_presets, fastest_map, fastest_passing_preset,
                                     never_slower_than_presets, objective_cost, preset_maps,
                                     single_site_moves)
from calibrate.search.runner import Kind, Runner
from calibrate.search.strategies.greedy import tolerance_greedy
from calibrate.search.targets import TARGETS, resolve_target
from samp_jax.core.precision import SITES, PrecisionMap, SitePrecision, as_precision
from samp_jax.serving.timing import device_description
from samp_jax.tasks.metrics import ACCURACY, ENTITY_F1, METRICS, guarded_bootstrap_drop, guarded_difference
from tests.helpers import FAMILY_CONFIGS, TINY_CONFIG, random_batches

FP8 = SitePrecision("fp8_e4m3")


# ------------------------------------------------------------------------------ targets
@pytest.mark.parametrize("name, fp8", [("h100", True), ("l4", True), ("a100", False), ("cpu", False)])
def test_fp8_is_offered_only_where_the_device_has_it(name, fp8):
    target = resolve_target(name)
    assert (FP8 in target.allowed()) is fp8
    assert (FP8 in target.search_options()) is fp8
    if not fp8:
        with pytest.raises(ValueError, match=f"not offered on target '{name}'.*no FP8"):
            target.search_options(["int8-static", "fp8"])


def test_options_narrow_but_keep_the_float_default_first():
    assert resolve_target("a100").search_options(["int8-static"]) == (
        as_precision("fp16"), as_precision("int8-static"))
    assert resolve_target("cpu").search_options(["int8-dynamic", "int8-dynamic"]) == (
        as_precision("fp32"), as_precision("int8-dynamic"))
    assert resolve_target("cpu").dtype == jnp.float32 and resolve_target("h100").dtype == jnp.float16
    with pytest.raises(ValueError, match="'int4' is not one of"):
        resolve_target("h100").search_options(["int4"])
    with pytest.raises(ValueError, match=r"'fp16' is not offered on target 'cpu' \(its float "
                       r"options are \['fp32'\]\)"):
        resolve_target("cpu").search_options(["fp16"])
    with pytest.raises(ValueError, match="its float option here is fp16; name one float option"):
        resolve_target("h100").search_options(["bf16"])  # pick it first: for_options


@pytest.mark.parametrize("name", ["h100", "a100", "l4"])
def test_a_gpu_target_tries_fp16_then_bf16_then_fp32(name):
    """Each float option sets the dtype between sites too; the ladder goes on from the one
    chosen, never back (BF16 overflowing means FP16 would too)."""
    target = resolve_target(name)
    assert (target.float_options, target.float_option, target.dtype) == (
        ("fp16", "bf16", "fp32"), "fp16", jnp.float16)
    bf16 = target.with_float(target.next_float())
    assert (bf16.float_option, bf16.dtype, bf16.next_float()) == ("bf16", jnp.bfloat16, "fp32")
    fp32 = bf16.with_float(bf16.next_float())
    assert (fp32.float_option, fp32.dtype, fp32.next_float()) == ("fp32", jnp.float32, None)
    assert bf16.search_options(["int8-dynamic"]) == (as_precision("bf16"),
                                                      as_precision("int8-dynamic"))
    assert bf16.name == name and bf16.spec == target.spec and bf16.has_fp8 == target.has_fp8
    with pytest.raises(ValueError, match="float option 'fp16' is not offered"):
        bf16.with_float("fp16")
    assert resolve_target("cpu").float_options == ("fp32",)
    assert resolve_target("cpu").next_float() is None


def test_the_options_pick_the_float_option():
    h100 = resolve_target("h100")
    assert h100.for_options(None) is h100 and h100.for_options(["int8-static"]) is h100
    picked = h100.for_options(["int8-dynamic", "bf16"])
    assert (picked.float_option, picked.dtype) == ("bf16", jnp.bfloat16)
    assert picked.search_options(["int8-dynamic", "bf16"]) == (as_precision("bf16"),
                                                                as_precision("int8-dynamic"))
    assert h100.for_options(["fp32", "int8-dynamic"]).dtype == jnp.float32
    with pytest.raises(ValueError, match=r"options \['fp16', 'bf16'\] name 2 float options"):
        h100.for_options(["fp16", "int8-dynamic", "bf16"])
    with pytest.raises(ValueError, match="float option 'bf16' is not offered on target 'cpu'"):
        resolve_target("cpu").for_options(["bf16"])
    with pytest.raises(ValueError, match="'int4' is not one of"):
        h100.for_options(["int4"])


@pytest.mark.parametrize("floats", [(), ("fp16", "fp16"), ("int8",), "fp16"])
def test_a_target_needs_distinct_float_options(floats):
    with pytest.raises(ValueError, match="float_options=.*expected a non-empty tuple"):
        dataclasses.replace(resolve_target("h100"), float_options=floats)


# The target of each device-table architecture (`pallas_kernels.devices`).
TARGET_OF_ARCHITECTURE = {"cpu": "cpu", "hopper": "h100", "ampere": "a100", "ada": "l4"}


def test_auto_is_this_machine_and_unknown_names_are_refused():
    """On whatever machine runs the suite: 'auto' is the target of this device's architecture,
    and it is the only current one (a CPU machine gets 'cpu'; an H200 gets 'h100')."""
    expected = TARGET_OF_ARCHITECTURE[devices.architecture(jax.devices()[0].device_kind)]
    assert resolve_target("auto").name == expected
    assert [name for name, target in TARGETS.items() if target.is_current()] == [expected]
    with pytest.raises(ValueError, match="target 'tpu' is not one of"):
        resolve_target("tpu")
    assert set(TARGETS) >= {"h100", "a100", "l4", "cpu"}


@pytest.mark.parametrize("device_kind, target", [
    ("NVIDIA H800", "h100"), ("NVIDIA H200", "h100"), ("NVIDIA GH200 480GB", "h100"),
    ("NVIDIA H100 PCIe", "h100"), ("NVIDIA H20", "h100"), ("NVIDIA H100 80GB HBM3", "h100"),
    ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA A800-SXM4-80GB", "a100"), ("NVIDIA L4", "l4"),
    ("cpu", "cpu")])
def test_every_device_the_kernels_know_has_a_target(device_kind, target):
    """The device table decides both: a device the INT8 kernel treats as Hopper is one the
    'h100' target describes (so `--target auto` works on an H800), with FP8 where it has it."""
    described = [name for name, t in TARGETS.items() if t.describes(device_kind)]
    assert described == [target]
    assert (devices.lookup(device_kind).architecture == "hopper") == is_hopper(device_kind)
    assert TARGETS[target].has_fp8 == devices.lookup(device_kind).has_fp8


def test_a_target_registration_is_checked_and_a_user_target_overrides_auto(monkeypatch):
    from calibrate.search import targets
    from calibrate.search.targets import Target, register_target
    monkeypatch.setattr(targets, "TARGETS", dict(TARGETS))
    with pytest.raises(ValueError, match="target name='auto'; expected a non-empty str other than 'auto'"):
        Target("auto", None, False, ("fp32",), (devices.CPU,))
    with pytest.raises(ValueError, match="float_options=.*int8-dynamic"):
        Target("weird", None, False, ("int8-dynamic",), (devices.CPU,))
    with pytest.raises(TypeError, match="expected a Target, got str"):
        register_target("cpu")
    builtin = resolve_target("auto")
    mine = Target(builtin.name, builtin.spec, builtin.has_fp8, builtin.float_options[-1:],
                  builtin.architectures)
    with pytest.raises(ValueError, match=f"target {builtin.name!r} is already registered; pass replace=True"):
        register_target(mine)
    assert resolve_target(builtin.name) is builtin
    # a target of another name for this device's architecture: the most recent registration wins
    own = register_target(dataclasses.replace(mine, name="mine"))
    assert resolve_target("auto") is own and resolve_target(builtin.name) is builtin
    # replacing the built-in makes it the most recent again
    assert register_target(mine, replace=True) is mine and resolve_target("auto") is mine


def test_an_unknown_device_has_no_target():
    assert devices.lookup("NVIDIA L40S") is None and devices.lookup("Radeon Instinct MI300X") is None
    assert not any(t.describes("NVIDIA L40S") for t in TARGETS.values())
    assert not is_hopper("NVIDIA L40S")


def test_static_int8_is_priced_cheaper_than_dynamic_where_it_saves_a_pass():
    table = estimate_table(TINY_CONFIG, 32, 128, spec=resolve_target("h100").spec)
    static, dynamic = as_precision("int8-static"), as_precision("int8-dynamic")
    for site in ("attn_out", "ffn_out"):  # no LayerNorm before them to fuse the row max into
        assert table.site(site, static) < table.site(site, dynamic)
    for site in ("qkv", "ffn_in"):  # the fused LayerNorm+quantize kernel makes both one pass
        assert table.site(site, static) == table.site(site, dynamic)


def test_a_target_this_machine_is_not_gets_a_labelled_estimate(tiny):
    table = table_for_target(tiny, "a100", 32, 128)
    assert table.source == "estimated" and "A100" in table.device
    assert not any("fp8" in key for key in table.site_ms)


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="a CPU target is measured only on a CPU; it has no spec sheet to estimate from")
@pytest.mark.slow
def test_a_cpu_target_search_uses_a_table_measured_here(tiny, calibration, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMP_JAX_CACHE", str(tmp_path))
    result = search(tiny, random_batches(2, seed=3), tolerance=0.05, target="cpu",
                    calibration=calibration, progress=False, sensitivity_batches=1, seq=16, batch=4)
    # labelled with the processor, not just "cpu": two CPU models time very differently
    assert result.latency_table.source == "measured"
    assert result.latency_table.device == device_description() and "cores" in device_description()
    assert result.options == ("fp32", "int8-dynamic", "int8-static") and result.target == "cpu"
    cached = list((tmp_path / "latency").glob("*cpu*16*float32.json"))  # for the next search
    # a table timed by another jax, another samp-jax or another processor is not reused
    assert len(cached) == 1 and f"jax{jax.__version__}-samp{samp_jax.__version__}" in cached[0].name
    assert "cores" in cached[0].name and "-malloc_system-" in cached[0].name  # host memory as glibc has it
    assert all(p in (as_precision(o) for o in result.options) for _, p in result.precision_map.items())


# ----------------------------------------------------------- never slower than a preset
def _runner(tiny, calibration, options):
    obj = UnlabelledObjective(tiny, random_batches(1))
    return Runner(SwitchableModel(tiny, options, calibration), obj,
                  estimate_table(TINY_CONFIG, 32, 128, spec=resolve_target("h100").spec))


def _passes(predicate):
    """A measure within allowed=0.5 exactly for the outputs `predicate` accepts."""
    return lambda out: 0.0 if predicate(out) else 1.0


def test_the_fastest_passing_preset_wins_when_the_greedy_found_nothing_faster(tiny, calibration):
    options = resolve_target("h100").search_options(["int8-dynamic", "int8-static"])
    runner = _runner(tiny, calibration, options)
    _, outputs = evaluate_presets(runner)
    nothing = np.zeros((3, len(SITES)), np.int32)
    latency = {n: runner.table.map_ms(p) for n, p in preset_maps(options, 3).items()}
    # planted: these two pass, the rest (all-static INT8, the fastest) do not
    passing = {"quant_ffn_only_static", "fully_quant"}
    assert latency["quant_ffn_only_static"] < latency["fp16"] < latency["fully_quant"]
    accept = lambda out: any(out is outputs[n] for n in passing)  # noqa: E731
    measure = _passes(accept)
    choices, chosen_outputs, name = never_slower_than_presets(
        runner, nothing, outputs["fp16"], fastest_passing_preset(runner, outputs, measure, 0.5), measure)
    assert name == "quant_ffn_only_static"
    # a passing preset slower than the greedy's map is not taken
    measure = _passes(lambda out: out is outputs["fully_quant"])
    _, _, kept = never_slower_than_presets(runner, nothing, outputs["fp16"], fastest_passing_preset(
        runner, outputs, measure, 0.5), measure)
    assert kept == "greedy"
    # ... unless the allocation found no map that passes (no outputs): then the passing preset
    measure = _passes(lambda out: out is outputs["fully_quant"])
    _, none_passed, name_none = never_slower_than_presets(runner, nothing, None, fastest_passing_preset(
        runner, outputs, measure, 0.5), measure)
    assert name_none == "fully_quant" and none_passed is outputs["fully_quant"]
    assert chosen_outputs is outputs[name]
    assert runner.switch.map_for(choices) == preset_maps(options, 3)[name]
    # everything passes: the fastest preset of all (static INT8 everywhere) is returned
    choices, _, name = never_slower_than_presets(
        runner, nothing, outputs["fp16"], fastest_passing_preset(runner, outputs, lambda out: 0.0, 0.5),
        lambda out: 0.0)
    assert name == min(latency, key=latency.get) == "fully_quant_static"


def test_a_greedy_map_faster_than_every_passing_preset_is_kept(tiny, calibration):
    options = resolve_target("h100").search_options(["int8-dynamic", "int8-static"])
    runner = _runner(tiny, calibration, options)
    _, outputs = evaluate_presets(runner)
    fastest = runner.switch.choices_for(preset_maps(options, 3)["fully_quant_static"])
    greedy_outputs = outputs["fully_quant_static"]
    choices, out, name = never_slower_than_presets(
        runner, fastest, greedy_outputs, fastest_passing_preset(runner, outputs, lambda o: 0.0, 0.5),
        lambda o: 0.0)
    assert name == "greedy" and out is greedy_outputs and (choices == fastest).all()


def test_under_the_int8_fraction_objective_a_faster_preset_with_less_int8_does_not_win(
        tiny, calibration):
    """objective='int8_fraction' promises the most GEMM FLOPs in INT8 within tolerance: a
    passing float preset, however fast, does not replace an allocation's map with more INT8,
    and of the presets the one with the most INT8 is the floor."""
    options = resolve_target("h100").search_options(["int8-dynamic", "int8-static"])
    runner = _runner(tiny, calibration, options)
    _, outputs = evaluate_presets(runner)
    maps = preset_maps(options, 3)
    ffn_only = runner.switch.choices_for(maps["quant_ffn_only"])  # half INT8, the allocation's
    measure = _passes(lambda out: any(out is outputs[n] for n in (
        "fp16", "quant_ffn_only_static", "quant_ffn_only")))
    cost = objective_cost(runner, "int8_fraction")
    assert cost(runner.switch.choices_for(maps["fp16"])) == 1.0 > cost(ffn_only) > 0.0
    passing = fastest_passing_preset(runner, outputs, measure, 0.5, cost)
    assert passing[0] == "quant_ffn_only"  # more INT8 than fp16 (the first of two equal)
    _, _, name = never_slower_than_presets(runner, ffn_only, outputs["quant_ffn_only"],
                                           passing, measure, cost)
    assert name == "greedy"  # as much INT8, and the preset is not closer to FP32
    only_fp16 = fastest_passing_preset(runner, outputs, _passes(lambda out: out is outputs["fp16"]),
                                       0.5, cost)
    _, _, name = never_slower_than_presets(runner, ffn_only, outputs["quant_ffn_only"], only_fp16,
                                           measure, cost)
    assert name == "greedy"
    # where INT8 is the slower (a small model on a CPU), the latency objective takes fp16
    runner.latency_ms = lambda choices: 2.0 - cost(choices)  # noqa: E731
    by_latency = fastest_passing_preset(runner, outputs, _passes(lambda out: out is outputs["fp16"]), 0.5)
    assert never_slower_than_presets(runner, ffn_only, outputs["quant_ffn_only"], by_latency,
                                     measure)[2] == "fp16"
    assert never_slower_than_presets(runner, ffn_only, outputs["quant_ffn_only"], only_fp16,
                                     measure, cost)[2] == "greedy"


def test_of_equally_fast_maps_the_one_closer_to_fp32_is_chosen(tiny, calibration):
    """On H100 the spec prices INT8 and FP8 GEMMs alike, so all-static INT8 and all-FP8 are
    equally fast: the one with the smaller drop is the preset floor, and it replaces an
    allocation's map as fast but further from FP32 (the chosen map stays on the front)."""
    options = resolve_target("h100").search_options(["int8-static", "fp8"])
    runner = _runner(tiny, calibration, options)
    _, outputs = evaluate_presets(runner)
    latency = {n: runner.table.map_ms(p) for n, p in preset_maps(options, 3).items()}
    assert latency["fp8"] == pytest.approx(latency["fully_quant_static"], rel=1e-9)
    for closer, further in (("fp8", "fully_quant_static"), ("fully_quant_static", "fp8")):
        measure = lambda out, c=closer: 0.1 if out is outputs[c] else 0.2  # noqa: E731
        passing = fastest_passing_preset(runner, outputs, measure, 0.5)
        assert passing[0] == closer
        tied = runner.switch.choices_for(preset_maps(options, 3)[further])
        _, out, name = never_slower_than_presets(runner, tied, outputs[further], passing, measure)
        assert name == closer and out is outputs[closer]


def test_search_returns_at_least_the_fastest_passing_preset(tiny, calibration):
    """End to end: with a tolerance every map meets, the result is as fast as the fastest
    preset (here all-INT8 static), whatever order the greedy took its moves in."""
    table = estimate_table(TINY_CONFIG, 32, 128, spec=resolve_target("h100").spec)
    result = search(tiny, random_batches(2, seed=3), tolerance=0.45, target="h100",
                    options=["int8-dynamic", "int8-static"], calibration=calibration,
                    latency_table=table, progress=False, sensitivity_batches=1)
    presets = [e for e in result.evaluated if e.kind == Kind.PRESET]
    assert result.chosen.latency_ms <= min(e.latency_ms for e in presets) * (1 + 1e-9)
    assert all(p.precision == "int8" for _, p in result.precision_map.items())  # attention: float


@pytest.mark.slow
def test_search_stops_after_the_presets_when_the_fastest_passing_one_is_the_fastest_map(tiny, calibration):
    """All-static INT8 is the fastest map the options allow: when it passes, sensitivities
    and allocation cannot find anything faster, and are skipped."""
    table = estimate_table(TINY_CONFIG, 32, 128, spec=resolve_target("h100").spec)
    kwargs = dict(tolerance=0.45, target="h100", options=["int8-dynamic", "int8-static"],
                  calibration=calibration, latency_table=table, progress=False, sensitivity_batches=1)
    early = search(tiny, random_batches(2, seed=3), **kwargs)
    presets = [e for e in early.evaluated if e.kind == Kind.PRESET]
    assert early.stopped_early and "fully_quant_static" in early.stopped_early
    assert early.chosen_from == "fully_quant_static" and early.sensitivity == {}
    assert early.strategy == "knapsack"  # the default allocation
    assert early.maps_run == len(presets)  # nothing but the presets ran
    full = search(tiny, random_batches(2, seed=3), stop_early=False, **kwargs)
    assert full.stopped_early is None and full.maps_run > early.maps_run and full.sensitivity
    # the single-site sensitivity maps run on a subset, counted apart (one per measured move)
    assert early.subset_maps_run == 0 and full.subset_maps_run == len(full.sensitivity)
    assert full.summary()["subset_maps_run"] == full.subset_maps_run
    assert early.chosen.latency_ms <= full.chosen.latency_ms * (1 + 1e-9)
    # a tolerance all-static misses: no early stop
    static = next(e.proxy for e in presets if e.name == "fully_quant_static")
    strict = search(tiny, random_batches(2, seed=3), **{**kwargs, "tolerance": static / 2})
    assert strict.stopped_early is None and strict.maps_run > early.maps_run


def test_the_int8_fraction_objective_defaults_to_the_greedy(tiny, calibration):
    table = estimate_table(TINY_CONFIG, 32, 128, spec=resolve_target("h100").spec)
    result = search(tiny, random_batches(1, seed=3), tolerance=0.45, target="h100",
                    options=["int8-dynamic"], calibration=calibration, latency_table=table,
                    progress=False, sensitivity_batches=1, objective="int8_fraction")
    assert result.strategy == "greedy"


def test_the_greedy_stops_once_it_cannot_beat_a_passing_preset(tiny, calibration):
    options = resolve_target("h100").search_options(["int8-dynamic", "int8-static"])
    runner = _runner(tiny, calibration, options)
    moves = single_site_moves(3, options)
    fastest = runner.table.map_ms(fastest_map(runner.table, options, 3))
    # a passing map as fast as the fastest possible: nothing is worth running
    choices, outputs = tolerance_greedy(runner, moves, lambda out: True, ceiling_ms=fastest)
    assert runner.maps_run == 0 and outputs is None and not choices.any()
    # no bound, or one the moves can beat: the greedy runs and accepts
    choices, outputs = tolerance_greedy(runner, moves, lambda out: True, ceiling_ms=fastest * 1.5)
    assert runner.maps_run > 0 and choices.any()


class PlantedDrop(UnlabelledObjective):
    """A labelled objective on the tiny model: accuracy is 1 - proxy; the guarded drop is
    `proxy * (1 + 1.645)`, plus `widened` at any z wider than the plain 95%."""

    metric_name = "accuracy"

    def __init__(self, model, batches, widened: float):
        super().__init__(model, batches)
        self.widened = widened

    def metric(self, outputs):
        return 1.0 - self.proxy(outputs)

    def guarded_drop(self, outputs, base, *, z=Z_ONE_SIDED_95):
        return self.proxy(outputs) * (1.0 + Z_ONE_SIDED_95) + (self.widened if z > Z_ONE_SIDED_95 else 0.0)


# The tiny model's proxies are about 1.5e-11: at this tolerance the all-dynamic INT8 preset
# passes, all-static fails, and greedy and revert each find a faster map that passes.
PLANTED_TOLERANCE = 4.0e-11


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["greedy", "revert"])
def test_the_search_returns_the_allocation_pick_only_when_it_passes_the_selection_margin(
        tiny, calibration, strategy):
    kwargs = dict(tolerance=PLANTED_TOLERANCE, target="h100", options=["int8-dynamic", "int8-static"],
                  calibration=calibration, progress=False, sensitivity_batches=1, strategy=strategy,
                  latency_table=estimate_table(TINY_CONFIG, 32, 128, spec=resolve_target("h100").spec))
    batches = random_batches(2, seed=3)
    unguarded = search(tiny, PlantedDrop(tiny, batches, 0.0), selection_margin=False, **kwargs)
    assert unguarded.selection is None and unguarded.chosen_from == strategy
    # the widened margin changes nothing: the pick is kept
    same = search(tiny, PlantedDrop(tiny, batches, 0.0), **kwargs)
    allocation = {e.name for e in same.evaluated if e.kind in (Kind.GREEDY, Kind.CANDIDATE)}
    guard = same.selection
    assert guard.maps_compared == len(allocation) > 1 and guard.z == selection_z(len(allocation))
    assert guard.allocation_pick in allocation and guard.kept == guard.allocation_pick
    assert same.precision_map == unguarded.precision_map and same.summary()["selection"]["stepped_back"] is False
    picked = next(e for e in same.evaluated if e.name == guard.allocation_pick)
    assert picked.precision_map == unguarded.precision_map
    # the checks behind "within tolerance": drop = 1 - accuracy, margin = 1.645 × drop, and
    # the allowed drop is the tolerance times the FP32 accuracy (1)
    assert [c.map_name for c in same.tolerance_checks][-1] == "chosen"
    for check in same.tolerance_checks:
        entry = next(e for e in same.evaluated if e.name == check.map_name)
        assert check.drop == pytest.approx(entry.proxy, rel=1e-6)
        assert check.margin == pytest.approx(Z_ONE_SIDED_95 * entry.proxy, rel=1e-6)
        assert check.allowed == pytest.approx(PLANTED_TOLERANCE)
        assert check.passes is (check.bounded <= PLANTED_TOLERANCE)
    assert same.tolerance_checks[-1].passes and same.tolerance_met
    assert {c.map_name: c.passes for c in same.tolerance_checks}["fully_quant_static"] is False
    # the pick's check is the one it was judged by: at the widened margin (the presets' at 95%)
    assert same.tolerance_checks[-1].z == guard.z
    assert all(c.z is None for c in same.tolerance_checks[:-1])
    widened = search(tiny, PlantedDrop(tiny, batches, 1e-13), **kwargs)
    chosen = widened.tolerance_checks[-1]
    assert widened.chosen_from == strategy and chosen.z == widened.selection.z
    assert chosen.bounded == pytest.approx(chosen.drop * (1 + Z_ONE_SIDED_95) + 1e-13, rel=1e-6)
    assert "(z " in tolerance_table(widened) and "was judged there" in tolerance_table(widened)
    # every map fails at the widened margin: the fastest passing preset is returned instead
    stepped = search(tiny, PlantedDrop(tiny, batches, 1.0), **kwargs)
    assert stepped.selection.allocation_pick == guard.allocation_pick
    assert stepped.selection.kept is None and stepped.selection.stepped_back
    assert stepped.chosen_from == "fully_quant" and stepped.tolerance_met
    assert stepped.precision_map == preset_maps(stepped.options, 3)["fully_quant"]
    assert stepped.chosen.latency_ms > unguarded.chosen.latency_ms


# ------------------------------------------------------------------------ guarded drop
def test_guarded_difference_is_the_paired_mean_plus_bonett_prices_adjusted_margin():
    base = np.array([1, 1, 1, 1, 0])
    candidate = np.array([1, 0, 1, 1, 0])
    # diff = [0, 1, 0, 0, 0]: mean 0.2. Bonett and Price count one more drop and one more gain
    # among n + 2 = 7: p_drop = 2/7, p_gain = 1/7, variance (3/7 - (1/7)^2) = 20/49, standard
    # error sqrt(20/49 / 7) = 0.2414726; z = 1.645 (one-sided 95%)
    assert guarded_difference(base, candidate) == pytest.approx(0.2 + 1.645 * 0.2414726, abs=1e-6)
    # a wider margin (as for the pick of many maps) scales the same standard error
    assert guarded_difference(base, candidate, z=3.0) == pytest.approx(0.2 + 3.0 * 0.2414726, abs=1e-6)
    # no example changed: the margin stays, sqrt(2/7 / 7) standard errors, not zero
    assert guarded_difference(base, base) == pytest.approx(1.645 * np.sqrt(2) / 7, abs=1e-9)
    assert guarded_difference(base, base, z=0.0) == 0.0


def test_guarded_difference_keeps_its_95_percent_when_few_rows_change():
    """A map whose true drop is 5% past the allowed one, each changed row a right answer
    turned wrong: the chance that it passes, summed exactly over the binomial number of
    changed rows, stays within 5% at every size. The plain standard error (zero when no row
    changed) accepted it 15% of the time at 200 rows and 9% at 1,000."""
    from scipy.stats import binom
    allowed = 0.009  # 1% of an FP32 accuracy of 0.9
    for n in (200, 400, 1000, 2000, 5000):
        flips = np.arange(0, int(0.05 * n))  # past 5% of the rows the drop fails at any n here
        passes = np.array([guarded_difference(np.ones(n), np.r_[np.zeros(k), np.ones(n - k)])
                           <= allowed for k in flips])
        accepted = binom.pmf(flips, n, 1.05 * allowed)[passes].sum()
        assert accepted <= 0.05, (n, accepted)
    # and a map that changes no row passes once the split is large enough for the tolerance
    assert guarded_difference(np.ones(300), np.ones(300)) <= allowed


def test_guarded_drop_of_an_accuracy_objective_uses_the_paired_margin():
    class Correctness:  # the evaluation's per-example correctness is the outputs themselves
        task_metric = ACCURACY

        def evidence(self, outputs):
            return np.concatenate(outputs)

        def non_finite(self, outputs):
            return 0

    objective = EvaluationObjective.__new__(EvaluationObjective)
    objective.evaluation = Correctness()
    base = [np.array([1, 1, 1]), np.array([1, 0])]
    candidate = [np.array([1, 0, 1]), np.array([1, 0])]
    # diff = [0, 1, 0, 0, 0] again, split over two batches
    assert objective.guarded_drop(candidate, base) == pytest.approx(0.2 + 1.645 * 0.2414726, abs=1e-6)
    assert objective.guarded_drop(candidate, base, z=3.0) == pytest.approx(0.2 + 3.0 * 0.2414726, abs=1e-6)
    # the margin makes it stricter than the plain drop of 0.2
    assert objective.guarded_drop(candidate, base) > 0.2


def test_entity_f1_guarded_drop_is_the_f1_drop_plus_the_paired_bootstrap_margin():
    # per sentence (gold, predicted, correct): base finds everything, the candidate misses
    # the entities of sentence 0
    base = np.array([[2, 2, 2], [1, 1, 1], [0, 0, 0], [3, 3, 3]])
    candidate = np.array([[2, 2, 0], [1, 1, 1], [0, 0, 0], [3, 3, 3]])
    drop = 1.0 - 2 * 4 / 12  # F1 1 -> 2*4/(6+6)
    # the bootstrap runs over the sentences and two pseudo-sentences, one entity the candidate
    # lost and one it found (Bonett and Price's adjustment): the same resamples, by hand, each a
    # count vector w over the 6 rows, F1 = 2 w.c / (w.g + w.p)
    pseudo_base, pseudo_candidate = np.array([[1, 1, 1], [1, 1, 0]]), np.array([[1, 1, 0], [1, 1, 1]])
    rng = np.random.default_rng(0)
    weights = np.stack([np.bincount(rng.integers(0, 6, 6), minlength=6) for _ in range(1000)])
    f1 = lambda counts: np.where((t := weights @ counts[:, 0] + weights @ counts[:, 1]) > 0,  # noqa: E731
                                 2 * (weights @ counts[:, 2]) / np.maximum(t, 1e-12), 0.0)
    margin = 1.645 * np.std(f1(np.r_[base, pseudo_base]) - f1(np.r_[candidate, pseudo_candidate]),
                            ddof=1)
    assert margin > 0.05
    assert ENTITY_F1.guarded_drop(base, candidate) == pytest.approx(drop + margin, rel=1e-12)
    assert ENTITY_F1.guarded_drop(base, candidate, z=3.29) == pytest.approx(drop + 2 * margin, rel=1e-12)
    # identical predictions: no drop, but a margin from the pseudo-sentences alone
    unchanged = 1.645 * np.std(f1(np.r_[base, pseudo_base]) - f1(np.r_[base, pseudo_candidate]), ddof=1)
    assert unchanged > 0.05
    assert ENTITY_F1.guarded_drop(base, base) == pytest.approx(unchanged, rel=1e-12)
    assert ENTITY_F1.guarded_drop(base[:1], candidate[:1]) == pytest.approx(1.0)  # one sentence
    with pytest.raises(ValueError, match=r"base \(4, 3\), candidate \(4, 2\)"):
        ENTITY_F1.guarded_drop(base, candidate[:, :2])


def test_the_bootstrap_margin_keeps_its_level_when_few_sentences_change():
    """Sentences with a few entities each; the candidate loses one found entity in a
    sentence with the probability that makes its true F1 drop 5% past the allowed one (1% of
    the F1). Over 300 search splits of 200 sentences it passes in under 4% of them (about 1%
    expected, tools/margin_coverage.py); a plain bootstrap, whose margin vanishes when no
    sentence changed, passes it in about 9%."""
    rng = np.random.default_rng(5)

    def sentences(n):
        gold = rng.poisson(1.5, n)
        correct = rng.binomial(gold, 0.7)
        return np.stack([gold, correct + rng.poisson(0.4, n), correct], 1).astype(np.float64)

    population = sentences(400_000)
    f1 = 2 * population[:, 2].sum() / population[:, :2].sum()
    allowed = 0.01 * f1
    slope = (population[:, 2] >= 1).mean() * 2 / population[:, :2].sum(1).mean()
    accepted, draws, n = 0, 300, 200
    for _ in range(draws):
        base = sentences(n)
        candidate = base.copy()
        hit = (base[:, 2] >= 1) & (rng.random(n) < 1.05 * allowed / slope)
        candidate[hit, 2] -= 1
        accepted += ENTITY_F1.guarded_drop(base, candidate) <= allowed
    assert accepted / draws <= 0.04


def test_an_entity_f1_objective_judges_maps_by_the_bootstrap_margin():
    class Counts:  # the evaluation's per-sentence entity counts are the outputs themselves
        task_metric = ENTITY_F1

        def evidence(self, outputs):
            return np.concatenate(outputs)

        def non_finite(self, outputs):
            return 0

    objective = EvaluationObjective.__new__(EvaluationObjective)
    objective.evaluation = Counts()
    base = [np.array([[2, 2, 2], [1, 1, 1]]), np.array([[0, 0, 0], [3, 3, 3]])]
    candidate = [np.array([[2, 2, 0], [1, 1, 1]]), np.array([[0, 0, 0], [3, 3, 3]])]
    expected = ENTITY_F1.guarded_drop(np.concatenate(base), np.concatenate(candidate))
    assert objective.guarded_drop(candidate, base) == pytest.approx(expected)
    assert objective.guarded_drop(candidate, base) > 1.0 - 2 * 4 / 12  # stricter than the drop


def test_guarded_bootstrap_drop_leaves_out_undefined_resamples():
    assert guarded_bootstrap_drop(0.9, 0.8, np.array([0.9, 0.8, np.nan]), np.array([0.8, 0.8, 0.5])) == \
        pytest.approx(0.1 + 1.645 * np.std([0.1, 0.0], ddof=1))
    assert guarded_bootstrap_drop(0.9, 0.8, np.array([0.9, np.nan]), np.array([0.8, 0.5])) == \
        pytest.approx(0.1)  # fewer than two defined resamples: no margin


@pytest.mark.parametrize("metric_name", ["roc_auc", "spearman"])
def test_a_pair_score_objective_judges_maps_by_the_paired_bootstrap_margin(metric_name):
    rng = np.random.default_rng(1)
    n = 40
    gold = rng.integers(0, 2, n) if metric_name == "roc_auc" else rng.standard_normal(n)
    base_scores = gold + rng.standard_normal(n) * 0.5
    candidate_scores = base_scores + rng.standard_normal(n) * 0.5  # a noisier map

    def by_hand(scores, idx, gold=gold):  # the metric of the explicitly resampled examples
        if metric_name == "roc_auc":
            pos, neg = scores[idx][gold[idx] == 1], scores[idx][gold[idx] == 0]
            return ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
        return scipy_stats.spearmanr(scores[idx], gold[idx]).statistic

    class PairScores:  # the evaluation's pair scores are the outputs themselves
        task_metric = METRICS[metric_name]

        def evidence(self, outputs):
            return self.task_metric.evidence(np.concatenate(outputs), gold, None)

        def non_finite(self, outputs):
            return 0

    objective = EvaluationObjective.__new__(EvaluationObjective)
    objective.evaluation = PairScores()
    objective.partial = False
    base, candidate = [base_scores[:25], base_scores[25:]], [candidate_scores[:25], candidate_scores[25:]]
    # the bootstrap runs over the rows and the metric's two pseudo-rows (the base's appended to
    # the base's scores, the candidate's to the candidate's, paired by position): the same 1000
    # seeded resamples of n + 2 rows as the objective draws, as index lists
    base_rows, candidate_rows = METRICS[metric_name].pseudo_rows(
        METRICS[metric_name].evidence(base_scores, gold, None))
    assert (base_rows[:, 1] == candidate_rows[:, 1]).all()
    padded_gold = np.r_[gold, base_rows[:, 1]]
    padded_base, padded_candidate = np.r_[base_scores, base_rows[:, 0]], np.r_[candidate_scores, candidate_rows[:, 0]]
    rng = np.random.default_rng(0)
    resamples = [rng.integers(0, n + 2, n + 2) for _ in range(1000)]

    def drops(candidate_scores):
        return [by_hand(padded_base, i, padded_gold) - by_hand(candidate_scores, i, padded_gold)
                for i in resamples]

    drop = by_hand(base_scores, np.arange(n)) - by_hand(candidate_scores, np.arange(n))  # rows only
    spread = np.std(drops(padded_candidate), ddof=1)
    assert objective.guarded_drop(candidate, base) == pytest.approx(drop + 1.645 * spread, rel=1e-9)
    assert objective.guarded_drop(candidate, base) > drop + 0.01  # stricter than the plain drop
    assert objective.guarded_drop(candidate, base, z=3.29) == pytest.approx(drop + 3.29 * spread,
                                                                             rel=1e-9)
    # a map that moves every score a little and keeps their order keeps the pseudo-rows' margin
    # alone: it does not vanish (FP32's own outputs are 0: nothing changed, nothing to bound)
    nudged = base_scores + 1e-3
    kept_order = objective.guarded_drop([nudged[:25], nudged[25:]], base)
    assert kept_order == pytest.approx(
        1.645 * np.std(drops(np.r_[nudged, candidate_rows[:, 0]]), ddof=1), rel=1e-9)
    assert kept_order > 0.01 and objective.guarded_drop(base, base) == 0.0


def test_entity_counts_sum_to_entity_f1():
    gold = [["B-person", "I-person", "O"], ["O", "B-location"], ["O"]]
    predicted = [["B-person", "I-person", "O"], ["B-location", "O"], ["B-group"]]
    counts = entity_counts(gold, predicted)
    assert counts.tolist() == [[1, 1, 1], [1, 1, 0], [0, 1, 0]]
    f1 = entity_f1(gold, predicted)
    g, p, c = counts.sum(0)
    assert f1["f1"] == pytest.approx(2 * c / (g + p))


def test_default_preset_of_a_cpu_search_is_named_apart_from_the_fp32_reference():
    maps = preset_maps(resolve_target("cpu").search_options(), 2)
    assert next(iter(maps)) == "fp32-sites"
    assert maps["fp32-sites"] == PrecisionMap.preset("fp32", 2)


def test_cached_tables_are_kept_apart_by_family_and_architecture():
    """Two families of one shape spend different time outside the GEMM sites (DeBERTa's
    relative terms, MPNet's bias): a table measured for one must not be reused for the other."""
    cpu = resolve_target("cpu")
    bert, deberta = FAMILY_CONFIGS["bert"], FAMILY_CONFIGS["deberta-v2"]
    names = {table_name(c, cpu, 32, 16) for c in (bert, deberta, deberta.replace(position_buckets=4))}
    assert len(names) == 3
    assert table_name(deberta, cpu, 32, 16) == table_name(deberta.replace(), cpu, 32, 16)
    assert "-deberta-v2-" in table_name(deberta, cpu, 32, 16)


def test_a_preset_whose_measure_is_nan_does_not_pass(tiny, calibration):
    """A NaN drop (a Spearman of constant scores) is not within any tolerance: the fastest
    preset with a NaN measure is passed by, for the fastest one that passes."""
    options = resolve_target("h100").search_options(["int8-dynamic", "int8-static"])
    runner = _runner(tiny, calibration, options)
    _, outputs = evaluate_presets(runner)
    measure = lambda out: float("nan") if out is outputs["fully_quant_static"] else 0.0  # noqa: E731
    passing = fastest_passing_preset(runner, outputs, measure, 0.5)
    assert passing[0] != "fully_quant_static"
    latency = {n: runner.table.map_ms(p) for n, p in preset_maps(options, 3).items()}
    others = {n: ms for n, ms in latency.items() if n != "fully_quant_static"}
    assert passing[3] == pytest.approx(min(others.values()))


def test_outputs_equal_to_the_reference_to_float32_rounding_are_its_own_map():
    """The FP32 map, computed by another program (vmapped, switchable), is the reference: no
    drop and no margin. FP16-size differences are another map: its margin counts, even when
    no row's answer moved."""
    from calibrate.search.objectives import same_computation

    class Scores:  # a row is right when its score is above 0.5
        task_metric = ACCURACY

        def evidence(self, outputs):
            return (np.concatenate(outputs) > 0.5).astype(float)

        def non_finite(self, outputs):
            return 0

    objective = EvaluationObjective.__new__(EvaluationObjective)
    objective.evaluation = Scores()
    base = [np.linspace(0.6, 2.0, 300, dtype=np.float32)]
    rounding = [base[0] * np.float32(1 + 3e-7)]
    half = [base[0] * np.float32(1 + 1e-3)]
    assert same_computation(rounding, base) and not same_computation(half, base)
    assert objective.guarded_drop(rounding, base) == 0.0
    assert objective.guarded_drop(half, base) == pytest.approx(1.645 * np.sqrt(2) / 302, rel=1e-9)
