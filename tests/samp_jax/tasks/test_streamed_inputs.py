"""`read_inputs(stream=True)` (what `samp-jax predict` reads with): a CSV, TSV, JSON Lines or
Parquet file checked once, then read and converted again a block at a time, giving the rows
the whole read gives, in less memory."""

import csv
import json
import os
import tracemalloc

import pyarrow
import pyarrow.parquet
import pytest

from samp_jax.app import predictions
from samp_jax.tasks.files import KEPT, InputRows, read_inputs

ROWS = [{"id": i, "text": f"review {i}: " + "good " * (i % 5), "text_pair": f"pair {i}"}
        for i in range(10)]


def _write(path, rows):
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, list(rows[0]), delimiter="," if path.suffix == ".csv" else "\t")
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path, row_group_size=3)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_a_streamed_file_gives_the_rows_of_the_whole_read_block_by_block(tmp_path, suffix):
    path = _write(tmp_path / f"data{suffix}", ROWS)
    whole = read_inputs(path, keep=("id",))
    streamed = read_inputs(path, keep=("id",), stream=True)
    assert isinstance(streamed, InputRows) and len(streamed) == len(whole) == 10
    assert list(streamed) == whole and list(streamed) == whole  # read again, the same
    assert [len(b) for b in streamed.blocks(3)] == [3, 3, 3, 1]
    assert [r for b in streamed.blocks(3) for r in b] == whole
    assert streamed[7] == whole[7] and streamed[-1] == whole[-1] and streamed[2:5] == whole[2:5]
    assert whole[3][KEPT] == {"id": "3" if suffix in (".csv", ".tsv") else 3}


def test_a_bad_value_in_a_later_block_is_named_as_the_whole_read_names_it(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[8]["text"] = ["a", "list"]
    path = _write(tmp_path / "data.jsonl", rows)
    with pytest.raises(ValueError) as whole:
        read_inputs(path)
    streamed = read_inputs(path, stream=True)  # the file reads; row 9's value is its block's
    with pytest.raises(ValueError) as late:
        list(streamed.blocks(4))
    assert str(late.value) == str(whole.value) and "row 9" in str(whole.value)


def test_a_broken_line_is_refused_when_the_file_is_first_read(tmp_path):
    path = _write(tmp_path / "data.jsonl", ROWS)
    path.write_text(path.read_text() + "{not json\n")
    for stream in (False, True):
        with pytest.raises(ValueError, match=r"data.jsonl: line 11 is not a JSON object"):
            read_inputs(path, stream=stream)


def test_a_file_changed_after_it_was_checked_is_refused_when_read_again(tmp_path):
    path = _write(tmp_path / "data.csv", ROWS)
    streamed = read_inputs(path, stream=True)
    assert len(list(streamed)) == 10
    _write(path, ROWS + ROWS[:1])
    os.utime(path, ns=(0, 0))  # whatever the clock's resolution
    with pytest.raises(ValueError, match=r"data.csv changed while samp-jax was reading it"):
        list(streamed)


@pytest.mark.parametrize("how", ["edited in place", "replaced"])
def test_a_file_changed_during_a_pass_is_refused_at_the_end_of_it(tmp_path, how):
    """The same size and rows, changed while a pass reads it: the rows read may be of both
    versions, so the pass ends in the refusal (checked at its end, not only at its start)."""
    path = _write(tmp_path / "data.csv", ROWS)
    streamed = read_inputs(path, stream=True)
    status = os.stat(path)
    blocks = streamed.blocks(3)
    first = next(blocks)  # 3 rows of 10 read
    text = path.read_bytes()
    if how == "edited in place":
        with path.open("r+b") as f:
            f.write(text.replace(b"good", b"fine"))
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000))
    else:  # a new file renamed over it, its times set to the old one's
        _write(tmp_path / "new.csv", ROWS).rename(path)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert os.path.getsize(path) == status.st_size
    with pytest.raises(ValueError, match=r"data.csv changed while samp-jax was reading it"):
        [first, *blocks]


def test_a_taggers_streamed_sentences_are_split_into_words_as_when_read_whole(tmp_path):
    path = _write(tmp_path / "data.csv", [{"text": r["text"]} for r in ROWS])
    whole = predictions.read_model_inputs(path, predictions.Columns(), head="token_classification")
    streamed = predictions.read_model_inputs(path, predictions.Columns(),
                                             head="token_classification", stream=True)
    assert isinstance(streamed, InputRows) and list(streamed) == whole
    assert whole[3]["tokens"] == ["review", "3:", "good", "good", "good"]


def test_streaming_holds_a_block_not_the_file(tmp_path):
    rows = [{"text": f"row {i} " + "word " * 8} for i in range(20_000)]
    path = _write(tmp_path / "data.csv", rows)

    def peak(read):
        tracemalloc.start()
        try:
            read()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    whole = peak(lambda: len(read_inputs(path)))
    streamed = peak(lambda: sum(len(b) for b in read_inputs(path, stream=True).blocks(1000)))
    assert streamed < whole / 8, (streamed, whole)  # measured about 1/12


def test_json_lines_may_end_their_lines_with_a_lone_carriage_return(tmp_path):
    path = tmp_path / "old_mac.jsonl"
    path.write_bytes(b'{"text": "a"}\r{"text": "b \\u2028 c"}\r\n\r{"text": "d"}\r')
    for stream in (False, True):
        assert [r["text"] for r in read_inputs(path, stream=stream)] == ["a", "b \u2028 c", "d"]


def test_a_row_that_is_not_an_object_is_reported_after_every_line_parsed_both_ways(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a"}\n[1, 2]\n{"text": "c"}\n{bad\n')
    messages = set()
    for stream in (False, True):
        with pytest.raises(ValueError) as error:
            read_inputs(path, stream=stream)
        messages.add(str(error.value))
    assert len(messages) == 1 and "line 4 is not a JSON object" in messages.pop()


def test_a_taggers_bad_tokens_cell_is_an_error_not_a_reason_to_read_the_text(tmp_path):
    """Only a missing tokens column sends a tagger to the text column (split into words): a
    tokens column with a string in one row is that row's error, whole or streamed."""
    path = tmp_path / "data.jsonl"
    path.write_text('{"tokens": ["A", "b"], "text": "Zed went home"}\n'
                    '{"tokens": "C d", "text": "Ann left"}\n')
    for stream in (False, True):
        with pytest.raises(ValueError, match=r"row 2: column 'tokens' holds a string"):
            list(predictions.read_model_inputs(path, predictions.Columns(),
                                               head="token_classification", stream=stream))
