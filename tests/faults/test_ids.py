"""Faults 5 and 10: model inputs the embedding tables cannot take, and calibration sets too
small to calibrate on.

XLA's gather clamps an out-of-range index to the last row, so the model called directly used
to embed id 10**6, -1 or 2**31-1 as the last vocabulary row and token type 5 as type 1, and
returned zeros for an all-padding row. One check (`samp_jax.models.model.check_ids`) now
refuses them in the direct call (concrete ids), the engine, `calibrate` and `evaluate`; under
jit, `checked(model)` checks them with checkify. A tokenizer whose ids do not fit the model is
refused (`check_fits`). A calibration set of a handful of tokens warns; none is refused.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import checkify

import samp_jax
from calibrate import calibrate
from calibrate.calibration.api import MIN_CALIBRATION_TOKENS, CalibrationError
from samp_jax import EncoderModel, PrecisionMap, SequenceClassifier, quantize
from samp_jax.data.splits import TaskSplits
from samp_jax.models import model as model_module
from samp_jax.models.model import check_ids, checked
from samp_jax.models.tokenizer import Tokenizer, check_fits
from samp_jax.serving import engine as engine_module
from samp_jax.tasks import TASK_TYPES, EncodedSplit, Task, evaluate
from tests.helpers import FAMILY_CONFIGS, GOLDEN, TINY_CONFIG

VOCAB = TINY_CONFIG.vocab_size  # 64
IDS = np.array([[2, 5, 7, 9], [3, 4, 6, 0]], np.int32)
MASK = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.int32)


def _classifier(config):
    rngs = nnx.Rngs(0)
    return EncoderModel(config, SequenceClassifier(config, 3, rngs=rngs), rngs=rngs)


@pytest.fixture(scope="module")
def tiny():
    return _classifier(TINY_CONFIG)


@pytest.fixture(scope="module")
def tiny_quantized(tiny):
    return quantize(tiny, PrecisionMap.preset("fully_quant", TINY_CONFIG.num_layers))


def _with(ids=None, mask=None, types=None, at=(0, 1), value=None, key="input_ids"):
    """The good batch with one entry changed: `(input_ids, attention_mask, token_type_ids)`."""
    arrays = {"input_ids": IDS.copy(), "attention_mask": MASK.copy(),
              "token_type_ids": np.zeros_like(IDS)}
    if value is not None:
        arrays[key][at] = value
    return arrays["input_ids"], arrays["attention_mask"], arrays["token_type_ids"]


# (case id, inputs, message): every way an input can miss the model's tables.
BAD = [
    ("id_1e6", _with(value=10 ** 6), r"input_ids row 0 position 1 is 1000000, outside the model's "
                                     r"range \[0, 64\) \(vocab_size=64"),
    ("id_minus_1", _with(value=-1), r"input_ids row 0 position 1 is -1, outside"),
    ("id_int32_max", _with(value=2 ** 31 - 1), r"input_ids row 0 position 1 is 2147483647, outside"),
    ("id_vocab_size", _with(value=VOCAB, at=(1, 2)), r"input_ids row 1 position 2 is 64, outside"),
    ("token_type_5", _with(value=5, key="token_type_ids"),
     r"token_type_ids row 0 position 1 is 5, outside the model's range \[0, 2\) \(type_vocab_size=2"),
    ("token_type_minus_1", _with(value=-1, key="token_type_ids", at=(1, 0)),
     r"token_type_ids row 1 position 0 is -1, outside"),
    ("mask_2", _with(value=2, key="attention_mask", at=(1, 1)),
     r"attention_mask row 1 position 1 is 2, expected 0 \(padding\) or 1"),
    ("mask_minus_1", _with(value=-1, key="attention_mask", at=(0, 3)),
     r"attention_mask row 0 position 3 is -1, expected 0"),
    ("all_padding_row", (IDS, np.array([[1, 1, 1, 1], [0, 0, 0, 0]]), np.zeros_like(IDS)),
     r"attention_mask row 1 has no real token \(all padding\)"),
]


@pytest.mark.parametrize("inputs, message", [case[1:] for case in BAD], ids=[c[0] for c in BAD])
@pytest.mark.parametrize("entry", ["call", "encode", "quantized", "jax_arrays"])
def test_the_direct_call_refuses_bad_ids(tiny, tiny_quantized, entry, inputs, message):
    if entry == "quantized":
        fn = tiny_quantized
    else:
        fn = tiny.encode if entry == "encode" else tiny
    if entry == "jax_arrays":
        inputs = tuple(jnp.asarray(a) for a in inputs)
    with pytest.raises(ValueError, match=message):
        fn(*inputs)


def test_good_ids_and_padding_positions_are_accepted(tiny):
    """Only real positions are checked: a padded position is never read into a real output."""
    ids = IDS.copy()
    ids[1, 3] = 10 ** 6  # under the mask's 0
    np.testing.assert_array_equal(np.asarray(tiny(ids, MASK)), np.asarray(tiny(IDS, MASK)))


@pytest.mark.parametrize("family", ["roberta", "distilbert", "deberta-v2"])
def test_token_types_are_not_checked_when_the_model_ignores_them(family):
    """type_vocab_size 1 (RoBERTa) or 0 (DistilBERT, DeBERTa-v3, whose tokenizer still sends
    them): token type ids are ignored, not refused."""
    model = EncoderModel(FAMILY_CONFIGS[family], rngs=nnx.Rngs(0))
    types = np.full_like(IDS, 5)
    np.testing.assert_array_equal(np.asarray(model(IDS, MASK, types)),
                                  np.asarray(model(IDS, MASK, np.zeros_like(IDS))))


@pytest.fixture(scope="module")
def checked_tiny(tiny):
    return checked(tiny)


@pytest.mark.parametrize("inputs, message", [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_checkify_mode_refuses_bad_ids_under_jit(checked_tiny, inputs, message):
    with pytest.raises(checkify.JaxRuntimeError, match=message):
        checked_tiny(*inputs)


def test_checkify_mode_matches_the_model_and_composes_with_jit(tiny, checked_tiny):
    np.testing.assert_allclose(np.asarray(checked_tiny(IDS, MASK)), np.asarray(tiny(IDS, MASK)),
                               rtol=1e-6, atol=1e-6)
    # id_checks inside the user's own checkified, jitted function
    graphdef, state = nnx.split(tiny)

    def forward(state, ids, mask):
        model_module.id_checks(tiny.config, ids, mask, jnp.zeros_like(ids))
        return nnx.merge(graphdef, state)(ids, mask)

    error, _ = jax.jit(checkify.checkify(forward))(state, jnp.asarray(_with(value=-1)[0]), MASK)
    with pytest.raises(checkify.JaxRuntimeError, match="input_ids row 0 position 1 is -1"):
        error.throw()


def test_under_plain_jit_ids_are_not_checked_on_the_host(tiny):
    """Documented: tracers cannot be read, so plain jit does not check (use `checked`)."""
    graphdef, state = nnx.split(tiny)
    out = jax.jit(lambda s, i, m: nnx.merge(graphdef, s)(i, m))(state, _with(value=-1)[0], MASK)
    assert out.shape == (2, 3)


def test_one_definition_is_shared():
    assert engine_module.check_ids is check_ids


@pytest.fixture(scope="module")
def golden_model():
    folder = GOLDEN / "families" / "bert" / "seqcls"
    return samp_jax.load(folder), Tokenizer.from_pretrained(folder)


@pytest.mark.parametrize("inputs, message", [case[1:] for case in BAD if case[0] != "id_vocab_size"],
                         ids=[c[0] for c in BAD if c[0] != "id_vocab_size"])
def test_the_engine_uses_the_same_check(golden_model, inputs, message):
    model, _ = golden_model
    engine = _engine(model)
    ids, mask, types = inputs
    message = message.replace(r"\[0, 64\) \(vocab_size=64", r"\[0, 155\) \(vocab_size=155")
    with pytest.raises(ValueError, match=message):
        engine({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})


_ENGINES = {}


def _engine(model):
    if id(model) not in _ENGINES:
        _ENGINES[id(model)] = samp_jax.compile(model, seq_buckets=(8,), batch_size=2,
                                               batch_buckets=(2,))
    return _ENGINES[id(model)]


@pytest.mark.parametrize("model_vocab, fits", [(154, False), (100, False), (155, True), (200, True)])
def test_a_tokenizer_must_fit_the_model(golden_model, model_vocab, fits):
    _, tokenizer = golden_model  # 155 tokens, ids 0..154
    config = TINY_CONFIG.replace(vocab_size=model_vocab)
    if fits:
        check_fits(tokenizer, config, "tests/model")
    else:
        with pytest.raises(ValueError, match=rf"tokenizer/model mismatch for tests/model: the "
                                             rf"tokenizer has 155 tokens with ids up to 154 .*"
                                             rf"vocab_size is {model_vocab}"):
            check_fits(tokenizer, config, "tests/model")


def _batch(ids, mask=None):
    ids = np.asarray(ids, np.int32)
    mask = np.ones_like(ids) if mask is None else np.asarray(mask, np.int32)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@pytest.mark.parametrize("bad, message", [
    (10 ** 6, r"calibration batch 1: input_ids row 0 position 2 is 1000000, outside"),
    (-1, r"calibration batch 1: input_ids row 0 position 2 is -1, outside"),
])
def test_calibration_refuses_out_of_vocabulary_ids(tiny, bad, message):
    batches = [_batch([[1, 2, 3, 4]]), _batch([[1, 2, bad, 4]])]
    with pytest.raises(ValueError, match=message):
        calibrate(tiny, batches, "minmax")


def test_calibration_accepts_batch_padding_rows(tiny):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, (17, 32))
    mask = np.ones_like(ids)
    mask[16] = 0  # a row filling the batch
    cal = calibrate(tiny, [_batch(ids, mask)], "minmax")
    assert cal.tokens == 16 * 32 >= MIN_CALIBRATION_TOKENS


@pytest.mark.parametrize("rows, width", [(1, 1), (4, 25)])
def test_a_tiny_calibration_set_warns(tiny, rows, width):
    tokens = rows * width
    ids = np.random.default_rng(2).integers(1, VOCAB, (rows, width))
    with pytest.warns(UserWarning, match=rf"calibration saw only {tokens} real token\(s\); at "
                                         rf"least {MIN_CALIBRATION_TOKENS} are recommended"):
        cal = calibrate(tiny, [_batch(ids)], "minmax")
    assert cal.tokens == tokens


def test_enough_calibration_tokens_do_not_warn(tiny):
    ids = np.random.default_rng(1).integers(1, VOCAB, (16, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert calibrate(tiny, [_batch(ids)], "minmax").tokens == 512


def test_zero_calibration_tokens_are_refused(tiny):
    with pytest.raises(CalibrationError, match="no real tokens .* expected at least 512"):
        calibrate(tiny, [_batch([[1, 2, 3]], [[0, 0, 0]])], "minmax")


@pytest.mark.parametrize("bad", [10 ** 6, -1])
def test_evaluation_refuses_out_of_vocabulary_ids(tiny, bad):
    task = Task("tiny", TASK_TYPES["text_classification"], ("a", "b", "c"),
                TaskSplits(train=(), dev=(), calibration=(), search=(),
                           test=({"text": "x", "label": 0},)))
    ids = IDS.copy()
    ids[1, 1] = bad
    encoded = EncodedSplit(ids, MASK, np.zeros_like(ids), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=rf"task 'tiny' split 'test': input_ids row 1 position 1 "
                                         rf"is {bad}, outside"):
        evaluate(tiny, task, encoded=encoded)


def test_a_special_token_id_past_the_vocabulary_in_the_post_processor_is_refused(minilm_dir,
                                                                                  tmp_path):
    """tokenizer.json's template naming [CLS] as id 999999: refused when the model loads,
    naming the post-processor, not at the first row as an id out of range."""
    import json
    import shutil
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(minilm_dir / name, tmp_path / name)
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    spec["post_processor"]["special_tokens"]["[CLS]"]["ids"] = [999999]
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    tokenizer = Tokenizer.from_pretrained(tmp_path, max_length=32)
    with pytest.raises(ValueError, match=r"post-processor .* adds id 999999, but the model's "
                                         r"vocab_size is 30522"):
        check_fits(tokenizer, TINY_CONFIG.replace(vocab_size=30522), "tests/model")
    check_fits(Tokenizer.from_pretrained(minilm_dir), TINY_CONFIG.replace(vocab_size=30522))
