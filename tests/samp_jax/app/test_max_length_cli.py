"""`--max-length` on the command line: rows are cut at the model's limit unless it is given, a
value above that limit is a usage error naming both numbers, and every command says (once, on
stderr) and records (in its JSON) what the cut left out."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from flax import nnx

import samp_jax as sj
from samp_jax.app.cli import main
from samp_jax.models import make_head, save_pretrained
from samp_jax.tasks.truncation import Truncation
from tests.helpers import TINY_MINILM_VOCAB

LABELS = ("O", "B-thing", "I-thing")
WORDS = ("good", "movie", "city", "film", "river", "night", "day")  # one MiniLM piece each
TAGS = {"city": "B-thing", "river": "I-thing"}  # every other word: "O"
LONG_WORDS = 80


@pytest.fixture(scope="module")
def tagger(tmp_path_factory, minilm_dir):
    """A tiny random tagger with MiniLM's tokenizer: a limit of 64 tokens (its positions)."""
    config = sj.EncoderConfig(**TINY_MINILM_VOCAB)
    rngs = nnx.Rngs(3)
    model = sj.EncoderModel(config, make_head("token_classification", config,
                                              num_labels=len(LABELS), rngs=rngs), rngs=rngs)
    return save_pretrained(model, tmp_path_factory.mktemp("m") / "tagger",
                           tokenizer_dir=minilm_dir, labels=LABELS)


def _row(n: int, seed: int) -> dict:
    words = [WORDS[(seed + i * (1 + seed % 5)) % len(WORDS)] for i in range(n)]
    return {"tokens": words, "tags": [TAGS.get(w, "O") for w in words]}


