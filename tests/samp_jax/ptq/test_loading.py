"""`samp_jax.load`: HF and quantized folders come back ready to serve, tokenizer and class
names included, also in a fresh process; folders without a tokenizer or of neither kind fail
with errors that say what is missing."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
import warnings

import jax
import numpy as np
import pytest
from flax import nnx
from tokenizers import Tokenizer as HFTokenizer

import samp_jax
from samp_jax import ConfigError, EncoderModel, PrecisionMap, QuantizedModel, Tokenizer, quantize
from samp_jax.models.checkpoint import save_pretrained
from samp_jax.models.heads import SequenceClassifier, make_head
from samp_jax.models.tokenizer import TOKENIZER_FILES
from samp_jax.models.st_folder import PROMPTS_FILE
from tests.helpers import GOLDEN, ROOT, TINY_CONFIG

SENTIMENT = ("negative", "neutral", "positive")
TEXTS = ["What a wonderful film.", "It was fine, I guess.", "Dreadful from start to finish.",
         "The plot twists kept me guessing until the very last scene."]
TINY_SEQCLS = GOLDEN / "tiny_seqcls" / "safetensors"
FAMILY_SEQCLS = GOLDEN / "families" / "bert" / "seqcls"  # a tiny BERT with its own tokenizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory, minilm, minilm_dir):
    """MiniLM with a 3-way sentiment head: saved as an HF folder (with MiniLM's tokenizer),
    loaded back with `samp_jax.load`, quantized and saved as a quantized folder."""
    root = tmp_path_factory.mktemp("loading")
    model = nnx.clone(minilm)
    model.head = make_head("sequence_classification", model.config, labels=SENTIMENT,
                           rngs=nnx.Rngs(3))
    hf = save_pretrained(model, root / "hf", tokenizer_dir=minilm_dir)
    loaded = samp_jax.load(hf)
    q = quantize(loaded, PrecisionMap.preset("fully_quant", loaded.config.num_layers))
    return types.SimpleNamespace(hf=hf, model=loaded, q=q, quantized=q.save(root / "quantized"))


def with_tokenizer(source, folder, tokenizer_dir):
    """A copy of checkpoint folder `source` with the tokenizer files of `tokenizer_dir`."""
    shutil.copytree(source, folder)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():  # a WordPiece tokenizer has no vocab.json/merges.txt
            shutil.copyfile(tokenizer_dir / name, folder / name)
    return folder


# --------------------------------------------------------------------------- HF folders
def test_hf_folder_comes_with_its_tokenizer_through_split_clone_quantize_and_jit(minilm_dir):
    model = samp_jax.load(minilm_dir)
    assert isinstance(model, EncoderModel) and model.head_kind == "sentence_embedding"
    tokenizer = model.tokenizer
    assert isinstance(tokenizer, Tokenizer) and tokenizer.vocab_size == 30522
    assert tokenizer.max_length == 256  # the folder's sentence_bert_config.json max_seq_length
    graphdef, state = nnx.split(model)
    hash(graphdef)  # static attributes keep the graphdef a valid jit key
    assert nnx.merge(graphdef, state).tokenizer is tokenizer
    assert nnx.clone(model).tokenizer is tokenizer
    assert quantize(model, PrecisionMap.preset("fp16", 6)).tokenizer is tokenizer
    assert "tokenizer" not in nnx.state(model)  # never a weight
    batch = tokenizer(["A man is playing a guitar."])
    eager = np.asarray(model(**batch))
    jitted = nnx.jit(lambda m, b: m(**b))(model, batch)
    np.testing.assert_allclose(np.asarray(jitted), eager, atol=1e-6)


def test_folder_without_tokenizer_is_a_clear_error(minilm_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(FAMILY_SEQCLS, bare, ignore=shutil.ignore_patterns(*TOKENIZER_FILES))
    with pytest.raises(FileNotFoundError, match=r"bare has no tokenizer.json: "
                                                r"copy the tokenizer files .* or pass tokenizer="):
        samp_jax.load(bare)
    # the same folder with the tokenizer files of the model it came from loads
    folder = with_tokenizer(bare, tmp_path / "tiny", FAMILY_SEQCLS.parent / "base")
    model = samp_jax.load(folder)
    assert model.head_kind == "sequence_classification"
    assert model.labels == ("neg", "neu", "pos")
    assert model.tokenizer.max_length == 40  # the model's longest input
    out = samp_jax.compile(model, seq_buckets=(8,), batch_size=1)([[2, 5, 7]])
    assert out.label_names == [model.labels[int(out.labels[0])]]
    # or with tokenizer=: a folder or a Tokenizer
    assert samp_jax.load(bare, tokenizer=FAMILY_SEQCLS).tokenizer.vocab_size == 155
    own = Tokenizer.from_pretrained(FAMILY_SEQCLS, max_length=16)
    assert samp_jax.load(bare, tokenizer=own).tokenizer is own
    with pytest.raises(TypeError, match="tokenizer must be a samp_jax.Tokenizer or a folder"):
        samp_jax.load(bare, tokenizer=42)
    # a tokenizer with ids beyond the model's vocabulary is some other model's
    with pytest.raises(ValueError, match=r"tokenizer/model mismatch .* the tokenizer has 30522 "
                                         r"tokens .* the model's vocab_size is 155"):
        samp_jax.load(bare, tokenizer=minilm_dir)


def test_hf_folder_with_only_a_slow_tokenizer_loads_and_saves_a_fast_one(tmp_path):
    """vocab.txt (no tokenizer.json): samp_jax.load builds tokenizer.json as HF would, and the
    quantized folder it saves carries it."""
    bare = tmp_path / "slow"
    shutil.copytree(FAMILY_SEQCLS, bare, ignore=shutil.ignore_patterns("tokenizer.json"))
    assert (bare / "vocab.txt").is_file() and not (bare / "tokenizer.json").exists()
    model = samp_jax.load(bare)
    shipped = samp_jax.load(FAMILY_SEQCLS)
    batch = model.tokenizer(TEXTS, truncation=True)  # 40 positions
    for key, value in shipped.tokenizer(TEXTS, truncation=True).items():
        np.testing.assert_array_equal(batch[key], value)
    np.testing.assert_array_equal(np.asarray(model(**batch)), np.asarray(shipped(**batch)))
    folder = quantize(model, PrecisionMap.preset("fully_quant", model.config.num_layers)).save(
        tmp_path / "q")
    assert (folder / "tokenizer.json").read_text() == model.tokenizer._files["tokenizer.json"]
    again = samp_jax.load(folder)
    np.testing.assert_array_equal(again.tokenizer(TEXTS, truncation=True)["input_ids"],
                                  batch["input_ids"])


def test_folder_of_neither_kind_names_the_files_it_looked_for(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"is not a model folder: it has neither "
                                                r"quantization.json .* nor config.json"):
        samp_jax.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope does not exist; samp_jax.load needs"):
        samp_jax.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"weights.bin is not a folder; samp_jax.load"):
        samp_jax.load(tmp_path / "weights.bin")


def test_a_search_output_given_as_a_model_folder_names_its_model_subfolder(tmp_path):
    (tmp_path / "out" / "model").mkdir(parents=True)
    shutil.copyfile(FAMILY_SEQCLS / "config.json", tmp_path / "out" / "model" / "config.json")
    (tmp_path / "out" / "summary.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"is not a model folder: .*; it holds a search's "
                                                rf"output, whose model is {tmp_path}/out/model$"):
        samp_jax.load(tmp_path / "out")


# ---------------------------------------------------------------------- class names
@pytest.mark.parametrize("task", ["tiny_seqcls", "tiny_tokcls"])
def test_label_names_round_trip_through_save_pretrained(task, tmp_path):
    names = ("neg", "neu", "pos") if task == "tiny_seqcls" else ("O", "B-A", "I-A", "B-B", "I-B")
    model = samp_jax.load_pretrained(GOLDEN / task / "safetensors")
    save_pretrained(model, tmp_path / "named", labels=names)  # the argument still works
    named = samp_jax.load_pretrained(tmp_path / "named")
    assert named.labels == names
    save_pretrained(named, tmp_path / "again")  # no argument: the head's names
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert config["id2label"] == {str(i): n for i, n in enumerate(names)}
    assert config["label2id"] == {n: i for i, n in enumerate(names)}
    assert samp_jax.load_pretrained(tmp_path / "again").labels == names
    with pytest.raises(ValueError, match=r"2 labels .* for a head with num_labels="):
        save_pretrained(named, tmp_path / "bad", labels=names[:2])


def test_id2label_is_ordered_by_id_and_checked(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(TINY_SEQCLS, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"2": "pos", "0": "neg", "1": "neu"}
    (folder / "config.json").write_text(json.dumps(config))
    assert samp_jax.load_pretrained(folder).labels == ("neg", "neu", "pos")
    config["id2label"] = {"0": "neg", "2": "pos", "3": "neu"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"config.json: id2label ids \[0, 2, 3\] are not 0 .. 2"):
        samp_jax.load_pretrained(folder)
    config["id2label"] = {"0": "same", "1": "neu", "2": "same"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"ckpt/config.json: id2label names must be distinct; "
                                          r"'same' names ids \[0, 2\]"):
        samp_jax.load_pretrained(folder)


def test_finetune_json_naming_the_classes_in_another_order_than_config_json_is_warned(tmp_path):
    """A copy mixing two runs: config.json's id2label in another order than the classes the
    weights were fine-tuned with (finetune.json) would label every row as another class."""
    folder = shutil.copytree(FAMILY_SEQCLS, tmp_path / "tuned")  # id2label neg, neu, pos
    (folder / "finetune.json").write_text(json.dumps({"labels": ["neg", "neu", "pos"]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert samp_jax.load(folder).labels == ("neg", "neu", "pos")  # the same: no warning
    (folder / "finetune.json").write_text(json.dumps({"labels": ["pos", "neu", "neg"]}))
    with pytest.warns(UserWarning, match=rf"^{folder}/config.json names the classes \['neg', "
                                         r"'neu', 'pos'\] \(id2label, read in that order\), but "
                                         rf"{folder}/finetune.json says the weights were "
                                         r"fine-tuned with \['pos', 'neu', 'neg'\]"):
        samp_jax.load(folder)


@pytest.mark.parametrize("labels, message", [
    (("a", "b"), r"2 labels \('a', 'b'\) for a head with num_labels=3"),
    (("a", "b", "a"), r"labels must be distinct; \['a'\] appear more than once"),
    (("a", "", "c"), "labels must be non-empty strings"),
    ("abc", "labels must be a sequence of class names"),
])
def test_bad_labels_on_a_head_raise(labels, message):
    with pytest.raises((ValueError, TypeError), match=message):
        SequenceClassifier(TINY_CONFIG, 3, labels=labels, rngs=nnx.Rngs(0))


# ------------------------------------------------------------------ quantized folders
@pytest.mark.slow
def test_quantized_folder_is_self_contained(saved, minilm_dir):
    assert saved.model.labels == SENTIMENT and saved.q.labels == SENTIMENT
    assert saved.q.tokenizer is saved.model.tokenizer  # quantize() keeps the source's
    tokenizer_files = [name for name in TOKENIZER_FILES if (minilm_dir / name).is_file()
                       and name != PROMPTS_FILE]  # a classifier has no sentence-embedding prompts
    for name in (*tokenizer_files, "model.safetensors", "quantization.json"):
        assert (saved.quantized / name).is_file(), name
    assert not (saved.hf / PROMPTS_FILE).exists() and not (saved.quantized / PROMPTS_FILE).exists()
    sidecar = json.loads((saved.quantized / "quantization.json").read_text())
    assert sidecar["head"] == {"kind": "sequence_classification",
                               "spec": {"num_labels": 3, "labels": list(SENTIMENT), "activation": "tanh"}}
    assert set(sidecar["files"]) == {*tokenizer_files, "model.safetensors"}
    assert sidecar["tokenizer"] == "tokenizer.json"
    loaded = samp_jax.load(saved.quantized)
    assert isinstance(loaded, QuantizedModel) and loaded.labels == SENTIMENT
    assert loaded.tokenizer.max_length == 512 and loaded.tokenizer.pad_id == 0
    original = Tokenizer.from_pretrained(minilm_dir)
    for key, value in original(TEXTS, TEXTS[::-1]).items():
        np.testing.assert_array_equal(loaded.tokenizer(TEXTS, TEXTS[::-1])[key], value)
    batch = original(TEXTS)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda b: loaded(**b))(batch)),
                                  np.asarray(jax.jit(lambda b: saved.q(**b))(batch)))
    with pytest.raises(TypeError, match=r"is a quantized model folder .* options \['dtype'\]"):
        samp_jax.load(saved.quantized, dtype="float16")
    with pytest.raises(TypeError, match=r"is a quantized model folder .* options \['head'\]"):
        samp_jax.load(saved.quantized, head="sequence_classification")  # CLI --head


def test_quantized_folder_without_tokenizer(saved, minilm_dir, tmp_path):
    model = QuantizedModel.load(saved.quantized)
    model.tokenizer = None
    folder = model.save(tmp_path / "q")  # a model without a tokenizer writes no tokenizer files
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "quantization.json"]
    assert QuantizedModel.load(folder).tokenizer is None
    with pytest.raises(FileNotFoundError, match=r"/q has no tokenizer.json: copy the tokenizer"):
        samp_jax.load(folder)
    loaded = samp_jax.load(folder, tokenizer=minilm_dir)
    assert loaded.tokenizer.vocab_size == 30522 and loaded.labels == SENTIMENT


def test_a_prompts_file_added_after_saving_is_not_used(saved, tmp_path):
    """A `config_sentence_transformers.json` the manifest does not list (copied in later)
    would put its prompt before every input: it is ignored, with a warning naming it."""
    folder = tmp_path / "q"
    shutil.copytree(saved.quantized, folder)
    (folder / PROMPTS_FILE).write_text(json.dumps({"prompts": {"q": "query: "},
                                                   "default_prompt_name": "q"}))
    with pytest.warns(UserWarning, match=rf"{PROMPTS_FILE} is not in the folder's manifest"):
        loaded = samp_jax.load(folder)
    assert loaded.tokenizer.prompt == ""
    reference = samp_jax.load(saved.quantized).tokenizer
    np.testing.assert_array_equal(loaded.tokenizer(TEXTS)["input_ids"], reference(TEXTS)["input_ids"])


def test_sentence_embedder_pooling_round_trips(tmp_path):
    model = EncoderModel(TINY_CONFIG, make_head("sentence_embedding", TINY_CONFIG, normalize=False,
                                                rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))
    q = quantize(model, PrecisionMap.preset("fully_quant", TINY_CONFIG.num_layers))
    q.save(tmp_path / "q")
    sidecar = json.loads((tmp_path / "q" / "quantization.json").read_text())
    assert sidecar["head"] == {"kind": "sentence_embedding",
                               "spec": {"pooling": ["mean"], "normalize": False}}
    assert sidecar["tokenizer"] is None and not (tmp_path / "q" / "tokenizer.json").exists()
    loaded = QuantizedModel.load(tmp_path / "q")
    assert loaded.model.head.normalize is False
    ids = np.arange(1, 9, dtype=np.int32)[None]
    np.testing.assert_array_equal(np.asarray(loaded(ids)), np.asarray(q(ids)))


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import samp_jax
    model = samp_jax.load(sys.argv[1])
    engine = samp_jax.compile(model, seq_buckets=(16,), batch_buckets=(4,))
    out = engine(json.loads(sys.argv[2]))
    np.save(sys.argv[3], out.logits)
    print(json.dumps({"type": type(model).__name__, "labels": list(model.labels),
                      "names": out.label_names}))
""")


