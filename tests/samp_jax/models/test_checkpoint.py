"""Import of HF checkpoints: golden parity with HF's own outputs, and every bad-input path."""

import json
import os
import shutil
import warnings

import jax
import numpy as np
import pytest
from flax import nnx, serialization
from safetensors.numpy import load_file, save_file

import samp_jax as sj
from samp_jax import CheckpointError, ConfigError, EncoderConfig, Tokenizer, load, load_pretrained
from samp_jax.models import Readout
from samp_jax.models.checkpoint import assign_state_dict, detect_head, read_state_dict, save_pretrained
from tests.helpers import GOLDEN, golden_inputs


# ----------------------------------------------------------------------- golden parity
@pytest.mark.parametrize("name", ["single", "pair"])
def test_minilm_fp32_matches_hf_hidden_states_and_embeddings(minilm, minilm_golden, name):
    ids, mask, types = golden_inputs(minilm_golden, name)
    hidden = np.asarray(minilm.encode(ids, mask, types))
    valid = mask.astype(bool)
    assert np.abs(hidden[valid] - minilm_golden[f"{name}_hidden"][valid]).max() < 1.5e-5  # measured 3.3e-6
    embedding = np.asarray(minilm(ids, mask, types))
    cosine = np.sum(embedding * minilm_golden[f"{name}_embedding"], axis=-1)
    assert np.all(cosine > 1 - 1e-6)  # measured 1 - 1.2e-7


@pytest.mark.parametrize("task", ["tiny_seqcls", "tiny_tokcls"])
@pytest.mark.parametrize("fmt", ["safetensors", "msgpack"])
def test_tiny_heads_match_hf_logits(task, fmt):
    golden = np.load(GOLDEN / task / "golden.npz")
    model = load_pretrained(GOLDEN / task / fmt)
    assert model.head_kind == {"tiny_seqcls": "sequence_classification",
                               "tiny_tokcls": "token_classification"}[task]
    logits = np.asarray(model(golden["input_ids"], golden["attention_mask"], golden["token_type_ids"]))
    expected = golden["logits"]
    assert logits.shape == expected.shape
    if logits.ndim == 3:  # padded positions carry no meaning
        valid = golden["attention_mask"].astype(bool)
        logits, expected = logits[valid], expected[valid]
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_safetensors_and_msgpack_give_identical_weights():
    a, _ = read_state_dict(GOLDEN / "tiny_seqcls" / "safetensors")
    b, source = read_state_dict(GOLDEN / "tiny_seqcls" / "msgpack")
    assert source == "flax_model.msgpack"
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_head_detection(minilm_dir):
    assert detect_head(minilm_dir) == ("sentence_embedding", None)
    assert detect_head(GOLDEN / "tiny_seqcls" / "safetensors") == ("sequence_classification", 3)
    assert detect_head(GOLDEN / "tiny_tokcls" / "msgpack") == ("token_classification", 5)


def test_new_head_on_base_model_needs_consent(minilm_dir):
    with pytest.raises(CheckpointError, match="missing keys.*classifier.weight"):
        load_pretrained(minilm_dir, head="sequence_classification", num_labels=3)
    model = load_pretrained(minilm_dir, head="sequence_classification", num_labels=3,
                            allow_new_head=True)
    # the pooler is in the MiniLM checkpoint and is loaded; only the classifier is new
    state, _ = read_state_dict(minilm_dir)
    np.testing.assert_array_equal(np.asarray(model.head.pooler.kernel[...]),
                                  state["pooler.dense.weight"].T)
    assert model(np.array([[101, 2000, 102]])).shape == (1, 3)


