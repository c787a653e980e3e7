"""The Python API names a wrong argument, what it got and what it takes, before any work,
where it raised an AttributeError from deep inside (a notebook user's first tries)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import samp_jax as sj
from calibrate import SearchConfig, calibrate, search
from samp_jax.tasks.files import Columns, load_task
from tests.faults.cli_files import write_model_and_reviews


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_dir):
    files = write_model_and_reviews(tmp_path_factory.mktemp("api_args"), minilm_dir, rows=40)
    model = sj.load(files / "model")
    return files, model, load_task(files / "data.csv", labels=model.labels)


def _config():
    return SearchConfig(tolerance=0.05, progress=False)


@pytest.mark.parametrize("call, match", [
    (lambda f, m, t: sj.evaluate(str(f / "model"), t), r"evaluate: model is a str \(a path: load "
                                                         r"it first, samp_jax\.load\(path\)\)"),
    (lambda f, m, t: sj.evaluate(sj.compile(m, seq_buckets=(8,), precompile=False), t),
     r"evaluate: model is an Engine"),
    (lambda f, m, t: sj.evaluate(m, pd.read_csv(f / "data.csv")),
     r"evaluate: task is a DataFrame; expected a samp_jax\.tasks\.Task \(samp_jax\.tasks\.load_task"),
    (lambda f, m, t: sj.evaluate(m, t, tokenizer=str(f / "model")),
     r"evaluate: tokenizer is a str; expected a samp_jax\.Tokenizer"),
    (lambda f, m, t: search(str(f / "model"), t, _config()), r"search: model is a str"),
    (lambda f, m, t: search(sj.quantize(m, sj.PrecisionMap.preset("fp16", 2)), t, _config()),
     r"search: model is a QuantizedModel \(a quantized copy: give the float model"),
    (lambda f, m, t: search(m, pd.read_csv(f / "data.csv"), _config()),
     r"search: data is a DataFrame; expected a samp_jax\.tasks\.Task"),
    (lambda f, m, t: search(m, ["a text", "another"], _config()), r"search: data is a list"),
    (lambda f, m, t: calibrate(m, m.tokenizer(["a text", "another"])),
     r"calibrate: batches is one batch; expected a list of tokenized batches"),
    (lambda f, m, t: calibrate(m, ["a text", "another"]),
     r"calibrate: batch 0 is 'a text' \(str\); expected a dict with input_ids"),
    (lambda f, m, t: load_task(f / "data.csv", labels="pos"),
     r"labels='pos' is one string; expected the label names in id order"),
    (lambda f, m, t: load_task(f / "data.csv", columns={"txt": "text"}),
     r"columns: \['txt'\] are not fields"),
])
def test_a_wrong_argument_is_named(setup, call, match):
    files, model, task = setup
    with pytest.raises(TypeError, match=match):
        call(files, model, task)


def test_the_models_own_tokenizer_is_the_default_and_a_dict_of_columns_is_taken(setup):
    files, model, task = setup
    given = sj.evaluate(model, task, tokenizer=model.tokenizer)
    assert sj.evaluate(model, task) == given  # samp_jax.load attached the tokenizer
    as_dict = load_task(files / "data.csv", columns={"text": "text", "label": "label"},
                        labels=model.labels)
    assert as_dict.split("test") == load_task(files / "data.csv", columns=Columns(
        text="text", label="label"), labels=model.labels).split("test")
    assert np.isfinite(given["value"])


def test_a_task_and_a_search_result_print_in_one_short_line(setup):
    files, model, task = setup
    shown = repr(task)
    assert shown.startswith("Task(name='data', task_type='text_classification', labels=('neg', "
                            "'pos'), sizes={") and len(shown) < 300
    result = search(model, task, SearchConfig(tolerance=0.3, target="h100", progress=False,
                                              options=("fp16", "int8-dynamic")))
    shown = repr(result)
    assert shown.startswith("SearchResult(objective='data', accuracy=") and len(shown) < 400
    assert f"maps_evaluated={len(result.evaluated)}" in shown and "\n" not in shown
