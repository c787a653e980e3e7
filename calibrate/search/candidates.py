"""One compiled program that evaluates many candidate precision maps.

Every GEMM site of a `SwitchableModel` holds one real `QuantizedGemmSite` per allowed option
(e.g. FP16, INT8 dynamic, FP8) and picks one with a *traced* index, `lax.switch`. A candidate
map is then just an int array `[num_layers, 4]` of option indices, so a single jit-compiled
function evaluates any number of maps without recompiling:

- `mode="map"` (default) runs candidates one after another in a `fori_loop` whose trip count
  is traced; each `lax.switch` executes only the chosen branch, so a candidate costs one
  forward pass and padding a chunk costs nothing.
- `mode="vmap"` evaluates `chunk` candidates at once with `jax.vmap`; `lax.switch` becomes a
  select that computes every branch (more memory and FLOPs, more parallelism on big devices).

Each branch is the very `QuantizedGemmSite` that `samp_jax.quantize` builds, so the quantized
branch is numerically the real quantized path.

`evaluate(..., resume=True)` runs each candidate from its first layer off the default option:
the layers before it run what the all-default map runs, so their output is read from one
capture of the all-default map's layer inputs per call (`resume_layers`). Two more programs
per batch shape (the capture, and the stack from a traced start layer), the same outputs.

Each layer's attention matmuls can be switched too (`ATTENTION_BRANCHES`: float, or INT8 as a
map's `attn_scores` / `attn_context` rules put them): `evaluate(..., attention=[candidates,
num_layers])` picks one per layer with a traced index (`EncoderLayer.attention_choice`). That
program compiles apart, the first time a call asks for INT8 attention, so a search that never
does runs the program it always ran. A model pinned to cuDNN attention cannot run INT8
attention (`attention_switchable` is False).
"""

from __future__ import annotations

import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from samp_jax.ops.dispatch import Activation
from samp_jax.core.precision import (ATTENTION_SITES, SITES, AttentionPrecision, PrecisionMap,
                                     SitePrecision, as_precision)
from samp_jax.ptq.quantized import QuantizedGemmSite, compute_copy
from samp_jax.serving.forward import batch_inputs, merged_call


# A layer's attention as a candidate's `attention` index picks it: 0 float (the compute
# dtype, as a map without attention rules runs it), 1 both matmuls INT8 (dynamic).
ATTENTION_BRANCHES = (None, AttentionPrecision(SitePrecision("int8"), SitePrecision("int8")))


class SwitchableGemmSite(nnx.Module):
    """A GEMM site with one branch per option; `choice` (set while tracing) selects one."""

    choice = None  # a traced int32 scalar, set on a private copy inside the compiled function
    # No `int8_input()`: the branches differ in precision, so the site always takes float input
    # (`samp_jax.ops.handoff` hands it nothing pre-quantized).

    def __init__(self, branches: list[QuantizedGemmSite]):
        self.branches = nnx.List(branches)

    def __call__(self, x: jax.Array, *, activation: Activation = None,
                 residual: jax.Array | None = None) -> jax.Array:
        if self.choice is None:
            raise RuntimeError("SwitchableGemmSite called without a choice")
        fns = [lambda x, r, b=b: b(x, activation=activation, residual=r) for b in self.branches]
        return jax.lax.switch(self.choice, fns, x, residual)

    def dense_weight(self) -> tuple[jax.Array, jax.Array]:
        """The chosen branch's float32 `(kernel, bias)` (`QuantizedGemmSite.dense_weight`)."""
        if self.choice is None:
            raise RuntimeError("SwitchableGemmSite called without a choice")
        return jax.lax.switch(self.choice, [b.dense_weight for b in self.branches])


