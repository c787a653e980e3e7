"""A fine-tune that learned nothing says so (and fails with --strict); `eval` warns when the FP32
model is at chance; the fine-tune's defaults fit a few hundred rows and show in `--help`."""

from __future__ import annotations

import dataclasses
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from samp_jax.app import cli
from samp_jax.models import save_pretrained
from samp_jax.tasks.chance import ChanceLevel
from samp_jax.training import FinetuneConfig, FinetuneResult
from samp_jax.training.finetuning import DEFAULT_CONFIGS
from tests.helpers import tiny_classifier

WORDS = "good great fine bad awful poor movie film plot day night city river happy dull".split()


@pytest.fixture(scope="module")
def files(tmp_path_factory, minilm_dir):
    """A tiny random classifier (MiniLM's tokenizer; one class for nearly every row) and 200
    balanced rows of two classes."""
    root = tmp_path_factory.mktemp("chance")
    model = tiny_classifier()
    save_pretrained(model, root / "model", tokenizer_dir=minilm_dir, labels=("neg", "pos"))
    rng = np.random.default_rng(0)
    (root / "rows.csv").write_text("text,label\n" + "".join(
        f"{' '.join(rng.choice(WORDS, 8))},{'pos' if i % 2 else 'neg'}\n" for i in range(200)))
    return root