@pytest.mark.slow
def test_quantized_folder_serves_identically_in_a_fresh_process(saved, tmp_path):
    engine = samp_jax.compile(saved.q, seq_buckets=(16,), batch_buckets=(4,))  # no tokenizer=
    expected = engine(TEXTS)
    assert expected.label_names == [SENTIMENT[i] for i in expected.labels]
    # elsewhere, with an empty asset cache: nothing but the folder is needed
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAMP_JAX_CACHE": str(tmp_path / "no-cache")}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(saved.quantized), json.dumps(TEXTS),
         str(tmp_path / "logits.npy")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reported = json.loads(result.stdout.strip().splitlines()[-1])
    assert reported == {"type": "QuantizedModel", "labels": list(SENTIMENT),
                        "names": expected.label_names}
    np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"), expected.logits)
    assert not (tmp_path / "no-cache").exists()  # the packaged MiniLM was never asked for


def test_tokenizer_saves_itself_without_a_source_folder(minilm_dir, tmp_path):
    backend = HFTokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tokenizer = Tokenizer(backend, max_length=24, pad_id=0)  # no files remembered
    tokenizer.save(tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert config == {"model_max_length": 24, "pad_token": "[PAD]"}
    again = Tokenizer.from_pretrained(tmp_path / "tok")
    assert (again.max_length, again.pad_id) == (24, 0)
    for key, value in tokenizer(TEXTS, padding=24).items():
        np.testing.assert_array_equal(again(TEXTS, padding=24)[key], value)


def test_each_loader_given_the_other_kind_of_folder_names_the_loader_that_reads_it(tmp_path):
    import samp_jax as sj
    from tests.helpers import tiny_classifier
    model = tiny_classifier(num_labels=2)
    hf = sj.save_pretrained(model, tmp_path / "hf")
    quantized = sj.quantize(model, sj.PrecisionMap.preset("fp32", model.config.num_layers)).save(
        tmp_path / "q")
    with pytest.raises(FileNotFoundError, match=r"has no quantization\.json \(it is an HF "
                                                r"checkpoint folder: samp_jax\.load or load_pretrained"):
        sj.QuantizedModel.load(hf)
    with pytest.raises(FileNotFoundError, match=r"no HF config at .*config\.json \(the folder "
                                                r"holds a quantized samp-jax model: samp_jax\.load"):
        sj.load_pretrained(quantized)


@pytest.mark.parametrize("path", [42, None, b"/tmp"])
def test_a_path_that_is_no_path_is_named(path):
    with pytest.raises(TypeError, match=rf"samp_jax.load: path is {type(path).__name__} .*expected "
                                        r"a model folder's path \(a str or os.PathLike\)"):
        samp_jax.load(path)
