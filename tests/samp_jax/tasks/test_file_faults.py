"""Data files that are not what they seem (`samp_jax.tasks.files` / `readers`): wide
encodings, NUL characters, blank texts and words, labels spelled "1.0", one column named for
two fields, and words the tokenizer drops. Each is one error naming the file, row and column,
or is read as the same data it spells."""

from __future__ import annotations

import codecs
import csv
import json
import re

import pytest

from samp_jax.models.tokenizer import Tokenizer
from samp_jax.tasks import Columns, load_task
from samp_jax.tasks.files import read_inputs
from samp_jax.tasks.types import encode_words

CSV = "text,label\n" + "".join(f"word {i} here,{'pos' if i % 2 else 'neg'}\n" for i in range(20))


def raises(match: str):
    return pytest.raises(ValueError, match=match)


@pytest.mark.parametrize("encoding, name", [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"),
                                            ("utf-32", "UTF-32")])
def test_a_wide_unicode_file_is_named_by_its_encoding(tmp_path, encoding, name):
    path = tmp_path / "data.csv"
    bom = {"utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    path.write_bytes(bom + CSV.encode(encoding))
    with raises(rf"data\.csv is {name} text \(it starts with a {name} byte-order mark\); "
                r"expected a UTF-8 csv file"):
        load_task(path)


def test_nul_characters_are_refused_not_read_as_garbled_text(tmp_path):
    bare = tmp_path / "bare.csv"  # UTF-16 without a byte-order mark decodes as "UTF-8"
    bare.write_bytes(CSV.encode("utf-16-le"))
    with raises(r"bare\.csv: the header \(line 1\) holds a NUL character; expected UTF-8 CSV "
                r"text \(is the file UTF-16"):
        load_task(bare)
    one = tmp_path / "one.tsv"
    one.write_text(CSV.replace(",", "\t").replace("word 3", "wo\x00rd 3"))
    with raises(r"one\.tsv: row 4 holds a NUL character"):
        load_task(one)
    with raises(r"one\.tsv: row 4 holds a NUL character"):
        read_inputs(one)


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_a_blank_text_is_a_missing_value(tmp_path, blank):
    rows = [{"text": f"word {i}", "text_pair": "other", "label": i % 2} for i in range(20)]
    rows[6]["text_pair"] = blank
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with raises(rf"pairs\.jsonl: row 7: column 'text_pair' is blank \({re.escape(repr(blank))}\); "
                r"expected a "
                r"text in every row \(an empty cell is a missing value\)"):
        load_task(path)
    assert read_inputs(path)[6]["text_pair"] == blank  # predict echoes the row as it is


def test_a_blank_word_is_refused_with_its_row(tmp_path):
    rows = [{"tokens": ["Paris", "is", "big"], "tags": ["B-loc", "O", "O"]} for _ in range(20)]
    rows[4] = {"tokens": ["Paris", " ", "big"], "tags": ["B-loc", "B-loc", "O"]}
    with raises(r"row 5: column 'tokens' item 1 is blank \(' '\); expected a word \(a blank word "
                r"has no token to carry its tag\)"):
        load_task(rows)


def test_a_word_the_tokenizer_drops_is_refused(minilm_dir):
    tokenizer = Tokenizer.from_pretrained(minilm_dir)
    examples = [{"tokens": ["Paris", "\u200b", "big"], "tags": [1, 1, 0]}]
    with raises(r"the row with words \['Paris', '\\u200b', 'big'\]: word 1 \('\\u200b'\) gives "
                "no token, so its tag would not be scored"):
        encode_words(tokenizer, examples, 16)
    cut = [{"tokens": ["Paris"] * 40, "tags": [1] * 40}]  # truncation may drop the last words
    assert encode_words(tokenizer, cut, 16).labels.shape == (1, 16)
    # a word without a token before the cut of a row cut on the right: refused, not "cut"
    first = [{"tokens": ["\u200b"] + ["Paris"] * 20, "tags": [1] + [0] * 20}]
    with raises(r"word 0 \('\\u200b'\) gives no token"):
        encode_words(tokenizer, first, 16)
    # the longest row, not cut, ending in a word without a token: still refused
    last = [{"tokens": ["Paris", "is", "big", "\u200b"], "tags": [1, 0, 0, 1]},
            {"tokens": ["Paris"], "tags": [1]}]
    with raises(r"word 3 \('\\u200b'\) gives no token"):
        encode_words(tokenizer, last, 16)


@pytest.mark.parametrize("spellings", [("0.0", "1.0"), ("0", "1", "1.0"), ("+1", "0.00")])
def test_labels_spelled_as_whole_numbers_are_the_same_ids(tmp_path, spellings):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n" + "".join(
        f"word {i},{spellings[i % len(spellings)]}\n" for i in range(30)))
    task = load_task(path)
    assert task.labels == ("0", "1")
    named = load_task(path, labels=["neg", "pos"])
    assert {e["label"] for s in ("train", "test") for e in named.split(s)} == {0, 1}
    pairs = [{"text": f"a {i}", "text_pair": "b", "label": "1.0" if i % 2 else "0.0"}
             for i in range(20)]
    assert {e["label"] for e in load_task(pairs, head="sentence_embedding").split("test")} <= {0, 1}


