"""`samp-jax predict` writes its rows a chunk at a time: the same records as predicting all rows
at once (scores to float32 rounding), progress after each chunk, and an interrupted run leaves
the output as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest

import samp_jax as sj
from samp_jax.app import predictions
from samp_jax.app.cli import main
from samp_jax.serving.batching import FINE_BUCKETS
from tests.faults.cli_files import write_model_and_reviews


@pytest.fixture(scope="module")
def files(tmp_path_factory, minilm_dir):
    return write_model_and_reviews(tmp_path_factory.mktemp("predict_chunks"), minilm_dir, rows=10)


@pytest.fixture(scope="module")
def model(files):
    return sj.load(files / "model")


@pytest.fixture(scope="module")
def rows(model, files):
    rows = predictions.read_model_inputs(files / "data.csv", predictions.Columns(),
                                         head=model.head_kind)
    # one long row, so that the chunks reach different sequence buckets
    return rows[:4] + [{"text": "good movie " * 30}] + rows[4:]


def _same_records(written: bytes, expected: bytes) -> None:
    """The same records, field for field: texts, labels and marks exactly; scores to float32
    rounding (a row served in other company may take another length bucket, whose XLA program
    can differ in the last bits: docs/design.md, serving)."""
    got, want = ([json.loads(line) for line in text.splitlines()] for text in (written, expected))
    assert len(got) == len(want)

    def same(a, b, where):
        assert type(a) is type(b), where
        if isinstance(a, dict):
            assert a.keys() == b.keys(), where
            for key in a:
                same(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, list):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b)):
                same(x, y, f"{where}[{i}]")
        elif isinstance(a, float):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), where
        else:
            assert a == b, where
    for row, (a, b) in enumerate(zip(got, want)):
        same(a, b, f"row {row}")


def test_chunks_write_what_one_pass_predicts(model, rows, tmp_path):
    whole = predictions.json_lines(predictions.records(model, rows, batch_size=4))
    seen = []
    out = tmp_path / "predictions.jsonl"
    count = predictions.write(model, rows, out, batch_size=4, chunk_rows=3,
                              progress=lambda done, total: seen.append((done, total)))
    assert count.rows == 11
    _same_records(out.read_bytes(), whole)
    assert count.truncated == whole.count(b"\"truncated\": true")
    assert seen == [(3, 11), (6, 11), (9, 11), (11, 11)]
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == [
        r["text"] for r in rows]


def test_only_the_buckets_the_rows_reach_are_compiled(model, rows, tmp_path, monkeypatch):
    engines = []

    def compile_engine(*args, **kwargs):
        engines.append(predictions.compile_engine.__wrapped__(*args, **kwargs))
        return engines[-1]
    compile_engine.__wrapped__ = predictions.compile_engine
    monkeypatch.setattr(predictions, "compile_engine", compile_engine)
    predictions.write(model, rows, tmp_path / "p.jsonl", batch_size=4, chunk_rows=3)
    (engine,) = engines  # one engine serves every chunk
    limit = engine.seq_buckets[-1]  # the model's
    assert engine.seq_buckets == tuple(b for b in FINE_BUCKETS if b < limit) + (limit,)
    assert engine.seq_buckets[:4] == (16, 24, 32, 48)  # finer than evaluation's
    reached = set(engine.bucket_calls)
    assert {(r["batch"], r["seq"]) for r in engine.compile_report} == reached
    assert len(reached) < len(engine.batch_buckets) * len(engine.seq_buckets)
    assert any(seq > engine.seq_buckets[0] for _, seq in reached)  # the long row's bucket


def test_an_interrupt_between_chunks_leaves_the_output_as_it_was(model, rows, tmp_path):
    out = tmp_path / "predictions.jsonl"
    out.write_text("the earlier predictions\n")

    def interrupt(done, total):
        if done == 6:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        predictions.write(model, rows, out, batch_size=4, chunk_rows=3, progress=interrupt)
    assert out.read_text() == "the earlier predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl"]  # no temporary


def test_the_cli_reports_progress_when_the_rows_span_chunks(files, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(predictions, "CHUNK_ROWS", 4)
    out = tmp_path / "p.jsonl"
    args = ["predict", "--model", str(files / "model"), "--data", str(files / "data.csv"),
            "--out", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert [line.strip() for line in captured.err.splitlines() if "predicted" in line] == [
        "predicted 4/10 rows", "predicted 8/10 rows", "predicted 10/10 rows"]
    assert len(out.read_text().splitlines()) == 10
    assert main([*args, "--json"]) == 0  # machine-readable: stdout only, no progress
    captured = capsys.readouterr()
    assert "predicted" not in captured.err and json.loads(captured.out)["rows"] == 10


def test_standard_input_and_output_stream_the_same_records(model, rows, files, monkeypatch, capfd):
    """`--data -` reads JSON Lines from stdin, `--out -` streams the predictions to stdout
    (the bytes a file gets), and the summary line goes to stderr."""
    import io
    import sys
    whole = predictions.json_lines(predictions.records(model, rows, batch_size=4))
    lines = "".join(json.dumps({"text": r["text"]}) + "\n" for r in rows)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
    assert main(["predict", "--model", str(files / "model"), "--data", "-", "--out", "-",
                 "--batch-size", "4"]) == 0
    out, err = capfd.readouterr()
    assert out.encode() == whole and f"wrote {len(rows)} predictions to standard output" in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"text,label\n")))
    assert main(["predict", "--model", str(files / "model"), "--data", "-", "--out", "-"]) == 1
    out, err = capfd.readouterr()
    assert out == "" and "standard input: line 1 is not a JSON object" in err


def test_a_reader_that_closes_stdout_ends_the_run_quietly(monkeypatch):
    """`samp-jax predict --out - | head`: exit 141, as a killed pipe ends other tools."""
    import io
    import os
    import sys
    read, write = os.pipe()
    os.close(read)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(os.fdopen(write, "wb")))
    with pytest.raises(SystemExit) as stopped:
        predictions._to_stdout(b"{}\n")
    assert stopped.value.code == 141


def test_a_short_write_to_stdout_is_finished_or_its_error_raised(monkeypatch):
    """A file grown to its size limit (`ulimit -f`, a full disk) takes part of a write and
    returns its count without an error; the rest, written again, raises it. Before, the
    rest was dropped: cut predictions and exit 0."""
    import errno
    import sys
    from types import SimpleNamespace

    from samp_jax.app.outputs import StdoutError

    class Limited:
        def __init__(self, room):
            self.room, self.data = room, b""

        def write(self, data):
            if not self.room:
                raise OSError(errno.EFBIG, "File too large")
            taken = bytes(data[:min(self.room, 7)])  # at most 7 bytes a call
            self.room -= len(taken)
            self.data += taken
            return len(taken)

        def flush(self):
            pass

    whole = Limited(room=1000)
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=whole, flush=lambda: None))
    predictions._to_stdout(b"0123456789" * 30)
    assert whole.data == b"0123456789" * 30
    cut = Limited(room=25)
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=cut, flush=lambda: None))
    with pytest.raises(StdoutError, match=r"standard output \(File too large\)"):
        predictions._to_stdout(b"0123456789" * 30)


@pytest.mark.parametrize("family, words", [
    ("bert", ["Hello", ",", "world", "!", "It", "'", "s", "a", "fairy", "-", "tale", "café", ".",
              "我", "爱", "北", "京"]),
    ("roberta", ["Hello", ",", "world", "!", "It", "'s", "a", "fairy", "-", "tale", "café", ".",
                 "我爱北京"]),
    ("xlm-roberta", ["Hello,", "world!", "It's", "a", "fairy-tale", "café.", "我爱北京"]),
])
def test_a_taggers_plain_sentence_is_split_as_its_tokenizer_splits_words(family, words, tmp_path):
    """A text column sent to a tagger: BERT's tokenizer splits off punctuation and puts each CJK
    character apart (its normalizer), RoBERTa's byte-level one keeps contractions,
    SentencePiece's splits spaces only; each word as the text spells it, and each one a word
    of the tokenizer's own word ids."""
    from tests.helpers import GOLDEN
    tokenizer = sj.Tokenizer.from_pretrained(GOLDEN / "families" / family / "seqcls", max_length=64)
    text = "Hello, world! It's a  fairy-tale café. 我爱北京"
    assert tokenizer.words(text) == words
    batch, word_ids = tokenizer.encode_words([words])
    assert word_ids.max() == len(words) - 1  # every word makes a token of its own
    (tmp_path / "rows.csv").write_text(f'text\n"{text}"\n', encoding="utf-8")
    rows = predictions.read_model_inputs(tmp_path / "rows.csv", predictions.Columns(),
                                         head="token_classification",
                                         word_spans=tokenizer.word_spans)
    assert [row["tokens"] for row in rows] == [words] and rows[0]["text"] == text
    assert [text[start:end] for start, end in rows[0]["word_spans"]] == words


