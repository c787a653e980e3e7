"""Your own data as a `Task` (`samp_jax.tasks.files`): every format, every task type, the
inference rules, label mapping, splits, and every error naming the file, column and value."""

from __future__ import annotations

import csv
import json
import warnings
import math
import re

import datasets
import pyarrow
import pyarrow.parquet
import pytest

from samp_jax.tasks import SPLITS, Columns, Task, get_task, load_task
from samp_jax.tasks.files import MAX_CALIBRATION, MIN_ROWS, read_inputs
from samp_jax.tasks.readers import parquet_class_names, read_tables

FORMATS = ("csv", "tsv", "jsonl", "parquet", "saved", "dataset", "list")
LIST_FORMATS = ("jsonl", "parquet", "saved", "dataset", "list")  # CSV/TSV cannot hold lists
WORDS = ("good", "bad", "movie", "plot", "city", "river", "happy", "dull", "Paris", "Rome")


def write(tmp_path, fmt: str, rows: list[dict], name: str = "data"):
    """`rows` as a source of format `fmt`: a path in `tmp_path`, a Dataset or the list."""
    if fmt in ("csv", "tsv"):
        path = tmp_path / f"{name}.{fmt}"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]),
                                    delimiter="," if fmt == "csv" else "\t")
            writer.writeheader()
            writer.writerows(rows)
        return path
    if fmt == "jsonl":
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path
    if fmt == "parquet":
        path = tmp_path / f"{name}.parquet"
        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
        return path
    if fmt == "saved":
        path = tmp_path / name
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
        return path
    if fmt == "dataset":
        return datasets.Dataset.from_list(rows)
    return [dict(row) for row in rows]


def text(i: int) -> str:
    return f"{WORDS[i % 10]} {WORDS[(i // 10) % 10]} number {i}"


# kind -> (rows of the user's file, the canonical examples expected, task type, labels)
def case(kind: str, n: int = 40):
    if kind == "text":
        rows = [{"review": text(i), "label": ("neg", "pos", "mixed")[i % 3]} for i in range(n)]
        names = ("mixed", "neg", "pos")
        return rows, [{"text": r["review"], "label": names.index(r["label"])} for r in rows], \
            "text_classification", names
    if kind == "pair":
        rows = [{"premise": text(i), "hypothesis": text(i + 1000), "label": i % 3}
                for i in range(n)]
        return rows, [{"text": r["premise"], "text_pair": r["hypothesis"], "label": r["label"]}
                      for r in rows], "text_pair_classification", ("0", "1", "2")
    if kind == "tokens":
        rows = []
        for i in range(n):
            words = text(i).split()
            rows.append({"tokens": words, "ner_tags": ["B-LOC" if w in ("Paris", "Rome", "city")
                                                       else "O" for w in words]})
        names = ("O", "B-LOC")
        return rows, [{"tokens": r["tokens"], "tags": [names.index(t) for t in r["ner_tags"]]}
                      for r in rows], "token_classification", names
    if kind == "embed_label":
        rows = [{"sentence1": text(i), "sentence2": text(i + 1000), "label": i % 2}
                for i in range(n)]
        return rows, [{"text": r["sentence1"], "text_pair": r["sentence2"], "label": r["label"]}
                      for r in rows], "embedding_pairs", None
    if kind == "embed_score":
        rows = [{"text": text(i), "text_pair": text(i + 1000), "score": round(i / 8, 2)}
                for i in range(n)]
        return rows, [{"text": r["text"], "text_pair": r["text_pair"], "score": r["score"]}
                      for r in rows], "embedding_pairs", None
    rows = [{"sentence": text(i)} for i in range(n)]
    return rows, [{"text": r["sentence"]} for r in rows], "embedding_texts", None


KINDS = ("text", "pair", "tokens", "embed_label", "embed_score", "plain")
# 0/1-labelled pairs are embedding pairs (not pair classification) only for a bi-encoder
HEADS = {"embed_label": "sentence_embedding"}


def examples(task: Task) -> list[dict]:
    return [e for split in SPLITS for e in task.split(split)]


def key(example: dict) -> str:
    return json.dumps(example, sort_keys=True)


def assert_split_well(task: Task, expected: list[dict]) -> None:
    """Disjoint splits holding exactly the expected examples, with the default sizes."""
    got = sorted(map(key, examples(task)))
    assert got == sorted(map(key, expected))
    assert len(set(got)) == len(got)  # disjoint (every fixture row is distinct)
    sizes = task.sizes()
    n = len(expected)
    assert sum(sizes.values()) == n
    assert sizes["test"] == sizes["search"] == round(0.2 * n)
    assert sizes["calibration"] == sizes["dev"] == round(0.1 * n)


# ------------------------------------------------------------------ every format and type
@pytest.mark.parametrize("kind, fmt", [(kind, fmt) for kind in KINDS for fmt in FORMATS
                                       if kind != "tokens" or fmt in LIST_FORMATS])
def test_every_format_and_task_type(tmp_path, kind, fmt):
    rows, expected, task_type, labels = case(kind)
    task = load_task(write(tmp_path, fmt, rows), head=HEADS.get(kind))
    assert task.task_type.name == task_type
    assert task.labels == labels
    assert_split_well(task, expected)
    assert task.max_length is None  # the model's own limit (Task.length)
    assert "40 rows; split seed 0" in task.source
    assert task.name == "data"


@pytest.mark.parametrize("fmt", ("csv", "jsonl", "list"))
def test_splits_are_seeded(tmp_path, fmt):
    rows, _, _, _ = case("text")
    source = write(tmp_path, fmt, rows)
    first, again, other = (load_task(source, seed=s) for s in (0, 0, 1))
    assert first.splits == again.splits
    assert first.split("test") != other.split("test")
    assert sorted(map(key, examples(first))) == sorted(map(key, examples(other)))


def test_the_same_file_also_fine_tunes_and_small_files_get_every_split(tmp_path):
    rows, expected, _, _ = case("text", n=MIN_ROWS)
    task = load_task(write(tmp_path, "csv", rows))
    sizes = task.sizes()
    assert sizes == {"train": 4, "dev": 1, "calibration": 1, "search": 2, "test": 2}
    big = load_task([{"text": text(i), "label": i % 2} for i in range(6000)])
    assert big.sizes()["calibration"] == MAX_CALIBRATION
    assert big.sizes()["train"] == 6000 - 1200 - 1200 - 512 - 600


def test_sizes_override_as_counts_and_fractions():
    rows = [{"text": text(i), "label": i % 2} for i in range(100)]
    task = load_task(rows, sizes={"test": 30, "search": 0.1, "calibration": 5, "dev": 0})
    assert task.sizes() == {"train": 55, "dev": 0, "calibration": 5, "search": 10, "test": 30}
    sized = load_task(rows, sizes={"train": 10})
    assert sized.sizes()["train"] == 10 and sum(sized.sizes().values()) == 10 + 20 + 20 + 10 + 10
    # the test split depends only on the seed and its own size
    assert load_task(rows, sizes={"search": 3}).split("test") == load_task(rows).split("test")