def test_one_column_named_for_two_fields_is_refused(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(CSV)
    with raises(r"data\.csv: column 'text' is named for both --text-column \(Columns\(text=\.\.\.\)\) "
                r"and --label-column \(Columns\(label=\.\.\.\)\); expected one column per field"):
        load_task(path, columns=Columns(text="text", label="text"))


@pytest.mark.parametrize("bad", ["inf", "-Infinity"])
def test_an_infinite_similarity_score_is_refused(tmp_path, bad):
    path = tmp_path / "sts.tsv"
    path.write_text("text\ttext_pair\tscore\n" + "".join(
        f"a {i}\tb {i}\t{bad if i == 3 else i / 10}\n" for i in range(20)))
    with raises(rf"sts\.tsv: row 4: column 'score' holds '{bad}'; expected a finite number"):
        load_task(path)


def test_similarity_scores_that_never_vary_are_refused_not_scored_nan(minilm_dir):
    pairs = [{"text": f"a {i}", "text_pair": f"b {i}", "score": 2.5} for i in range(20)]
    task = load_task(pairs)
    with raises(r"the test split of .*: Spearman needs gold scores that vary among the 4 "
                r"rows scored; these all score 2\.5"):
        task.evaluation(Tokenizer.from_pretrained(minilm_dir), "test")


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_text_longer_than_pythons_csv_field_limit_is_read_as_in_json_lines(tmp_path, suffix):
    import csv
    long_text = "a long document " * 20_000  # 320,000 characters, over csv's 131,072
    sep = "," if suffix == ".csv" else "\t"
    path = tmp_path / f"data{suffix}"
    path.write_text(f"text{sep}label\n" + "".join(
        f"{long_text if i == 3 else f'row {i}'}{sep}{i % 2}\n" for i in range(20)))
    limit = csv.field_size_limit()
    examples = [e for split in ("train", "calibration", "search", "test")
                for e in load_task(path).split(split)]
    assert csv.field_size_limit() == limit  # the process-wide limit is put back
    assert sorted(len(e["text"]) for e in examples)[-1] == len(long_text)


def test_an_unclosed_quote_is_still_an_error_naming_the_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('text,label\n"unclosed,0\n' + "".join(f"row {i},{i % 2}\n" for i in range(20)))
    with raises(r"data\.csv: row 1 has 1 of the 2 columns of the header \['text', 'label'\] "
                r"\(a field runs over several lines: is a quote left open\?\)"):
        load_task(path)


def test_a_row_with_too_few_fields_is_refused(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("text\tlabel\n" + "".join(f"row {i}\t{i % 2}\n" for i in range(5)) + "short\n")
    with raises(r"data\.tsv: row 6 has 1 of the 2 columns"):
        load_task(path)


def test_pandas_default_json_is_refused_with_how_to_write_rows(tmp_path):
    """`DataFrame.to_json` writes a table as one object of columns by default."""
    path = tmp_path / "frame.json"
    path.write_text(json.dumps({"text": {str(i): f"row {i}" for i in range(20)},
                                "label": {str(i): "pos" for i in range(20)}}))
    with raises(r"frame\.json holds one JSON object of 2 objects \('text', 'label'\), as pandas' "
                r"DataFrame\.to_json writes a table by default; .* orient='records', lines=True"):
        load_task(path)


def test_a_cell_of_the_wrong_kind_is_shown_cut_to_one_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": {"a": "x" * 500}, "label": "pos"}) + "\n"
                            for _ in range(20)))
    with pytest.raises(ValueError) as error:
        load_task(path)
    message = str(error.value)
    assert "column 'text' holds {'a': 'xxx" in message and "(509 characters) (dict)" in message
    assert len(message) < 250


def test_separate_splits_without_a_test_split_say_how_to_add_one(tmp_path):
    (tmp_path / "train.csv").write_text(CSV)
    task = load_task(split_files={"train": tmp_path / "train.csv"})
    with raises(r"has no 'test' examples \(it holds \{'train': .*\}; data: train: .*train\.csv.*"
                r"add one \(--split-file test=PATH"):
        task.examples("test")