@pytest.mark.parametrize("head, named, option", [
    ("token_classification", {"text_pair": "text_pair"}, "--text-pair-column"),
    ("sentence_embedding", {"tokens": "tokens"}, "--tokens-column"),
    ("sequence_classification", {"tokens": "tokens"}, "--tokens-column"),
])
def test_a_column_named_for_a_field_the_model_does_not_read_is_refused(tmp_path, head, named, option):
    """A column named for a field the head does not read (a tagger's second text, a
    classifier's words) is refused before any row is read: it would be dropped without a word."""
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "a dog", "text_pair": "a cat", "tokens": ["a", "dog"]}\n')
    with pytest.raises(ValueError, match=f"{option} .* names a column a {head} model does not read"):
        predictions.read_model_inputs(data, predictions.Columns(**named), head=head)
    both = predictions.Columns(text="text", text_pair="text_pair")
    assert predictions.read_model_inputs(data, both, head="sequence_classification") == [
        {"text": "a dog", "text_pair": "a cat"}]


def test_a_text_the_tokenizers_library_fails_on_is_named_as_its_row_of_the_data(model, rows,
                                                                                monkeypatch):
    from samp_jax.models.token_rows import TokenizerFailure
    calls = []

    def predict(engine, block):
        calls.append(len(block))
        if len(calls) == 2:  # the second chunk's third text
            raise TokenizerFailure("tokenizer.json of m", "Onig: retry-limit-in-match over", 2)
        return [{"truncated": False}] * len(block)
    monkeypatch.setattr(predictions, "_predict", predict)
    with pytest.raises(ValueError, match=r"^tokenizer\.json of m: the tokenizers library failed "
                                         r"on row 6 of the data: Onig: retry-limit-in-match over$"):
        list(predictions.chunks(model, rows, batch_size=4, chunk_rows=3))