# ------------------------------------------------------------------------- inference rules
@pytest.mark.parametrize("row, head, task_type", [
    (lambda i: {"sentence1": f"a{i}", "sentence2": "b", "gold_label": "xy"[i % 2]}, None,
     "text_pair_classification"),
    (lambda i: {"text": f"a{i}", "text_pair": "b", "similarity": 0.5}, None, "embedding_pairs"),
    (lambda i: {"sentence1": f"a{i}", "sentence2": "b", "label": i / 3}, None,
     "embedding_pairs"),  # STS-B: a label column of fractional scores
    (lambda i: {"text": f"a{i}", "text_pair": "b", "label": i % 2}, "sentence_embedding",
     "embedding_pairs"),
    (lambda i: {"text": f"a{i}", "text_pair": "b", "label": i % 2}, None,
     "text_pair_classification"),
    (lambda i: {"content": f"a{i}", "category": "xy"[i % 2]}, None, "text_classification"),
    (lambda i: {"question": f"a{i}"}, None, "embedding_texts"),
    (lambda i: {"question": f"a{i}", "score": i / 3}, None, "text_scoring"),  # a regression
    (lambda i: {"words": ["a", str(i)], "labels": ["O", "B-x" if i % 2 else "O"]}, None, "token_classification"),
    (lambda i: {"text": f"a{i}", "labels": i % 2}, None, "text_classification"),  # scalar: a label
    (lambda i: {"text": f"a{i}", "text_pair": "b", "label": i % 2}, "sequence_classification",
     "text_pair_classification"),
])
def test_task_type_inference(row, head, task_type):
    assert load_task([row(i) for i in range(MIN_ROWS)], head=head).task_type.name == task_type


@pytest.mark.parametrize("gold", ["label", "score"])
def test_an_embedder_says_it_leaves_the_gold_of_single_texts_unused(gold):
    """An embedding model gives no label or score for one text: its task embeds the texts,
    and a label or score column, which looks like gold for a metric, is named as unused."""
    rows = [{"text": f"a{i}", gold: i % 2} for i in range(MIN_ROWS)]
    with pytest.warns(UserWarning, match=f"column '{gold}' is not used: an embedding model "
                                         "gives no label or score for one text"):
        task = load_task(rows, head="sentence_embedding")
    assert task.task_type.name == "embedding_texts"


def test_sts_style_label_column_of_scores_becomes_score():
    rows = [{"sentence1": text(i), "sentence2": text(i + 1), "label": i / 7} for i in range(20)]
    task = load_task(rows)
    assert all("score" in e and "label" not in e for e in examples(task))
    assert task.metric == "spearman"


def test_a_constant_second_column_is_no_second_text_but_a_constant_first_one_is_a_pair():
    """A second text that is one value in every row is a placeholder ("NO_CONTEXT"): the text
    is read alone. A first text may be one value: a reranker's query over many passages."""
    rows = [{"question": text(i), "context": "NO_CONTEXT", "label": ("yes", "no")[i % 2]}
            for i in range(20)]
    with pytest.warns(UserWarning, match="column 'context' holds one value in every row"):
        assert load_task(rows).task_type.name == "text_classification"
    ranked = [{"query": "which river is longest", "passage": text(i)} for i in range(5)]
    assert read_inputs(ranked) == [{"text": r["query"], "text_pair": r["passage"]} for r in ranked]
    for first, second in (("question", "context"), ("question", "sentence"), ("query", "passage")):
        one = [{first: "why?", second: "because"}]  # one row: no placeholder to tell
        assert read_inputs(one) == [{"text": "why?", "text_pair": "because"}]


@pytest.mark.parametrize("first", ["", "n/a", None])
def test_a_blank_or_placeholder_first_column_is_no_first_text_of_a_pair(first):
    """A constant first column is a pair's text only when it is one non-blank text and no
    other usual text column is there: an empty `question` beside `sentence` is no question,
    and a placeholder `question` beside `text` leaves `text` to be read."""
    rows = [{"sentence": f"the film is good {i}", "question": first} for i in range(4)]
    if first is not None and first.strip():
        rows = [dict(r, text=f"GOOD {i}") for i, r in enumerate(rows)]
        assert read_inputs(rows) == [{"text": r["text"]} for r in rows]
    else:
        assert read_inputs(rows) == [{"text": r["sentence"]} for r in rows]


def test_a_constant_second_text_read_as_a_placeholder_is_said():
    rows = [{"question": f"who {i}?", "context": "Paris is the capital of France."} for i in range(4)]
    with pytest.warns(UserWarning, match=r"column 'context' holds one value in every row "
                                         r"\('Paris is the capital of France\.'\), so it is read as "
                                         r"a placeholder and 'question' alone; give "
                                         r"--text-pair-column context"):
        assert read_inputs(rows) == [{"text": r["question"]} for r in rows]


@pytest.mark.parametrize("first, second", [("text", "text_pair"), ("sentence1", "sentence2"),
                                           ("premise", "hypothesis")])
