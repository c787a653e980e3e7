"""CamemBERT (`camembert`), data2vec-text (`data2vec-text`) and ERNIE (`ernie`): RoBERTa's and
BERT's model under other HF model types, ERNIE with a task-type table.

`test_families.py` checks them against HF's own outputs with every other family (hidden
states, both heads, pooling, tokenizer ids, pre-split words, round trips; goldens written by
`tools/make_golden.py --family NAME` in the golden venv); here is what is theirs alone.
"""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from samp_jax import PrecisionMap, Tokenizer, load, load_pretrained, quantize
from samp_jax.app.cli import main
from samp_jax.models import EncoderConfig, get_family
from samp_jax.models.checkpoint import save_pretrained
from samp_jax.models.families import UnsupportedFamilyError
from tests.helpers import GOLDEN

FAMILY_GOLDEN = GOLDEN / "families"
ALIASES = ("camembert", "data2vec-text", "ernie")
# (model type, base-model prefix in HF's task classes, HF class-name prefix)
NAMING = [("camembert", "roberta", "Camembert"), ("data2vec-text", "data2vec_text", "Data2VecText"),
          ("ernie", "ernie", "Ernie")]


def _golden(model_type):
    return dict(np.load(FAMILY_GOLDEN / model_type / "golden.npz"))


def _inputs(golden, batch="pair"):
    return tuple(golden[f"{batch}_{key}"] for key in ("input_ids", "attention_mask", "token_type_ids"))


def _texts(model_type):
    return json.loads((FAMILY_GOLDEN / model_type / "texts.json").read_text())


# ----------------------------------------------------------------------------- registry
@pytest.mark.parametrize("model_type, prefix, class_prefix", NAMING)
def test_each_is_registered_under_hf_naming(model_type, prefix, class_prefix):
    family = get_family(model_type)
    assert family.prefix == prefix
    assert family.architecture("sequence_classification") == f"{class_prefix}ForSequenceClassification"
    assert family.architecture("token_classification") == f"{class_prefix}ForTokenClassification"
    assert family.architecture("sentence_embedding") == f"{class_prefix}Model"
    weights = load_file(FAMILY_GOLDEN / model_type / "seqcls" / "model.safetensors")
    assert any(key.startswith(prefix + ".") for key in weights)  # HF's own prefix


def test_an_unsupported_model_type_lists_every_supported_one():
    with pytest.raises(UnsupportedFamilyError) as error:
        get_family("ernie_m")
    for model_type in ("bert", "roberta", "xlm-roberta", *ALIASES, "deberta-v2", "modernbert"):
        assert repr(model_type) in str(error.value)