@pytest.mark.parametrize("family", ["bert", "xlm-roberta"])
def test_a_word_keeps_the_accents_its_normalizer_composes_or_strips(family):
    """Decomposed text (NFD: a letter, then its combining accent; macOS, many Vietnamese
    sources): the tokens' offsets stop before an accent that the normalizer composed into the
    letter (XLM-R's NFKC) or stripped (BERT uncased). Each word still holds its accent, so it
    is spelled as in the text and, encoded alone, gives the text's own ids."""
    import unicodedata

    from tests.helpers import GOLDEN
    tokenizer = sj.Tokenizer.from_pretrained(GOLDEN / "families" / family / "seqcls", max_length=64)
    text = unicodedata.normalize("NFD", "José là cà phê, naïve a\u0301 ❤️ x")
    words = tokenizer.words(text)
    assert [unicodedata.normalize("NFC", w) for w in words if w != ","] == [
        "José", "là", "cà", "phê" if family == "bert" else "phê,", "naïve", "á", "❤️", "x"]
    whole = tokenizer._backend.encode(text, add_special_tokens=False).ids
    assert tokenizer._words_backend.encode(words, is_pretokenized=True,
                                           add_special_tokens=False).ids == whole


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "deberta-v2"])
@pytest.mark.parametrize("text", ["Paris\u200b London", "a,\ufffd b", "x\ufeff y\u200c z",
                                  "Jose\u0301\u200b", "end\u0301"])
def test_characters_without_tokens_keep_the_texts_own_ids(family, text):
    """Whatever a character the normalizer composes, drops or turns into a space does to the
    words, each encoded alone gives the ids of the text (SentencePiece turns a zero-width space
    or U+FFFD into a space: a word stretched over it would gain a token)."""
    from tests.helpers import GOLDEN
    tokenizer = sj.Tokenizer.from_pretrained(GOLDEN / "families" / family / "seqcls", max_length=64)
    words = tokenizer.words(text)
    whole = tokenizer._backend.encode(text, add_special_tokens=False).ids
    assert tokenizer._words_backend.encode(words, is_pretokenized=True,
                                           add_special_tokens=False).ids == whole


def test_scores_are_written_as_the_shortest_decimal_of_their_float32(model, rows):
    """A probability is the model's float32, written in the fewest digits that read back as
    that float32 (`0.9187461`), not the 17 of its float64 widening (`0.9187461137771606`)."""
    written = [json.loads(line) for line in
               predictions.json_lines(predictions.records(model, rows, batch_size=4)).splitlines()]
    values = [v for record in written
              for v in [record["score"], *record["probabilities"].values()]]
    assert len(values) == 3 * len(rows) and all(isinstance(v, float) for v in values)
    for value in values:
        assert repr(value) == str(np.float32(value)), value


def test_a_built_in_tasks_name_is_refused_by_predict_saying_what_scores_it(tmp_path, capsys,
                                                                         monkeypatch):
    """predict reads your own rows: a built-in task's name (no such file here) is a usage
    error naming eval, before any model is read; a file of that name is read as a file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("samp_jax.app.cli.load", lambda *a, **k: pytest.fail("a model was read"))
    assert main(["predict", "--model", "minilm", "--data", "snli-embed", "--out", "p.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "--data snli-embed is a built-in task's name; predict reads your own rows" in err
    assert "samp-jax eval --data snli-embed" in err and not (tmp_path / "p.jsonl").exists()
    (tmp_path / "polarity").write_text("text\na fine film\n")  # a file of that name: read
    monkeypatch.setattr("samp_jax.app.cli.load", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("reached the model")))
    assert main(["predict", "--model", "minilm", "--data", "polarity", "--out", "p.jsonl"]) == 1
    assert "reached the model" in capsys.readouterr().err