def test_a_named_text_whose_partner_is_read_anyway_gets_no_warning(first, second):
    rows = [{first: text(i), second: text(i + 1)} for i in range(5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_inputs(rows, columns=Columns(text=first)) == [
            {"text": r[first], "text_pair": r[second]} for r in rows]


def test_a_named_text_with_its_usual_partner_left_out_is_read_alone_with_a_warning():
    rows = [{"question": text(i), "passage": text(i + 1)} for i in range(5)]
    with pytest.warns(UserWarning, match=r"the text column 'question' is read alone; column "
                                         r"'passage' is the usual second text of a pair with it: "
                                         r"give --text-pair-column passage"):
        assert read_inputs(rows, columns=Columns(text="question")) == [{"text": r["question"]} for r in rows]
    assert read_inputs(rows, columns=Columns(text="question", text_pair="passage"))[0]["text_pair"] == rows[0]["passage"]


@pytest.mark.parametrize("first, second", [("question", "context"), ("question", "sentence"),
                                           ("query", "passage"), ("question1", "question2")])
def test_usual_pairs_of_text_columns_are_read_as_pairs(first, second):
    """A question read alone would drop its context (or QNLI's sentence) without a word."""
    rows = [{first: text(i), second: text(i + 3), "label": ("yes", "no")[i % 2]}
            for i in range(20)]
    task = load_task(rows)
    assert task.task_type.name == "text_pair_classification"
    assert {(e["text"], e["text_pair"]) for e in examples(task)} == {(r[first], r[second]) for r in rows}
    assert read_inputs(rows) == [{"text": r[first], "text_pair": r[second]} for r in rows]
    named = load_task(rows, columns=Columns(text=second))  # a named text column is read alone
    assert named.task_type.name == "text_classification"


def test_labels_joined_in_text_cells_are_label_sets(tmp_path):
    """`a|b` in a CSV cell is a set of labels (an empty cell: none), without a task type."""
    sets = ["toxic|insult", "toxic", "", "insult|threat", "threat"]
    rows = [{"text": text(i), "labels": sets[i % 5]} for i in range(20)]
    task = load_task(write(tmp_path, "csv", rows))
    assert task.task_type.name == "text_multi_label" and task.labels == ("insult", "threat", "toxic")
    plain = [{"text": text(i), "label": ("a", "b")[i % 2]} for i in range(20)]
    assert load_task(write(tmp_path, "csv", plain, name="plain")).task_type.name == "text_classification"
    # a class whose name holds | but whose parts never stand alone is one class
    genres = [{"text": text(i), "label": ("Jazz", "R&B|Soul", "Rock")[i % 3]} for i in range(21)]
    task = load_task(write(tmp_path, "csv", genres, name="genres"))
    assert task.task_type.name == "text_classification" and "R&B|Soul" in task.labels


def test_explicit_columns_and_task_type():
    rows = [{"body": text(i), "other": text(i + 1), "y": ("a", "b")[i % 2], "label": 7}
            for i in range(20)]
    task = load_task(rows, columns=Columns(text="body", label="y"))
    assert task.task_type.name == "text_classification" and task.labels == ("a", "b")
    assert {e["text"] for e in examples(task)} == {r["body"] for r in rows}
    texts = load_task(rows, task_type="embedding_texts", columns=Columns(text="other"))
    assert examples(texts)[0].keys() == {"text"}
    assert {e["text"] for e in examples(texts)} == {r["other"] for r in rows}


# ---------------------------------------------------------------------------- label mapping
def test_string_labels_map_to_the_models_label_order(tmp_path):
    rows = [{"text": text(i), "label": ("pos", "neg")[i % 2]} for i in range(20)]
    task = load_task(write(tmp_path, "csv", rows), labels=["pos", "neg", "neutral"])
    assert task.labels == ("pos", "neg", "neutral")
    by_text = {e["text"]: e["label"] for e in examples(task)}
    assert all(by_text[r["text"]] == ("pos", "neg").index(r["label"]) for r in rows)


@pytest.mark.parametrize("fmt", ("csv", "jsonl"))
def test_int_labels_are_ids_into_the_models_labels(tmp_path, fmt):
    rows = [{"text": text(i), "label": i % 2} for i in range(20)]
    task = load_task(write(tmp_path, fmt, rows), labels=("LABEL_0", "LABEL_1"))
    assert task.labels == ("LABEL_0", "LABEL_1")
    by_text = {e["text"]: e["label"] for e in examples(task)}
    assert all(by_text[r["text"]] == r["label"] for r in rows)


@pytest.mark.parametrize("fmt, spell", [("csv", str), ("jsonl", int), ("jsonl", str),
                                         ("parquet", int)])
def test_digit_names_of_the_model_map_as_names_in_every_format(tmp_path, fmt, spell):
    """A model whose classes are named 1..5 reads the data's 1..5 as those names, whether the
    file holds them as numbers or as text (not 1 as the id of the class named "2")."""
    rows = [{"text": text(i), "stars": spell(1 + i % 5)} for i in range(20)]
    task = load_task(write(tmp_path, fmt, rows), columns=Columns(label="stars"),
                     labels=["1", "2", "3", "4", "5"])
    by_text = {e["text"]: e["label"] for e in examples(task)}
    assert all(by_text[r["text"]] == int(r["stars"]) - 1 for r in rows)
    zero = [{"text": text(i), "stars": spell(i % 5)} for i in range(20)]  # 0 names no class
    decimals = load_task(write(tmp_path, fmt, rows, name="decimals"), columns=Columns(label="stars"),
                         labels=["1.0", "2.0", "3.0", "4.0", "5.0"])  # names as pandas writes them
    assert examples(decimals) == examples(task)
    with pytest.raises(ValueError, match=r"has label '0', which is not one of the model's labels "
                                         r".*the model's classes are numbers"):
        load_task(write(tmp_path, fmt, zero, name="zero"), columns=Columns(label="stars"),
                  labels=["1", "2", "3", "4", "5"])


@pytest.mark.parametrize("values, names", [((0, 2), ("0", "2")), ((1, 2, 3, 4, 5), tuple("12345")),
                                           ((-1, 1), ("-1", "1"))])
def test_int_labels_without_names_name_the_classes_in_numeric_order(values, names):
    """As HF's run_glue: the classes are the distinct numbers, sorted (1..5 stars make 5
    classes, not 6 with a "0" that never occurs; -1/1 make two)."""
    rows = [{"text": text(i), "label": values[i % len(values)]} for i in range(20)]
    task = load_task(rows)
    assert task.labels == names
    by_text = {e["text"]: e["label"] for e in examples(task)}
    assert all(task.labels[by_text[r["text"]]] == str(r["label"]) for r in rows)


def test_class_label_features_name_the_ids():
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    dataset = datasets.Dataset.from_dict(
        {"text": [text(i) for i in range(20)], "label": [i % 2 for i in range(20)]}, features)
    assert load_task(dataset).labels == ("neg", "pos")


def test_class_label_columns_match_the_models_labels_by_name():
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    dataset = datasets.Dataset.from_dict(
        {"text": [text(i) for i in range(20)], "label": [i % 2 for i in range(20)]}, features)
    flipped = load_task(dataset, labels=["pos", "neg"])
    by_text = {e["text"]: e["label"] for e in examples(flipped)}
    assert all(by_text[text(i)] == 1 - i % 2 for i in range(20))
    with pytest.warns(UserWarning, match="is a ClassLabel of as many names"):
        generic = load_task(dataset, labels=["LABEL_0", "LABEL_1"])  # its ids, and its names
    assert all(e["label"] == int(e["text"].split()[-1]) % 2 for e in examples(generic))
    assert generic.labels == ("neg", "pos")
    with raises(r"datasets.Dataset: row 1: column 'label' has id 0, 'neg': the column is a "
                r"`datasets` ClassLabel with names \['neg', 'pos'\], which differ from the "
                r"model's labels \['NEGATIVE', 'POSITIVE'\] \(not only in case\).*"
                r"align_labels_with_mapping\(label2id, 'label'\)"):
        load_task(dataset, labels=["NEGATIVE", "POSITIVE"])


def _sst2_like(tmp_path) -> list:
    """glue/sst2's ClassLabel (`negative`, `positive`) as a Dataset, a save_to_disk folder and
    a Parquet file `datasets` wrote (its names in the schema's metadata)."""
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    dataset = datasets.Dataset.from_dict(
        {"sentence": [text(i) for i in range(20)], "label": [i % 2 for i in range(20)]}, features)
    dataset.save_to_disk(str(tmp_path / "sst2"))
    dataset.to_parquet(str(tmp_path / "sst2.parquet"))
    return [dataset, tmp_path / "sst2", tmp_path / "sst2.parquet"]


def test_class_label_names_that_differ_from_the_models_only_in_case_are_matched(tmp_path):
    """distilbert-sst2's `NEGATIVE`, `POSITIVE` (here in the other order) on glue/sst2's
    `negative`, `positive`: matched regardless of case, one to one, as `datasets`'
    `align_labels_with_mapping` matches them, and said in a warning line."""
    for source in _sst2_like(tmp_path):
        with pytest.warns(UserWarning, match=r"column 'label' is a `datasets` ClassLabel of "
                          r"names \['negative', 'positive'\]; 'negative', 'positive' matched to "
                          r"the model's 'NEGATIVE', 'POSITIVE', which differ only in case"):
            task = load_task(source, labels=["POSITIVE", "NEGATIVE"])
        assert task.labels == ("POSITIVE", "NEGATIVE")
        assert all(e["label"] == 1 - int(e["text"].split()[-1]) % 2 for e in examples(task))
        with raises(r"has id 0, 'negative': the column is a `datasets` ClassLabel with names "
                    r"\['negative', 'positive'\], which differ from the model's labels "
                    r"\['Negative', 'NEGATIVE', 'positive'\] \(not only in case\)"):
            load_task(source, labels=["Negative", "NEGATIVE", "positive"])  # not one to one
    rows = [{"sentence": text(i), "label": ("negative", "positive")[i % 2]} for i in range(20)]
    with raises(r"has label 'negative', which is not one of the model's labels \['NEGATIVE', "
                r"'POSITIVE'\].*\(it differs from the model's 'NEGATIVE' only in case: a label "
                r"is matched as it is spelt"):  # a plain label: as it is spelt
        load_task(write(tmp_path, "jsonl", rows), labels=["NEGATIVE", "POSITIVE"])


def test_a_stale_class_label_declaration_over_text_labels_is_ignored_and_said(tmp_path):
    """A Parquet file `datasets` wrote, its label ids replaced by names with pyarrow: the
    schema keeps the ClassLabel declaration, which no longer describes the column."""
    path = _sst2_like(tmp_path)[2]
    table = pyarrow.parquet.read_table(path)
    names = pyarrow.array([("NEGATIVE", "POSITIVE")[i] for i in table.column("label").to_pylist()])
    pyarrow.parquet.write_table(table.set_column(1, "label", names), tmp_path / "edited.parquet")
    assert b"huggingface" in pyarrow.parquet.read_schema(tmp_path / "edited.parquet").metadata
    said = (r"edited.parquet: row 1: column 'label' holds 'NEGATIVE', not an integer id, though "
            r"the column is declared a `datasets` ClassLabel of names \['negative', 'positive'\]"
            r" .*is ignored; its values are read as they are")
    for labels in (["NEGATIVE", "POSITIVE"], None, ["LABEL_0", "LABEL_1"]):
        with pytest.warns(UserWarning, match=said):
            if labels == ["LABEL_0", "LABEL_1"]:  # names of the data's own, not the ClassLabel's
                with raises(r"has label 'NEGATIVE', which is not one of the model's labels"):
                    load_task(tmp_path / "edited.parquet", labels=labels)
                continue
            task = load_task(tmp_path / "edited.parquet", labels=labels)
        assert task.labels == ("NEGATIVE", "POSITIVE")
        assert all(e["label"] == int(e["text"].split()[-1]) % 2 for e in examples(task))


BIO_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _ner_dataset(names=BIO_TAGS) -> datasets.Dataset:
    """Tagged rows whose tags are a `Sequence(ClassLabel)`, as conll2003's `ner_tags`."""
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    return datasets.Dataset.from_dict(
        {"tokens": [[f"Ada{i}", "Lovelace", "in", "Paris"] for i in range(20)],
         "ner_tags": [[1, 2, 0, 3]] * 20}, features)


def test_a_generic_head_takes_the_class_label_names_of_its_tags(tmp_path):
    """A tagger named `LABEL_0` .. `LABEL_4` (HF's default id2label) on tags that a ClassLabel
    names with BIO tags: the data's names are the task's, so entity F1 scores it (not word
    accuracy of LABEL_<i>), the ids as they are, and a warning line says so."""
    generic = [f"LABEL_{i}" for i in range(5)]
    dataset = _ner_dataset()
    dataset.save_to_disk(str(tmp_path / "ner"))
    dataset.to_parquet(str(tmp_path / "ner.parquet"))  # its features in the schema's metadata
    for source in (dataset, tmp_path / "ner", tmp_path / "ner.parquet"):
        with pytest.warns(UserWarning, match=r"the model names its 5 outputs with HF's generic "
                          r"LABEL_0 \.\. LABEL_4; column 'ner_tags' is a ClassLabel of as many "
                          r"names, \['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC'\], read as the "
                          r"names of the model's outputs in id order"):
            task = load_task(source, labels=generic)
        assert task.labels == tuple(BIO_TAGS) and task.metric == "entity_f1"
        assert {tuple(e["tags"]) for e in examples(task)} == {(1, 2, 0, 3)}
        assert load_task(source).labels == tuple(BIO_TAGS)  # no model: the data's names
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # names of its own: matched by name, nothing to say
        assert load_task(dataset, labels=BIO_TAGS[::-1]).split("test")[0]["tags"] == [3, 2, 4, 1]
        plain = _ner_dataset([f"LABEL_{i}" for i in range(5)])  # generic both: as they were
        assert load_task(plain, labels=generic).labels == tuple(generic)


def test_a_parquet_files_class_label_names_are_read_from_its_datasets_metadata(tmp_path):
    _ner_dataset().to_parquet(str(tmp_path / "ner.parquet"))
    for stream in (False, True):  # read whole (load_task), or streamed (predict)
        tables, _ = read_tables(tmp_path / "ner.parquet", None, stream=stream)
        assert tables[None].class_names == {"ner_tags": tuple(BIO_TAGS)}
    table = pyarrow.table({"tokens": [["a", "b"]], "tags": [[0, 1]]})
    for metadata in ({}, {b"huggingface": b"not JSON"}, {b"huggingface": b'{"info": []}'},
                     {b"huggingface": b'{"info": {"features": {"tags": {"_type": "List"}}}}'}):
        pyarrow.parquet.write_table(table.replace_schema_metadata(metadata), tmp_path / "t.parquet")
        assert parquet_class_names(tmp_path / "t.parquet") == {}


def test_a_generic_head_of_another_width_than_the_class_label_is_refused():
    with raises(r"datasets.Dataset: column 'ner_tags' is a ClassLabel of 5 names \['O', "
                r"'B-PER', 'I-PER', 'B-LOC', 'I-LOC'\], and the model's head has 3 outputs, "
                r"named with HF's generic LABEL_0 \.\. LABEL_2: its outputs cannot be the "
                r"data's classes"):
        load_task(_ner_dataset(), labels=["LABEL_0", "LABEL_1", "LABEL_2"])
    split = datasets.DatasetDict({"train": _ner_dataset(),
                                  "test": _ner_dataset(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])})
    with raises(r"column 'ner_tags' one of names \['O', 'B-LOC', .*its ids are the data's, "
                r"which must name them alike in every split"):
        load_task(split, labels=[f"LABEL_{i}" for i in range(5)])


def test_tags_map_to_given_labels_and_ints_are_ids():
    rows = [{"tokens": [f"w{i}", "b", "c"], "tags": ["B-PER", "I-PER", "O"]} for i in range(10)]
    task = load_task(rows, labels=["O", "B-PER", "I-PER"])
    assert {tuple(e["tags"]) for e in examples(task)} == {(1, 2, 0)}
    ints = load_task([dict(r, tags=[1, 2, 0]) for r in rows], labels=["O", "B-PER", "I-PER"])
    assert {tuple(e["tags"]) for e in examples(ints)} == {(1, 2, 0)}
    assert load_task(rows).labels == ("O", "B-PER", "I-PER")


def test_embedding_labels_may_be_strings_or_bools(tmp_path):
    rows = [{"text": text(i), "text_pair": text(i + 1), "label": str(i % 2)} for i in range(20)]
    task = load_task(write(tmp_path, "csv", rows), head="sentence_embedding")
    assert {e["label"] for e in examples(task)} == {0, 1} and task.metric == "roc_auc"
    flags = load_task([dict(r, label=bool(i % 2)) for i, r in enumerate(rows)],
                      task_type="embedding_pairs")
    gold = {r["text"]: i % 2 for i, r in enumerate(rows)}
    assert all(e["label"] == gold[e["text"]] for e in examples(flags))
    spelled = load_task(write(tmp_path, "csv", [dict(r, label=("false", "True")[i % 2])
                                                for i, r in enumerate(rows)], name="spelled"),
                        task_type="embedding_pairs")
    assert examples(spelled) == examples(flags)  # a CSV's true/false as JSON's booleans


def test_boolean_labels_are_the_names_a_csv_spells_them_with(tmp_path):
    """JSON `true` against a model whose classes are neg/neu/pos is refused as the CSV's
    "True" is, not read as class id 1; without the model's names they are two classes."""
    rows = [{"text": text(i), "label": bool(i % 2)} for i in range(20)]
    for source in (rows, write(tmp_path, "jsonl", rows), write(tmp_path, "csv", rows)):
        with raises(r"has label '(True|False)', which is not one of the model's labels"):
            load_task(source, labels=["neg", "neu", "pos"])
        task = load_task(source)
        assert task.labels == ("False", "True")
        gold = {r["text"]: int(r["label"]) for r in rows}  # "False" is class 0, "True" 1
        assert all(e["label"] == gold[e["text"]] for e in examples(task))


# ---------------------------------------------------------------------------- explicit splits
def test_split_files_carve_calibration_and_search_from_train(tmp_path):
    rows = [{"text": text(i), "label": ("neg", "pos")[i % 2]} for i in range(60)]
    (tmp_path / "mydata").mkdir()
    train = write(tmp_path / "mydata", "csv", rows[:40], name="train")
    test = write(tmp_path / "mydata", "jsonl", rows[40:50], name="test")
    dev = write(tmp_path / "mydata", "tsv", rows[50:], name="dev")
    task = load_task(split_files={"train": train, "validation": dev, "test": str(test)})
    assert task.sizes() == {"train": 28, "dev": 10, "calibration": 4, "search": 8, "test": 10}
    assert task.name == "mydata"
    assert [e["text"] for e in task.split("test")] == [r["text"] for r in rows[40:50]]
    assert [e["text"] for e in task.split("dev")] == [r["text"] for r in rows[50:]]
    carved = {e["text"] for s in ("train", "calibration", "search") for e in task.split(s)}
    assert carved == {r["text"] for r in rows[:40]}
    assert "search, calibration carved from train with split seed 0" in task.source
    assert load_task(split_files={"train": train, "test": test}, seed=1).split("search") != \
        task.split("search")


def test_split_files_without_train_carve_from_dev_and_sizes_name_missing_splits(tmp_path):
    rows = [{"text": text(i), "label": i % 2} for i in range(30)]
    dev = write(tmp_path, "csv", rows, name="dev")
    task = load_task(split_files={"dev": dev})
    assert task.sizes() == {"train": 0, "dev": 21, "calibration": 3, "search": 6, "test": 0}
    with_test = load_task(split_files={"dev": dev}, sizes={"test": 5})
    assert with_test.sizes()["test"] == 5
    with pytest.raises(ValueError, match=r"sizes\['dev'\].*given explicitly"):
        load_task(split_files={"dev": dev}, sizes={"dev": 5})


def test_dataset_dict_splits_map_to_ours(tmp_path):
    rows = [{"sentence": text(i), "label": i % 2} for i in range(50)]
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:30]),
                                   "validation": datasets.Dataset.from_list(rows[30:40]),
                                   "test": datasets.Dataset.from_list(rows[40:])})
    splits.save_to_disk(str(tmp_path / "saved"))
    for source in (splits, tmp_path / "saved"):
        task = load_task(source)
        assert task.sizes() == {"train": 21, "dev": 10, "calibration": 3, "search": 6, "test": 10}
    with pytest.raises(ValueError, match=r"'unsupervised' is not one of"):
        load_task(datasets.DatasetDict({"unsupervised": datasets.Dataset.from_list(rows)}))