def test_a_head_of_another_width_is_replaced_only_with_consent():
    """As HF's ignore_mismatched_sizes: a 3-label classifier fine-tuned for 5 labels keeps the
    encoder and the pooler, and gets a new classifier, with a warning naming its shapes."""
    folder = GOLDEN / "tiny_seqcls" / "safetensors"
    with pytest.raises(CheckpointError, match=r"classifier.weight.*\(3, .*\(5, "):
        load_pretrained(folder, num_labels=5)
    with pytest.warns(UserWarning, match=r"classifier.weight \(3, 32\) for \(5, 32\).* initialised anew"):
        model = load_pretrained(folder, num_labels=5, allow_new_head=True)
    state, _ = read_state_dict(folder)
    np.testing.assert_array_equal(np.asarray(model.head.pooler.kernel[...]),
                                  state["bert.pooler.dense.weight"].T)
    assert model(np.array([[1, 5, 2]])).shape == (1, 5)


def test_unknown_head_kind(minilm_dir):
    with pytest.raises(ValueError, match="head='regression' is not one of"):
        load_pretrained(minilm_dir, head="regression")


# --------------------------------------------------------------------- bad checkpoints
@pytest.fixture
def tiny_copy(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(GOLDEN / "tiny_seqcls" / "safetensors", folder)
    return folder


def _rewrite(folder, edit):
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")


@pytest.mark.parametrize("problem, message", [
    ("regression", r"problem_type 'regression' with 3 outputs"),
    ("ranking", r"problem_type 'ranking': samp-jax does not know how"),
])
def test_a_head_trained_for_another_problem_type_is_refused(tiny_copy, problem, message):
    """Outputs samp-jax cannot read as they were trained (several regression outputs, an
    unknown problem type) are refused, not misread."""
    config = json.loads((tiny_copy / "config.json").read_text())
    (tiny_copy / "config.json").write_text(json.dumps(config | {"problem_type": problem}))
    with pytest.raises(ConfigError, match=f"config.json: {message}"):
        load_pretrained(tiny_copy)
    new_head = load_pretrained(tiny_copy, allow_new_head=True).head  # to fine-tune
    assert new_head.num_labels == 3 and new_head.problem_type is None
    (tiny_copy / "config.json").write_text(json.dumps(config | {"problem_type": "single_label_classification"}))
    assert load_pretrained(tiny_copy).head.num_labels == 3


def test_a_multi_label_head_loads_reads_labels_and_saves_its_problem_type(tiny_copy, tmp_path):
    config = json.loads((tiny_copy / "config.json").read_text())
    (tiny_copy / "config.json").write_text(json.dumps(config | {"problem_type": "multi_label_classification"}))
    model = load_pretrained(tiny_copy)
    assert model.readout is Readout.LABELS and model.head.problem_type == "multi_label_classification"
    assert load_pretrained(GOLDEN / "tiny_seqcls" / "safetensors").readout is Readout.CLASSES
    saved = save_pretrained(model, tmp_path / "again")
    assert json.loads((saved / "config.json").read_text())["problem_type"] == "multi_label_classification"
    assert load_pretrained(saved).readout is Readout.LABELS
    quantized = sj.quantize(model, sj.PrecisionMap.preset("fully_quant", model.config.num_layers))
    assert sj.QuantizedModel.load(quantized.save(tmp_path / "q")).readout is Readout.LABELS


def test_a_token_head_trained_for_label_sets_is_refused(tmp_path):
    shutil.copytree(GOLDEN / "tiny_tokcls" / "safetensors", tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    (tmp_path / "tok" / "config.json").write_text(
        json.dumps(config | {"problem_type": "multi_label_classification"}))
    with pytest.raises(ConfigError, match="a token_classification head is read one class per token"):
        load_pretrained(tmp_path / "tok")


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no HF config"):
        load_pretrained(tmp_path / "nope")


def test_missing_weights_file(tiny_copy):
    (tiny_copy / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has no weights: looked for model.safetensors"):
        load_pretrained(tiny_copy)


def _stale_msgpack(folder):
    """Writes into `folder` a `flax_model.msgpack` of the tiny classifier with another
    classifier bias: the stale Flax copy an old hub snapshot keeps beside its PyTorch weights."""
    tree = serialization.msgpack_restore((GOLDEN / "tiny_seqcls" / "msgpack" / "flax_model.msgpack").read_bytes())
    params = tree.get("params", tree)
    params["classifier"]["bias"] = np.asarray(params["classifier"]["bias"]) + 5.0
    (folder / "flax_model.msgpack").write_bytes(serialization.msgpack_serialize(tree))
    older = min(p.stat().st_mtime for p in folder.iterdir() if p.suffix in (".bin", ".safetensors"))
    os.utime(folder / "flax_model.msgpack", (older - 3600, older - 3600))  # stale: older


def test_pytorch_weights_are_read_before_flax_ones_as_hf_reads_them(tmp_path):
    """HF's PyTorch classes read pytorch_model.bin and leave flax_model.msgpack alone (without
    from_flax=True); reading the stale Flax copy would give other logits without an error."""
    folder = shutil.copytree(GOLDEN / "tiny_seqcls" / "torch", tmp_path / "both")
    _stale_msgpack(folder)
    golden = np.load(GOLDEN / "tiny_seqcls" / "golden.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # files of one snapshot: read as HF reads them, silently
        model = load_pretrained(folder)
    logits = np.asarray(model(golden["input_ids"], golden["attention_mask"], golden["token_type_ids"]))
    np.testing.assert_allclose(logits, golden["logits"], atol=1e-5)
    # a folder that refuses pickles reads the Flax file, and says why
    with pytest.warns(UserWarning, match=r"reads flax_model.msgpack \(since allow_torch_pickle="
                      r"False refuses pytorch_model.bin, which HF transformers reads\)"):
        _, source = read_state_dict(folder, allow_torch_pickle=False)
    assert source == "flax_model.msgpack"


def test_safetensors_are_read_before_every_other_format(tiny_copy):
    shutil.copy(GOLDEN / "tiny_seqcls" / "torch" / "pytorch_model.bin", tiny_copy)
    read_at = (tiny_copy / "model.safetensors").stat().st_mtime
    os.utime(tiny_copy / "pytorch_model.bin", (read_at, read_at))  # one snapshot's files
    _stale_msgpack(tiny_copy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, source = read_state_dict(tiny_copy)
    assert source == "model.safetensors"


def test_a_weights_file_newer_than_the_one_read_is_named(tiny_copy):
    """A fine-tune saved as pytorch_model.bin into a copy of a snapshot leaves the snapshot's
    model.safetensors, which samp-jax (and HF) read: a file written after the one read is
    likely the one meant."""
    shutil.copy(GOLDEN / "tiny_seqcls" / "torch" / "pytorch_model.bin", tiny_copy)
    _stale_msgpack(tiny_copy)
    read_at = (tiny_copy / "model.safetensors").stat().st_mtime
    os.utime(tiny_copy / "pytorch_model.bin", (read_at + 61, read_at + 61))
    with pytest.warns(UserWarning, match=r"holds weights in more than one format, and "
                      r"pytorch_model.bin is newer than model.safetensors, which samp-jax reads "
                      r"\(as HF transformers' PyTorch classes do\).*remove model.safetensors"):
        _, source = read_state_dict(tiny_copy)
    assert source == "model.safetensors"
    os.utime(tiny_copy / "pytorch_model.bin", (read_at + 59, read_at + 59))  # one download
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_state_dict(tiny_copy)


def test_tensorflow_weights_alone_are_named_as_such(tiny_copy):
    (tiny_copy / "model.safetensors").rename(tiny_copy / "tf_model.h5")
    with pytest.raises(FileNotFoundError, match=r"has TensorFlow weights \(tf_model.h5\) and no "
                       r"weights samp-jax reads .*transformers.BertForSequenceClassification.from_pretrained\("
                       r"'.*ckpt', from_tf=True\).save_pretrained"):
        load_pretrained(tiny_copy)


def test_a_tensorflow_format_safetensors_file_is_named_as_such(tiny_copy):
    state = load_file(tiny_copy / "model.safetensors")
    tf_names = {"bert/" + key.replace(".", "/"): value for key, value in state.items()}
    save_file(tf_names, tiny_copy / "model.safetensors", metadata={"format": "tf"})
    with pytest.raises(CheckpointError, match=r"model.safetensors is a TensorFlow-format "
                       r"safetensors file \(its metadata says format='tf'; keys such as "
                       r"\['bert/bert/"):
        load_pretrained(tiny_copy)


def test_a_torch_pickle_is_refused_when_not_allowed(tiny_copy):
    (tiny_copy / "model.safetensors").rename(tiny_copy / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=r"only PyTorch weights \(pytorch_model.bin\) and "
                                                r"allow_torch_pickle=False"):
        load_pretrained(tiny_copy, allow_torch_pickle=False)


def test_a_safetensors_file_named_pytorch_model_bin_is_not_a_torch_file(tiny_copy):
    (tiny_copy / "model.safetensors").rename(tiny_copy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin is neither a zip archive nor a "
                                              r"legacy torch.save stream"):
        load_pretrained(tiny_copy)


def test_weights_of_another_family_get_a_hint(tiny_copy):
    config = json.loads((tiny_copy / "config.json").read_text())
    (tiny_copy / "config.json").write_text(json.dumps(config | {"model_type": "roberta"}))
    with pytest.raises(CheckpointError, match=r"hint: the weights are named like a bert checkpoint "
                                              r"\('bert.\*'\) but config.json says model_type='roberta'"):
        load_pretrained(tiny_copy)


@pytest.mark.parametrize("prefix, wrapped", [("model.", "lightning_module.model"),
                                              ("module.", "wrapper.module")])
def test_weights_saved_through_a_training_wrapper_get_a_hint(tiny_copy, prefix, wrapped):
    """A PyTorch Lightning module's state dict ('model.bert....') or a DDP one's ('module.')."""
    _rewrite(tiny_copy, lambda s: s.update({prefix + k: s.pop(k) for k in list(s)}))
    with pytest.raises(CheckpointError, match=rf"hint: the names carry a '{prefix}' prefix "
                       rf"\('{prefix}bert\..*{wrapped}.save_pretrained\(folder\)\), or its state "
                       rf"dict with the '{prefix}' prefix removed"):
        load_pretrained(tiny_copy)


def test_a_classifier_of_another_width_says_where_the_width_came_from(tiny_copy):
    """id2label names 2 labels, num_labels says 3 (HF reads id2label), the classifier has 3."""
    config = json.loads((tiny_copy / "config.json").read_text())
    (tiny_copy / "config.json").write_text(json.dumps(config | {
        "id2label": {"0": "neg", "1": "pos"}, "label2id": {"neg": 0, "pos": 1}, "num_labels": 3}))
    with pytest.raises(CheckpointError, match=r"classifier.weight has \(3, 32\), expected \(2, 32\)"
                       r"(.|\n)*hint: the classifier is built with 2 labels because .*config.json's "
                       r"id2label names 2 labels \(its num_labels=3 is overridden by id2label"):
        load_pretrained(tiny_copy)
    with pytest.raises(CheckpointError, match=r"built with 4 labels because num_labels=4 was given"):
        load_pretrained(tiny_copy, num_labels=4)
    assert load_pretrained(tiny_copy, num_labels=3).head.num_labels == 3


def test_missing_key_is_named(tiny_copy):
    _rewrite(tiny_copy, lambda s: s.pop("bert.encoder.layer.1.attention.self.key.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\).*encoder.layer.1.attention.self.key.bias"):
        load_pretrained(tiny_copy)


def test_extra_key_is_named_unless_not_strict(tiny_copy):
    _rewrite(tiny_copy, lambda s: s.update({"bert.encoder.layer.7.output.dense.weight": np.zeros((2, 2), np.float32)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\).*encoder.layer.7.output.dense.weight"):
        load_pretrained(tiny_copy)
    assert load_pretrained(tiny_copy, strict=False).head_kind == "sequence_classification"


def test_wrong_shape_is_named(tiny_copy):
    key = "bert.encoder.layer.0.intermediate.dense.weight"
    _rewrite(tiny_copy, lambda s: s.update({key: np.zeros((64, 31), np.float32)}))
    with pytest.raises(CheckpointError, match=r"wrong shape: encoder.layer.0.intermediate.dense.weight has \(64, 31\), expected \(64, 32\)"):
        load_pretrained(tiny_copy)


def test_non_finite_weights_are_refused(tiny_copy):
    def poison(s):
        s["classifier.bias"] = np.array([0.0, np.nan, 1.0], np.float32)
    _rewrite(tiny_copy, poison)
    with pytest.raises(CheckpointError, match="classifier.bias has non-finite values"):
        load_pretrained(tiny_copy)


def test_unsupported_model_type(tiny_copy):
    config = json.loads((tiny_copy / "config.json").read_text())
    (tiny_copy / "config.json").write_text(json.dumps(config | {"model_type": "deberta"}))
    with pytest.raises(ConfigError, match="model_type='deberta' is not supported"):
        load_pretrained(tiny_copy)


def test_failed_assignment_changes_nothing(tiny_copy):
    model = load_pretrained(tiny_copy)
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    state, _ = read_state_dict(tiny_copy)
    state = {k: v * 2 for k, v in state.items()}
    state.pop("bert.encoder.layer.1.output.LayerNorm.bias")  # one bad key among many good ones
    with pytest.raises(CheckpointError):
        assign_state_dict(model, state)
    after = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    jax.tree.map(np.testing.assert_array_equal, before, after)


def test_a_question_answering_checkpoint_names_its_head(tiny_copy):
    """A head samp-jax does not run: the strict load says which, and how to take the encoder."""
    config = json.loads((tiny_copy / "config.json").read_text())
    config |= {"architectures": ["BertForQuestionAnswering"]}
    (tiny_copy / "config.json").write_text(json.dumps(config))

    def qa(s):
        s.pop("classifier.weight"), s.pop("classifier.bias")
        s["qa_outputs.weight"], s["qa_outputs.bias"] = np.zeros((2, 32), np.float32), np.zeros(2, np.float32)
    _rewrite(tiny_copy, qa)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(2\).*\n.*architectures names "
                       r"BertForQuestionAnswering: samp-jax runs no extractive question answering "
                       r"head .* pass strict=False to load the encoder alone"):
        load_pretrained(tiny_copy)
    assert load_pretrained(tiny_copy, strict=False).head_kind == "none"


@pytest.mark.parametrize("model_type, key", [("distilbert", "activation"), ("modernbert", "hidden_activation"),
                                             ("bert", "hidden_act")])
def test_a_refused_option_is_named_by_the_files_key(model_type, key):
    config = json.loads((GOLDEN / "families" / model_type / "base" / "config.json").read_text())
    with pytest.raises(ConfigError, match=rf"^config: {key}='mish' is not one of"):
        EncoderConfig.from_hf_config(config | {key: "mish"})


def test_pretraining_heads_and_buffers_are_ignored(tiny_copy):
    def add(s):
        s["cls.predictions.bias"] = np.zeros((99,), np.float32)
        s["bert.embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
    _rewrite(tiny_copy, add)
    assert load_pretrained(tiny_copy).head_kind == "sequence_classification"


@pytest.mark.parametrize("task", ["tiny_seqcls", "tiny_tokcls"])
def test_save_pretrained_round_trips_in_hf_naming(task, tmp_path):
    source = GOLDEN / task / "safetensors"
    model = load_pretrained(source)
    save_pretrained(model, tmp_path / "out", labels=None)
    original = load_file(source / "model.safetensors")
    written = load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(written) == sorted(original)  # the same HF keys, bert. prefix included
    for key in original:
        np.testing.assert_array_equal(written[key], original[key], err_msg=key)
    golden = np.load(GOLDEN / task / "golden.npz")
    again = load_pretrained(tmp_path / "out")
    np.testing.assert_array_equal(
        np.asarray(again(golden["input_ids"], golden["attention_mask"], golden["token_type_ids"])),
        np.asarray(model(golden["input_ids"], golden["attention_mask"], golden["token_type_ids"])))


def test_save_pretrained_writes_the_models_own_tokenizer(minilm_dir, tmp_path):
    source = GOLDEN / "families" / "bert" / "seqcls"  # a tiny BERT with its own tokenizer
    model = load_pretrained(source)
    model.tokenizer = Tokenizer.from_pretrained(source, max_length=24)
    save_pretrained(model, tmp_path / "out")  # no tokenizer_dir: the model's tokenizer
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    assert (tmp_path / "out" / "vocab.txt").read_text() == (source / "vocab.txt").read_text()
    again = load(tmp_path / "out")  # samp_jax.load
    assert again.tokenizer.max_length == 24 and again.labels == ("neg", "neu", "pos")
    texts = ["Hello there.", "A second, longer sentence."]
    for key, value in model.tokenizer(texts).items():
        np.testing.assert_array_equal(again.tokenizer(texts)[key], value)


# ------------------------------------------------------------- abstract build, then fill
@pytest.mark.parametrize("folder", ["bert/seqcls", "deberta-v2/base", "modernbert/tokcls",
                                    "mpnet/sentence"])
def test_a_model_built_abstract_and_filled_equals_one_drawn_and_overwritten(folder):
    """`load_pretrained` builds the model with abstract variables and fills every one from the
    checkpoint; `allow_new_head=True` (nothing new to draw here) draws them first."""
    path = GOLDEN / "families" / folder
    filled, drawn = load_pretrained(path), load_pretrained(path, allow_new_head=True)
    assert jax.tree.structure(nnx.state(filled)) == jax.tree.structure(nnx.state(drawn))
    for a, b in zip(jax.tree.leaves(nnx.state(filled)), jax.tree.leaves(nnx.state(drawn))):
        assert isinstance(a, jax.Array) and a.dtype == b.dtype and np.array_equal(a, b)


def test_a_variable_no_key_table_fills_is_refused_naming_it(monkeypatch):
    from samp_jax.models import checkpoint
    assignments = checkpoint._assignments

    def without_the_first_layers_query(model):
        return [a for a in assignments(model)
                if not any("layer.0.attention.self.query.weight" in k for k in a.sources)]
    monkeypatch.setattr(checkpoint, "_assignments", without_the_first_layers_query)
    path = GOLDEN / "families" / "bert" / "seqcls"
    with pytest.raises(CheckpointError, match=r"fills no value for the model's variables "
                                              r"\[.*layers.*0.*qkv.*kernel"):
        load_pretrained(path, strict=False)


# ------------------------------------------- config sizes against the checkpoint's own shapes
def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | changes))


@pytest.fixture
def nothing_built(monkeypatch):
    """Any model built (even abstract) fails the test: the check must come first."""
    from samp_jax.models import checkpoint

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the config was checked")
    monkeypatch.setattr(checkpoint, "EncoderModel", refuse)


@pytest.mark.parametrize("layers", [3, 10**5, 10**30])
def test_a_config_asking_for_layers_the_checkpoint_lacks_is_refused_before_building(
        tiny_copy, nothing_built, layers):
    _edit_config(tiny_copy, num_hidden_layers=layers)
    with pytest.raises(ConfigError, match=rf"^{tiny_copy}/config.json: num_hidden_layers={layers}, but "
                       rf"the checkpoint {tiny_copy}/model.safetensors holds 2 layers "
                       r"\(encoder.layer.0 to encoder.layer.1\)$"):
        load_pretrained(tiny_copy)


def test_weights_of_no_layer_and_a_huge_layer_count_are_refused_before_building(tiny_copy, nothing_built):
    """Weights named as another family's (no layer read as roberta's) and 10^6 layers: no
    layer is built to find the keys missing."""
    _edit_config(tiny_copy, model_type="roberta", num_hidden_layers=10**6)
    with pytest.raises(ConfigError, match=r"config.json: num_hidden_layers=1000000, but the checkpoint "
                       r".*model.safetensors names no layer as roberta checkpoints do \(encoder.layer.\{i\}"):
        load_pretrained(tiny_copy)


@pytest.mark.parametrize("key, value, held, tensor", [
    ("hidden_size", 10**7, 32, r"embeddings.word_embeddings.weight is \(99, 32\) there, \(99, 10000000\)"),
    ("hidden_size", 64, 32, r"embeddings.word_embeddings.weight is \(99, 32\) there, \(99, 64\)"),
    ("vocab_size", 2**40, 99, r"embeddings.word_embeddings.weight is \(99, 32\) there, \(1099511627776, 32\)"),
    ("intermediate_size", 10**12, 64, r"encoder.layer.0.intermediate.dense.weight is \(64, 32\) there"),
    ("max_position_embeddings", 10**9, 40, r"embeddings.position_embeddings.weight is \(40, 32\) there"),
    ("type_vocab_size", 10**9, 2, r"embeddings.token_type_embeddings.weight is \(2, 32\) there"),
])
def test_a_config_size_the_checkpoint_does_not_hold_is_named_allocating_nothing(
        tiny_copy, key, value, held, tensor):
    """Each size is compared with the checkpoint's own shapes before any array is made (a
    table of 10^12 rows would be 'Unable to allocate' otherwise), and the message names the
    config key, its value and what the checkpoint holds."""
    _edit_config(tiny_copy, **{key: value})
    with pytest.raises(ConfigError, match=rf"^{tiny_copy}/config.json: {key}={value} does not fit the "
                       rf"checkpoint {tiny_copy}/model.safetensors, which holds {key}={held} \({tensor}"):
        load_pretrained(tiny_copy)
    with pytest.raises(ConfigError, match=rf"{key}={value} does not fit"):  # no head weights drawn first
        load_pretrained(tiny_copy, allow_new_head=True) if value < 10**6 else load_pretrained(tiny_copy)


def test_deberta_position_buckets_the_checkpoint_does_not_hold_are_named(tmp_path):
    folder = tmp_path / "deberta"
    shutil.copytree(GOLDEN / "families" / "deberta-v2" / "base", folder)
    _edit_config(folder, position_buckets=10**9)
    with pytest.raises(ConfigError, match=r"config.json: position_buckets=1000000000 does not fit the "
                       r"checkpoint .*, which holds position_buckets=8 \(encoder.rel_embeddings.weight "
                       r"is \(16, 30\) there, \(2000000000, 30\)"):
        load_pretrained(folder)


def test_a_missing_key_listing_is_capped():
    error = CheckpointError("ckpt", missing=[f"encoder.layer.{i}.x" for i in range(10**5)],
                            mismatched=[(f"k{i}", (1,), (2,)) for i in range(50)])
    assert len(str(error)) < 2000
    assert "missing keys (100000): ['encoder.layer.0.x'" in str(error) and "and 99990 more" in str(error)
    assert "... and 40 more keys of the wrong shape" in str(error)


@pytest.mark.parametrize("dtype, name", [("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")])
def test_float8_weights_are_upcast_as_hf_upcasts_them(dtype, name, tmp_path):
    """A checkpoint whose encoder matrices are stored as float8 loads as the same values in
    float32 (HF's from_pretrained upcasts them so); the safetensors readers give no float8."""
    import ml_dtypes
    source = GOLDEN / "families" / "bert" / "seqcls"
    state = load_file(source / "model.safetensors")
    eight = {k: v.astype(getattr(ml_dtypes, dtype)) for k, v in state.items()
             if v.ndim == 2 and ".encoder." in k}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for key, value in state.items():  # safetensors' layout, written by hand for float8
        data = (eight[key] if key in eight else value).tobytes()
        header[key] = {"dtype": name if key in eight else "F32", "shape": list(value.shape),
                       "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    folder, rounded = tmp_path / "f8", tmp_path / "rounded"
    for out in (folder, rounded):
        shutil.copytree(source, out)
    text = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text
                                               + b"".join(blobs))
    save_file({k: eight[k].astype(np.float32) if k in eight else v for k, v in state.items()},
              rounded / "model.safetensors", metadata={"format": "pt"})
    read, _ = read_state_dict(folder)
    assert all(read[k].dtype == np.float32 for k in eight) and len(eight) > 4
    model = load(folder)
    batch = model.tokenizer(["a man plays guitar", "the sun is out today"])
    np.testing.assert_array_equal(np.asarray(model(**batch)), np.asarray(load(rounded)(**batch)))


def test_a_next_sentence_checkpoint_names_its_head_though_the_family_ignores_its_keys(tiny_copy):
    """BERT's `cls.` keys are ignored (a pre-training checkpoint loads as its encoder), so a
    next-sentence head would load silently as a bare encoder: the strict load names it."""
    config = json.loads((tiny_copy / "config.json").read_text())
    config |= {"architectures": ["BertForNextSentencePrediction"]}
    (tiny_copy / "config.json").write_text(json.dumps(config))

    def nsp(s):
        s.pop("classifier.weight"), s.pop("classifier.bias")
        s["cls.seq_relationship.weight"] = np.zeros((2, 32), np.float32)
        s["cls.seq_relationship.bias"] = np.zeros(2, np.float32)
    _rewrite(tiny_copy, nsp)
    with pytest.raises(ConfigError, match=r"names BertForNextSentencePrediction: samp-jax runs no "
                                          r"next-sentence prediction head .*head='none'"):
        load_pretrained(tiny_copy)
    assert load_pretrained(tiny_copy, strict=False).head_kind == "none"
    assert load_pretrained(tiny_copy, head="none").head_kind == "none"  # asked for: loads


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
def test_a_git_lfs_pointer_in_place_of_the_weights_is_named(name, tiny_copy):
    (tiny_copy / "model.safetensors").unlink()
    (tiny_copy / name).write_text("version https://git-lfs.github.com/spec/v1\noid sha256:"
                                  + "0" * 64 + "\nsize 438000000\n")
    with pytest.raises(CheckpointError, match=rf"{name} is a Git LFS pointer file, not the "
                                              r"weights .*git lfs pull"):
        load_pretrained(tiny_copy)


def test_a_trainer_output_folder_points_at_its_latest_checkpoint(tmp_path):
    for step in (500, 1500, 1000):
        shutil.copytree(GOLDEN / "tiny_seqcls" / "safetensors", tmp_path / f"checkpoint-{step}")
    with pytest.raises(FileNotFoundError, match=r"it holds HF Trainer checkpoints \(checkpoint-500, "
                       r"checkpoint-1000, checkpoint-1500\): give one of them, e\.g\. the latest, "
                       rf"{tmp_path / 'checkpoint-1500'}"):
        sj.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"^{tmp_path / 'nowhere'} does not exist; "):
        sj.load(tmp_path / "nowhere")


def test_a_head_named_in_the_config_but_absent_from_the_weights_says_what_to_do(tmp_path):
    folder = tmp_path / "base"
    shutil.copytree(GOLDEN / "families" / "bert" / "base", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(
        config | {"architectures": ["BertForSequenceClassification"]}))
    with pytest.raises(CheckpointError, match=r"missing keys \(2\): \['classifier.bias', "
                       r"'classifier.weight'\]\n.*hint: the weights hold the encoder but not the "
                       r"head .*head='none'"):
        load_pretrained(folder)
    assert load_pretrained(folder, head="none").head_kind == "none"
