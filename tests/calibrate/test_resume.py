"""Single-site sensitivities run from the move's own layer (`SwitchableModel.evaluate(...,
resume=True)`): the same outputs, bit for bit, as the full forward, in every family, from few
compiled programs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from calibrate.search.candidates import SwitchableModel, resume_layers
from calibrate.search.latency import estimate_table
from calibrate.search.objectives import UnlabelledObjective
from calibrate.search.phases import measure_sensitivity, single_site_moves
from calibrate.search.runner import Runner
from samp_jax import EncoderModel, SentenceEmbedder
from samp_jax.core.precision import SITES
from samp_jax.serving.forward import batch_inputs, jit_forward, merged_call
from tests.helpers import FAMILY_CONFIGS, TINY_CONFIG, family_batches, random_batches

# Each encoder the families run (a start skips the embeddings, so RoBERTa's, XLM-R's,
# ELECTRA's and ERNIE's, which differ from BERT's only there, run BERT's encoder here), three
# layers each, so a start can skip a layer and run one under a cond before the last.
# DeBERTa-v2 also without `share_att_key`: per-layer position projections of its own.
ENCODERS = ("bert", "distilbert", "mpnet", "modernbert", "deberta-v2")
CONFIGS = {name: FAMILY_CONFIGS[name].replace(num_layers=3) for name in ENCODERS}
CONFIGS["deberta-v2-own-projections"] = CONFIGS["deberta-v2"].replace(
    share_att_key=False, pos_att_type=("c2p",))
# `make test-fast` keeps BERT's, ModernBERT's (rotary, local windows) and DeBERTa's (a
# relative table shared by the layers); the others run in `make test`
FAST = ("bert", "modernbert", "deberta-v2")


def randomized(model: EncoderModel, seed: int = 1) -> EncoderModel:
    """`model` with every float parameter jittered: LayerNorms at their initial scale 1 and
    bias 0 compute `x * 1 + 0`, which rounds alike however XLA fuses it, and would hide a
    difference in how the two programs round."""
    graphdef, state = nnx.split(model)
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), len(jax.tree.leaves(state))))
    jitter = lambda x: x + 0.1 * jax.random.normal(next(keys), x.shape, x.dtype) \
        if jnp.issubdtype(x.dtype, jnp.floating) else x  # noqa: E731
    return nnx.merge(graphdef, jax.tree.map(jitter, state))


def single_site_choices(num_layers: int, options) -> np.ndarray:
    moves = single_site_moves(num_layers, options)
    choices = np.zeros((len(moves), num_layers, len(SITES)), np.int32)
    for i, move in enumerate(moves):
        choices[i, move.layer, move.site] = move.option
    return choices


@pytest.mark.parametrize("family", [pytest.param(name, marks=() if name in FAST else pytest.mark.slow)
                                    for name in CONFIGS])
def test_every_single_site_move_resumed_equals_the_full_forward(family):
    # FP32 and a mean-pooling head: XLA:CPU fuses the last LayerNorm into the pooled sum, and
    # rounded it apart when the last layer ran inside a cond
    config = CONFIGS[family]
    rngs = nnx.Rngs(0)
    model = randomized(EncoderModel(config, SentenceEmbedder(), rngs=rngs))
    options = ("fp32", "int8-dynamic")
    switch = SwitchableModel(model, options, dtype=jnp.float32)
    choices = single_site_choices(config.num_layers, options)
    assert set(resume_layers(choices)) == set(range(config.num_layers))
    batch = family_batches(config, 1)[0]
    full = switch.evaluate(choices, batch)
    resumed = switch.evaluate(choices, batch, resume=True)
    assert np.array_equal(resumed, full)
    assert switch.traces == 3  # the candidate program, the capture, the resumed stack


def test_resumed_half_precision_with_static_scales_equals_the_full_forward(tiny, calibration):
    options = ("fp16", "int8-dynamic", "fp8_e4m3", "int8-static")
    switch = SwitchableModel(tiny, options, calibration)
    choices = single_site_choices(3, options)
    for batch in random_batches(2, seed=3):
        assert np.array_equal(switch.evaluate(choices, batch, resume=True, chunk=5),
                              switch.evaluate(choices, batch, chunk=5))
    assert switch.traces == 3


def test_from_layer_continues_the_float_model():
    rngs = nnx.Rngs(2)
    model = randomized(EncoderModel(TINY_CONFIG, SentenceEmbedder(), rngs=rngs))
    batch = random_batches(1)[0]
    graphdef, state = nnx.split(model)
    full = np.asarray(jit_forward(model)(batch))
    inputs = jax.jit(lambda state, *a: merged_call(graphdef, state, *a, method="layer_inputs"))(
        state, *batch_inputs(batch))
    assert inputs.shape == (3, 8, 16, TINY_CONFIG.hidden_size)
    mask = batch["attention_mask"]
    resume = jax.jit(lambda state, h, s: merged_call(graphdef, state, h, mask, s, method="from_layer"))
    for start in range(3):  # one program for every start
        np.testing.assert_array_equal(np.asarray(resume(state, inputs[start], start)), full)
    static = jax.jit(lambda state, h: merged_call(graphdef, state, h, mask, 1, method="from_layer"))
    np.testing.assert_array_equal(np.asarray(static(state, inputs[1])), full)


def test_sensitivity_compiles_two_programs_more_and_none_per_start(tiny, calibration, monkeypatch):
    monkeypatch.setattr(SwitchableModel, "resume_pays", lambda self, choices, **kw: True)
    obj = UnlabelledObjective(tiny, random_batches(3, seed=3))
    options = ("fp16", "int8-dynamic", "int8-static")
    runner = Runner(SwitchableModel(tiny, options, calibration), obj,
                    estimate_table(TINY_CONFIG, 32, 128), chunk=4)
    moves = single_site_moves(3, options)
    sensitivity = measure_sensitivity(runner, moves, batches=2, fp32_metric=None)
    assert runner.switch.traces == 2  # the capture and the resumed stack, for every start layer
    assert runner.sensitivity_batches == {True: 2, False: 0}
    switch = runner.switch
    full = [switch.evaluate(single_site_choices(3, options), b, chunk=4) for b in obj.batches[:2]]
    assert switch.traces == 3
    assert [s["proxy"] for s in sensitivity.values()] == [
        obj.subset(2).proxy([full[0][i], full[1][i]]) for i in range(len(moves))]
    # vmap computes both sides of a cond: the full forward runs, and nothing else compiles
    vmapped = Runner(SwitchableModel(tiny, options, calibration), obj, runner.table,
                     mode="vmap", chunk=4)
    measure_sensitivity(vmapped, moves[:4], batches=1, fp32_metric=None)
    assert vmapped.switch.traces == 1


def test_resuming_is_chosen_by_the_models_own_timings(tiny, calibration):
    """Resumed only where the skipped layers save more than the two programs cost to compile:
    nothing measured, or a compile that outweighs the saving (a GPU's, a tiny model's), keeps
    the full forward; the same outputs either way, so only the time differs."""
    switch = SwitchableModel(tiny, ("fp16", "int8-dynamic"), calibration)
    moves = single_site_choices(3, ("fp16", "int8-dynamic"))  # starts 0, 1, 2: a third skipped
    assert not switch.resume_pays(moves, batches=4, chunk=4)  # nothing timed yet
    # a first call of 10 s (a 9 s compile and a 1 s chunk): the two programs are priced
    # 2 x 9 + 1 = 19 s; each batch saves 3 chunks x 1 s x 1/3 skipped, less a quarter chunk
    # for the capture: 0.75 s
    def timed(seconds):
        fresh = SwitchableModel(tiny, ("fp16", "int8-dynamic"), calibration)
        fresh._call_seconds[("map", 4, False)] = seconds
        return fresh

    slow = timed([10.0] + [1.0] * 5)
    assert slow.resume_pays(moves, batches=40, chunk=4)  # saves 30 s
    # 3 s a run: the savings the full forward forgoes add up until they pass the 19 s
    slow = timed([10.0] + [1.0] * 5)
    assert [slow.resume_pays(moves, batches=4, chunk=4) for _ in range(8)] == [False] * 6 + [True] * 2
    assert slow._forgone_seconds == pytest.approx(18.0)
    switch = timed([1.2] + [1.0] * 5)  # priced 2 x 0.2 + 1 = 1.4 s
    assert not switch.resume_pays(moves, batches=1, chunk=4)  # saves 0.75 s
    assert switch.resume_pays(moves, batches=1, chunk=4)  # 0.75 s more: 1.5 s in all
    cached = timed([0.9] + [1.0] * 5)  # loaded from the cache faster than a chunk runs
    assert not cached.resume_pays(moves, batches=1, chunk=4)  # still priced a chunk: 1 s
    switch._compiled[("resume", 4)] = None  # compiled already: any saving pays
    assert switch.resume_pays(moves, batches=1, chunk=4)
    first_layer = moves[moves.any(axis=2)[:, 0]]  # every move at layer 0: nothing to skip
    assert not switch.resume_pays(first_layer, batches=100, chunk=4)


def test_a_search_on_a_tiny_model_keeps_the_full_forward(tiny, calibration):
    """A tiny model compiles in seconds and runs a chunk in milliseconds: the timings say the
    two more programs do not pay, the first batch (nothing timed yet) included."""
    obj = UnlabelledObjective(tiny, random_batches(3, seed=3))
    options = ("fp16", "int8-dynamic")
    runner = Runner(SwitchableModel(tiny, options, calibration), obj,
                    estimate_table(TINY_CONFIG, 32, 128), chunk=4)
    measure_sensitivity(runner, single_site_moves(3, options), batches=2, fp32_metric=None)
    assert runner.sensitivity_batches == {True: 0, False: 2} and runner.switch.traces == 1


def test_resuming_is_judged_on_every_sensitivity_batch_the_search_plans(tiny, calibration):
    """Phase 0 measures once per candidate calibration and phase 2 once more: a run of one
    batch is judged with the batches still planned after it, which count down."""
    obj = UnlabelledObjective(tiny, random_batches(3, seed=3))
    options = ("fp16", "int8-dynamic")
    runner = Runner(SwitchableModel(tiny, options, calibration), obj,
                    estimate_table(TINY_CONFIG, 32, 128), chunk=4)
    asked = []
    runner.switch.resume_pays = lambda choices, *, batches, chunk: asked.append(batches) or False
    runner.planned_sensitivity_batches = 5
    moves = single_site_moves(3, options)
    for _ in range(3):
        measure_sensitivity(runner, moves, batches=1, fp32_metric=None)
    measure_sensitivity(runner, moves, batches=2, fp32_metric=None)
    assert asked == [5, 4, 3, 2, 1] and runner.planned_sensitivity_batches == 0


def test_a_search_plans_its_sensitivity_batches(tiny, calibration, monkeypatch):
    """Per-site clips from two calibrators on 2 sensitivity batches: 2 x 2 for phase 0 and 2
    for phase 2, planned before the first."""
    from calibrate.search.driver import search
    planned = []
    original = Runner._run

    def spy(self, choices, batches, attention=None, *, resume=False):
        if resume:
            planned.append(self.planned_sensitivity_batches)
        return original(self, choices, batches, attention, resume=resume)
    monkeypatch.setattr(Runner, "_run", spy)
    candidates = {"minmax": calibration, "percentile": calibration}
    search(tiny, random_batches(3, seed=3), tolerance=0.3, target="h100", calibration=candidates,
           options=("fp16", "int8-dynamic", "int8-static"), sensitivity_batches=2)
    assert planned[0] == 6 and planned == sorted(planned, reverse=True)
