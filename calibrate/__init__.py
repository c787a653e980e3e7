"""Calibration, the latency model and the precision-map search, built on the `samp_jax` core.

- `calibrate(model, batches, method)`: static activation scales (observers + calibrators);
  `calibrate_candidates` gives several methods' clips from one observation, for a search
  that picks each site's (`per_site_calibration`); `map_with_calibration` writes each static
  site's calibrator and clip into a precision map, which then rebuilds the model alone.
- `search(model, data, SearchConfig(tolerance=...))`: sensitivity, ordering and a registered
  allocation `Strategy` (or a latency target), all candidates in one compiled program;
  `write_report`.
- `calibrate.search.latency`: per-site latency tables (measured on a GPU, estimated elsewhere).
- The registries the search reads: `register_strategy` (allocation strategies) and
  `register_target` (deployment targets).
"""

from calibrate.calibration.api import (AUTO_METHODS, Calibration, CalibrationError, calibrate,
                                       calibrate_candidates, map_with_calibration,
                                       per_site_calibration)
from calibrate.calibration.calibrators import CALIBRATORS, HistogramStats, get_calibrator
from calibrate.search.latency import (LatencyTable, cached_table, estimate_table, measure_table,
                                      validate_table)
from calibrate.search.objectives import EvaluationObjective, Objective, UnlabelledObjective, task_objective
from calibrate.search.report import write_report
from calibrate.search.config import SearchConfig, validate_tolerance
from calibrate.search.driver import search
from calibrate.search.plan import SearchPlan, plan_search
from calibrate.search.result import SearchResult
from calibrate.search.runner import Evaluated, Kind
from calibrate.search.strategy import STRATEGIES, Strategy, register_strategy
from calibrate.search.targets import TARGETS, DeviceSpec, Target, register_target

__all__ = ["AUTO_METHODS", "CALIBRATORS", "Calibration", "CalibrationError", "DeviceSpec", "EvaluationObjective", "Evaluated",
           "HistogramStats", "Kind", "LatencyTable", "Objective", "STRATEGIES", "SearchConfig", "SearchPlan",
           "SearchResult", "Strategy", "TARGETS", "Target", "UnlabelledObjective", "plan_search", "register_strategy",
           "register_target",
           "cached_table", "calibrate", "calibrate_candidates", "estimate_table", "get_calibrator",
           "map_with_calibration", "measure_table", "search",
           "per_site_calibration", "task_objective", "validate_table", "validate_tolerance",
           "write_report"]