def test_test_inputs_are_not_repeated_in_other_splits(tmp_path):
    rows = [{"text": text(i % 25), "label": i % 2} for i in range(50)]  # every text twice
    task = load_task(rows)
    test = {e["text"] for e in task.split("test")}
    others = [e for s in SPLITS if s != "test" for e in task.split(s)]
    assert not test & {e["text"] for e in others}
    dropped = 50 - sum(task.sizes().values())
    assert dropped > 0 and "repeat a test input" in task.source
    pairs = load_task(split_files={"train": write(tmp_path, "jsonl", [
        {"text": "a", "text_pair": f"b{i}", "label": 0} for i in range(20)], name="train"),
        "test": write(tmp_path, "jsonl", [{"text": "a", "text_pair": "b3", "label": 1}],
                      name="test")})
    assert ("a", "b3") not in {(e["text"], e["text_pair"]) for s in SPLITS if s != "test"
                               for e in pairs.split(s)}
    assert sum(pairs.sizes().values()) == 20 and "dropped 1 from" in pairs.source


def test_a_json_array_file_and_a_bom(tmp_path):
    rows = [{"text": text(i), "label": i % 2} for i in range(20)]
    (tmp_path / "array.json").write_text(json.dumps(rows))
    assert len(examples(load_task(tmp_path / "array.json"))) == 20
    (tmp_path / "bom.csv").write_text("\ufefftext,label\n" + "".join(
        f"{r['text']},{r['label']}\n" for r in rows), encoding="utf-8")
    assert load_task(tmp_path / "bom.csv").labels == ("0", "1")


