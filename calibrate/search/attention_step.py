"""The attention step of a tolerance search: after the GEMM map is chosen, the layers whose INT8
attention (`attn_scores` and `attn_context`, `samp_jax.models.int8_attention`) the latency table
prices cheaper than float are tried in INT8.

The chosen map with INT8 attention in every such layer is tried first; when it misses the
tolerance, the layers are added one by one in order of the time they save (at most
`ATTENTION_TRIES` of them), each kept when the map with it still passes. Every map is judged
as the allocation's pick is: the guarded drop within the tolerance, with the margin widened for
every map compared (the allocation's, `SelectionGuard.maps_compared`, plus the maps this step
may try) unless the selection margin is off or there is no metric (the proxy is bounded then).

The step is offered only where it can pay: a latency objective, an INT8 option among the
options (a float-only search keeps float attention), a table that prices attention
(`LatencyTable.prices_attention`: a table written before tables priced it does not), a model not
pinned to cuDNN attention, and `SearchConfig.attention == "auto"`. What it did, or why it did
not, is the result's `attention` (`AttentionChoice`), in the summary and the report.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from calibrate.search.candidates import ATTENTION_BRANCHES
from calibrate.search.latency import ATTENTION_FLOAT, ATTENTION_INT8
from calibrate.search.objectives import selection_z
from calibrate.search.result import AttentionChoice, SelectionGuard
from calibrate.search.runner import Kind, Outputs
from calibrate.search.session import Session

# The layer-by-layer fallback tries at most this many maps after the all-together one.
ATTENTION_TRIES = 4
INT8 = ATTENTION_BRANCHES.index(next(b for b in ATTENTION_BRANCHES if b is not None))


def why_not_offered(session: Session) -> str | None:
    """Why the search does not try INT8 attention, or None when it does."""
    config, table = session.config, session.runner.table
    if config.attention == "float":
        return "not offered: attention='float' keeps every layer's attention float"
    if config.objective != "latency":
        return (f"not offered: objective {config.objective!r} ranks maps by their INT8 GEMM "
                "FLOPs; the attention step runs for objective 'latency'")
    if not any(o.precision == "int8" for o in session.options):
        return "not offered: the options have no INT8 precision, so attention stays float too"
    if not table.prices_attention:
        return ("not offered: the latency table prices no attention (a table written before "
                "tables priced it, or built by hand): attention stays float; measure the table "
                "again, or give one with attention_ms, to weigh INT8 attention")
    if not session.runner.switch.attention_switchable:
        return "not offered: the model is pinned to cuDNN attention, which cannot run INT8"
    return None


def attention_step(session: Session, choices: np.ndarray, outputs: Outputs,
                   passes: Callable[[Outputs, float | None], bool],
                   selection: SelectionGuard | None
                   ) -> tuple[np.ndarray, Outputs, AttentionChoice]:
    """INT8 attention on the chosen GEMM map `choices` (its `outputs`), where it is priced
    cheaper and the map still passes.

    Args:
      session: the search (its runner records each map tried as `attention#<n>`).
      choices: the chosen GEMM map's option indices `[layers, 4]`.
      outputs: its outputs.
      passes: `(outputs, z) -> whether the map is within the tolerance` with the margin at
        `z` (None: no widened margin; the plain check).
      selection: how the allocation's pick was judged (its maps compared count), or None.

    Returns:
      `(attention [layers] indices, outputs, AttentionChoice)`: the chosen map's attention
      (all float when nothing was kept) and its outputs.
    """
    runner, table = session.runner, session.runner.table
    none = np.zeros((runner.num_layers,), np.int32)
    priced = {layer: (table.attention(layer, ATTENTION_FLOAT), table.attention(layer, ATTENTION_INT8))
              for layer in range(runner.num_layers)} if table.prices_attention else {}
    why = why_not_offered(session)
    if why is None and not passes(outputs, None):
        why = "not tried: the chosen map misses the tolerance already"
    gains = table.attention_gains() if why is None else {}
    offered = tuple(sorted((layer for layer, gain in gains.items() if gain > 0),
                           key=lambda layer: -gains[layer]))
    if why is None and not offered:
        why = "not offered: the latency table prices INT8 attention no cheaper than float in any layer"
    if why is not None:
        return none, outputs, AttentionChoice(priced=priced, offered=(), int8_layers=(), tried=(),
                                              maps_compared=0, z=None, note=why)
    singles = offered[:ATTENTION_TRIES] if len(offered) > 1 else ()
    planned = 1 + len(singles)
    widened = session.config.selection_margin and session.objective.metric_name is not None
    z = selection_z((selection.maps_compared if selection is not None else 0) + planned) \
        if widened else None
    tried: list[tuple[tuple[int, ...], bool]] = []

    def attempt(layers: tuple[int, ...]) -> Outputs | None:
        attention = none.copy()
        attention[list(layers)] = INT8
        out = runner.run(choices[None], attention=attention[None])[0]
        runner.record(f"attention#{len(tried) + 1}", Kind.ATTENTION, choices, out,
                      attention=attention)
        ok = passes(out, z)
        tried.append((tuple(sorted(layers)), ok))
        return out if ok else None

    kept, kept_outputs = (), outputs
    if (out := attempt(offered)) is not None:
        kept, kept_outputs = offered, out
    else:
        for layer in singles:
            if set((*kept, layer)) == set(offered):  # the all-together map, which missed
                continue
            if (out := attempt((*kept, layer))) is not None:
                kept, kept_outputs = (*kept, layer), out
    attention = none.copy()
    attention[list(kept)] = INT8
    kept = tuple(sorted(kept))
    note = (f"INT8 attention in layers {list(kept)}" if kept else
            "INT8 attention tried and left out: every map with it missed the tolerance")
    return attention, kept_outputs, AttentionChoice(
        priced=priced, offered=tuple(sorted(offered)), int8_layers=kept, tried=tuple(tried),
        maps_compared=len(tried), z=z, note=note)
