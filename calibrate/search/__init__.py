"""The precision-map search, above calibration, built from parts (one module each):

- `config`: `SearchConfig`, every setting, validated when made;
- `targets`, `latency`: device targets and per-site latency tables; `plan`: a config resolved
  for a model (target, options, table; a latency target checked), before any slow step;
- `objectives`: what a map is scored by on the search split;
- `runner`, `candidates`: moves, recorded maps, and the one compiled program that runs them;
- `static_clips`: the calibration the search runs with, and each static site's clip;
- `phases`: presets, single-site sensitivities and their order;
- `strategy` + `strategies/`: the allocation registry and its entries, one file each;
- `session`: what both searches share; `tolerance` and `latency_target`: the two entry points;
- `driver.search`: plan, session, entry point; `result`, `report`: what comes out.
"""