def test_read_inputs_reads_model_inputs_in_order(tmp_path):
    rows = [{"review": text(i), "label": "x"} for i in range(3)]
    assert read_inputs(write(tmp_path, "csv", rows)) == [{"text": r["review"]} for r in rows]
    pairs = [{"premise": "a", "hypothesis": "b"}]
    assert read_inputs(pairs) == [{"text": "a", "text_pair": "b"}]
    assert read_inputs([{"words": ["a", "b"]}], fields=("tokens",)) == [{"tokens": ["a", "b"]}]
    with pytest.raises(ValueError, match=r"needs a text column.*columns found: \['body'\]"):
        read_inputs([{"body": "a"}])


# ------------------------------------------------------------------------------------ errors
def raises(match: str):
    return pytest.raises(ValueError, match=match)


def test_missing_files_and_unknown_formats(tmp_path):
    with raises(r"nowhere\.csv does not exist"):
        load_task(tmp_path / "nowhere.csv")
    (tmp_path / "data.xlsx").write_text("x")
    with raises(r"data\.xlsx: unknown format '\.xlsx'; expected .*'\.csv'"):
        load_task(tmp_path / "data.xlsx")
    (tmp_path / "folder").mkdir()
    with raises(r"folder is a folder but not one written by datasets' save_to_disk"):
        load_task(tmp_path / "folder")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with raises(r"bad\.parquet is not a readable Parquet file"):
        load_task(tmp_path / "bad.parquet")
    with pytest.raises(TypeError, match="int is not a path"):
        load_task(3)
    with raises("no data"):
        load_task()
    with raises("either a source or split_files"):
        load_task([{"text": "a"}], split_files={"train": tmp_path / "x.csv"})


