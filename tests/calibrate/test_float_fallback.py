"""The search's float ladder: when the all-float map of a GPU target's float option gives NaN
or Inf on a search row, the search runs again with the next float option (FP16, BF16, FP32),
sites and values between them alike, unless the options name the float option. The overflow
is stubbed here (an objective that counts a row non-finite while the dtype is float16 or
narrower than asked), so the ladder is checked in seconds; tests/faults/test_non_finite_outputs.py
runs a model that really overflows FP16 through the CLI."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from calibrate import search
from calibrate.search.latency import estimate_table
from calibrate.search.objectives import UnlabelledObjective
from calibrate.search.plan import plan_search, table_float
from calibrate.search.config import SearchConfig
from calibrate.search.targets import resolve_target
from samp_jax.core.precision import SitePrecision
from tests.helpers import random_batches


class Overflows(UnlabelledObjective):
    """Every row non-finite while the session's float option is one of `bad` (the `overflows`
    fixture tells it the float option of each session the search opens)."""

    def __init__(self, model, batches, bad: tuple[str, ...]):
        super().__init__(model, batches)
        self.bad, self.float_option = bad, None

    def non_finite(self, outputs) -> int:
        return self.rows if self.float_option in self.bad else 0


@pytest.fixture
def overflows(tiny, monkeypatch):
    """An `Overflows` objective that learns the float option of each session it is run in."""
    from calibrate.search import driver

    objective = Overflows(tiny, random_batches(1, seed=1), bad=())
    opened = driver.open_session

    def open_session(model, data, plan, **kwargs):
        objective.float_option = plan.target.float_option
        return opened(model, data, plan, **kwargs)

    monkeypatch.setattr(driver, "open_session", open_session)
    return objective


def _search(tiny, objective, **settings):
    settings = {"target": "l4", "options": ["int8-dynamic"], "tolerance": 0.05,
                "progress": False} | settings
    return search(tiny, objective, **settings)


def test_a_search_whose_model_overflows_fp16_runs_again_in_bf16(tiny, overflows):
    overflows.bad = ("fp16",)
    with pytest.warns(UserWarning, match=r"the model overflows fp16: with every site and the "
                      r"values between sites in fp16, 8 of 8 search rows give NaN or Inf.*"
                      r"the search runs with bf16 sites and bf16 between sites instead"):
        result = _search(tiny, overflows)
    assert result.options == ("bf16", "int8-dynamic") and result.default_option == "bf16"
    assert result.precision_map.compute_dtype == "bfloat16"
    assert result.plan.dtype == jnp.bfloat16 and result.plan.target.name == "l4"
    assert [(o.float_option, o.non_finite_rows, o.rows) for o in result.float_overflows] == [
        ("fp16", 8, 8)]
    assert [e.name for e in result.evaluated][:2] == ["fp32", "bf16"]  # the presets are BF16's


def test_the_ladder_ends_at_fp32_and_keeps_it(tiny, overflows):
    overflows.bad = ("fp16", "bf16", "fp32")
    with pytest.warns(UserWarning) as caught:
        result = _search(tiny, overflows)
    moves = [str(w.message) for w in caught if "the model overflows" in str(w.message)]
    assert len(moves) == 3 and "runs with bf16" in moves[0] and "runs with fp32" in moves[1]
    assert moves[2].endswith("fp32 is kept, as the last float option of target 'l4'")
    assert [o.float_option for o in result.float_overflows] == ["fp16", "bf16", "fp32"]
    assert result.default_option == "fp32" and result.precision_map.compute_dtype == "float32"


def test_a_float_option_the_options_name_is_kept(tiny, overflows):
    overflows.bad = ("fp16",)
    with pytest.warns(UserWarning, match="fp16 is kept, as the options name it "
                      r"\(leave it out of them to let the search move on\)"):
        result = _search(tiny, overflows, options=["fp16", "int8-dynamic"])
    assert result.default_option == "fp16" and result.precision_map.compute_dtype == "float16"
    assert [o.float_option for o in result.float_overflows] == ["fp16"]
    named = _search(tiny, overflows, options=["bf16", "int8-dynamic"])  # named, and finite
    assert named.default_option == "bf16" and named.float_overflows == ()


def test_a_finite_model_stays_in_fp16(tiny, overflows):
    result = _search(tiny, overflows)
    assert result.default_option == "fp16" and result.float_overflows == ()
    assert result.precision_map.compute_dtype == "float16"


def test_a_given_table_repeats_the_float_option_it_was_made_for(tiny, overflows):
    """A BF16 run's own latency table repeats it (no FP16 rows to start from); a table of FP16
    rows alone cannot price the move to BF16, and the error says both ways out."""
    overflows.bad = ("fp16",)
    with pytest.warns(UserWarning, match="overflows fp16"):
        moved = _search(tiny, overflows)
    repeated = _search(tiny, overflows, latency_table=moved.latency_table)  # no warning needed
    assert repeated.default_option == "bf16" and repeated.float_overflows == ()
    assert repeated.precision_map == moved.precision_map
    fp16_table = estimate_table(tiny.config, 32, 128, spec=resolve_target("l4").spec,
                                precisions=(*resolve_target("l4").allowed(), SitePrecision("fp32")))
    with pytest.raises(ValueError, match=r"8 of 8 search rows give NaN or Inf.*, and the given "
                       r"latency table prices no site at bf16, the float option to move on to: "
                       r"give a table with bf16 rows .* or name fp16 in the options to keep it"):
        _search(tiny, overflows, latency_table=fp16_table)


def test_table_float_reads_which_float_a_table_prices(tiny):
    l4 = resolve_target("l4")
    bf16 = l4.with_float("bf16")
    table = estimate_table(tiny.config, 32, 128, spec=l4.spec,
                           precisions=(*bf16.allowed(), SitePrecision("fp32")))
    assert table_float(table, l4) == "bf16" and table_float(table, bf16) is None
    plan = plan_search(tiny, SearchConfig(target="l4"), table)
    assert plan.target.float_option == "bf16" and not plan.float_pinned
    with pytest.raises(ValueError, match="latency_table: site_ms has no entry 'qkv/fp16'"):
        plan_search(tiny, SearchConfig(target="l4", options=("fp16", "int8-dynamic")), table)


def test_unlabelled_rows_count_only_real_rows(tiny):
    batches = random_batches(1, seed=1)
    batches[0]["attention_mask"][:3] = 0  # three padding rows
    objective = UnlabelledObjective(tiny, batches)
    outputs = [np.array(o) for o in objective.reference]
    assert objective.rows == 5 and objective.non_finite(outputs) == 0
    outputs[0][0] = np.nan  # a padding row: not counted
    outputs[0][4] = np.inf
    assert objective.non_finite(outputs) == 1
