"""The phases every search runs, whatever it then allocates for:

- `evaluate_presets`: the FP32 reference and the presets the options allow (`preset_maps`);
- `measure_sensitivity`: every single-site move (`single_site_moves`) on a few batches;
- `order_moves`: positive-gain moves (`move_gains`) by proxy per unit gained;

and what a tolerance search keeps from the presets: the fastest one that passes
(`fastest_passing_preset`), never beaten by a slower allocation (`never_slower_than_presets`).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from calibrate.search.latency import LatencyTable, int8_flop_fraction, site_flops
from calibrate.search.runner import LATENCY_RTOL, Evaluated, Kind, Move, Outputs, Runner
from samp_jax.core.precision import SITES, PrecisionMap, SitePrecision, as_precision
from samp_jax.models.config import EncoderConfig

# Added to a move's proxy before dividing by its gain: moves that measure no harm at all then
# rank by gain (largest first) instead of all tying at zero.
ORDER_EPS = 1e-12
# Preset maps evaluated first (the search never returns a map slower than the fastest of them
# that meets the tolerance), after the all-default map: (name, preset, INT8 activation scheme).
SEARCH_PRESETS = (("quant_ffn_only", "quant_ffn_only", "per_token_dynamic"),
                  ("fully_quant", "fully_quant", "per_token_dynamic"),
                  ("quant_ffn_only_static", "quant_ffn_only", "per_tensor_static"),
                  ("fully_quant_static", "fully_quant", "per_tensor_static"),
                  ("fp8", "fp8", "per_token_dynamic"))


# ---- presets

def default_preset_name(default: SitePrecision) -> str:
    """The name of the all-default map: the option's name ('fp16'), or 'fp32-sites' for FP32
    (so it never reads as the FP32 reference model)."""
    return "fp32-sites" if str(default) == "fp32" else str(default)


def preset_maps(options: Sequence[str | SitePrecision], num_layers: int) -> dict[str, PrecisionMap]:
    """The all-default map, then the `SEARCH_PRESETS` whose every precision is one of `options`
    (attention sites of `quant_ffn_only` at the default option).

    Args:
      options: the precisions a site may take; the first is the default.
      num_layers: layers of the model.

    Returns:
      Preset maps by name, the all-default map (`default_preset_name`) first.
    """
    options = tuple(as_precision(o) for o in options)
    default = options[0]
    maps = {default_preset_name(default): PrecisionMap.from_table({}, num_layers, default=default)}
    for name, preset, activation in SEARCH_PRESETS:
        pmap = PrecisionMap.preset(preset, num_layers, activation=activation,
                                   float_precision=default.precision)
        if all(p in options for _, p in pmap.items()):
            maps[name] = pmap
    return maps


def evaluate_presets(runner: Runner) -> tuple[Evaluated, dict[str, Outputs]]:
    """Phase 1: records the FP32 reference, then runs and records every allowed preset.

    The FP32 reference is the objective's own reference outputs (nothing is run for it).

    Returns:
      The reference entry (its metric is the FP32 metric) and each preset's outputs by name,
      the all-default map first.
    """
    obj = runner.objective
    fp32_map = PrecisionMap.preset("fp32", runner.num_layers)
    reference = Evaluated("fp32", Kind.REFERENCE, fp32_map, obj.metric(obj.reference), 0.0,
                          runner.table.map_ms(fp32_map), 0.0)
    runner.evaluated.append(reference)
    presets = preset_maps(runner.options, runner.num_layers)
    choices = np.stack([runner.switch.choices_for(p) for p in presets.values()])
    outputs = runner.run(choices)
    for name, preset_choices, preset_outputs in zip(presets, choices, outputs):
        runner.record(name, Kind.PRESET, preset_choices, preset_outputs)
    return reference, dict(zip(presets, outputs))


# ---- single-site sensitivities

def single_site_moves(num_layers: int, options: Sequence[str | SitePrecision],
                      objective: str = "latency") -> list[Move]:
    """Every single-site move, by layer, then site, then option.

    Args:
      num_layers: layers of the model.
      options: the precisions a site may take; the first is the default and is no move.
      objective: 'latency' (every quantized option) or 'int8_fraction' (INT8 options only).
    """
    options = tuple(as_precision(o) for o in options)
    return [Move(layer, si, oi) for layer in range(num_layers) for si in range(len(SITES))
            for oi in range(1, len(options))
            if objective == "latency" or options[oi].precision == "int8"]


def measure_sensitivity(runner: Runner, moves: Sequence[Move], *, batches: int | None,
                        fp32_metric: float | None) -> dict[Move, dict[str, float]]:
    """Phase 2: scores each move alone (only its site quantized) on the first `batches` batches.

    Each move may run from its own layer: the layers before it are at the default option, so
    their output is the all-default map's, captured once per batch (`Runner.run`'s `resume`:
    two programs more than the search's, the same sensitivities bit for bit), on the batches
    where the model's own timings say that saves time (`SwitchableModel.resume_pays`).

    Args:
      runner: evaluates the maps; nothing is recorded in `runner.evaluated`.
      moves: the single-site moves.
      batches: how many search batches to use; None for all.
      fp32_metric: the FP32 metric on the whole search data, or None without labels.

    Returns:
      Per move, {'proxy': ...} and, when the batches cover the whole search data (a subset has
      no metric) and there are labels, 'drop': the FP32 metric minus the move's.
    """
    if not moves:
        return {}
    choices = np.zeros((len(moves), runner.num_layers, len(SITES)), np.int32)
    for i, move in enumerate(moves):
        choices[i, move.layer, move.site] = move.option
    subset = runner.objective.subset(batches)
    sensitivity = {}
    # run with explicit batches: never answered from (or stored in) the runner's memory, which
    # holds whole-data outputs under the switch's current static scales
    for move, outputs in zip(moves, runner.run(choices, subset.batches, resume=True)):
        entry = {"proxy": subset.proxy(outputs)}
        metric = subset.metric(outputs)
        if metric is not None and fp32_metric is not None:
            entry["drop"] = fp32_metric - metric
        sensitivity[move] = entry
    return sensitivity


# ---- ordering

def move_gains(moves: Sequence[Move], options: Sequence[SitePrecision], table: LatencyTable,
               config: EncoderConfig, objective: str = "latency") -> dict[Move, float]:
    """What each move gains: milliseconds saved, or INT8 FLOPs for objective='int8_fraction'.

    Args:
      moves: the single-site moves.
      options: the search options (index 0 is the default a move replaces).
      table: per-site costs; the saving is the default's cost minus the move's.
      config: the model config (site FLOPs).
      objective: 'latency' or 'int8_fraction'.
    """
    flops = site_flops(config, 1)
    gains = {}
    for move in moves:
        site = SITES[move.site]
        if objective == "int8_fraction":
            gains[move] = float(flops[site])
        else:
            gains[move] = table.site(site, options[0]) - table.site(site, options[move.option])
    return gains


def order_moves(moves: Sequence[Move], proxy: Mapping[Move, float],
                gain: Mapping[Move, float]) -> list[Move]:
    """Phase 3: least harm per unit gained first.

    Moves that gain nothing (or lose) are dropped; the rest are sorted by
    `(proxy + ORDER_EPS) / gain`, ties keeping the order of `moves`.

    Args:
      moves: the single-site moves.
      proxy: each move's single-site proxy (its harm).
      gain: each move's gain (`move_gains`).
    """
    return sorted((m for m in moves if gain[m] > 0), key=lambda m: (proxy[m] + ORDER_EPS) / gain[m])


# ---- what the presets promise

def objective_cost(runner: Runner, objective: str) -> Callable[[np.ndarray], float]:
    """What the search minimises over maps (`choices`): the estimated latency in ms for
    objective 'latency', the share of matmul FLOPs not in INT8 for 'int8_fraction'."""
    if objective == "int8_fraction":
        return lambda choices: 1.0 - int8_flop_fraction(runner.switch.map_for(choices),
                                                        runner.switch.config,
                                                        seq_len=runner.table.seq)
    return runner.latency_ms


def fastest_passing_preset(runner: Runner, preset_outputs: Mapping[str, Outputs],
                           measure: Callable[[Outputs], float], allowed: float,
                           cost: Callable[[np.ndarray], float] | None = None
                           ) -> tuple[str, np.ndarray, Outputs, float] | None:
    """`(name, choices, outputs, cost)` of the cheapest preset by `cost` (`objective_cost`;
    default: the latency, `Runner.latency_ms`) whose `measure` (the guarded drop, or the proxy)
    is within `allowed`; of presets equally cheap (up to `LATENCY_RTOL`, e.g. INT8 and FP8
    priced alike), the one `measure` finds closest to FP32 (then the first, in `preset_maps`
    order); None when none passes."""
    cost = runner.latency_ms if cost is None else cost
    best = None
    for name, out in preset_outputs.items():
        if not measure(out) <= allowed:  # NaN (e.g. a constant score's Spearman) does not pass
            continue
        preset = runner.switch.choices_for(
            next(e.precision_map for e in runner.evaluated if e.kind == Kind.PRESET and e.name == name))
        ms = cost(preset)
        if (best is None or ms < best[3] * (1.0 - LATENCY_RTOL)
                or (ms <= best[3] * (1.0 + LATENCY_RTOL) and measure(out) < measure(best[2]))):
            best = (name, preset, out, ms)
    return best


def never_slower_than_presets(runner: Runner, choices: np.ndarray, outputs: Outputs | None,
                              passing: tuple[str, np.ndarray, Outputs, float] | None,
                              measure: Callable[[Outputs], float],
                              cost: Callable[[np.ndarray], float] | None = None
                              ) -> tuple[np.ndarray, Outputs | None, str]:
    """The allocation's map, or the fastest preset that passes when that is strictly faster,
    as fast and closer to FP32 by `measure`, or the allocation found no map that passes
    (`outputs` None). "Faster" is by `cost`, the one `passing` was chosen by (default: the
    latency; under objective 'int8_fraction', more matmul FLOPs in INT8).

    The greedy adds moves in sensitivity order and stops at the first that fails, so it can end
    short of a preset that passes as a whole (e.g. all-INT8). Presets were scored first
    (`evaluate_presets`); `passing` is the fastest that passes (`fastest_passing_preset`), or
    None. This keeps the promise that the search returns at least that preset.

    Returns:
      `(choices, outputs, chosen_from)` with `chosen_from` 'greedy' or the preset's name.
    """
    if passing is None:
        return choices, outputs, "greedy"
    name, preset_choices, preset_outputs, preset_ms = passing
    ms = (runner.latency_ms if cost is None else cost)(choices)
    if (outputs is None or preset_ms < ms * (1.0 - LATENCY_RTOL)  # faster beyond rounding
            or (preset_ms <= ms * (1.0 + LATENCY_RTOL) and measure(preset_outputs) < measure(outputs))):
        return preset_choices, preset_outputs, name
    return choices, outputs, "greedy"


def fastest_map(table: LatencyTable, options: Sequence[str | SitePrecision],
                num_layers: int) -> PrecisionMap:
    """The map with every site at its cheapest option (the first of equals) by `table`."""
    options = tuple(as_precision(o) for o in options)
    cells = {(layer, site): min(options, key=lambda o: table.site(site, o))
             for layer in range(num_layers) for site in SITES}
    return PrecisionMap.from_table(cells, num_layers, default=options[0])