def test_a_lone_surrogate_in_a_text_cell_is_named_by_file_row_and_column(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"text": "fine"}\n{"text": "ab\\ud800c"}\n')
    with raises(r"rows\.jsonl: row 2: column 'text' has a lone surrogate '\\ud800' at "
                r"character 2, which is not Unicode text"):
        read_inputs(tmp_path / "rows.jsonl")


def test_a_device_or_pipe_is_refused_before_it_is_read(tmp_path):
    """/dev/zero behind a .csv name would be read without end; a pipe, read once, would give
    an empty file or a hang on the second read."""
    import os
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    with raises(r"zero\.csv is not a regular file \(a device, pipe or socket\)"):
        load_task(tmp_path / "zero.csv")
    os.mkfifo(tmp_path / "rows.jsonl")  # nothing writes to it: a read would block
    with raises(r"rows\.jsonl is not a regular file"):
        read_inputs(tmp_path / "rows.jsonl")


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", r"empty\.csv is empty; expected a header line"),
    ("header.csv", "text,label\n", r"header\.csv has no rows"),
    ("empty.jsonl", "\n", r"empty\.jsonl is empty"),
    ("broken.jsonl", '{"text": "a"}\n{"text": \n', r"broken\.jsonl: line 2 is not a JSON object"),
    ("scalars.json", "[1, 2]", r"scalars\.json: row 1 is an int; expected an object"),
    ("wide.csv", "text,label\na,b,c\n",
     r"wide\.csv: row 1 has 1 more field\(s\) than the 2 columns"),
])
def test_empty_and_malformed_files(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with raises(message):
        load_task(tmp_path / name)


def test_empty_parquet_and_list(tmp_path):
    path = tmp_path / "none.parquet"
    pyarrow.parquet.write_table(pyarrow.table({"text": pyarrow.array([], pyarrow.string())}), path)
    with raises(r"none\.parquet has no rows"):
        load_task(path)
    with raises(r"list of dicts has no rows"):
        load_task([])


def test_missing_column_lists_the_columns_found(tmp_path):
    path = write(tmp_path, "csv", [{"body": "a", "sentiment": "pos"}] * 12)
    with raises(r"data\.csv: column 'review', named with --text-column \(Columns\(text=\.\.\.\)\), "
                r"was not found; columns found: "
                r"\['body', 'sentiment'\]"):
        load_task(path, columns=Columns(text="review"))
    with raises(r"data\.csv: a text_classification task needs a text column, and none of "
                r"\('text', 'sentence'.*\) is one; columns found: \['body', 'sentiment'\]; "
                r"name yours with --text-column \(Columns\(text=\.\.\.\)\)"):
        load_task(path)
    with raises(r"list of dicts: no text column \(tried .*'sentence'.*\) and no list-valued "
                r"tokens and tags columns.*columns found: \['body', 'x'\]"):
        load_task([{"body": "a", "x": 1}] * 12)
    with raises(r"data\.csv: a text_pair_classification task needs a text_pair column.*"
                r"columns found: \['body', 'sentiment'\].*Columns\(text_pair=\.\.\.\)"):
        load_task(path, task_type="text_pair_classification", columns=Columns(text="body"))
    with raises(r"data\.csv: a token_classification task needs a list-valued tokens column"):
        load_task(path, head="token_classification")
    with raises(r"data\.csv: a text_classification task needs a text column, and none of "
                r"\(.*'review'\) is one \('review' is the label column\)"):
        load_task(write(tmp_path, "csv", [{"review": "a"}] * 12), columns=Columns(label="review"))
    with raises(r"text pairs \('text', 'text_pair'\) need a label or score column"):
        load_task([{"text": "a", "text_pair": "b"}] * 12)


def test_a_split_file_missing_a_column_is_named(tmp_path):
    train = write(tmp_path, "csv", [{"text": text(i), "label": 0} for i in range(20)], "train")
    test = write(tmp_path, "csv", [{"text": "a", "y": 0}], "test")
    with raises(r"test\.csv: a text_classification task needs a label column.*columns found: "
                r"\['text', 'y'\]"):
        load_task(split_files={"train": train, "test": test})
    with raises(r"split_files: split 'holdout' is not one of"):
        load_task(split_files={"holdout": train})


def test_unknown_label_names_the_file_row_column_value_and_expected_names(tmp_path):
    rows = [{"review": text(i), "sentiment": ("pos", "neg")[i % 2]} for i in range(20)]
    rows[7]["sentiment"] = "meh"
    path = write(tmp_path, "csv", rows)
    with raises(r"data\.csv: row 8: column 'sentiment' has label 'meh', which is not one of the "
                r"model's labels \['neg', 'pos'\]"):
        load_task(path, labels=["neg", "pos"])


def test_labels_disagreeing_with_the_model_list_every_unknown_name(tmp_path):
    rows = [{"text": text(i), "label": ("positive", "negative")[i % 2]} for i in range(20)]
    with raises(r"data\.jsonl: row 1: column 'label' has label 'positive', which is not one of "
                r"the model's labels \['NEG', 'POS'\]; the data has 2 label names the model "
                r"lacks: \['negative', 'positive'\]"):
        load_task(write(tmp_path, "jsonl", rows), labels=["NEG", "POS"])


def test_label_ids_out_of_range(tmp_path):
    rows = [{"text": text(i), "label": i % 3} for i in range(20)]
    with raises(r"data\.csv: row 3: column 'label' has label id 2; expected an id in \[0, 2\) "
                r"for the model's labels \['a', 'b'\]"):
        load_task(write(tmp_path, "csv", rows), labels=["a", "b"])
    with raises(r"column 'label' holds one class \(-1\) in all 20 rows"):  # -1 names a class
        load_task([dict(r, label=-1) for r in rows])
    tags = [{"tokens": ["a", "b"], "tags": [0, 5]}] * 12
    with raises(r"row 1: column 'tags' item 1 has label id 5; expected an id in \[0, 3\)"):
        load_task(tags, labels=["O", "B-X", "I-X"])


@pytest.mark.parametrize("fmt, bad, message", [
    ("jsonl", None, r"data\.jsonl: row 5: column 'label' has no label \(None\)"),
    ("csv", "", r"data\.csv: row 5: column 'label' has no label \(''\)"),
    ("parquet", math.nan, r"data\.parquet: row 5: column 'label' has no label \(nan\)"),
    ("list", math.nan, r"list of dicts: row 5: column 'label' has no label \(nan\)"),
])
def test_missing_labels(tmp_path, fmt, bad, message):
    rows = [{"text": text(i), "label": float(i % 2)} for i in range(20)]
    rows[4]["label"] = bad
    with raises(message):
        load_task(write(tmp_path, fmt, rows))


def test_non_string_text_and_bad_values(tmp_path):
    rows = [{"text": text(i), "label": 0} for i in range(20)]
    with raises(r"data\.jsonl: row 3: column 'text' holds 42 \(int\); expected a string"):
        load_task(write(tmp_path, "jsonl", [dict(r, text=42) if i == 2 else r
                                            for i, r in enumerate(rows)]))
    with raises(r"row 1: column 'text' holds None \(NoneType\); expected a string"):
        load_task([dict(rows[0], text=None)] + rows)
    with raises(r"row 2: column 'label' holds 0.5; expected a class name or an integer id"):
        load_task([rows[0], dict(rows[1], label=0.5)] + rows, task_type="text_classification")
    with raises(r"column 'label' mixes label names and ids: 'x' \(list of dicts: row 1: "
                r"column 'label'\) and 0"):
        load_task([dict(rows[0], label="x")] + rows)
    with raises(r"row 2: column 'score' holds 'high'; expected a number"):
        load_task([{"text": "a", "text_pair": "b", "score": 0.1},
                   {"text": "c", "text_pair": "d", "score": "high"}] * 6)
    pairs = [{"text": text(i), "text_pair": "b", "label": i % 3} for i in range(20)]
    with raises(r"row 3: column 'label' has label 2; task type embedding_pairs reads a label "
                r"column as 0/1 gold \(true or false\); a column of scores .* --score-column"):
        load_task(pairs, head="sentence_embedding")
    ratings = [{"text": text(i), "label": 1 + i % 5} for i in range(20)]  # 1-5 stars
    with raises(r"row 2: column 'label' has label 2; task type text_scoring reads a label column "
                r"as 0/1 gold"):
        load_task(ratings, task_type="text_scoring")
    scored = load_task(ratings, task_type="text_scoring", columns=Columns(score="label"))
    assert {e["score"] for e in examples(scored)} == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_token_errors_name_the_row(tmp_path):
    rows = [{"tokens": ["a", "b"], "tags": ["O", "O"]} for _ in range(20)]
    rows[11] = {"tokens": ["a", "b", "c"], "tags": ["O", "O"]}
    with raises(r"data\.jsonl: row 12: 3 tokens in column 'tokens' but 2 tags in column 'tags'; "
                r"expected one tag per token"):
        load_task(write(tmp_path, "jsonl", rows))
    flat = write(tmp_path, "csv", [{"tokens": "a b", "tags": "O O"}] * 12)
    with raises(r"data\.csv: column 'tokens' holds str values; a token_classification task needs "
                r"a list of words per row \(CSV and TSV cannot hold lists"):
        load_task(flat, task_type="token_classification")
    with raises(r"data\.csv: row 1: column 'tokens' holds a string \('a b'\); expected a list of "
                r"words \(CSV and TSV cannot hold lists"):
        load_task(flat, columns=Columns(tokens="tokens", tags="tags"))
    with raises(r"row 1: column 'tokens' item 1 holds 3 \(int\); expected a string"):
        load_task([{"tokens": ["a", 3], "tags": ["O", "O"]}] * 12)
    texts_as_lists = write(tmp_path, "jsonl", [{"text": ["a", "b"], "label": i % 2} for i in range(12)])
    with raises(r"data\.jsonl: column 'text' holds lists; a text_classification task needs one "
                r"text per row in its text column \(name another with --text-column"):
        load_task(texts_as_lists, task_type="text_classification")


def test_too_few_rows(tmp_path):
    rows = [{"text": text(i), "label": i % 2} for i in range(MIN_ROWS - 1)]
    with raises(rf"data\.csv has {MIN_ROWS - 1} rows; splitting it into test, search, "
                rf"calibration, dev needs at least {MIN_ROWS}"):
        load_task(write(tmp_path, "csv", rows))
    assert load_task(rows, sizes={"test": 3, "search": 3, "calibration": 2, "dev": 0}).sizes() == {
        "train": 1, "dev": 0, "calibration": 2, "search": 3, "test": 3}
    with raises(r"list of dicts has 9 rows, but the splits need 12"):
        load_task(rows, sizes={"test": 6, "search": 3, "calibration": 2, "dev": 1})
    with raises(r"sizes\['test'\]=1.5; expected an int \(a count\) or a float in \(0, 1\)"):
        load_task(rows * 2, sizes={"test": 1.5})
    with raises(r"sizes: split 'holdout' is not one of"):
        load_task(rows * 2, sizes={"holdout": 1})


def test_task_type_and_head_checks():
    rows = [{"text": text(i), "label": i % 2} for i in range(20)]
    with raises(r"task type name='sentiment' is not one of"):
        load_task(rows, task_type="sentiment")
    with raises(r"task_type='text_classification' needs a sequence_classification head; the "
                r"model has a sentence_embedding head"):
        load_task(rows, task_type="text_classification", head="sentence_embedding")
    with raises(r"head='pooler' is not one of"):
        load_task(rows, head="pooler")


# ------------------------------------------------------- data that is not what it seems
def _lines(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, header, row", [
    ("d.csv", "text,label,text", "a{i},{label},b{i}"),
    ("d.tsv", "text\tlabel\ttext", "a{i}\t{label}\tb{i}"),
])
def test_repeated_column_names_in_a_header_are_refused(tmp_path, name, header, row):
    body = "".join(row.format(i=i, label="xy"[i % 2]) + "\n" for i in range(20))
    path = _lines(tmp_path, name, header + "\n" + body)
    with raises(rf"{name}: the header \(line 1\): column name 'text' appears 2 times "
                r"\(columns \[1, 3\] of 3\)"):
        load_task(path)
    with raises("column name 'text' appears 2 times"):
        read_inputs(path)


