"""Self-adaptive mixed precision: sensitivity search and accuracy-decay-aware allocation.

1. **Sensitivity.** For every (layer, site) and every quantized option, the map that quantizes
   only that site is scored on the search data: the proxy (KL to FP32, or 1 - cosine) and,
   with labels, the metric drop. All candidates run through one compiled program
   (`calibrate.search.candidates.SwitchableModel`).
2. **Allocation.** (site, option) moves are ordered by proxy per millisecond saved (or per
   INT8 FLOP for `objective="int8_fraction"`), and a registered `Strategy` turns them into a
   map that meets the tolerance (`calibrate.search.strategies`): knapsack (the default: the
   minimum summed harm under a bracketed latency budget), revert, or the greedy, which adds
   moves one by one, re-measuring the *accumulated* map (interactions are not additive), and
   backs a move out when the tolerance would be crossed. Candidates are evaluated `chunk` at
   a time in the same compiled program.
3. **Latency target.** Alternatively, moves are added in the same order until the estimated
   latency is under the target; that map is returned unless a preset that reaches the target
   is closer to FP32 by the proxy (`calibrate.search.latency_target`).

Tolerance semantics: `tolerance_mode="relative"` (default) accepts a map when
`drop <= tolerance * |fp32_metric|`; `"absolute"` when `drop <= tolerance` (metric units). The
drop is measured on the search split against the FP32 model and includes a one-sided 95%
confidence margin: of the paired per-example difference for accuracy, of a paired bootstrap
over sentences for entity F1 (`calibrate.search.objectives`). The allocation's own pick, the fastest
of the maps it measured that passed, is then judged with the margin widened for how many maps it
chose among (`guard_selection`, Bonferroni), and the fastest map that passes there is kept: the
best of many maps that each pass at 95% has usually had luck on the search split. Without
labels the tolerance bounds the proxy instead (no margin, no widening).

The presets bound the work (`stop_early`, on by default): the result is never slower than the
fastest preset that passes (`fastest_passing_preset`), so when that preset is already the
fastest map the options allow, the search ends after the presets; otherwise the allocation only
evaluates maps that could be faster than it (the greedy stops once even every pending move
could not get below it). A map is never run twice (`Runner` keeps its outputs).

The search is built from parts, each a module whose functions run (and are tested) alone:

- `config.SearchConfig`: every setting, validated when made; `plan.plan_search` resolves it for
  a model (target, options, latency table; a latency target checked) before any slow step;
- `session.open_session`: the objective, the calibration (`static_clips.search_calibration`,
  the one place the search calibrates), phase 0 (`static_clips.choose_static_calibration`:
  each static INT8 site's clip from the calibrator whose single-site map harms the model
  least) and the presets (`phases.evaluate_presets`);
- `phases`: single-site sensitivities and their ordering;
- two entry points: `tolerance.search_tolerance` (a registered `strategy.Strategy` allocates,
  then `tolerance.guard_selection`) and `latency_target.search_latency_target`;
- `session.finish`: the `result.SearchResult`.

`search` plans, opens a session and takes the entry point of the config's mode.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping

from calibrate.search.config import SearchConfig, check_tolerance_for_metric
from calibrate.search.latency import LatencyTable
from calibrate.search.latency_target import search_latency_target
from calibrate.search.plan import SearchPlan, has_float_rows, plan_search
from calibrate.search.phases import default_preset_name
from calibrate.search.result import FloatOverflow, SearchResult
from calibrate.search.session import Session, data_metric, open_session
from calibrate.search.tolerance import search_tolerance
from samp_jax.tasks import get_task
from samp_jax.tasks.task import a_kind, check_model, model_tokenizer


def _raw_data(data) -> bool:
    """Whether `data` is rows a task is made from rather than a task, batches or an objective:
    a `datasets.Dataset`, a pandas DataFrame, one dict, or a list of texts or of row dicts."""
    if hasattr(data, "column_names") or hasattr(data, "iloc") or isinstance(data, Mapping):
        return True
    first = data[0] if isinstance(data, (list, tuple)) and data else None
    return isinstance(first, str) or (isinstance(first, Mapping) and "input_ids" not in first)


# The entry point of each `SearchConfig.mode_name`.
ENTRY_POINTS = {"tolerance": search_tolerance, "latency_target": search_latency_target}


def search(model, data, config: SearchConfig | SearchPlan | None = None, *, tokenizer=None,
           calibration=None, latency_table: LatencyTable | None = None, **settings) -> SearchResult:
    """Finds the precision map that meets a tolerance (or a latency target) on search data.

    Args:
      model: the float `EncoderModel`.
      data: a `samp_jax.tasks.Task` (its search split; e.g. from `samp_jax.tasks.load_task` on
        your own file), a registered task name ('snli', 'snli-embed', 'polarity', 'wnut16'), an
        `Objective`, or unlabelled batches (proxy only).
      config: the settings (`SearchConfig`; default: all defaults, `target='auto'` as the CLI),
        or a `SearchPlan` already resolved for this model (`plan_search`).
      tokenizer: the model's tokenizer; needed with a task (default: the one
        `samp_jax.load` attached to the model).
      calibration: needed when an option has static scales (FP8, INT8 static) and `data` is
        not a task: a `Calibration`, or several by method (`calibrate_candidates`), from which
        each static INT8 site takes the clip that harms the model least. With a task and no
        calibration, its calibration split is calibrated as `config.calibration` says.
      latency_table: per-site costs instead of the target's latency model.
      **settings: changes to `config`, e.g. `tolerance=0.02` (`SearchConfig` fields).

    Returns:
      A `SearchResult`. In tolerance mode its `tolerance_met` is False (with a `UserWarning`)
      when not even the all-default map meets the tolerance -- that map is returned anyway --
      and the chosen map is never slower (by the latency model) than the fastest preset that
      meets the tolerance (`chosen_from` names that preset when it was faster).

    Raises:
      ValueError: a bad setting (see `SearchConfig`), an option the target does not offer, or
        a latency target below the fastest map the options allow.
    """
    start = time.perf_counter()
    check_model(model, what="search", float_only=True)
    tokenizer = model_tokenizer(model, tokenizer, what="search")
    if _raw_data(data):
        raise TypeError(f"search: data is {a_kind(data)}; expected a samp_jax.tasks.Task "
                        "(samp_jax.tasks.load_task(your file, a datasets.Dataset or a list of "
                        "dicts, labels=model.labels)), a built-in task name, or a list of "
                        "tokenized batches (dicts of input_ids, attention_mask, token_type_ids)")
    if isinstance(config, SearchPlan):
        if settings or latency_table is not None:
            raise ValueError("a SearchPlan is already resolved: change its config and plan again "
                             "instead of passing settings or a latency_table with it")
        plan = config
    else:
        config = (config or SearchConfig()).replace(**settings)
        plan = None
    if isinstance(data, str):  # a built-in task's name: loaded once, here
        data = get_task(data, seed=(config if plan is None else plan.config).seed)
    # before the plan, which may time the model on this device (minutes)
    check_tolerance_for_metric(config if plan is None else plan.config, data_metric(data))
    if plan is None:
        plan = plan_search(model, config, latency_table)
    session = open_session(model, data, plan, tokenizer=tokenizer, calibration=calibration, start=start)
    overflows = []
    while (overflow := float_overflow(session)) is not None:
        overflows.append(overflow)
        following = session.plan.target.next_float()
        if session.plan.float_pinned or following is None:
            why = ("options name it (leave it out of them to let the search move on)"
                   if session.plan.float_pinned else
                   f"last float option of target {session.plan.target.name!r}")
            warnings.warn(f"{overflow.describe()}; {overflow.float_option} is kept, as the {why}",
                          UserWarning, stacklevel=2)
            break
        given = session.plan.given_table
        if given is not None and not has_float_rows(given, following):
            raise ValueError(f"{overflow.describe()}, and the given latency table prices no site "
                             f"at {following}, the float option to move on to: give a table "
                             f"with {following} rows (the latency_table.json of a search that "
                             f"ran with {following}), or name {overflow.float_option} in the "
                             f"options to keep it")
        warnings.warn(f"{overflow.describe()}: the search runs with {following} sites and "
                      f"{following} between sites instead (name a float option in the options, "
                      f"e.g. {overflow.float_option},int8-dynamic, to keep "
                      f"{overflow.float_option})", UserWarning, stacklevel=2)
        plan = session.plan.with_float(model, following)
        # the FP32 reference and the FP32 model's calibration serve every float option
        session = open_session(model, session.objective, plan, tokenizer=tokenizer,
                               calibration=session.calibrated, start=start)
    session.float_overflows = tuple(overflows)
    return ENTRY_POINTS[plan.config.mode_name](session)


def float_overflow(session: Session) -> FloatOverflow | None:
    """How the all-float map of the session's float option overflows on the search data (its
    rows with NaN or Inf outputs), or None when it gives finite outputs for every row."""
    float_option = session.plan.target.float_option
    outputs = session.preset_outputs[default_preset_name(session.options[0])]
    bad = session.objective.non_finite(outputs)
    return FloatOverflow(float_option, bad, session.objective.rows) if bad else None
