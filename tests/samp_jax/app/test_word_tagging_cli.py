"""A part-of-speech tagger (a tiny random BERT whose tags are UPOS names) through the command
line: `eval` scores word accuracy, the value a user computes from `predict`'s tags; a CoNLL-2003
file's part-of-speech field is read with `--tags-column 2`; entity F1 is refused for its tags,
and offered beside word accuracy to an entity tagger; `calibrate --eval`, `search --tolerance`
and `finetune` run on it and record word accuracy."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from flax import nnx

import samp_jax as sj
from samp_jax.app.cli import main
from samp_jax.models import make_head, save_pretrained

TINY = dict(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=64)
UPOS = ("ADJ", "DET", "NOUN", "PUNCT", "VERB")
LEXICON = {"the": "DET", "a": "DET", "dog": "NOUN", "cat": "NOUN", "photosynthesis": "NOUN",
           "runs": "VERB", "sleeps": "VERB", "big": "ADJ", "unbelievable": "ADJ", ".": "PUNCT"}


def _tagger(folder, labels, minilm_dir):
    config = sj.EncoderConfig(**TINY)
    rngs = nnx.Rngs(7)
    model = sj.EncoderModel(config, make_head("token_classification", config,
                                              num_labels=len(labels), rngs=rngs), rngs=rngs)
    return save_pretrained(model, folder, tokenizer_dir=minilm_dir, labels=labels)


@pytest.fixture(scope="module")
def pos(tmp_path_factory, minilm_dir):
    """A POS tagger's folder, 60 tagged sentences (words of several pieces among them) as JSON
    Lines and as CoNLL-2003 lines (word, POS, chunk, entity tag)."""
    root = tmp_path_factory.mktemp("pos")
    rng = np.random.default_rng(0)
    sentences = [list(rng.choice(list(LEXICON), int(rng.integers(3, 9)))) for _ in range(60)]
    with open(root / "pos.jsonl", "w") as f:
        for words in sentences:
            f.write(json.dumps({"tokens": words, "tags": [LEXICON[w] for w in words]}) + "\n")
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words in sentences:
        lines += [f"{w} {LEXICON[w]} {'B-NP' if LEXICON[w] == 'NOUN' else 'O'} "
                  f"{'B-MISC' if LEXICON[w] == 'NOUN' else 'O'}" for w in words] + [""]
    (root / "c03.conll").write_text("\n".join(lines))
    return {"model": _tagger(root / "model", UPOS, minilm_dir), "data": root / "pos.jsonl",
            "conll": root / "c03.conll", "sentences": sentences}


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _word_accuracy(gold_rows, predicted_rows) -> float:
    pairs = [(g, p) for gold, predicted in zip(gold_rows, predicted_rows, strict=True)
             for g, p in zip(gold, predicted, strict=True)]
    return sum(g == p for g, p in pairs) / len(pairs)


def test_eval_scores_a_pos_tagger_by_word_accuracy_as_predicts_tags_give_it(pos, tmp_path, capsys):
    code, _, err = _run(capsys, "predict", "--model", pos["model"], "--data", pos["data"],
                        "--out", tmp_path / "p.jsonl")
    assert code == 0, err
    predicted = [json.loads(line)["tags"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    gold = [[LEXICON[w] for w in words] for words in pos["sentences"]]
    code, out, err = _run(capsys, "eval", "--model", pos["model"], "--split-file",
                          f"test={pos['data']}", "--precision", "fp16", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["task_type"] == "token_classification" and result["metric"] == "word_accuracy"
    fp32 = result["rows"][0]
    assert fp32["metric"] == "word_accuracy" and fp32["examples"] == 60
    assert fp32["value"] == pytest.approx(_word_accuracy(gold, predicted), abs=1e-12)
    assert "precision" not in fp32 and np.isfinite(result["rows"][1]["value"])


def test_the_conll_part_of_speech_field_is_read_with_tags_column_2(pos, capsys):
    code, out, err = _run(capsys, "eval", "--model", pos["model"], "--data", pos["conll"],
                          "--tags-column", "2", "--precision", "fp16", "--json")
    assert code == 0, err
    assert json.loads(out)["metric"] == "word_accuracy"
    code, _, err = _run(capsys, "eval", "--model", pos["model"], "--data", pos["conll"],
                        "--precision", "fp16")  # the last field, entity tags: not the model's
    assert code == 1 and ("the data has 2 label names the model lacks: ['B-MISC', 'O']; column "
                          "'2' holds only the model's labels: read its tags with --tags-column 2"
                          in err), err


def test_entity_f1_of_pos_tags_is_a_usage_error_naming_word_accuracy(pos, capsys):
    code, _, err = _run(capsys, "eval", "--model", pos["model"], "--data", pos["data"],
                        "--precision", "fp16", "--metric", "entity_f1")
    assert code == 2 and "Traceback" not in err
    assert re.search(r"error: --metric entity_f1: task 'pos' \(token_classification\): metric "
                     r"'entity_f1' is not one it can be scored by; these rows are scored by "
                     r"word_accuracy \(entity_f1 does not read the label names \['ADJ', ", err), err


def test_an_entity_tagger_keeps_entity_f1_and_may_ask_for_word_accuracy(pos, tmp_path, capsys,
                                                                      minilm_dir):
    model = _tagger(tmp_path / "ner", ("O", "B-MISC"), minilm_dir)
    data = tmp_path / "ner.jsonl"
    with open(data, "w") as f:
        for words in pos["sentences"]:
            f.write(json.dumps({"tokens": words, "tags": ["B-MISC" if LEXICON[w] == "NOUN" else "O"
                                                          for w in words]}) + "\n")
    code, out, err = _run(capsys, "eval", "--model", model, "--split-file", f"test={data}",
                          "--precision", "fp16", "--json")
    assert code == 0, err
    entity = json.loads(out)["rows"][0]
    assert entity["metric"] == "entity_f1" and {"precision", "recall"} <= set(entity)
    code, out, err = _run(capsys, "eval", "--model", model, "--split-file", f"test={data}",
                          "--precision", "fp16", "--metric", "word_accuracy", "--json")
    assert code == 0, err
    words = json.loads(out)["rows"][0]
    assert _run(capsys, "predict", "--model", model, "--data", data,
                "--out", tmp_path / "p.jsonl")[0] == 0
    predicted = [json.loads(line)["tags"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    gold = [json.loads(line)["tags"] for line in data.read_text().splitlines()]
    assert words["metric"] == "word_accuracy"
    assert words["value"] == pytest.approx(_word_accuracy(gold, predicted), abs=1e-12)


@pytest.mark.slow
def test_calibrate_search_and_finetune_run_on_a_pos_tagger_by_word_accuracy(pos, tmp_path,
                                                                           capsys):
    code, out, err = _run(capsys, "calibrate", "--model", pos["model"], "--data", pos["data"],
                          "--precision", "fully_quant", "--out", tmp_path / "c", "--eval")
    assert code == 0, err
    assert re.search(r"test word_accuracy: \d\.\d{4} \(FP32 \d\.\d{4}\)", out), out
    code, _, err = _run(capsys, "search", "--model", pos["model"], "--data", pos["data"],
                        "--tolerance", "5%", "--out", tmp_path / "s")
    assert code == 0, err
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["metric"] == "word_accuracy" and summary["task_type"] == "token_classification"
    assert "word accuracy" in (tmp_path / "s" / "report.md").read_text()
    code, out, err = _run(capsys, "finetune", "--model", pos["model"], "--data", pos["data"],
                          "--epochs", "2", "--min-steps", "0", "--batch-size", "8",
                          "--eval-every", "4", "--learning-rate", "1e-3",
                          "--out", tmp_path / "ft", "--json")
    assert code == 0, err
    tuned = json.loads(out)
    assert tuned["metric"] == "word_accuracy" and tuned["test"]["metric"] == "word_accuracy"
    assert tuned["labels"] == list(UPOS) and tuned["dev_chance"]["metric"] == "word_accuracy"
    assert sj.load(tmp_path / "ft").head.labels == UPOS


def _runs(tags: list[str]) -> set[tuple[str, int, int]]:
    """IO entities counted by hand: each maximal run of one tag other than "O"."""
    runs, start = set(), 0
    for i in range(1, len(tags) + 1):
        if i == len(tags) or tags[i] != tags[start]:
            if tags[start] != "O":
                runs.add((tags[start], start, i))
            start = i
    return runs


def test_an_io_tagger_is_scored_by_entity_f1_of_predicts_entities_and_told_so(pos, tmp_path,
                                                                              capsys, minilm_dir):
    """Tags "O", "LOC", "PER" (no B-/I- prefix): eval scores entity F1 of runs of one type,
    the F1 of the entities `predict` writes against the gold runs, and says in one warning line
    how it read them and that --metric word_accuracy scores each word instead."""
    names = ("O", "LOC", "PER")
    model = _tagger(tmp_path / "io", names, minilm_dir)
    io = {"NOUN": "PER", "VERB": "LOC"}
    data = tmp_path / "io.jsonl"
    gold = [[io.get(LEXICON[w], "O") for w in words] for words in pos["sentences"]]
    with open(data, "w") as f:
        for words, tags in zip(pos["sentences"], gold):
            f.write(json.dumps({"tokens": words, "tags": tags}) + "\n")
    code, out, err = _run(capsys, "eval", "--model", model, "--split-file", f"test={data}",
                          "--precision", "fp16", "--json")
    assert code == 0, err
    assert ("samp-jax eval: warning: the tags ['O', 'LOC', 'PER'] have no B-/I- prefix: entity "
            "F1 reads them as IO tags, each run of words of one type one entity" in err), err
    assert "--metric word_accuracy scores each word's tag instead" in err and err.count("IO") == 1
    entity = json.loads(out)["rows"][0]
    assert entity["metric"] == "entity_f1"
    assert _run(capsys, "predict", "--model", model, "--data", data,
                "--out", tmp_path / "p.jsonl")[0] == 0
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    predicted = [{(e["type"], e["start"], e["end"]) for e in r["entities"]} for r in records]
    assert all(found == _runs(r["tags"]) for found, r in zip(predicted, records))
    expected = [_runs(tags) for tags in gold]
    right = sum(len(p & g) for p, g in zip(predicted, expected))
    f1 = 2 * right / (sum(map(len, predicted)) + sum(map(len, expected)))
    assert 0 < entity["value"] == pytest.approx(f1, abs=1e-12)
    code, out, err = _run(capsys, "eval", "--model", model, "--split-file", f"test={data}",
                          "--precision", "fp16", "--metric", "word_accuracy", "--json")
    assert code == 0 and "IO" not in err, err
    assert json.loads(out)["rows"][0]["metric"] == "word_accuracy"


def test_a_generic_tagger_on_a_class_label_folder_is_scored_by_the_datas_bio_names(
        pos, tmp_path, capsys, minilm_dir):
    """A head named LABEL_0 .. LABEL_2 (HF's default id2label) on a save_to_disk folder whose
    tags are a ClassLabel of BIO names: entity F1, with a warning line naming both; a
    ClassLabel of another number of names is a one-line error naming both counts."""
    import datasets

    def folder(names, name):
        features = datasets.Features({
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
        tags = [[1 if LEXICON[w] == "NOUN" else 0 for w in words] for words in pos["sentences"]]
        datasets.Dataset.from_dict({"tokens": pos["sentences"], "ner_tags": tags},
                                   features).save_to_disk(str(tmp_path / name))
        return tmp_path / name
    model = _tagger(tmp_path / "generic", ("LABEL_0", "LABEL_1", "LABEL_2"), minilm_dir)
    data = folder(["O", "B-MISC", "I-MISC"], "bio")
    wide = folder(["O", "B-MISC", "I-MISC", "B-PER", "I-PER"], "wide")
    capsys.readouterr()  # datasets' progress bars
    code, out, err = _run(capsys, "eval", "--model", model, "--split-file", f"test={data}",
                          "--precision", "fp16", "--json")
    assert code == 0, err
    assert ("samp-jax eval: warning: " + str(data) + ": the model names its 3 outputs with "
            "HF's generic LABEL_0 .. LABEL_2; column 'ner_tags' is a ClassLabel of as many names, "
            "['O', 'B-MISC', 'I-MISC'], read as the names of the model's outputs in id order"
            in err), err
    result = json.loads(out)
    assert result["metric"] == "entity_f1" and result["rows"][0]["metric"] == "entity_f1"
    code, _, err = _run(capsys, "eval", "--model", model, "--split-file", f"test={wide}",
                        "--precision", "fp16")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "is a ClassLabel of 5 names" in err and "the model's head has 3 outputs" in err, err