def test_repeated_keys_in_json_rows_are_refused(tmp_path):
    rows = [f'{{"text": "a{i}", "label": "{"xy"[i % 2]}"}}' for i in range(20)]
    rows[6] = '{"text": "a6", "label": "x", "text": "other"}'
    with raises(r"d\.jsonl: line 7 \(row 7\): column 'text' appears more than once"):
        load_task(_lines(tmp_path, "d.jsonl", "\n".join(rows) + "\n"))
    with raises(r"d\.json: row 7: column 'text' appears more than once"):
        load_task(_lines(tmp_path, "d.json", "[" + ",".join(rows) + "]"))


def test_repeated_column_names_in_a_parquet_schema_are_refused(tmp_path):
    table = pyarrow.Table.from_arrays(
        [pyarrow.array([f"a{i}" for i in range(20)]), pyarrow.array(["xy"[i % 2] for i in range(20)]),
         pyarrow.array([f"b{i}" for i in range(20)])], names=["text", "label", "text"])
    pyarrow.parquet.write_table(table, tmp_path / "d.parquet")
    with raises(r"d\.parquet: the schema: column name 'text' appears 2 times"):
        load_task(tmp_path / "d.parquet")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "list"])
@pytest.mark.parametrize("spelling", ["nan", "NaN", "NA", "N/A", "null", "<NA>", "#N/A"])
def test_label_strings_that_spell_a_missing_value_are_refused(tmp_path, fmt, spelling):
    rows = [{"text": text(i), "label": ("neg", "pos")[i % 2]} for i in range(30)]
    rows[12]["label"] = spelling
    where = "list of dicts" if fmt == "list" else rf"data\.{fmt}"
    with raises(rf"{where}: row 13: column 'label' has label '{re.escape(spelling)}', a "
                "spelling of a missing value"):
        load_task(write(tmp_path, fmt, rows))


