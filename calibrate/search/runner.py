"""What every phase of the search shares: the moves it takes, the maps it records, and the
`Runner` that evaluates candidate maps on the search data (a map is never run twice)."""

from __future__ import annotations

import dataclasses
import enum
from typing import NamedTuple, Sequence

import numpy as np
from tqdm.auto import tqdm

from calibrate.search.candidates import SwitchableModel
from calibrate.search.latency import LatencyTable, int8_flop_fraction
from calibrate.search.objectives import Objective
from samp_jax.core.precision import SITES, PrecisionMap, SitePrecision

# Latencies are sums of per-site costs whose rounding depends on the order of summation: a
# target within this relative distance of a latency counts as meeting it.
LATENCY_RTOL = 1e-9

Outputs = list[np.ndarray]  # one candidate's outputs, one array per search batch


def meets_latency(latency: float, target_ms: float) -> bool:
    """`latency <= target_ms`, up to `LATENCY_RTOL` of summation rounding."""
    return latency <= target_ms * (1.0 + LATENCY_RTOL)


class Kind(enum.StrEnum):
    """What an `Evaluated` map is; the value is the string reports and JSON write."""

    REFERENCE = "reference"  # the FP32 model
    PRESET = "preset"  # a named preset map
    GREEDY = "greedy"  # a prefix of the ordering the tolerance greedy measured
    CANDIDATE = "candidate"  # a map the knapsack or revert strategy measured
    ATTENTION = "attention"  # the chosen GEMM map with INT8 attention in some layers
    CHOSEN = "chosen"  # the map the search returns


@dataclasses.dataclass
class Evaluated:
    """One map the search measured."""

    name: str
    kind: Kind
    precision_map: PrecisionMap
    metric: float | None
    proxy: float
    latency_ms: float
    int8_fraction: float


class Move(NamedTuple):
    """One site of one layer put at one option: the step the greedies take."""

    layer: int
    site: int  # index into SITES
    option: int  # index into the search options; never 0, the high-precision default


def move_key(move: Move, options: Sequence[SitePrecision]) -> str:
    """'layer.site/option': the key in `SearchResult.sensitivity` and in greedy map names."""
    return f"{move.layer}.{SITES[move.site]}/{options[move.option]}"


@dataclasses.dataclass
class Runner:
    """Evaluates candidate maps on the search data and records what the search measured.

    Attributes:
      switch: the compiled candidate program.
      objective: scores a candidate's outputs (metric, proxy) against FP32.
      table: the latency model that prices a map.
      mode: 'map' or 'vmap', passed to `SwitchableModel.evaluate`.
      chunk: candidates per compiled call.
      bar: progress bar, advanced by one per candidate run; None for none.
      evaluated: every map recorded so far, in order.
      maps_run: candidate maps actually run on the whole search data (a map run before is
        answered from memory, not run again).
      subset_maps_run: candidate maps run on a subset of the batches (each static site's clip
        choice and the single-site sensitivities).
    """

    switch: SwitchableModel
    objective: Objective
    table: LatencyTable
    mode: str = "map"
    chunk: int = 8
    bar: tqdm | None = None
    evaluated: list[Evaluated] = dataclasses.field(default_factory=list)
    maps_run: int = 0
    subset_maps_run: int = 0
    # batches of `run(..., resume=True)` by whether they ran resumed (True) or the full
    # forward (False): `SwitchableModel.resume_pays` decides
    sensitivity_batches: dict[bool, int] = dataclasses.field(
        default_factory=lambda: {True: 0, False: 0})
    # the sensitivity batches the search plans to run from now on (each static clip
    # candidate's, then phase 2's), so that resuming is judged on all of them, not one run's
    planned_sensitivity_batches: int = 0
    _seen: dict[bytes, Outputs] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def options(self) -> tuple[SitePrecision, ...]:
        return self.switch.options

    @property
    def num_layers(self) -> int:
        return self.switch.num_layers

    def run(self, choices: np.ndarray, batches: Sequence[dict] | None = None, *,
            attention: np.ndarray | None = None, resume: bool = False) -> list[Outputs]:
        """Outputs of every candidate of `choices` `[candidates, layers, 4]`, one list per candidate.

        Args:
          choices: option indices of each candidate map.
          batches: the batches to run on; default all of the objective's.
          attention: `[candidates, layers]` attention indices of each candidate
            (`candidates.ATTENTION_BRANCHES`); None: every layer's attention float.
          resume: with `batches`, run each candidate from its first layer off the default
            option (`SwitchableModel.evaluate`'s `resume`; the same outputs) on each batch
            where `SwitchableModel.resume_pays` expects it to save time.
        """
        choices = np.asarray(choices, np.int32)
        attention = np.zeros(choices.shape[:2], np.int32) if attention is None \
            else np.asarray(attention, np.int32)
        if batches is not None:
            self.subset_maps_run += len(choices)
            return self._run(choices, batches, attention, resume=resume)
        # a map with float attention keeps the key it always had
        keys = [c.tobytes() + (a.tobytes() if a.any() else b"") for c, a in zip(choices, attention)]
        fresh = {k: i for i, k in reversed(list(enumerate(keys))) if k not in self._seen}  # first of each
        if fresh:
            rows = sorted(fresh.values())
            for i, out in zip(rows, self._run(choices[rows], self.objective.batches,
                                              attention[rows])):
                self._seen[keys[i]] = out
            self.maps_run += len(rows)
        return [self._seen[k] for k in keys]

    def _run(self, choices: np.ndarray, batches: Sequence[dict],
             attention: np.ndarray | None = None, *, resume: bool = False) -> list[Outputs]:
        attention = None if attention is None or not attention.any() else attention
        per_batch = []
        for index, batch in enumerate(batches):
            # resumed only where this model's timings say it saves time (the same outputs),
            # over the sensitivity batches the search still plans to run
            left = max(self.planned_sensitivity_batches, len(batches) - index)
            resumed = resume and self.mode == "map" and attention is None and \
                self.switch.resume_pays(choices, batches=left, chunk=self.chunk)
            if resume:
                self.sensitivity_batches[resumed] += 1
                self.planned_sensitivity_batches = max(self.planned_sensitivity_batches - 1, 0)
            per_batch.append(self.switch.evaluate(choices, batch, mode=self.mode, chunk=self.chunk,
                                                  attention=attention, resume=resumed))
        if self.bar is not None:
            self.bar.update(len(choices))
        return [[out[c] for out in per_batch] for c in range(len(choices))]

    def record(self, name: str, kind: Kind, choices: np.ndarray, outputs: Outputs, *,
               attention: np.ndarray | None = None) -> Evaluated:
        """Scores one candidate's outputs and appends it to `evaluated` (`attention`: its
        `[layers]` attention indices; None: float)."""
        pmap = self.switch.map_for(choices, attention)
        entry = Evaluated(name, kind, pmap, self.objective.metric(outputs), self.objective.proxy(outputs),
                          self.table.map_ms(pmap),
                          int8_flop_fraction(pmap, self.switch.config, seq_len=self.table.seq))
        self.evaluated.append(entry)
        return entry

    def latency_ms(self, choices: np.ndarray) -> float:
        """Estimated latency of the map of `choices` `[layers, 4]`."""
        return self.table.map_ms(self.switch.map_for(choices))
