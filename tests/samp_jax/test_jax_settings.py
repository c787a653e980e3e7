"""JAX settings a user's process may already have: jit off (`jax.disable_jit()`,
`JAX_DISABLE_JIT`), NaN debugging (`jax.debug_nans`, `JAX_DEBUG_NANS`) and the transfer guard
(`jax.transfer_guard("disallow")`, `JAX_TRANSFER_GUARD`)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

import calibrate
import samp_jax as sj
from samp_jax.models import save_pretrained
from samp_jax.serving.engine import JitDisabledError
from tests.helpers import tiny_classifier

LABELS = ("neg", "neu", "pos")
WORDS = "good bad fine awful great terrible movie plot actor scene music long short".split()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, minilm_dir):
    """A tiny 3-class classifier saved with MiniLM's tokenizer, and 41 labelled rows (a batch
    of 64 rows holds 23 padding rows the batcher adds)."""
    root = tmp_path_factory.mktemp("jax_settings")
    save_pretrained(tiny_classifier(3), root / "model", tokenizer_dir=minilm_dir, labels=LABELS)
    rng = np.random.default_rng(0)
    rows = [" ".join(rng.choice(WORDS, rng.integers(2, 12))) for _ in range(41)]
    (root / "data.csv").write_text("text,label\n" + "".join(
        f"{text},{LABELS[i % 3]}\n" for i, text in enumerate(rows)))
    return root


@pytest.fixture(scope="module")
def model(folder):
    return sj.load(folder / "model")


@pytest.fixture(scope="module")
def task(folder, model):
    return sj.tasks.load_task(str(folder / "data.csv"), labels=model.labels)


def _evaluate(model, task):
    return sj.evaluate(model, task, tokenizer=model.tokenizer)


def test_jit_off_evaluates_and_calibrates_as_jit_does(model, task):
    """The padding rows the batcher adds to fill a batch are not read as a user's empty row
    (`attention_mask row 40 has no real token ... (drop the row)`) when the model runs eagerly."""
    fp16 = sj.quantize(model, sj.PrecisionMap.preset("fp16", model.config.num_layers))
    batches = task.calibration_batches(model.tokenizer)
    assert any((b["attention_mask"].sum(axis=1) == 0).any() for b in batches)  # padding rows
    jitted = [_evaluate(model, task), _evaluate(fp16, task)]
    with pytest.warns(UserWarning, match="real token"):  # few tokens: an advice
        jitted_clips = calibrate.calibrate(model, batches).sites
    with jax.disable_jit():
        eager = [_evaluate(model, task), _evaluate(fp16, task)]
        with pytest.warns(UserWarning, match="real token"):
            eager_clips = calibrate.calibrate(model, batches).sites
    for a, b in zip(jitted, eager):
        assert a["examples"] == b["examples"]
        assert b["value"] == pytest.approx(a["value"], abs=1e-9)
    assert set(eager_clips) == set(jitted_clips)
    for key, clip in jitted_clips.items():
        assert eager_clips[key].absmax == pytest.approx(clip.absmax, rel=1e-4), key
        assert eager_clips[key].amax == pytest.approx(clip.amax, rel=1e-2), key


def test_a_direct_call_still_refuses_an_empty_row_with_jit_off(model):
    inputs = model.tokenizer(["good movie", "bad plot"])
    inputs["attention_mask"][1] = 0
    with jax.disable_jit(), pytest.raises(ValueError, match="row 1 has no real token"):
        model(**inputs)


@pytest.fixture(scope="module")
def overflowing(model):
    """The model with FP16 outputs past FP16's range (layer 0's FFN input weights x1e7)."""
    big = nnx.clone(model)
    kernel = big.encoder.layers[0].ffn_in.kernel
    kernel.set_value(kernel.get_value() * 1e7)
    return sj.quantize(big, sj.PrecisionMap.preset("fp16", big.config.num_layers))


def test_nan_debugging_names_the_nan_not_a_padding_row(overflowing, task):
    """JAX's eager rerun of the batch that gave NaN reaches the model's host check with the
    batch's padding rows: JAX's own NaN error comes out, not a refusal of the data."""
    assert np.isnan(_evaluate(overflowing, task)["value"])  # default: NaN, reported as such
    with jax.debug_nans(True), pytest.raises(FloatingPointError, match="nan"):
        _evaluate(overflowing, task)


def test_the_engine_flags_non_finite_rows_under_nan_debugging(overflowing):
    engine = sj.compile(overflowing, seq_buckets=[16], batch_size=4)
    with jax.debug_nans(True), jax.debug_infs(True):
        out = engine(["good movie", "bad plot", "fine"])
    assert out.non_finite.all() and (out.labels == -1).all()


def test_the_engine_refuses_jit_off_in_one_line(model):
    engine = sj.compile(model, seq_buckets=[16], batch_size=4)
    with jax.disable_jit():
        with pytest.raises(JitDisabledError, match=r"^samp_jax.compile needs JAX's jit, which is "
                                                   r"off \(JAX_DISABLE_JIT=1 or inside jax"):
            sj.compile(model, seq_buckets=[16], batch_size=4)
        with pytest.raises(JitDisabledError, match="^an Engine call needs JAX's jit"):
            engine(["good movie"])
    assert isinstance(JitDisabledError("x"), sj.SampJaxError)


def test_load_quantize_compile_and_serve_under_a_disallowing_transfer_guard(folder, model):
    texts = ["good movie", "bad plot and awful actor", "fine"]
    reference = sj.compile(model, seq_buckets=[16], batch_size=4)(texts).logits
    with jax.transfer_guard("disallow"):
        loaded = sj.load(folder / "model")
        fp16 = sj.quantize(loaded, sj.PrecisionMap.preset("fp16", loaded.config.num_layers))
        engine = sj.compile(loaded, seq_buckets=[16], batch_size=4)
        np.testing.assert_array_equal(engine(texts).logits, reference)
        assert sj.compile(fp16, seq_buckets=[16], batch_size=4)(texts).labels.shape == (3,)
        with pytest.raises(Exception, match="(?i)disallowed host-to-device"):
            jax.numpy.asarray(np.ones(3)) + 1  # the guard still holds outside samp-jax


def test_jit_off_traces_a_model_call_on_concrete_inputs(model):
    """`jax.eval_shape` with jit off (the search's candidate loop): arrays made inside the trace
    are tracers, which the host check must not read."""
    inputs = model.tokenizer(["good movie", "bad"])  # numpy arrays
    with jax.disable_jit():
        out = jax.eval_shape(lambda scale: model(**inputs) * scale, 1.0)
    assert out.shape == (2, 3)