def test_missing_value_spellings_in_tags_are_refused():
    rows = [{"tokens": ["a", text(i)], "tags": ["O", "B-x"]} for i in range(20)]
    rows[3] = {"tokens": ["a", "b"], "tags": ["O", "NaN"]}
    with raises(r"row 4: column 'tags' item 1 has label 'NaN', a spelling of a missing value"):
        load_task(rows)


def test_none_is_a_class_name_not_a_missing_value():
    rows = [{"text": text(i), "label": ("none", "joy")[i % 2]} for i in range(20)]
    assert load_task(rows).labels == ("joy", "none")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "list"])
@pytest.mark.parametrize("label", ["pos", 1])
def test_data_with_one_class_is_refused(tmp_path, fmt, label):
    rows = [{"text": text(i), "label": label} for i in range(30)]
    where = "list of dicts" if fmt == "list" else rf"data\.{fmt}"
    with raises(rf"{where}: column 'label' holds one class \('?{label}'?\) in all 30 rows; "
                r"expected at least 2 classes to classify; rows of one class can be scored "
                r"against a model's label names \(eval and search read them from --model; "
                r"load_task\(..., labels=...\)\), not trained on"):
        load_task(write(tmp_path, fmt, rows))
    if label == "pos":  # with the model's names, rows of one class are scored
        scored = load_task(write(tmp_path, fmt, rows), labels=["neg", "pos"])
        assert {e["label"] for e in scored.split("test")} == {1}


def test_one_tag_everywhere_is_refused():
    with raises(r"column 'tags' holds one class \('O'\) in all 20 rows"):
        load_task([{"tokens": ["a", text(i)], "tags": ["O", "O"]} for i in range(20)])


def test_one_class_present_is_fine_when_the_model_names_the_classes():
    """Scoring a model on rows of one class is a fair test; only learning from them is not."""
    task = load_task([{"text": text(i), "label": "pos"} for i in range(30)], labels=("neg", "pos"))
    assert task.labels == ("neg", "pos")


def test_a_model_label_with_spaces_around_it_is_matched_by_its_stripped_spelling():
    """Data labels are read stripped; the model's " negative" (as a hand-edited id2label may
    have it) is the class the data's "negative" names, not an unknown label."""
    rows = [{"text": text(i), "label": ("Positive", "negative", " negative ")[i % 3]} for i in range(30)]
    task = load_task(rows, labels=["Positive", " negative"])
    gold = {r["text"]: 0 if r["label"] == "Positive" else 1 for r in rows}
    assert all(e["label"] == gold[e["text"]] for e in examples(task))
    with raises(r"has label 'negative', which is not one of the model's labels"):
        load_task(rows, labels=["Positive", " negative", "negative "])  # two would match


def test_a_task_records_the_seed_its_splits_were_drawn_with(tmp_path):
    rows = [{"text": text(i), "label": ("neg", "pos")[i % 2]} for i in range(60)]
    assert load_task(rows, seed=3).split_seed == 3
    given = {split: write(tmp_path, "csv", rows[12 * i:12 * (i + 1)], name=split)
             for i, split in enumerate(("train", "dev", "calibration", "search", "test"))}
    assert load_task(split_files=given, seed=3).split_seed is None  # nothing drawn
    carved = {split: given[split] for split in ("train", "test")}  # the rest carved from train
    assert load_task(split_files=carved, seed=3).split_seed == 3
    assert get_task("polarity", seed=2).split_seed == 2


def test_too_few_rows_to_split_say_how_to_give_the_splits():
    rows = [{"text": f"a{i}", "label": i % 2} for i in range(3)]
    with pytest.raises(ValueError, match=r"has 3 rows; splitting it into .* needs at least 10 \(or "
                                         r"give each split its own rows: a file per split, "
                                         r"--split-file, or every split's size, sizes= in Python\)"):
        load_task(rows)
