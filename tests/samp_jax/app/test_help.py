"""`samp-jax --help`, a subcommand's `--help` and a usage error, answered without JAX: the
parser's names (`samp_jax.app.choices`) are the registries' own, and the text is the parser's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from samp_jax.app import bench_options, choices
from samp_jax.app.parser import build_parser
from tests.helpers import ROOT

COMMANDS = ("eval", "calibrate", "search", "finetune", "predict", "bench", "demo")
HEAVY = ("jax", "flax", "transformers", "torch")


def test_the_parser_choices_are_the_registries():
    """A registry that gains a built-in name fails here until `samp_jax.app.choices` has it
    too (nothing but the built-ins is registered while this runs)."""
    from calibrate import AUTO_METHODS
    from calibrate.calibration.calibrators import CALIBRATORS
    from calibrate.search.config import ATTENTION_MODES, DEFAULT_STRATEGY
    from calibrate.search.strategy import STRATEGIES
    from calibrate.search.targets import AUTO, OPTION_NAMES, TARGETS
    from samp_jax.app import bench
    from samp_jax.models.head_kinds import LABEL_THRESHOLD, SENTENCE_EMBEDDING
    from samp_jax.models.heads import head_kinds
    from samp_jax.tasks import SPLITS, TASK_TYPES, TASKS
    from samp_jax.tasks.task import CALIBRATION_EXAMPLES

    assert choices.CALIBRATORS == tuple(sorted(CALIBRATORS))
    assert choices.AUTO_METHODS == tuple(AUTO_METHODS)
    assert choices.BUILTIN_STRATEGIES == {name: s.description for name, s in STRATEGIES.items()}
    assert choices.DEFAULT_STRATEGY == DEFAULT_STRATEGY
    assert tuple(choices.ATTENTION_MODES) == ATTENTION_MODES
    assert list(choices.DEFAULT_STRATEGY) == list(DEFAULT_STRATEGY)  # the help's order
    assert (choices.AUTO_TARGET, choices.BUILTIN_TARGETS) == (AUTO, tuple(TARGETS))
    assert choices.OPTION_NAMES == tuple(OPTION_NAMES)
    assert choices.BUILTIN_HEAD_KINDS == tuple(head_kinds())
    assert (choices.SENTENCE_EMBEDDING, choices.LABEL_THRESHOLD) == (SENTENCE_EMBEDDING.name,
                                                                     LABEL_THRESHOLD)
    assert choices.SPLITS == tuple(SPLITS)
    assert choices.CALIBRATION_EXAMPLES == CALIBRATION_EXAMPLES
    assert choices.TASKS == tuple(sorted(TASKS))
    assert choices.TASK_TYPES == tuple(sorted(TASK_TYPES))
    metrics = {t.name: (t.metrics[0].name, tuple(m.name for m in t.other_metrics))
               for t in TASK_TYPES.values() if t.other_metrics}
    assert list(choices.METRIC_CHOICES.items()) == list(metrics.items())
    assert choices.BENCH_MODELS == tuple(bench.MODELS)
    assert choices.BENCH_CONTENDERS == tuple(bench.contender_names())
    assert bench_options.description() == bench.__doc__


# Runs the console script's entry point on each argument list and prints, as JSON, what each
# wrote, its exit code, and the heavy libraries loaded by then.
_WRAPPER = """
import contextlib, io, json, sys
from samp_jax.app import entry
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = entry.main(argv)
        except SystemExit as e:
            code = e.code
    results.append({"out": out.getvalue(), "err": err.getvalue(), "code": code})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in %r)
print(json.dumps({"results": results, "loaded": loaded}))
""" % (HEAVY,)


def _env() -> dict:
    return {**os.environ, "COLUMNS": "100"}  # argparse wraps to it, here and in-process


def _in_process(argv: list[str], capsys) -> tuple[str, str, int]:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    out, err = capsys.readouterr()
    return out, err, exit_.value.code


def test_help_and_usage_errors_load_no_jax_and_say_what_the_parser_says(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    cases = [["--help"], *([command, "--help"] for command in COMMANDS), [], ["--bogus"],
             ["eval", "--bogus"], ["nosuch"], ["search", "--strategy", "nope"],
             ["search", "--options", "fp9"], ["eval", "--task-type", "nope"]]
    done = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(cases)], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=300, check=True)
    found = json.loads(done.stdout)
    assert found["loaded"] == [], found["loaded"]
    for argv, result in zip(cases, found["results"]):
        out, err, code = _in_process(argv, capsys)
        assert (result["out"], result["err"], result["code"]) == (out, err, code), argv
        assert code == (0 if "--help" in argv else 2) and (out if code == 0 else err), argv


def test_python_m_help_loads_no_jax(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "samp_jax.app", "--help"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert imported and not imported & set(HEAVY), imported & set(HEAVY)
    assert done.stdout == _in_process(["--help"], capsys)[0]


def test_version_still_names_jax_and_flax(capsys):
    import flax
    import jax

    out, _, code = _in_process(["--version"], capsys)
    assert code == 0 and f"(jax {jax.__version__}, flax {flax.__version__})" in out


def test_a_registry_a_program_added_to_is_read_once_loaded(monkeypatch):
    from calibrate.search import strategy, targets
    from samp_jax.models import heads

    assert choices.strategies() == choices.BUILTIN_STRATEGIES  # loaded: the registry itself
    monkeypatch.setitem(strategy.STRATEGIES, "mine", strategy.Strategy("mine", "what it does", lambda problem: None))
    monkeypatch.setitem(targets.TARGETS, "tpu", targets.TARGETS["cpu"])
    monkeypatch.setattr(heads, "head_kinds", lambda: (*choices.BUILTIN_HEAD_KINDS, "ranker"))
    assert choices.strategies()["mine"] == "what it does" and choices.targets()[-1] == "tpu"
    assert choices.head_kinds()[-1] == "ranker"
    search = build_parser()._subparsers._group_actions[0].choices["search"]
    assert build_parser().parse_args(["search", "--strategy", "mine", "--target", "tpu",
                                      "--head", "ranker"]).strategy == "mine"
    assert "mine (what it does)" in search.format_help()
    for module in ("calibrate.search.strategy", "calibrate.search.targets", "samp_jax.models.heads"):
        monkeypatch.delitem(sys.modules, module)  # as in a fresh process: the built-ins' copies
    assert (choices.strategies(), choices.targets(), choices.head_kinds()) == (
        choices.BUILTIN_STRATEGIES, choices.BUILTIN_TARGETS, choices.BUILTIN_HEAD_KINDS)


def test_the_bench_description_where_no_source_was_installed(monkeypatch):
    import importlib.util

    from samp_jax.app import bench
    loader = type(importlib.util.find_spec(bench_options.BENCH).loader)
    monkeypatch.setattr(loader, "get_source", lambda self, name: None)  # compiled files only
    assert bench_options.description() == bench.__doc__
