"""The allocation strategies as a registry of data: `Strategy(name, description, allocate)`.

A strategy turns the single-site sensitivities into a map that meets the tolerance. It gets an
`AllocationProblem` (the runner that evaluates and records maps, the moves in order, their
sensitivities, the acceptance test and the latency of a map already known to pass) and returns
the option indices `[layers, 4]` of the fastest map it found that passes, with its outputs (or
the all-default map and None when none passed). A strategy should record every map it
measures (`runner.record`, or `recording_evaluate`): the search judges the returned map again
with the margin widened for the number of maps recorded (`tolerance.guard_selection`), and
records the returned map itself when the strategy did not (`tolerance.record_allocation`).

Adding a strategy is one file that registers itself, e.g. in `calibrate/search/strategies/`
(every module there is imported with the search) or in your own code before the search runs::

    register_strategy(Strategy("mine", "what it does, in one line", allocate_mine))

The CLI's `--strategy` choices and help are `samp_jax.app.choices.STRATEGIES`, a copy (its
`--help` loads no JAX) that `tests/samp_jax/app/test_help.py` checks against `STRATEGIES`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from calibrate.search.runner import Kind, Move, Outputs, Runner
from samp_jax.core.registry import check_free, check_kind

Evaluate = Callable[[np.ndarray], list]  # choices [candidates, L, S] -> outputs per candidate
Accept = Callable[[object], bool]
# What an allocation returns: the chosen option indices [layers, 4] and their outputs (None:
# no map passed; the indices are then the all-default map).
Allocation = tuple[np.ndarray, Outputs | None]
# The search objectives (`SearchConfig.objective`), the ones a strategy may allocate for.
OBJECTIVES = ("latency", "int8_fraction")


@dataclasses.dataclass(frozen=True)
class AllocationProblem:
    """What a strategy allocates from.

    Attributes:
      runner: evaluates candidate maps (`run`) and records them (`record`); its `options`,
        `table`, `chunk` and `num_layers` describe the search.
      ordered: the single-site moves, least harm per unit gained first (`order_moves`).
      sensitivity: each move's single-site `{'proxy': ...}` (and `'drop'` with labels).
      acceptable: the test a map's outputs must pass (`calibrate.search.tolerance.acceptance`).
      ceiling_ms: the latency of a map known to pass (the fastest passing preset): only maps
        faster than it are worth evaluating; None: no bound.
    """

    runner: Runner
    ordered: Sequence[Move]
    sensitivity: Mapping[Move, dict]
    acceptable: Callable[[Outputs], bool]
    ceiling_ms: float | None = None


@dataclasses.dataclass(frozen=True)
class Strategy:
    """One allocation strategy.

    Attributes:
      name: the registry key (`SearchConfig.strategy`, `--strategy`).
      description: one line for the CLI help and the docs.
      allocate: `(AllocationProblem) -> (choices [layers, 4], outputs or None)`.
      objectives: the search objectives it can allocate for ('latency', 'int8_fraction').
    """

    name: str
    description: str
    allocate: Callable[[AllocationProblem], Allocation]
    objectives: tuple[str, ...] = ("latency",)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Strategy name={self.name!r}; expected a non-empty str")
        if not callable(self.allocate):
            raise TypeError(f"strategy {self.name!r}: allocate={self.allocate!r} is not callable; "
                            "expected allocate(problem: AllocationProblem) -> (choices, outputs)")
        if isinstance(self.objectives, str) or not set(self.objectives) <= set(OBJECTIVES):
            raise ValueError(f"strategy {self.name!r}: objectives={self.objectives!r}; expected a "
                             f"tuple of names from {OBJECTIVES}")


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy, *, replace: bool = False) -> Strategy:
    """Adds `strategy` to `STRATEGIES`; returns it.

    Raises:
      TypeError: `strategy` is not a `Strategy`.
      ValueError: its name is taken (a built-in's included) and `replace` is False.
    """
    check_kind(strategy, Strategy, "register_strategy")
    check_free(STRATEGIES, strategy.name, f"strategy {strategy.name!r}", replace=replace)
    STRATEGIES[strategy.name] = strategy
    return strategy


def get_strategy(name: str) -> Strategy:
    """The registered strategy `name`.

    Raises:
      ValueError: no strategy of that name is registered.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not one of {sorted(STRATEGIES)}")
    return STRATEGIES[name]


def strategies_for(objective: str) -> list[str]:
    """Names of the registered strategies that allocate for `objective`."""
    return [name for name, s in STRATEGIES.items() if objective in s.objectives]


# ---- helpers for strategies that work on arrays of harm and cost

def map_cost(choices: np.ndarray, cost: np.ndarray) -> float:
    """Summed site cost of a `[L, S]` choice array."""
    return float(np.take_along_axis(cost, choices[..., None], axis=-1).sum())


def harm_and_cost(sensitivity: Mapping, options: Sequence, table, num_layers: int,
                  sites: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """`harm[L, S, O]` from single-site sensitivities (`{Move: {'proxy': ...}}`, a missing
    move: infinite harm) and `cost[L, S, O]` from a latency table."""
    harm = np.full((num_layers, len(sites), len(options)), np.inf)
    harm[..., 0] = 0.0
    for move, entry in sensitivity.items():
        harm[move.layer, move.site, move.option] = max(float(entry["proxy"]), 0.0)
    cost = np.array([[[table.site(site, option) for option in options] for site in sites]
                     for _ in range(num_layers)])
    return harm, cost


def recording_evaluate(runner: Runner, name: str) -> Evaluate:
    """An `Evaluate` that runs candidate maps and records each as `<name>#<n>` (`Kind.CANDIDATE`)."""
    count = [0]

    def evaluate(choices: np.ndarray) -> list[Outputs]:
        outputs = runner.run(choices)
        for c, out in zip(choices, outputs):
            count[0] += 1
            runner.record(f"{name}#{count[0]}", Kind.CANDIDATE, c, out)
        return outputs
    return evaluate


def site_budget_ms(problem: AllocationProblem) -> float | None:
    """`ceiling_ms` in the units of `harm_and_cost`'s costs (they leave out the table's fixed
    part: `other_ms` and the float attention an allocation's maps run, `LatencyTable.fixed_ms`),
    or None without a ceiling."""
    if problem.ceiling_ms is None:
        return None
    return problem.ceiling_ms - problem.runner.table.fixed_ms