ROWS = [_row(LONG_WORDS if i % 4 == 0 else 6 + i % 5, i) for i in range(40)]
TEST_ROWS = ROWS[:10] + ROWS[20:22]  # 4 long rows (82 tokens), 8 short ones


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """All 40 rows (every fourth one 80 words long), and a test file of 12 of them."""
    folder = tmp_path_factory.mktemp("d")
    for name, rows in (("tags.jsonl", ROWS), ("test.jsonl", TEST_ROWS)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "tags.jsonl", folder / "test.jsonl"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _cut(limit: int, rows: list[dict] = TEST_ROWS) -> dict:
    """The counts of `rows` cut at `limit` tokens ([CLS] and [SEP] take two), by hand."""
    past = [r["tags"][limit - 2:] for r in rows if len(r["tokens"]) > limit - 2]
    return {"max_length": limit, "rows": len(rows), "rows_truncated": len(past),
            "words_cut": sum(map(len, past)),
            "entity_words_cut": sum(t != "O" for tags in past for t in tags)}


@pytest.mark.parametrize("limit", [None, 32])
def test_eval_cuts_at_the_models_limit_or_max_length_and_says_what_was_cut(tagger, data, capsys,
                                                                          limit):
    option = () if limit is None else ("--max-length", limit)
    code, out, err = _run(capsys, "eval", "--model", tagger, "--split-file", f"test={data[1]}",
                          "--json", *option)
    assert code == 0, err
    result = json.loads(out)
    expected = _cut(limit or 64)  # default: the model's 64 positions, not 128
    assert result["max_length"] == expected["max_length"]
    assert result["truncation"] == {"test": expected}
    line = (f"samp-jax eval: warning: 4 of 12 test rows are longer than {expected['max_length']} "
            f"tokens and were truncated; {expected['words_cut']} tagged words past the cut are "
            f"not scored ({expected['entity_words_cut']} of them in gold entities)")
    assert err.count("truncated") == 1 and line in err


@pytest.mark.parametrize("command", ["eval", "calibrate", "search", "finetune", "predict"])
def test_a_max_length_above_the_models_limit_is_a_usage_error(tagger, data, tmp_path, capsys,
                                                             command):
    out = () if command == "eval" else ("--out", tmp_path / ("p.jsonl" if command == "predict"
                                                            else "out"))
    code, stdout, err = _run(capsys, command, "--model", tagger, "--data", data[0],
                             "--max-length", 65, *out)
    assert code == 2 and stdout == ""
    assert "--max-length 65 exceeds the 64-token limit" in err and "give at most 64" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("text", ["0", "-3", "1.5"])
def test_max_length_must_be_a_positive_whole_number(tagger, data, capsys, text):
    with pytest.raises(SystemExit) as stop:  # refused by the parser, before anything is read
        main(["eval", "--model", str(tagger), "--data", str(data[0]), "--max-length", text])
    assert stop.value.code == 2 and "argument --max-length" in capsys.readouterr().err


def test_predict_serves_up_to_max_length_and_counts_the_rows_it_cut(tagger, data, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    code, stdout, err = _run(capsys, "predict", "--model", tagger, "--data", data[1], "--out", out,
                             "--max-length", 32, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert set(result.pop("versions")) == {"samp_jax", "jax", "jaxlib", "flax"}
    assert result.pop("created").endswith("Z")
    assert result == {"predictions": str(out), "rows": 12, "max_length": 32, "truncated": 4}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(r["truncated"] for r in records) == 4
    assert all(r["tags"][29] is not None and r["tags"][30] is None
               for r in records if r["truncated"])  # [CLS] 30 words [SEP]
    assert "4 of 12 input rows are longer than 32 tokens and were truncated" in err


@pytest.mark.slow
def test_finetune_records_the_length_and_what_it_cut(tagger, data, tmp_path, capsys):
    out = tmp_path / "tuned"
    code, _, err = _run(capsys, "finetune", "--model", tagger, "--data", data[0], "--out", out,
                        "--max-length", 48, "--epochs", "0.1", "--min-steps", "0",
                        "--batch-size", "8")
    assert code == 0, err
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["max_length"] == 48
    cut = summary["truncation"]
    assert set(cut) == {"train", "dev", "test"}
    assert sum(c["rows"] for c in cut.values()) <= 40
    assert all(c["max_length"] == 48 and c["words_cut"] == c["rows_truncated"] * (80 - 46)
               for c in cut.values())
    said = [line for line in err.splitlines() if "were truncated" in line]
    assert len(said) == 1 and said[0].startswith("samp-jax finetune: warning: ")
    assert all(f"{c['rows_truncated']} of {c['rows']} {split} rows" in said[0]
               for split, c in cut.items() if c["rows_truncated"])


def test_finetune_says_what_the_cut_leaves_out_before_it_trains(tagger, data, tmp_path, capsys,
                                                               monkeypatch):
    def no_training(*args, **kwargs):
        raise RuntimeError("training reached")

    monkeypatch.setattr("samp_jax.training.finetuning._train", no_training)
    code, _, err = _run(capsys, "finetune", "--model", tagger, "--data", data[0], "--out",
                        tmp_path / "tuned", "--max-length", 48, "--batch-size", "8")
    lines = err.splitlines()
    assert code == 1 and lines[-1] == "samp-jax finetune: error: training reached"
    assert [line for line in lines if "were truncated" in line][0].startswith(
        "samp-jax finetune: warning: ")


@pytest.mark.slow
def test_search_records_the_length_in_its_summary_and_report(tagger, data, tmp_path, capsys):
    out = tmp_path / "search"
    code, _, err = _run(capsys, "search", "--model", tagger, "--data", data[0], "--out", out,
                        "--max-length", 32, "--tolerance", "20%", "--options", "int8-dynamic")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["max_length"] == 32 and set(summary["truncation"]) == {"search", "test"}
    assert all(c["max_length"] == 32 for c in summary["truncation"].values())
    # the search split's counts are those of its rows cut at 32 (Task.truncation, by itself)
    task = sj.tasks.load_task(data[0], max_length=32)
    expected = task.truncation(sj.load(tagger).tokenizer, task.examples("search"))
    assert summary["truncation"]["search"] == dataclasses.asdict(expected)
    report = (out / "report.md").read_text()
    assert "- rows cut at 32 tokens: " in report


def test_calibrate_records_the_length_and_the_calibration_rows_it_cut(tagger, data, tmp_path,
                                                                     capsys):
    code, out, err = _run(capsys, "calibrate", "--model", tagger, "--data", data[0], "--out",
                          tmp_path / "q", "--max-length", 32, "--max-batches", 1, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["max_length"] == 32
    cut = summary["truncation"]["calibration"]
    assert cut["max_length"] == 32 and cut["rows_truncated"] > 0
    assert Truncation(**cut).describe("calibration") in err


def test_calibrate_max_batches_reads_the_splits_first_rows_and_counts_their_cut(
        tagger, tmp_path, capsys):
    """`--max-batches 1`: the calibration split's first 64 rows (a random draw, not its 64
    shortest), and the cut counted over those rows only."""
    rng = np.random.default_rng(0)
    rows = [{"tokens": list(rng.choice(WORDS, 60 if i % 3 == 0 else 8)),
             "tags": None} for i in range(1000)]
    for row in rows:
        row["tags"] = [TAGS.get(w, "O") for w in row["tokens"]]
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = _run(capsys, "calibrate", "--model", tagger, "--data", path, "--out",
                          tmp_path / "q", "--max-length", 32, "--max-batches", 1, "--json")
    assert code == 0, err
    cut = json.loads(out)["truncation"]["calibration"]
    task = sj.tasks.load_task(path, max_length=32)
    assert len(task.split("calibration")) > 64
    expected = task.truncation(sj.load(tagger).tokenizer, task.split("calibration")[:64])
    assert cut == dataclasses.asdict(expected) and cut["rows"] == 64
    assert 0 < cut["rows_truncated"] < 64  # long and short rows, as drawn


def test_max_length_may_pass_the_tokenizers_length_up_to_the_positions(tagger, data, tmp_path,
                                                                      capsys):
    """A tokenizer stating 32 tokens (e.g. the length the model was trained at) on a model of
    64 positions: `--max-length 48` is taken (as HF's tokenizer takes a larger `max_length`),
    and a model the command saves serves at 48."""
    folder = tmp_path / "short"
    folder.mkdir()
    for file in tagger.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {"model_max_length": 32}))
    code, out, err = _run(capsys, "eval", "--model", folder, "--split-file", f"test={data[1]}",
                          "--json")
    assert code == 0, err
    assert json.loads(out)["truncation"] == {"test": _cut(32)}
    code, out, err = _run(capsys, "calibrate", "--model", folder, "--data", data[0],
                          "--max-length", 48, "--out", tmp_path / "q", "--json")
    assert code == 0, err
    assert sj.load(tmp_path / "q").tokenizer.max_length == 48
    code, out, err = _run(capsys, "finetune", "--model", folder, "--data", data[0],
                          "--max-length", 48, "--out", tmp_path / "ft", "--epochs", "0.1",
                          "--min-steps", "0", "--batch-size", "8")
    assert code == 0, err
    assert sj.load(tmp_path / "ft").tokenizer.max_length == 48  # an HF folder: its tokenizer too


def test_a_max_length_with_no_room_for_text_is_refused_before_any_row_is_read(tmp_path, capsys):
    """MiniLM's rows take [CLS] and [SEP]: --max-length 2 would cut every text away."""
    (tmp_path / "rows.csv").write_text("text\nhello world\n")
    code = main(["predict", "--model", "minilm", "--data", str(tmp_path / "rows.csv"),
                 "--max-length", "2", "--out", str(tmp_path / "p.jsonl")])
    assert code == 2 and not (tmp_path / "p.jsonl").exists()
    assert ("--max-length 2 leaves no room for text: each row of minilm takes 2 tokens before "
            "its text (special tokens); give more") in capsys.readouterr().err
    assert main(["predict", "--model", "minilm", "--data", str(tmp_path / "rows.csv"),
                 "--max-length", "3", "--out", str(tmp_path / "p.jsonl")]) == 0