class SwitchableModel:
    """A float model whose sites can each run any of `options`, chosen per call.

    Args:
      model: the float `EncoderModel` (not modified).
      options: the precisions every site may take, e.g. ('fp16', 'int8-dynamic', 'fp8_e4m3').
        Index 0 is the high-precision reference option.
      calibration: needed when an option uses static scales (also carries smoothing).
      dtype: compute dtype between sites, as in `samp_jax.quantize`.
    """

    def __init__(self, model, options: Sequence[SitePrecision | str], calibration=None, *,
                 dtype=jnp.float16):
        self.options = tuple(as_precision(o) for o in options)
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"options {self.options} repeat a precision")
        sites = calibration.sites if calibration is not None else {}
        needs = [o for o in self.options if o.needs_calibration]
        if needs and not sites:
            raise ValueError(f"options {[str(o) for o in needs]} need calibration")
        self.num_layers = model.config.num_layers
        self.config = model.config
        copy = compute_copy(model, dtype)
        for index, layer in enumerate(copy.encoder.layers):
            for site in SITES:
                source = getattr(layer, site)
                setattr(layer, site, SwitchableGemmSite([
                    QuantizedGemmSite.from_float(source, o, dtype=dtype,
                                                 calibration=sites.get((index, site)))
                    for o in self.options]))
        # INT8 attention runs on XLA only: a model pinned to cuDNN attention cannot switch
        self.attention_switchable = all(layer.attention_impl != "cudnn"
                                        for layer in copy.encoder.layers)
        if self.attention_switchable:
            for layer in copy.encoder.layers:
                layer.attention_branches = ATTENTION_BRANCHES
        self.smoothing = None if calibration is None else calibration.smoothing
        self._module = copy
        self.graphdef, self.state = nnx.split(copy)
        self.traces = 0  # how many times the evaluator was traced (compiled)
        # seconds of each call of the candidate programs, by `_evaluator` key (`resume_pays`)
        self._call_seconds: dict[tuple, list[float]] = {}
        self._forgone_seconds = 0.0  # what the full forward cost more than resuming would have
        self._compiled = {}

    def set_calibration(self, calibration) -> None:
        """Every static branch takes its clip from `calibration`; nothing recompiles.

        For trying several calibrators' clips (`calibrate.calibration.api.calibrate_candidates`)
        on one compiled program: only the branches' `act_scale` changes.

        Raises:
          ValueError: no branch is static, the calibration lacks a site, or it was taken
            with other smoothing (the smoothing is folded into the weights).
        """
        if not any(o.needs_calibration for o in self.options):
            raise ValueError(f"options {[str(o) for o in self.options]} have no static scales")
        if calibration.smoothing != self.smoothing:
            raise ValueError(f"calibration smoothing {calibration.smoothing} differs from the "
                             f"{self.smoothing} this model's weights were smoothed with")
        for index, layer in enumerate(self._module.encoder.layers):
            for site in SITES:
                if (index, site) not in calibration.sites:
                    raise ValueError(f"calibration has no statistics for layer {index} site {site!r}")
                for branch in getattr(layer, site).branches:
                    if branch.act_scale is not None:
                        branch.recalibrate(calibration.sites[(index, site)])
        self.graphdef, self.state = nnx.split(self._module)

    def choices_for(self, pmap: PrecisionMap) -> np.ndarray:
        """The `[num_layers, 4]` option indices of a precision map."""
        out = np.zeros((self.num_layers, len(SITES)), np.int32)
        for (layer, site), p in pmap.items():
            if p not in self.options:
                raise ValueError(f"map puts {layer}.{site} at {p}, not one of the options "
                                 f"{[str(o) for o in self.options]}")
            out[layer, SITES.index(site)] = self.options.index(p)
        return out

    def attention_for(self, pmap: PrecisionMap) -> np.ndarray:
        """The `[num_layers]` attention indices of a precision map (`ATTENTION_BRANCHES`).

        Raises:
          ValueError: a layer's attention is neither unset nor both matmuls INT8."""
        out = np.zeros((self.num_layers,), np.int32)
        for layer in range(self.num_layers):
            pair = pmap.attention(layer)
            if pair not in ATTENTION_BRANCHES and pair.is_set:
                raise ValueError(f"map puts layer {layer}'s attention at {pair}; the candidate "
                                 "program runs it float or both matmuls INT8")
            out[layer] = ATTENTION_BRANCHES.index(pair if pair.is_set else None)
        return out

    def map_for(self, choices: np.ndarray, attention: np.ndarray | None = None) -> PrecisionMap:
        """The precision map of an option-index array and, when given, of the `[num_layers]`
        attention indices (`ATTENTION_BRANCHES`); rules written per layer."""
        table = {(layer, site): self.options[int(choices[layer, i])]
                 for layer in range(self.num_layers) for i, site in enumerate(SITES)}
        if attention is not None:
            for layer in range(self.num_layers):
                pair = ATTENTION_BRANCHES[int(attention[layer])]
                if pair is not None:
                    table.update({(layer, "attn_scores"): pair.scores,
                                  (layer, "attn_context"): pair.context})
        return PrecisionMap.from_table(table, self.num_layers, default=self.options[0])

    def _evaluator(self, mode: str, chunk: int, switch_attention: bool = False):
        key = (mode, chunk, switch_attention)
        if key in self._compiled:
            return self._compiled[key]
        graphdef = self.graphdef

        def one(state, choice, attention, input_ids, attention_mask, token_type_ids):
            return merged_call(graphdef, state, input_ids, attention_mask, token_type_ids,
                               prepare=_selector(choice, attention if switch_attention else None))

        @jax.jit
        def run(state, choices, attention, count, input_ids, attention_mask, token_type_ids):
            self.traces += 1  # Python side effect: runs once per compilation
            fn = lambda c, a: one(state, c, a, input_ids, attention_mask, token_type_ids)  # noqa: E731
            if mode == "vmap":
                return jax.vmap(fn)(choices, attention)
            # A loop with a traced trip count: padding candidates cost nothing, and the
            # program does not depend on how many candidates a call carries.
            shape = jax.eval_shape(fn, choices[0], attention[0])
            outputs = jnp.zeros((choices.shape[0], *shape.shape), shape.dtype)
            return jax.lax.fori_loop(0, count, lambda i, acc: acc.at[i].set(
                fn(choices[i], attention[i])), outputs)

        self._compiled[key] = run
        return run

    def _resumers(self, chunk: int):
        """`(capture, resume)`, the two programs of `evaluate(..., resume=True)`, each compiled
        once per batch shape: `capture(state, choice, *inputs)` gives every layer's input under
        the map `choice` (the all-default map's zeros, traced as in the candidate program);
        `resume(state, choices, starts, count, captured, attention_mask)` runs candidate `i`
        from layer `starts[i]` on `captured[starts[i]]` (`EncoderModel.from_layer`), in a
        `fori_loop` as `mode='map'` does."""
        key = ("resume", chunk)
        if key in self._compiled:
            return self._compiled[key]
        graphdef = self.graphdef

        @jax.jit
        def capture(state, choice, input_ids, attention_mask, token_type_ids):
            self.traces += 1
            return merged_call(graphdef, state, input_ids, attention_mask, token_type_ids,
                               prepare=_selector(choice), method="layer_inputs")

        @jax.jit
        def resume(state, choices, starts, count, captured, attention_mask):
            self.traces += 1
            fn = lambda c, s: merged_call(graphdef, state, captured[s], attention_mask, s,  # noqa: E731
                                          prepare=_selector(c), method="from_layer")
            shape = jax.eval_shape(fn, choices[0], starts[0])
            outputs = jnp.zeros((choices.shape[0], *shape.shape), shape.dtype)
            return jax.lax.fori_loop(0, count, lambda i, acc: acc.at[i].set(
                fn(choices[i], starts[i])), outputs)

        self._compiled[key] = capture, resume
        return capture, resume

    def _evaluate_resumed(self, choices: np.ndarray, batch: dict, chunk: int) -> np.ndarray:
        """`evaluate`'s outputs of `choices` (float attention), each candidate run from its
        `resume_layers` start on the all-default map's layer inputs, captured once here.

        The capture, `[num_layers, batch, seq, hidden]` in the compute dtype (e.g. 12 x 32 x
        128 x 768 FP16: 75 MB), stays on the device and is dropped when this returns."""
        capture, resume = self._resumers(chunk)
        inputs = batch_inputs(batch)
        captured = capture(self.state, np.zeros(choices.shape[1:], np.int32), *inputs)
        starts = resume_layers(choices)
        outputs = []
        for start in range(0, len(choices), chunk):
            part, first = choices[start:start + chunk], starts[start:start + chunk]
            pad = chunk - len(part)
            out = resume(self.state, np.concatenate([part, np.repeat(part[:1], pad, axis=0)]),
                         np.concatenate([first, np.repeat(first[:1], pad)]),
                         np.int32(len(part)), captured, inputs[1])
            outputs.append(np.asarray(out)[:len(part)])
        return np.concatenate(outputs)

    def evaluate(self, choices: np.ndarray, batch: dict[str, np.ndarray], *, mode: str = "map",
                 chunk: int = 8, attention: np.ndarray | None = None,
                 resume: bool = False) -> np.ndarray:
        """Outputs `[num_candidates, ...]` of every candidate on one batch.

        Candidates are evaluated `chunk` at a time (padded with copies of the first), so the
        program compiles once per batch shape whatever the number of candidates. `attention`
        (`[num_candidates, num_layers]` indices into `ATTENTION_BRANCHES`; None: all float)
        runs the program that switches each layer's attention when any candidate has INT8
        attention (it compiles apart, once per batch shape).

        `resume=True` skips, for each candidate, the layers before its first layer off the
        default option (`resume_layers`): the all-default map's layer inputs are captured once
        for the call, and each candidate runs from its own start on them; the outputs are the
        same bit for bit (tests/calibrate/test_resume.py, every family, on XLA:CPU). Worth it when many candidates change only late layers (the
        single-site moves of `phases.measure_sensitivity`). Every family resumes (a layer
        takes nothing but its input from the layers before it; `Encoder.from_layer`); with
        `mode='vmap'` (a cond becomes a select: nothing would be skipped) or INT8 attention
        the full forward runs instead.

        Raises:
          ValueError: choices or attention of the wrong shape or out of range, or INT8
            attention on a model pinned to cuDNN attention.
        """
        if mode not in ("map", "vmap"):
            raise ValueError(f"{mode=} is not one of ('map', 'vmap')")
        choices = np.asarray(choices, np.int32)
        if choices.ndim != 3 or choices.shape[1:] != (self.num_layers, len(SITES)):
            raise ValueError(f"choices must be [candidates, {self.num_layers}, {len(SITES)}], "
                             f"got {choices.shape}")
        if choices.min() < 0 or choices.max() >= len(self.options):
            raise ValueError(f"option indices must lie in [0, {len(self.options)})")
        attention = np.zeros(choices.shape[:2], np.int32) if attention is None \
            else np.asarray(attention, np.int32)
        if attention.shape != choices.shape[:2] or attention.min(initial=0) < 0 or \
                attention.max(initial=0) >= len(ATTENTION_BRANCHES):
            raise ValueError(f"attention must be [candidates, {self.num_layers}] indices below "
                             f"{len(ATTENTION_BRANCHES)}, got {attention.shape}")
        switch_attention = bool(attention.any())
        if switch_attention and not self.attention_switchable:
            raise ValueError(f"INT8 attention ({ATTENTION_SITES}): the model is pinned to cuDNN "
                             "attention, which cannot run it")
        if resume and mode == "map" and not switch_attention:
            return self._evaluate_resumed(choices, batch, chunk)
        run = self._evaluator(mode, chunk, switch_attention)
        seconds = self._call_seconds.setdefault((mode, chunk, switch_attention), [])
        outputs = []
        for start in range(0, len(choices), chunk):
            part = choices[start:start + chunk]
            padded = np.concatenate([part, np.repeat(part[:1], chunk - len(part), axis=0)])
            attn = attention[start:start + chunk]
            attn = np.concatenate([attn, np.repeat(attn[:1], chunk - len(attn), axis=0)])
            began = time.perf_counter()
            out = run(self.state, padded, attn, np.int32(len(part)), *batch_inputs(batch))
            outputs.append(np.asarray(out)[:len(part)])
            seconds.append(time.perf_counter() - began)
        return np.concatenate(outputs)

    def resume_pays(self, choices: np.ndarray, *, batches: int, chunk: int = 8) -> bool:
        """Whether `evaluate(choices, ..., resume=True)` on `batches` more batches (the search
        passes every sensitivity batch it plans: `Runner.planned_sensitivity_batches`) is
        expected to take less time than the full forward, judged on this model's own timings
        of the full candidate program (`mode='map'`, float attention):

        - the layers it skips save `mean(resume_layers(choices)) / num_layers` of each chunk's
          time (the steady chunk time: the median of the calls after the first), less one
          forward per batch for the capture;
        - while the resume programs are not compiled yet, that saving, plus what earlier
          calls saved nothing of by keeping the full forward, must exceed their compilation,
          taken as twice the full program's (its first call less a steady one: compiling, or
          loading from the persistent cache) plus one chunk, so that a new program is never
          counted free. As in renting before buying, the time lost by waiting stays within
          the compilation's (the static clip choice measures once per calibrator, then
          phase 2).

        False until the full program has run twice (nothing measured yet): a search's first
        sensitivity batch runs the full forward and times it. On a CPU a search of a model
        the size of MiniLM resumes; a tiny model, or a GPU that runs a chunk in milliseconds
        and compiles in seconds, keeps the full forward. Either way the outputs are the same.
        """
        seconds = self._call_seconds.get(("map", chunk, False), [])
        if len(seconds) < 2 or len(choices) == 0:
            return False
        steady = float(np.median(seconds[1:]))
        skipped = float(np.mean(resume_layers(choices))) / self.num_layers
        chunks = -(-len(choices) // chunk)
        saving = batches * (chunks * steady * skipped - steady / chunk)
        compiled = ("resume", chunk) in self._compiled
        compile_cost = 0.0 if compiled else 2 * max(seconds[0] - steady, 0.0) + steady
        if saving + self._forgone_seconds > compile_cost:
            return True
        self._forgone_seconds += max(saving, 0.0)
        return False


def resume_layers(choices: np.ndarray) -> np.ndarray:
    """`[candidates]` int32: each candidate's first layer with a site off the default option
    (index 0), where `evaluate(..., resume=True)` starts it; 0 for the all-default map."""
    return np.argmax(np.asarray(choices).any(axis=2), axis=1).astype(np.int32)


def _selector(choice: jax.Array, attention: jax.Array | None = None):
    """The `prepare` hook of `merged_call` that sets each site's `choice` (`[num_layers, 4]`)
    and, when given, each layer's `attention_choice` (`[num_layers]`) on the merged copy."""
    def select(model):
        for layer_index, layer in enumerate(model.encoder.layers):
            for site_index, site in enumerate(SITES):
                getattr(layer, site).choice = choice[layer_index, site_index]
            if attention is not None:
                layer.attention_choice = attention[layer_index]
    return select