TEXTS_WITH_QUOTES = ['the "best" film', 'tab\tinside', 'a "quoted" start\tand tab', "plain",
                     '"Hello"', 'line\nbreak']


@pytest.mark.parametrize("quoting", [csv.QUOTE_MINIMAL, csv.QUOTE_ALL])
def test_a_tsv_written_with_csv_quoting_reads_back_its_texts(tmp_path, quoting):
    """Python's csv (and pandas' to_csv(sep="\\t")) quote a TSV field holding a quote, tab or
    newline, doubling quotes inside: such a file reads back the texts written."""
    path = tmp_path / "quoted.tsv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=quoting)
        writer.writerow(["text", "label"])
        writer.writerows([text, "x"] for text in TEXTS_WITH_QUOTES)
    assert [row["text"] for row in read_inputs(path)] == TEXTS_WITH_QUOTES


def test_a_plain_tsv_keeps_its_quotes(tmp_path):
    """Plain TSV (GLUE's) has no quoting: quotes are text, even a field in quotes."""
    texts = ['the "best" film', '"Hello"', 'He said "hi', '"a" and "b"', '""']
    path = tmp_path / "plain.tsv"
    path.write_text("text\tlabel\n" + "".join(f"{t}\tx\n" for t in texts), encoding="utf-8")
    assert [row["text"] for row in read_inputs(path)] == texts


def test_a_tsv_quoting_only_tabs_and_line_breaks_reads_back_its_texts(tmp_path):
    texts = ["tab\tinside", "plain", "line\nbreak"]
    path = tmp_path / "tabs.tsv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["text", "label"])
        writer.writerows([text, "x"] for text in texts)
    assert [row["text"] for row in read_inputs(path)] == texts


def test_ids_with_a_few_other_values_blame_those_values(tmp_path):
    """True/False among 0/1 ids make every label a name: the message names `True`, not the
    first id."""
    path = tmp_path / "mixed.csv"
    values = ["0", "1", "1.0", " 1", "True", "0", "False"] * 4
    path.write_text("text,label\n" + "".join(f"row {i},{v}\n" for i, v in enumerate(values)))
    with raises(r"mixed\.csv: row 5: column 'label' has label 'True', neither one of the "
                r"model's labels \['negative', 'positive'\] nor a whole-number id like the '0' "
                r"at .*row 1: column 'label'; the column's values that are neither: "
                r"\['False', 'True'\]; expected ids or names, one kind"):
        load_task(path, labels=["negative", "positive"])
    named = tmp_path / "named.csv"  # names of the model beside ids: the ids are the odd ones
    named.write_text("text,label\n" + "".join(f"row {i},{v}\n" for i, v in
                                              enumerate(["positive", "negative", "1"] * 8)))
    with raises(r"row 3: column 'label' has label '1', which is not one of the model's labels"):
        load_task(named, labels=["negative", "positive"])


def test_a_blank_line_of_a_one_column_file_is_an_empty_row(tmp_path):
    """`predict` writes a line per input line: a blank line of a one-column file is a row (an
    empty text, written back as it is), not dropped; blank lines at the end are no rows."""
    path = tmp_path / "texts.csv"
    path.write_text('text\nfirst\n\nthird\n"multi\n\nline"\n\n\n')
    assert [row["text"] for row in read_inputs(path)] == ["first", "", "third", "multi\n\nline"]
    path.write_text('text\ngood\n""\nbad\n""\n\n')  # pandas' empty strings are rows
    assert [row["text"] for row in read_inputs(path)] == ["good", "", "bad", ""]
    path.write_text("text\na\nb,c\n")
    with raises(r"texts\.csv: row 2 has 1 more field\(s\) than the 1 columns"):
        read_inputs(path)


def test_one_quoting_mark_does_not_turn_a_plain_tsvs_quotes_into_syntax(tmp_path):
    """A plain TSV holding one field that looks CSV-quoted keeps every quote when the file as
    a whole does not parse as quoted (`"Great" movie` is text, not a quoted field)."""
    texts = ['"Great" movie', '"He said ""no"""', "plain"]
    path = tmp_path / "plain.tsv"
    path.write_text("text\tlabel\n" + "".join(f"{t}\tx\n" for t in texts), encoding="utf-8")
    assert [row["text"] for row in read_inputs(path)] == texts
    empty = tmp_path / "empty.tsv"  # pandas writes an empty string as ""
    empty.write_text('text\tlabel\ngood\tx\n""\tx\n', encoding="utf-8")
    assert [row["text"] for row in read_inputs(empty)] == ["good", ""]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