def test_the_cli_names_the_supported_types_for_an_unsupported_one(tmp_path, capsys):
    folder = shutil.copytree(FAMILY_GOLDEN / "ernie" / "seqcls", tmp_path / "model")
    config = json.loads((folder / "config.json").read_text()) | {"model_type": "ernie_m"}
    (folder / "config.json").write_text(json.dumps(config))
    (tmp_path / "data.csv").write_text("text,label\na cat sleeps,neg\nthe dog runs,pos\n")
    code = main(["eval", "--model", str(folder), "--data", str(tmp_path / "data.csv")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "model_type='ernie_m' is not supported; samp-jax imports" in err
    assert all(repr(model_type) in err for model_type in ALIASES)


@pytest.mark.parametrize("model_type", ["camembert", "data2vec-text", "ernie"])
@pytest.mark.parametrize("option, message", [
    ({"position_embedding_type": "relative_key"},
     "position_embedding_type='relative_key' is not supported; only 'absolute' is"),
    ({"is_decoder": True}, "is_decoder=True is not supported: samp-jax runs encoders only"),
])
def test_bertmodel_options_are_refused_as_in_bert(model_type, option, message):
    """Their HF classes read `position_embedding_type` and `is_decoder` as BertModel does."""
    config = json.loads((FAMILY_GOLDEN / model_type / "base" / "config.json").read_text())
    with pytest.raises(Exception, match=message.replace("(", r"\(")):
        EncoderConfig.from_hf_config(config | option)


# ---------------------------------------------------------------------------------- ERNIE
def test_ernie_adds_the_task_type_row_zero():
    """HF's ErnieEmbeddings adds `task_type_embeddings(0)` to every token when `use_task_id`;
    the golden (HF's outputs) misses without that row, or with another in its place."""
    golden = _golden("ernie")
    model = load_pretrained(FAMILY_GOLDEN / "ernie" / "base")
    assert model.config.task_type_vocab_size == 3 and model.embeddings.task_type.shape == (3, 30)
    ids, mask, types = _inputs(golden)
    valid = mask.astype(bool)

    def error():
        return np.abs(np.asarray(model(ids, mask, types))[valid] - golden["pair_hidden"][valid]).max()
    assert error() <= 1.5e-5
    table = np.asarray(model.embeddings.task_type[...])
    for changed in (np.zeros_like(table), table[[1, 0, 2]]):
        model.embeddings.task_type.set_value(changed)
        assert error() > 0.05


@pytest.mark.parametrize("activation", ["per_token_dynamic", "per_tensor_static"])
def test_ernies_fused_embedding_kernel_adds_the_task_row_as_the_unfused_path(activation):
    """The fused gather kernel reads the task row folded into the position table; folded in
    float32 it rounds as the unfused path's float32 sum does (folded back into FP16 it moved
    the logits by about 0.07)."""
    import jax

    import samp_jax
    from calibrate import calibrate
    from pallas_kernels.layernorm_quant import EMBEDDING_KERNEL_NAME

    model = load_pretrained(FAMILY_GOLDEN / "ernie" / "seqcls")
    ids, mask, types = _inputs(_golden("ernie"))
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    pmap = PrecisionMap.preset("fully_quant", model.config.num_layers, activation=activation)
    calibration = calibrate(model, [batch])
    unfused = np.asarray(quantize(model, pmap, calibration, implementation="xla")(**batch))
    fused = quantize(model, pmap, calibration)
    with samp_jax.ops.interpret():
        assert EMBEDDING_KERNEL_NAME in str(jax.make_jaxpr(lambda b: fused(**b))(batch))
        out = np.asarray(fused(**batch))
    np.testing.assert_allclose(out, unfused, rtol=0, atol=1e-6 * np.abs(unfused).max())


def test_ernie_without_use_task_id_has_no_table(tmp_path):
    """`use_task_id` false: HF builds no table and the model is BERT's; `task_type_vocab_size`
    alone adds nothing. The same checkpoint without the table equals the golden model with
    its row 0 zeroed."""
    folder = shutil.copytree(FAMILY_GOLDEN / "ernie" / "base", tmp_path / "no_task")
    config = json.loads((folder / "config.json").read_text()) | {"use_task_id": False}
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(folder / "model.safetensors")
    del weights["embeddings.task_type_embeddings.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    plain = load_pretrained(folder)
    assert plain.config.task_type_vocab_size == 0 and plain.embeddings.task_type is None
    reference = load_pretrained(FAMILY_GOLDEN / "ernie" / "base")
    reference.embeddings.task_type.set_value(np.zeros((3, 30), np.float32))
    ids, mask, types = _inputs(_golden("ernie"))
    np.testing.assert_allclose(np.asarray(plain(ids, mask, types)),
                               np.asarray(reference(ids, mask, types)), atol=1e-6)
    save_pretrained(plain, tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["use_task_id"] is False and "task_type_vocab_size" not in saved


def test_ernie_without_use_task_id_leaves_a_stored_table_unused_as_hf_does(tmp_path):
    """A checkpoint that stores `task_type_embeddings` under `use_task_id: false` (ERNIE 3.0
    weights, the option dropped): HF's ErnieModel builds no table and reports the stored one
    unused (`tools/golden_ernie_no_task_id.py`); so does samp-jax, with a warning naming it.
    Its outputs are HF's and the same checkpoint's without the table."""
    golden = np.load(FAMILY_GOLDEN / "ernie" / "no_task_id.npz")
    key = "embeddings.task_type_embeddings.weight"
    assert golden["unexpected_keys"].tolist() == [f"ernie.{key}"]
    folder = shutil.copytree(FAMILY_GOLDEN / "ernie" / "seqcls", tmp_path / "kept")
    config = json.loads((folder / "config.json").read_text()) | {"use_task_id": False}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match=rf"kept/model.safetensors: the checkpoint's {key} is "
                      r"not used: config.json's use_task_id is not true, so HF's ErnieModel "
                      r"builds no task-type table"):
        model = load_pretrained(folder)
    assert model.config.task_type_vocab_size == 0 and model.embeddings.task_type is None
    ids, mask, types = _inputs(_golden("ernie"))
    valid = mask.astype(bool)
    # measured: 5e-7 on logits of about 1.5, 1.7e-6 on the hidden states
    np.testing.assert_allclose(np.asarray(model(ids, mask, types)), golden["pair_seq_logits"],
                               rtol=0, atol=2e-6)
    hidden = np.asarray(model.encode(ids, mask, types))
    assert np.abs(hidden[valid] - golden["pair_hidden"][valid]).max() <= 6e-6
    # the checkpoint without the table reads the same
    plain = shutil.copytree(folder, tmp_path / "plain")
    weights = load_file(plain / "model.safetensors")
    del weights[f"ernie.{key}"]
    save_file(weights, plain / "model.safetensors", metadata={"format": "pt"})
    np.testing.assert_array_equal(np.asarray(load_pretrained(plain)(ids, mask, types)),
                                  np.asarray(model(ids, mask, types)))


def test_ernie_task_table_size_defaults_and_is_written_back(tmp_path):
    config = json.loads((FAMILY_GOLDEN / "ernie" / "base" / "config.json").read_text())
    del config["task_type_vocab_size"]  # ErnieConfig's default: 3
    assert EncoderConfig.from_hf_config(config).task_type_vocab_size == 3
    assert EncoderConfig.from_hf_config(config | {"task_type_vocab_size": 5}).task_type_vocab_size == 5
    save_pretrained(load(FAMILY_GOLDEN / "ernie" / "seqcls"), tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["use_task_id"] is True and saved["task_type_vocab_size"] == 3
    assert saved["architectures"] == ["ErnieForSequenceClassification"]
    assert saved["type_vocab_size"] == 4 and saved["layer_norm_eps"] == 1e-5


def test_ernie_token_types_are_used():
    """Four token types (ERNIE 3.0 has four): pairs put type 1 on the second text, as HF."""
    golden = _golden("ernie")
    assert golden["pair_token_type_ids"].max() == 1
    model = load_pretrained(FAMILY_GOLDEN / "ernie" / "seqcls")
    ids, mask, types = _inputs(golden)
    moved = np.asarray(model(ids, mask, np.zeros_like(types)))
    assert np.abs(moved - golden["pair_seq_logits"]).max() > 1e-3


# ----------------------------------------------------------------- slow tokenizer files
@pytest.mark.parametrize("model_type, kept", [
    ("camembert", ("sentencepiece.bpe.model",)),
    ("data2vec-text", ("vocab.json", "merges.txt")),
    ("ernie", ("vocab.txt",)),
])
@pytest.mark.parametrize("with_config", [True, False], ids=["tokenizer_config", "model_type_only"])
def test_a_folder_without_tokenizer_json_gets_hfs_ids(model_type, kept, with_config, tmp_path):
    """A folder with the slow tokenizer's files only (as fine-tunes saved by the slow class ship)
    gets the tokenizer HF's converter builds (CamembertConverter, RobertaConverter,
    BertConverter): the golden ids, from `tokenizer_config.json` or, without it, the class of
    `config.json`'s model type with its defaults (do_lower_case is stated for the uncased
    WordPiece vocabulary, whose class default is lowercasing too)."""
    source = FAMILY_GOLDEN / model_type / "seqcls"
    folder = tmp_path / "slow"
    folder.mkdir()
    for name in ("config.json", *kept, *(("tokenizer_config.json", "special_tokens_map.json")
                                         if with_config else ())):
        shutil.copy(source / name, folder / name)
    golden, texts = _golden(model_type), _texts(model_type)
    tokenizer = Tokenizer.from_pretrained(folder)
    single = tokenizer(texts["single"], truncation=True)
    pair = tokenizer([a for a, _ in texts["pairs"]], [b for _, b in texts["pairs"]], truncation=True)
    np.testing.assert_array_equal(single["input_ids"], golden["single_input_ids"])
    np.testing.assert_array_equal(pair["input_ids"], golden["pair_input_ids"])
    encoded, word_ids = tokenizer.encode_words(texts["words"], truncation=True)
    np.testing.assert_array_equal(encoded["input_ids"], golden["words_input_ids"])


@pytest.mark.parametrize("with_config", [True, False], ids=["tokenizer_config", "model_type_only"])
def test_camembert_special_tokens_are_hfs(with_config, tmp_path):
    """CamembertConverter's layout (`<s>NOTUSED`=0 `<pad>`=1 `</s>NOTUSED`=2 `<unk>`=3
    `<unk>NOTUSED`=4, `<s>`=5 `</s>`=6, `<mask>` last) and the class's default additional
    special tokens, literal in a text: the ids transformers 4.57's CamembertTokenizerFast gives
    (measured in the golden venv for both folders: [5, 0, 7, 162, 4, 7, 17, 184, 7, 80, 6])."""
    source = FAMILY_GOLDEN / "camembert" / "seqcls"
    folder = tmp_path / "slow"
    folder.mkdir()
    names = ("config.json", "sentencepiece.bpe.model") + (
        ("tokenizer_config.json", "special_tokens_map.json") if with_config else ())
    for name in names:
        shutil.copy(source / name, folder / name)
    text = "<s>NOTUSED x <unk>NOTUSED y <mask> z"
    expected = [5, 0, 7, 162, 4, 7, 17, 184, 7, 80, 6]
    assert list(Tokenizer.from_pretrained(folder)([text])["input_ids"][0]) == expected
    assert list(Tokenizer.from_pretrained(source)([text])["input_ids"][0]) == expected


# ------------------------------------------------------------------------- quantized presets
PRESETS = [("fp16", None), ("bf16", None), ("fp8", None), ("quant_ffn_only", "per_token_dynamic"),
           ("quant_ffn_only", "per_tensor_static"), ("fully_quant", "per_token_dynamic"),
           ("fully_quant", "per_tensor_static")]
# Relative logit error against float32 on the single batch: twice the largest measured over the
# three classifiers (2-core CPU VM; FP16 0.14%, BF16 1.5%, FP8 18.7%, INT8 FFN-only 3.0%, fully
# INT8 4.8%, each ERNIE's: its logits are the smallest, |logit| <= 0.66, so the same absolute
# error is a larger share; with its task-type row zeroed, FP8 measures 5.3%, as BERT's 6.1%).
RELATIVE_LOGIT_ERROR = {"fp16": 0.003, "bf16": 0.03, "fp8": 0.375, "quant_ffn_only": 0.06,
                        "fully_quant": 0.096}


@pytest.mark.parametrize("model_type", ALIASES)
def test_every_preset_runs_on_the_golden_classifier(model_type, tmp_path):
    """Each preset quantizes the HF-written classifier, stays near its float logits, and a
    quantized folder loads back with the family's model type (the tiny random models of
    `tests/samp_jax/ptq/test_families.py` cover the search's program and the fused kernels
    for ERNIE's task-type table). Static scales are calibrated on the pair batch."""
    from calibrate import calibrate

    model = load(FAMILY_GOLDEN / model_type / "seqcls")
    golden = _golden(model_type)
    ids, mask, types = _inputs(golden, "single")
    reference = np.asarray(model(ids, mask, types))
    np.testing.assert_allclose(reference, golden["single_seq_logits"], atol=1e-5)
    pair = dict(zip(("input_ids", "attention_mask", "token_type_ids"), _inputs(golden, "pair")))
    with pytest.warns(UserWarning, match="calibration saw only"):
        calibration = calibrate(model, [pair])
    for preset, activation in PRESETS:
        options = {} if activation is None else {"activation": activation}
        q = quantize(model, PrecisionMap.preset(preset, model.config.num_layers, **options),
                     calibration)
        out = np.asarray(q(ids, mask, types))
        assert np.all(np.isfinite(out))
        error = np.linalg.norm(out - reference) / np.linalg.norm(reference)
        assert error < RELATIVE_LOGIT_ERROR[preset], (preset, activation, error)
    copy = load(q.save(tmp_path / "q"))
    assert copy.config.model_type == model_type
    np.testing.assert_array_equal(np.asarray(copy(ids, mask, types)), out)