def test_eval_warns_when_the_fp32_model_is_at_chance(files, capsys):
    code = cli.main(["eval", "--model", str(files / "model"), "--data", str(files / "rows.csv"),
                     "--precision", "fp16", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    fp32 = json.loads(out)["rows"][0]["value"]
    warning = [line for line in err.splitlines() if "warning:" in line]
    chance = [line for line in warning if "is no better than" in line]
    assert len(chance) == 1 and chance[0].startswith(
        f"samp-jax eval: warning: the FP32 model's test accuracy {fp32:.4f} is no better than "
        "always predicting"), err
    assert "a change relative to it means nothing" in chance[0]
    # and its 40 test rows move accuracy in steps of 2.5%
    assert len(warning) == 2 and "the test split has 40 rows: one of them moves accuracy by " \
        "about 0.025" in err


def _stub_finetune(dev_metric: float):
    """`finetune` returning the untouched model with `dev_metric` against a 0.5 chance level."""
    def finetune(model, task, tokenizer, config, progress=True, on_encoded=None):
        return FinetuneResult(model=model, dev_metric=dev_metric, steps=config.min_steps,
                              seconds=1.0, history=[], examples_per_second=1.0,
                              chance=ChanceLevel("accuracy", 0.5, "neg", 0.12, 48))
    return finetune


@pytest.mark.parametrize("strict", [False, True])
def test_a_finetune_at_chance_warns_or_fails_with_strict(files, tmp_path, capsys, monkeypatch,
                                                         strict):
    monkeypatch.setattr(cli, "finetune", _stub_finetune(0.5625))
    out = tmp_path / "tuned"
    code = cli.main(["finetune", "--model", str(files / "model"), "--data",
                     str(files / "rows.csv"), "--out", str(out), "--json",
                     *(["--strict"] if strict else [])])
    stdout, err = capsys.readouterr()
    verdict = ("the fine-tuned model's dev accuracy 0.5625 is no better than always predicting "
               "'neg' (0.5000 + 0.1200 noise on 48 rows): it has not learned the task")
    if strict:
        assert code == 1 and not out.exists() and stdout == ""
        assert err.strip().splitlines() == [
            f"samp-jax finetune: error: {verdict} (more rows, more --min-steps or another "
            "--learning-rate may help); nothing saved (--strict)"]
    else:
        assert code == 0 and f"samp-jax finetune: warning: {verdict}" in err
        summary = json.loads(stdout)
        assert summary["learned"] is False and summary["dev_chance"]["value"] == 0.5
        assert json.loads((out / "finetune.json").read_text())["learned"] is False


def test_a_finetune_that_learned_says_nothing_and_records_its_settings(files, tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.setattr(cli, "finetune", _stub_finetune(0.75))
    code = cli.main(["finetune", "--model", str(files / "model"), "--data",
                     str(files / "rows.csv"), "--out", str(tmp_path / "tuned"), "--json",
                     "--strict"])
    stdout, err = capsys.readouterr()
    assert code == 0 and "warning" not in err
    summary = json.loads(stdout)
    assert summary["learned"] is True
    # the command's defaults are the API's
    assert summary["settings"] | {"seed": 0} == dataclasses.asdict(FinetuneConfig())
    assert dataclasses.asdict(FinetuneConfig()) == dataclasses.asdict(FinetuneConfig(
        learning_rate=1e-4, batch_size=16, epochs=2.0, min_steps=200, warmup_fraction=0.1,
        eval_every=None, patience=5, max_dev_examples=1000))


def test_the_verdict_and_json_say_the_margin_is_for_the_best_of_the_dev_evaluations(
        files, tmp_path, capsys, monkeypatch):
    """The run kept the best of 10 dev evaluations: its margin is theirs, and the warning
    line, the summary line and the JSON (`dev_chance.evaluations`) say so."""
    history = [{"step": 20 * i, "dev": 0.5} for i in range(1, 11)]

    def finetune(model, task, tokenizer, config, progress=True, on_encoded=None):
        return FinetuneResult(model=model, dev_metric=dev_metric, steps=200, seconds=1.0,
                              history=history, examples_per_second=1.0,
                              chance=ChanceLevel("accuracy", 0.5, "neg", 0.18, 48, 10),
                              dev_examples=20)
    monkeypatch.setattr(cli, "finetune", finetune)
    for dev_metric, out in ((0.625, "json"), (0.75, "text")):
        assert cli.main(["finetune", "--model", str(files / "model"), "--data",
                         str(files / "rows.csv"), "--out", str(tmp_path / out),
                         *(["--json"] if out == "json" else [])]) == 0
        stdout, err = capsys.readouterr()
        saved = json.loads((tmp_path / out / "finetune.json").read_text())
        assert saved["dev_chance"]["evaluations"] == 10 and saved["dev_chance"]["margin"] == 0.18
        if out == "json":
            assert json.loads(stdout)["learned"] is False
            assert ("samp-jax finetune: warning: the fine-tuned model's dev accuracy 0.6250 is "
                    "no better than always predicting 'neg' (0.5000 + 0.1800 noise of the best "
                    "of 10 evaluations on 48 rows): it has not learned the task") in err
        else:
            assert saved["learned"] is True and "warning" not in err
            assert "dev accuracy 0.7500 (the best of 10 evaluations)," in stdout


def test_finetune_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["finetune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("peak learning rate (default: 0.0001)", "rows per step (default: 16)",
                    "(default: 200)", "ten per run (default: auto)", "(default: 5)",
                    "linear warm-up (default: 0.1)", "best dev checkpoint is kept", "--strict"):
        assert default in text, default


@pytest.mark.parametrize("rows, steps", [(192, (200, 20, 20)), (20_000, (2500, 250, 250))])
def test_min_steps_give_small_data_enough_updates(rows, steps):
    config = FinetuneConfig(batch_size=16, epochs=2.0, min_steps=200, warmup_fraction=0.1,
                            eval_every=None)
    assert config.steps(rows) == steps
    assert FinetuneConfig(eval_every=7, min_steps=0, warmup_fraction=0.06).steps(192) == (24, 1, 7)
    assert FinetuneConfig().steps(rows) == steps  # the defaults are these


def test_cache_keys_of_the_packaged_settings_are_unchanged():
    """min_steps=0 leaves a fine-tuned model's cache folder name as it was (no retraining); a
    capped dev split, scored through a seeded sample (once its first rows), moved it, so that
    a cached model is one the same procedure would train."""
    assert {name: config.key() for name, config in DEFAULT_CONFIGS.items()} == {
        "snli": "dc145ecc9543", "polarity": "067ebe1cb73c", "wnut16": "eeff3b8f363f"}
    assert FinetuneConfig(min_steps=1).key() != FinetuneConfig().key()
    assert FinetuneConfig(max_dev_examples=None).key() != FinetuneConfig().key()


def test_the_search_warns_when_the_fp32_model_is_at_chance_on_its_search_split(files):
    """The Python API's search says it too (the command line adds the test split's line)."""
    import samp_jax
    from calibrate.search.objectives import task_objective
    from calibrate.search.tolerance import warn_if_at_chance
    from samp_jax.tasks import load_task

    model = samp_jax.load(files / "model")
    task = load_task(files / "rows.csv")
    objective = task_objective(model, task, model.tokenizer)
    session = SimpleNamespace(objective=objective,
                              reference=SimpleNamespace(metric=objective.metric(objective.reference)))
    with pytest.warns(UserWarning, match=r"the FP32 model's search-split accuracy [0-9.]+ is no "
                                         r"better than always predicting .*bounds nothing"):
        warn_if_at_chance(session)
    session.reference.metric = 1.0  # a model that beats chance: nothing said
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_at_chance(session)


def test_a_search_of_a_model_at_chance_warns_through_the_python_api(files):
    import samp_jax
    from calibrate import search
    from samp_jax.tasks import load_task

    model = samp_jax.load(files / "model")
    with pytest.warns(UserWarning, match=r"the FP32 model's search-split accuracy .* bounds nothing"):
        search(model, load_task(files / "rows.csv"), tokenizer=model.tokenizer, target="cpu",
               options=("fp32", "int8-dynamic"), max_search_examples=32, sensitivity_batches=1,
               progress=False, tolerance=0.01)


def test_eval_warns_when_its_held_out_rows_are_rows_the_model_was_fine_tuned_on(
        files, tmp_path, capsys, monkeypatch):
    """A fine-tune keeps digests of its training rows; eval with another --seed (or a
    reordered file) finds them in its test split and says how many, where the same seed and
    file find none."""
    from samp_jax.tasks import load_task
    from samp_jax.tasks.trained_rows import TRAINED_ROWS_FILE, overlap, trained_rows
    monkeypatch.setattr(cli, "finetune", _stub_finetune(0.75))
    tuned = tmp_path / "tuned"
    assert cli.main(["finetune", "--model", str(files / "model"), "--data",
                     str(files / "rows.csv"), "--out", str(tuned), "--json"]) == 0
    capsys.readouterr()
    split = load_task(files / "rows.csv", seed=0)
    digests = trained_rows(tuned)
    assert (tuned / TRAINED_ROWS_FILE).is_file() and overlap(digests, split.split("train")) == \
        len(split.split("train")) and overlap(digests, split.split("test")) == 0
    for seed, warned in (("0", False), ("1", True)):
        assert cli.main(["eval", "--model", str(tuned), "--data", str(files / "rows.csv"),
                         "--precision", "fp16", "--seed", seed, "--json"]) == 0
        err = capsys.readouterr().err
        expected = overlap(digests, load_task(files / "rows.csv", seed=int(seed)).split("test"))
        assert (expected > 0) == warned
        line = (f"samp-jax eval: warning: {expected} of 40 test rows have the inputs of rows in "
                f"the training split {tuned} was fine-tuned on")
        assert (line in err) == warned, err
    for damaged in (b"not an array", b""):  # damaged or emptied: said, not trusted
        (tuned / TRAINED_ROWS_FILE).write_bytes(damaged)
        assert cli.main(["eval", "--model", str(tuned), "--data", str(files / "rows.csv"),
                         "--precision", "fp16", "--seed", "1", "--json"]) == 0
        assert "whether the held-out rows were trained on is not checked" in capsys.readouterr().err


def test_a_copy_of_a_fine_tune_without_its_training_rows_says_the_guard_cannot_run(
        files, tmp_path, capsys, monkeypatch):
    """config.json says a fine-tune saved its training rows: a copy of the HF files alone (or
    with the digests' link broken) warns once that the check cannot be made, where it was
    silent; finetune.json records the base model as it was given (relative here)."""
    from samp_jax.tasks.trained_rows import TRAINED_ROWS_FILE
    monkeypatch.setattr(cli, "finetune", _stub_finetune(0.75))
    monkeypatch.chdir(files)
    tuned = tmp_path / "tuned"
    assert cli.main(["finetune", "--model", "model", "--data", "rows.csv", "--out", str(tuned),
                     "--json"]) == 0
    capsys.readouterr()
    assert json.loads((tuned / "finetune.json").read_text())["base_model"] == "model"
    assert json.loads((tuned / "config.json").read_text())["samp_jax_trained_rows"] == \
        TRAINED_ROWS_FILE
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in tuned.iterdir():
        if file.name not in (TRAINED_ROWS_FILE, "finetune.json"):
            file.rename(copy / file.name)
    missing = (f"samp-jax eval: warning: {copy}/config.json says {copy} was fine-tuned by "
               f"samp-jax with a guard against scoring its training rows (samp_jax_trained_rows),"
               f" but its {TRAINED_ROWS_FILE} is missing")
    cannot = "whether the held-out rows overlap the rows it was trained on cannot be told"
    for link, how in ((None, ": "), ("../gone/rows.npy", " (a link to ../gone/rows.npy, which "
                                                         "does not exist): ")):
        if link is not None:
            (copy / TRAINED_ROWS_FILE).symlink_to(link)
        assert cli.main(["eval", "--model", str(copy), "--data", "rows.csv", "--precision",
                         "fp16", "--json"]) == 0
        warned = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
        assert [line for line in warned if line.startswith(missing)] == \
            [f"{missing}{how}{cannot} (copy that file with the model's)"], warned


def test_a_digest_file_whose_header_claims_more_rows_than_it_holds_is_not_allocated(tmp_path):
    """A header of 2**33 uint64 rows over 16 bytes: refused by the mapping with a warning,
    not a 64 GiB allocation."""
    from samp_jax.tasks.trained_rows import TRAINED_ROWS_FILE, trained_rows
    header = "{'descr': '<u8', 'fortran_order': False, 'shape': (8589934592,), }"
    header = header + " " * (118 - len(header)) + "\n"
    (tmp_path / TRAINED_ROWS_FILE).write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                                               + header.encode() + bytes(16))
    with pytest.warns(UserWarning, match="is not checked"):
        assert trained_rows(tmp_path) is None