def test_json_lines_end_at_line_feeds_only_not_at_the_unicode_separators_a_string_holds(
        tmp_path, separator):
    """`json.dumps(ensure_ascii=False)` writes U+2028, U+2029 and U+0085 unescaped; they are
    text inside a string, not the end of a line."""
    rows = [{"text": f"first{separator}line {i}", "label": i % 2} for i in range(12)]
    path = tmp_path / "rows.jsonl"
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    assert read_inputs(path) == [{"text": r["text"]} for r in rows]


# --------------------------------------------------- save_to_disk folders naming files elsewhere
def _saved(tmp_path, name, rows=None):
    import datasets
    path = tmp_path / name
    datasets.Dataset.from_list(rows or [{"text": f"secret {i}", "label": "a"} for i in range(20)]
                               ).save_to_disk(str(path))
    return path


def _point_at(folder, filename):
    state = json.loads((folder / "state.json").read_text())
    state["_data_files"] = [{"filename": filename}]
    (folder / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("how", ["absolute", "parent", "subfolder"])
def test_a_saved_dataset_naming_an_arrow_file_outside_its_folder_is_refused(tmp_path, how):
    other = _saved(tmp_path, "other")
    arrow = next(other.glob("*.arrow"))
    mine = _saved(tmp_path, "mine", [{"text": "mine", "label": "b"}] * 20)
    (mine / "sub").mkdir()
    (mine / "sub" / arrow.name).write_bytes(arrow.read_bytes())
    name = {"absolute": str(arrow), "parent": f"../other/{arrow.name}",
            "subfolder": f"sub/{arrow.name}"}[how]
    _point_at(mine, name)
    with raises(rf"mine/state\.json: _data_files\[0\]\.filename is {re.escape(repr(name))}, not "
                r"the name of a file inside .*mine; expected a plain name such as "
                r"'data-00000-of-00001\.arrow'"):
        read_inputs(mine)
    with raises(r"_data_files\[0\]\.filename"):
        load_task(mine)


@pytest.mark.parametrize("split", ["ABS", "../other", "..", "train/../../other"])
def test_a_saved_dataset_dict_naming_a_split_folder_outside_it_is_refused(tmp_path, split):
    other = _saved(tmp_path, "other")
    split = str(other) if split == "ABS" else split
    (tmp_path / "dd").mkdir()
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": [split]}))
    with raises(rf"dd/dataset_dict\.json: split {re.escape(repr(split))} is not the name of a "
                r"folder inside .*dd; expected a plain name such as 'train'"):
        load_task(tmp_path / "dd")


def test_a_split_of_a_saved_dataset_dict_is_checked_too(tmp_path):
    import datasets
    rows = [{"text": f"t {i}", "label": "a"} for i in range(20)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "test": datasets.Dataset.from_list(rows)}).save_to_disk(
                              str(tmp_path / "dd"))
    other = _saved(tmp_path, "other")
    _point_at(tmp_path / "dd" / "test", str(next(other.glob("*.arrow"))))
    with raises(r"dd/test/state\.json: _data_files\[0\]\.filename is '/"):
        load_task(tmp_path / "dd")
    (tmp_path / "dd" / "dataset_dict.json").write_text('{"splits": ["train", "unsupervised"]}')
    with raises(r"dd: split 'unsupervised' is not one of"):  # before any split is read
        load_task(tmp_path / "dd")
    (tmp_path / "dd" / "dataset_dict.json").write_text('{"splits": "train"}')
    with raises(r"dd/dataset_dict\.json: expected an object with a list of split names"):
        load_task(tmp_path / "dd")


@pytest.mark.parametrize("state, message", [
    ("[1]", r"expected an object with a list of Arrow files in '_data_files'"),
    ('{"_data_files": [{"file": "x"}]}', r"_data_files\[0\]\.filename is None"),
    ('{"_data_files": [', r"not valid JSON"),
])
def test_a_saved_dataset_state_that_datasets_would_choke_on_is_named(tmp_path, state, message):
    mine = _saved(tmp_path, "mine")
    (mine / "state.json").write_text(state)
    with raises(rf"mine/state\.json: {message}"):
        read_inputs(mine)


def test_a_saved_dataset_in_several_shards_is_read(tmp_path):
    import datasets
    rows = [{"text": f"t {i}"} for i in range(20)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "s"), num_shards=3)
    assert read_inputs(tmp_path / "s") == rows
