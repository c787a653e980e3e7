"""Your model, your data: the CLI and the API on model folders and data files the project has
never seen (tiny random BERTs with the real MiniLM tokenizer, small fixture files in every
format), for every task type."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import datasets
import numpy as np
import pytest
from flax import nnx

import samp_jax as sj
from calibrate import search
from calibrate.search.latency import estimate_table
from samp_jax.app.cli import main
from samp_jax.models import make_head, save_pretrained
from samp_jax.ptq.site_calibration import model_fingerprint
from samp_jax.tasks.files import load_task

WORDS = ("good great fine nice bad awful poor sad movie film plot actor day night city river "
         "happy dull bright dark warm cold").split()
TINY = dict(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=64)


def _sentence(rng, n=6):
    return " ".join(rng.choice(WORDS, n))


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory, minilm_dir):
    """HF folders of tiny random BERTs with MiniLM's tokenizer: one per head."""
    root = tmp_path_factory.mktemp("models")
    config = sj.EncoderConfig(**TINY)
    made = {}
    for kind, labels in (("sequence_classification", ("neg", "pos")),
                         ("token_classification", ("O", "B-thing", "I-thing")),
                         ("sentence_embedding", None)):
        rngs = nnx.Rngs(7)
        head = make_head(kind, config, num_labels=None if labels is None else len(labels), rngs=rngs)
        model = sj.EncoderModel(config, head, rngs=rngs)
        # a sentence-embedding model also gets modules.json + 1_Pooling (mean, as MiniLM)
        made[kind] = save_pretrained(model, root / kind, tokenizer_dir=minilm_dir, labels=labels)
    return made


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    """Small data files of every task type (80 rows each, seeded)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    n = 80
    texts = [_sentence(rng) for _ in range(n)]
    pairs = [_sentence(rng) for _ in range(n)]
    labels = ["pos" if i % 2 else "neg" for i in range(n)]
    (root / "reviews.csv").write_text("review,sentiment\n" + "".join(
        f"{t},{lab}\n" for t, lab in zip(texts, labels)))
    with open(root / "pairs.jsonl", "w") as f:
        for t, p, lab in zip(texts, pairs, labels):
            f.write(json.dumps({"sentence1": t, "sentence2": p, "label": lab}) + "\n")
    with open(root / "tags.jsonl", "w") as f:
        for t in texts:
            words = t.split()
            tags = ["B-thing" if w in ("movie", "film", "city", "river") else "O" for w in words]
            f.write(json.dumps({"tokens": words, "tags": tags}) + "\n")
    (root / "similar.tsv").write_text("text\ttext_pair\tscore\n" + "".join(
        f"{t}\t{p}\t{rng.uniform(0, 5):.2f}\n" for t, p in zip(texts, pairs)))
    return root


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


CASES = [  # (model kind, data file, expected task type, metric)
    ("sequence_classification", "reviews.csv", "text_classification", "accuracy"),
    ("sequence_classification", "pairs.jsonl", "text_pair_classification", "accuracy"),
    ("token_classification", "tags.jsonl", "token_classification", "entity_f1"),
    ("sentence_embedding", "similar.tsv", "embedding_pairs", "spearman"),
]


@pytest.mark.parametrize("kind, file, task_type, metric", CASES)
def test_eval_on_your_model_and_data_for_every_task_type(tiny_dirs, data_files, capsys, kind, file,
                                                         task_type, metric):
    code, out, err = _run(capsys, "eval", "--model", str(tiny_dirs[kind]), "--data",
                          str(data_files / file), "--precision", "fp16,fully_quant", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["task_type"] == task_type and result["metric"] == metric
    assert [r["variant"] for r in result["rows"]] == ["fp32 (reference)", "fp16", "fully_quant / dynamic"]
    assert all(np.isfinite(r["value"]) for r in result["rows"])
    assert result["rows"][1]["agreement"] > 0.9  # fp16 barely changes a tiny model


@pytest.mark.parametrize("kind, file", [("token_classification", "tags.jsonl"),
                                        ("sentence_embedding", "similar.tsv")])
def test_eval_batch_size_cuts_the_batches_and_changes_no_figure(tiny_dirs, data_files, capsys,
                                                               kind, file, monkeypatch):
    from samp_jax.workflows import experiments
    seen = []
    real = experiments.TaskEvaluator.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        seen.append(max(len(b["input_ids"]) for b in self.evaluation.batches))
    monkeypatch.setattr(experiments.TaskEvaluator, "__init__", spy)
    results = []
    for extra in ([], ["--batch-size", "3"]):
        code, out, err = _run(capsys, "eval", "--model", str(tiny_dirs[kind]), "--data",
                              str(data_files / file), "--precision", "fully_quant", "--json", *extra)
        assert code == 0, err
        results.append([(r["variant"], r["value"]) for r in json.loads(out)["rows"]])
    assert seen[0] > 3 and seen[1] == 3
    (_, fp32), (_, int8) = results[0]
    (_, fp32_3), (_, int8_3) = results[1]
    assert fp32_3 == pytest.approx(fp32, abs=1e-6) and int8_3 == pytest.approx(int8, abs=1e-6)


@pytest.mark.slow
def test_search_then_predict_from_the_folder_alone_in_a_fresh_process(tiny_dirs, data_files,
                                                                       tmp_path, capsys):
    out = tmp_path / "search"
    code, _, err = _run(capsys, "search", "--model", str(tiny_dirs["sequence_classification"]),
                        "--data", str(data_files / "reviews.csv"), "--tolerance", "5%",
                        "--out", str(out), "--json")
    assert code == 0, err
    model_dir = out / "model"
    assert (out / "precision_map.json").is_file() and (model_dir / "quantization.json").is_file()
    # a fresh process with nothing but the folder and the data file
    predictions = tmp_path / "predictions.jsonl"
    done = subprocess.run([sys.executable, "-m", "samp_jax.app", "predict", "--model", str(model_dir),
                           "--data", str(data_files / "reviews.csv"), "--out", str(predictions)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(lines) == 80 and {line["label"] for line in lines} <= {"neg", "pos"}
    # the same predictions as the in-memory quantized model of the search
    model = sj.load(model_dir)
    texts = [line["text"] for line in lines]
    engine_labels = sj.compile(model, seq_buckets=(32, 64), batch_size=16)(texts).labels
    assert [line["label"] for line in lines] == [model.model.head.labels[i] for i in engine_labels]


def test_api_path_your_file_to_a_searched_map(tiny_dirs, data_files):
    model = sj.load(tiny_dirs["token_classification"])
    task = load_task(data_files / "tags.jsonl", labels=model.head.labels, head=model.head_kind)
    assert task.task_type.name == "token_classification" and task.labels == ("O", "B-thing", "I-thing")
    result = search(model, task, tokenizer=model.tokenizer, tolerance=0.05, progress=False)
    assert result.metric_name == "entity_f1" and result.precision_map.num_layers == 2


@pytest.mark.parametrize("argv_extra, message", [
    (["--data", "reviews.csv", "--text-column", "body"], "body"),
    (["--data", "missing.csv"], "missing.csv"),
    (["--data", "reviews.csv", "--label-column", "review"], "label"),
])
def test_data_errors_are_one_line_and_come_before_slow_work(tiny_dirs, data_files, capsys,
                                                             argv_extra, message, monkeypatch):
    monkeypatch.chdir(data_files)
    monkeypatch.setattr("samp_jax.app.cli.run_search",
                        lambda *a, **k: pytest.fail("the search started before the data was checked"))
    code, out, err = _run(capsys, "search", "--model", str(tiny_dirs["sequence_classification"]),
                          *argv_extra, "--out", "o")
    assert code == 1 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_model_folder_without_a_tokenizer_is_refused(tiny_dirs, data_files, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(tiny_dirs["sequence_classification"] / name, bare / name)
    code, _, err = _run(capsys, "eval", "--model", str(bare), "--data", str(data_files / "reviews.csv"))
    assert code == 1 and "tokenizer" in err and str(bare) in err


def test_labels_that_disagree_with_the_model_are_refused(tiny_dirs, data_files, tmp_path, capsys):
    (tmp_path / "other.csv").write_text("text,label\n" + "".join(
        f"word {i},{'yes' if i % 2 else 'no'}\n" for i in range(40)))
    code, _, err = _run(capsys, "eval", "--model", str(tiny_dirs["sequence_classification"]),
                        "--data", str(tmp_path / "other.csv"))
    assert code == 1 and ("'yes'" in err or "'no'" in err) and "neg" in err


@pytest.mark.slow
def test_finetune_on_your_file_writes_a_loadable_folder(data_files, tmp_path, capsys, minilm_dir):
    out = tmp_path / "tuned"
    code, stdout, err = _run(capsys, "finetune", "--model", "minilm", "--data",
                             str(data_files / "reviews.csv"), "--epochs", "0.2", "--min-steps", "0", "--batch-size", "8",
                             "--eval-every", "2", "--out", str(out), "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["labels"] == ["neg", "pos"] and summary["task_type"] == "text_classification"
    assert summary["model"] == str(out) and summary["base_model"] == "minilm"
    assert json.loads((out / "finetune.json").read_text())["versions"] == summary["versions"]
    model = sj.load(out)
    assert model.head.labels == ("neg", "pos") and model.tokenizer is not None


def test_predict_writes_the_raw_score_of_a_one_output_head(data_files, tmp_path, capsys,
                                                          minilm_dir):
    """A reranker (num_labels=1): predict writes each row's raw score, the model's logit."""
    config = sj.EncoderConfig(**TINY)
    rngs = nnx.Rngs(3)
    model = sj.EncoderModel(config, make_head("sequence_classification", config, num_labels=1,
                                              rngs=rngs), rngs=rngs)
    folder = save_pretrained(model, tmp_path / "reranker", tokenizer_dir=minilm_dir)
    code, _, err = _run(capsys, "predict", "--model", str(folder), "--data",
                        str(data_files / "pairs.jsonl"), "--out", str(tmp_path / "p.jsonl"))
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"text", "text_pair", "score", "truncated"}
    tokenizer = sj.Tokenizer.from_pretrained(folder)
    logits = model(**tokenizer([r["text"] for r in rows[:4]], [r["text_pair"] for r in rows[:4]]))
    np.testing.assert_allclose([r["score"] for r in rows[:4]], np.asarray(logits)[:, 0], atol=1e-5)
    served = sj.compile(sj.load(folder), seq_buckets=(8,), batch_size=1)([("a b", "c d")])
    assert served.logits.shape == (1, 1) and served.labels is None and served.label_names is None


@pytest.mark.slow
def test_finetune_on_a_train_file_says_which_rows_it_holds_out(tiny_dirs, data_files, tmp_path,
                                                             capsys):
    lines = (data_files / "reviews.csv").read_text().splitlines()
    (tmp_path / "train.csv").write_text("\n".join(lines[:61]) + "\n")
    (tmp_path / "search.csv").write_text("\n".join([lines[0], *lines[61:]]) + "\n")
    code, stdout, err = _run(capsys, "finetune", "--model", str(tiny_dirs["sequence_classification"]),
                             "--split-file", f"train={tmp_path / 'train.csv'}", "--split-file",
                             f"search={tmp_path / 'search.csv'}", "--epochs", "0.1",
                             "--min-steps", "0", "--batch-size", "8", "--out", str(tmp_path / "t"))
    assert code == 0, err
    assert "calibration, dev carved from train with split seed 0" in err
    assert ("the calibration rows are carved from your train file and not trained on" in err
            and "give --split-file calibration=FILE to train on every train row" in err), err


@pytest.mark.parametrize("fmt", ["parquet", "save_to_disk"])
def test_eval_reads_parquet_and_saved_dataset_folders(tiny_dirs, data_files, tmp_path, capsys, fmt):
    rows = [line.split(",") for line in (data_files / "reviews.csv").read_text().splitlines()[1:]]
    dataset = datasets.Dataset.from_dict({"review": [r[0] for r in rows], "sentiment": [r[1] for r in rows]})
    if fmt == "parquet":
        path = tmp_path / "reviews.parquet"
        dataset.to_parquet(str(path))
    else:
        path = tmp_path / "reviews_saved"
        dataset.save_to_disk(str(path))
    code, out, err = _run(capsys, "eval", "--model", str(tiny_dirs["sequence_classification"]),
                          "--data", str(path), "--precision", "fp16", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["task_type"] == "text_classification" and result["examples"] == 16


def test_plain_texts_have_no_metric_but_a_divergence(tiny_dirs, tmp_path, capsys):
    rng = np.random.default_rng(1)
    (tmp_path / "texts.csv").write_text("text\n" + "".join(f"{_sentence(rng)}\n" for _ in range(40)))
    code, out, err = _run(capsys, "eval", "--model", str(tiny_dirs["sentence_embedding"]), "--data",
                          str(tmp_path / "texts.csv"), "--precision", "fully_quant", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["task_type"] == "embedding_texts" and result["metric"] is None
    assert result["rows"][1]["value"] is None and 0.5 < result["rows"][1]["agreement"] <= 1.0


@pytest.mark.slow
def test_a_search_on_plain_texts_reports_the_held_out_divergence(tiny_dirs, tmp_path, capsys):
    """Texts only: no metric, so the test split is scored by the proxy the search bounds (the
    chosen map's 1 - cosine to FP32 there), beside the search split's."""
    rng = np.random.default_rng(2)
    (tmp_path / "texts.csv").write_text("text\n" + "".join(f"{_sentence(rng)}\n" for _ in range(60)))
    code, out, err = _run(capsys, "search", "--model", str(tiny_dirs["sentence_embedding"]),
                          "--data", str(tmp_path / "texts.csv"), "--tolerance", "0.05",
                          "--out", str(tmp_path / "s"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["test"] == {}
    proxy = summary["test_proxy"]
    assert proxy["proxy"] == "cosine" and 0 <= proxy["chosen"] < 0.5
    assert "fully_quant" in proxy and proxy["fully_quant"] >= 0
    assert "On the held-out test split the chosen map's 1 − cosine to FP32 is" in \
        (tmp_path / "s" / "report.md").read_text()


def test_a_model_whose_labels_differ_from_a_built_in_task_is_refused(tiny_dirs, capsys):
    code, _, err = _run(capsys, "eval", "--model", str(tiny_dirs["sequence_classification"]),
                        "--data", "snli")
    assert code == 1 and "['neg', 'pos']" in err and "entailment" in err


def test_seed_without_a_model_on_built_in_data_is_a_usage_error(capsys):
    code, _, err = _run(capsys, "eval", "--data", "polarity", "--seed", "3")
    assert code == 2 and "--seed 3 needs --model" in err


def test_a_quantized_folder_is_refused_where_the_float_model_is_needed(tiny_dirs, data_files,
                                                                       tmp_path, capsys):
    model = sj.load(tiny_dirs["sequence_classification"])
    sj.quantize(model, sj.PrecisionMap.preset("fully_quant", 2)).save(tmp_path / "q")
    code, _, err = _run(capsys, "eval", "--model", str(tmp_path / "q"), "--data",
                        str(data_files / "reviews.csv"))
    assert code == 1 and "is a quantized model" in err


def test_explicit_train_and_test_files_get_a_dev_split_carved_for_fine_tuning(data_files, tmp_path):
    lines = (data_files / "reviews.csv").read_text().splitlines()
    (tmp_path / "train.csv").write_text("\n".join(lines[:61]) + "\n")
    (tmp_path / "test.csv").write_text("\n".join([lines[0], *lines[61:]]) + "\n")
    task = load_task(split_files={"train": tmp_path / "train.csv", "test": tmp_path / "test.csv"})
    sizes = task.sizes()
    assert sizes["dev"] > 0 and sizes["search"] > 0 and sizes["calibration"] > 0
    assert sizes["test"] == 20 and sum(sizes.values()) == 80


def test_entity_tags_of_no_one_scheme_and_single_class_pairs_are_refused_early(tmp_path,
                                                                              minilm_dir):
    with open(tmp_path / "io.jsonl", "w") as f:  # no prefixed tag: IO tags, runs of one type
        for i in range(20):
            f.write(json.dumps({"tokens": ["a", f"b{i}"], "tags": ["PER", "O"]}) + "\n")
    assert load_task(tmp_path / "io.jsonl").metric == "entity_f1"
    with open(tmp_path / "stray.jsonl", "w") as f:  # entity tags, and one that is none
        for i in range(20):
            f.write(json.dumps({"tokens": ["a", "b", "c"], "tags": ["B-PER", "PER", "O"]}) + "\n")
    with pytest.raises(ValueError, match=r"column 'tags': tags \['PER'\] are not 'O' or .*"
                                         "entity F1 needs BIO, BIOES or BILOU names"):
        load_task(tmp_path / "stray.jsonl")
    for scheme, tags in (("bioes", ["B-PER", "E-PER", "S-LOC"]), ("bilou", ["B-PER", "L-PER", "U-LOC"])):
        with open(tmp_path / f"{scheme}.jsonl", "w") as f:  # read as entity F1 reads them
            for i in range(20):
                f.write(json.dumps({"tokens": ["a", f"b{i}", "c"], "tags": tags}) + "\n")
        assert set(load_task(tmp_path / f"{scheme}.jsonl").labels) == set(tags)
    with open(tmp_path / "mixed.jsonl", "w") as f:
        for i in range(20):
            tags = ["B-PER", "E-PER", "S-LOC"] if i % 2 else ["B-PER", "L-PER", "U-LOC"]
            f.write(json.dumps({"tokens": ["a", f"b{i}", "c"], "tags": tags}) + "\n")
    with pytest.raises(ValueError, match=r"mixed.jsonl: column 'tags': tags .* use the prefixes "
                                         r"\['B', 'E', 'L', 'S', 'U'\], which no one scheme has"):
        load_task(tmp_path / "mixed.jsonl")
    (tmp_path / "pairs.csv").write_text("text,text_pair,label\n" + "".join(
        f"a{i},b{i},1\n" for i in range(20)))
    task = load_task(tmp_path / "pairs.csv", head="sentence_embedding")
    with pytest.raises(ValueError, match="needs both 0 and 1 labels"):
        task.evaluation(sj.Tokenizer.from_pretrained(minilm_dir), "test")
    # both classes in the file, one in the test split drawn from it: how to draw it otherwise
    (tmp_path / "rare.csv").write_text("text,text_pair,label\n" + "".join(
        f"a{i},b{i},{int(i == 0)}\n" for i in range(40)))
    rare = load_task(tmp_path / "rare.csv", head="sentence_embedding")
    split = next(s for s in ("test", "search") if all(e["label"] == 0 for e in rare.split(s)))
    with pytest.raises(ValueError, match=rf"the {split} split of rare: ROC-AUC needs both 0 and 1 "
                                         r"labels .* \(its rows were drawn at random with split "
                                         r"seed 0: another seed, --seed or seed=, or a file for "
                                         r"each split, --split-file, can give it what it lacks\)"):
        rare.evaluation(sj.Tokenizer.from_pretrained(minilm_dir), split)
    # a test split given as its own file was not drawn: no seed can change it, none is named
    given = load_task(split_files={"train": tmp_path / "rare.csv", "test": tmp_path / "pairs.csv"},
                      head="sentence_embedding")
    with pytest.raises(ValueError, match="the test split of .*needs both 0 and 1 labels") as e:
        given.evaluation(sj.Tokenizer.from_pretrained(minilm_dir), "test")
    assert "seed" not in str(e.value) and "search" in given.drawn_splits


def test_tsv_keeps_quotes_as_text(tmp_path):
    (tmp_path / "q.tsv").write_text("text\tlabel\n" + "".join(
        f'"quoted {i}" and more\t{i % 2}\n' for i in range(20)))
    task = load_task(tmp_path / "q.tsv")
    texts = [e["text"] for split in ("train", "dev", "calibration", "search", "test")
             for e in task.split(split)]
    assert all(t.startswith('"quoted') for t in texts) and len(texts) == 20


def test_unreachable_latency_target_is_refused_before_calibration(tiny_dirs, data_files, tmp_path,
                                                                  capsys, monkeypatch):
    monkeypatch.setattr("calibrate.calibration.api.observe",
                        lambda *a, **k: pytest.fail("calibration started before the target was checked"))
    code, _, err = _run(capsys, "search", "--model", str(tiny_dirs["sequence_classification"]),
                        "--data", str(data_files / "reviews.csv"), "--latency-target", "1e-9",
                        "--out", str(tmp_path / "o"))
    assert code == 1 and "below the fastest possible map" in err


def test_an_out_path_under_a_file_and_damaged_weights_are_one_line_errors(tiny_dirs, data_files,
                                                                          tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = _run(capsys, "calibrate", "--model", str(tiny_dirs["sequence_classification"]),
                        "--data", str(data_files / "reviews.csv"), "--out", str(blocker / "q"))
    assert code == 1 and f"{blocker} is not a folder" in err
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_dirs["sequence_classification"], damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted copy
    code, _, err = _run(capsys, "eval", "--model", str(damaged), "--data", str(data_files / "reviews.csv"))
    assert code == 1 and "is not a readable safetensors file" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_searched_map_alone_rebuilds_the_searched_model(tiny_dirs, data_files, tmp_path, capsys):
    """`samp-jax eval --precision OUT/precision_map.json` scores the search's own quantized model
    bit for bit with nothing but the map: each static site's calibrator and clip, and the dtype
    between sites, are in it (summary.json is deleted first)."""
    out, model_dir = tmp_path / "search", tiny_dirs["sequence_classification"]
    data = str(data_files / "reviews.csv")
    # planned for an H100 (estimated latency: static INT8 is faster than FP16 at every site; on
    # this CPU the tiny model runs fastest in FP32) with a tolerance every map meets, so the
    # chosen map has static sites, each with its clip picked among the calibrators
    code, stdout, err = _run(capsys, "search", "--model", str(model_dir), "--data", data,
                             "--target", "h100", "--options", "int8-static", "--tolerance", "0.49",
                             "--tolerance-mode", "absolute", "--out", str(out), "--json")
    assert code == 0, err
    searched = json.loads(stdout)
    (out / "summary.json").unlink()
    pmap = sj.PrecisionMap.from_json(out / "precision_map.json")
    static = [key for key, p in pmap.items() if p.needs_calibration]
    assert static and set(pmap.stored_clips()) == set(static) and pmap.compute_dtype == "float16"
    assert searched["calibration"] == "per-site"  # each static site picked its calibrator
    code, stdout, err = _run(capsys, "eval", "--model", str(model_dir), "--data", data,
                             "--precision", str(out / "precision_map.json"), "--json")
    assert code == 0, err
    assert json.loads(stdout)["rows"][1]["value"] == searched["test"]["chosen"]
    # and the map rebuilds the very model the search saved, parameter for parameter
    rebuilt = sj.quantize(sj.load(model_dir), pmap)
    saved = sj.load(out / "model")
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(rebuilt.model)),
                                 nnx.to_flat_state(nnx.state(saved.model))):
        np.testing.assert_array_equal(np.asarray(a.get_value()), np.asarray(b.get_value()), err_msg=str(path))


def test_a_map_with_clips_of_another_model_is_calibrated_on_the_data(tiny_dirs, data_files,
                                                                     tmp_path, capsys):
    """`calibrate` and `eval --precision MAP` use a map's stored clips only on the model they
    were measured on (its `model_fingerprint`); on another model, they calibrate those sites on
    their data, with one warning line naming the map (the API tests show that the model's own
    map runs no calibration pass)."""
    model_dir, data = tiny_dirs["sequence_classification"], str(data_files / "reviews.csv")
    static = sj.PrecisionMap.preset("fully_quant", 2, activation="static")
    clips = {key: 4.0 for key, _ in static.items()}
    own = static.with_calibration({}, clips, compute_dtype="float32",
                                  model_fingerprint=model_fingerprint(sj.load(model_dir)))
    foreign = dataclasses.replace(own, model_fingerprint="0" * 64)
    for name, pmap in (("own.json", own), ("foreign.json", foreign)):
        pmap.save(tmp_path / name)
    code, out, err = _run(capsys, "calibrate", "--model", str(model_dir), "--data", data,
                          "--precision", str(tmp_path / "foreign.json"), "--out", str(tmp_path / "q"),
                          "--eval", "--json")
    assert code == 0, err
    calibrated = json.loads(out)["test"]["value"]
    warned = [line for line in err.splitlines() if "stored clip" in line]
    assert len(warned) == 1 and f"precision map {tmp_path / 'foreign.json'}: its 8 stored clip" \
        in warned[0] and "measured on another model (model_fingerprint 000000000000...)" in warned[0]
    calibration = json.loads((tmp_path / "q" / "quantization.json").read_text())["info"]["calibration"]
    assert len(calibration["sites"]) == 8 and calibration["tokens"] > 0
    assert all(site["amax"] != 4.0 for site in calibration["sites"].values())
    code, out, err = _run(capsys, "eval", "--model", str(model_dir), "--data", data, "--precision",
                          f"{tmp_path / 'foreign.json'},{tmp_path / 'own.json'}", "--json")
    assert code == 0, err
    warned = [line for line in err.splitlines() if "stored clip" in line]
    assert len(warned) == 1 and "foreign.json: its 8 stored clip" in warned[0]  # own.json: none
    assert json.loads(out)["rows"][1]["value"] == calibrated  # the same calibration as calibrate's


def test_a_latency_table_of_another_model_shape_is_refused(tiny_dirs, data_files, tmp_path, capsys):
    """`search --latency-table FILE` of another architecture (here wider) ends at once, in one
    line naming the file and the fields that differ; nothing is written."""
    table = tmp_path / "latency_table.json"
    table.write_text(estimate_table(sj.EncoderConfig(**{**TINY, "hidden_size": 128,
                                                        "intermediate_size": 512}), 32, 128).to_json())
    code, _, err = _run(capsys, "search", "--model", str(tiny_dirs["sequence_classification"]),
                        "--data", str(data_files / "reviews.csv"), "--latency-table", str(table),
                        "--out", str(tmp_path / "out"))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"--latency-table {table} was made for another model: hidden_size 128, expected 32; " \
           "intermediate_size 512, expected 64 (this model: model_type bert, num_layers 2" in err
    assert not (tmp_path / "out").exists()
