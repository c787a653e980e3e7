"""What a `SearchConfig` means for a model, resolved once before any slow step: the device
target, the options a site may take, the dtype between sites, and the latency model; a latency
target is checked against the fastest map that model allows. The only place the search resolves
its target and checks a latency target."""

from __future__ import annotations

import dataclasses

from calibrate.search.config import SearchConfig, check_target_ms
from calibrate.search.latency import (LatencyTable, check_given_table, table_for_target,
                                     validate_table)
from calibrate.search.phases import fastest_map
from calibrate.search.runner import meets_latency
from calibrate.search.targets import FLOAT_DTYPES, OPTION_NAMES, Target, resolve_target
from samp_jax.core.precision import SITES, SitePrecision


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """A config resolved for one model.

    Attributes:
      config: the settings.
      target: the device the map is for.
      options: the precisions a site may take, the target's float default first.
      table: the latency model that prices a map (measured or estimated, `table.source`).
      given_table: the table the caller gave (`plan_search`'s `latency_table`), or None.
    """

    config: SearchConfig
    target: Target
    options: tuple[SitePrecision, ...]
    table: LatencyTable
    given_table: LatencyTable | None = None

    @property
    def dtype(self):
        """The compute dtype between GEMM sites (the target's float option's)."""
        return self.target.dtype

    @property
    def float_pinned(self) -> bool:
        """Whether the config's options name the float option, so the search keeps it even
        when the model overflows it (otherwise it moves on to the target's `next_float`)."""
        return names_float(self.config.options)

    def with_float(self, model, name: str) -> "SearchPlan":
        """This plan with float option `name` (`Target.with_float`): its options and its
        latency table (measured or estimated again, or the given table checked again) for it.

        Raises:
          ValueError: as `plan_search` for the new float option (e.g. a given latency table
            without rows for it).
        """
        return plan_search(model, self.config, self.given_table, float_option=name)


def resolve_options(config: SearchConfig, float_option: str | None = None
                    ) -> tuple[Target, tuple[SitePrecision, ...]]:
    """The config's target, with the float option its options name (`Target.for_options`) or
    `float_option`, and the options it offers, narrowed by `config.options`.

    Raises:
      ValueError: an unknown target, or an option the target does not offer.
    """
    target = resolve_target(config.target).for_options(config.options)
    if float_option is not None:
        target = target.with_float(float_option)
    return target, target.search_options(config.options)


def plan_search(model, config: SearchConfig, latency_table: LatencyTable | None = None, *,
                float_option: str | None = None) -> SearchPlan:
    """Resolves `config` for `model` (`resolve_options`, the latency table) and checks its
    latency target, before any slow step of the search.

    Args:
      model: the float `EncoderModel` (its shape prices the maps; a measured table runs it).
      config: the settings.
      latency_table: per-site costs to use instead of the target's (`table_for_target`), e.g.
        measured on another machine.
      float_option: the float option to plan with instead of the one the config's options
        pick (the search's fallback when the model overflows that one). Without one, a given
        `latency_table` that prices no site at that float option but every site at a later
        one of the target's picks the later one (`table_float`): a search that moved to BF16
        is repeated with its own table.

    Raises:
      ValueError: as `resolve_options`; a `latency_table` that fails `validate_table` (for the
        options and the model's layers); or a latency target below the fastest map the
        options allow.
      LatencyTableMismatch: a `latency_table` made for another architecture
        (`check_given_table`, which also warns when the table records none, or was measured
        on another device).
    """
    if float_option is None and latency_table is not None and not names_float(config.options):
        float_option = table_float(latency_table, resolve_options(config)[0])
    target, options = resolve_options(config, float_option)
    if latency_table is None:
        table = table_for_target(model, target, config.batch, config.seq, options=options,
                                 measure_again=config.measure_again)
    else:
        try:
            table = validate_table(latency_table, options=options,
                                   num_layers=model.config.num_layers)
        except ValueError as e:
            raise ValueError(f"latency_table: {e}") from None
        check_given_table(table, model.config)  # another architecture's costs are refused
    if config.latency_target_ms is not None:
        check_latency_target(config.latency_target_ms, table, options, model.config.num_layers)
    return SearchPlan(config, target, options, table, latency_table)


def names_float(options) -> bool:
    """Whether search `options` (names) name a float option."""
    return options is not None and not isinstance(options, str) and any(
        OPTION_NAMES.get(str(name).strip()) in FLOAT_DTYPES for name in options)


def has_float_rows(table: LatencyTable, float_option: str) -> bool:
    """Whether `table` prices every site at `float_option`."""
    return all(f"{site}/{float_option}" in table.site_ms for site in SITES)


def table_float(table: LatencyTable, target: Target) -> str | None:
    """The float option a given latency table was made for: the target's first float option
    (from its `float_option` on) that the table prices every site at, so the table of a search
    that moved to BF16 repeats it; None when the target's own float option is priced (nothing
    to pick) or none is (`validate_table` then names what is missing)."""
    if has_float_rows(table, target.float_option):
        return None
    return next((f for f in target.float_options if has_float_rows(table, f)), None)


def check_latency_target(target_ms: float, table: LatencyTable, options, num_layers: int) -> None:
    """Raises ValueError when `target_ms` is not a positive finite number (NaN, Inf, 0, a
    negative or a non-number included) or is below the fastest map the options allow
    (estimated by `table`; a target equal to it, up to `LATENCY_RTOL`, is accepted)."""
    check_target_ms(target_ms)
    floor = table.map_ms(fastest_map(table, options, num_layers))  # summed as the search sums
    if not meets_latency(floor, target_ms):
        raise ValueError(f"latency_target_ms={target_ms:.6g} is below the fastest "
                         f"possible map ({floor:.6g} ms estimated, {table.source}); expected a "
                         "target at or above it")
