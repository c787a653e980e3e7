"""Plugins: the `samp-jax` command loads your registrations (a module named in
`SAMP_JAX_PLUGINS`, or a `samp_jax.plugins` entry point) before it builds its parser, so its
choices offer them; a plugin that fails is one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from samp_jax.app import plugins

ROOT = Path(__file__).resolve().parents[3]

PLUGIN = textwrap.dedent('''
    import dataclasses
    from calibrate import Strategy, register_strategy
    from calibrate.search.strategies.greedy import allocate_greedy
    from calibrate.search.targets import register_target, resolve_target
    register_strategy(Strategy("plugged_greedy", "the greedy, from a plugin", allocate_greedy))
    register_target(dataclasses.replace(resolve_target("cpu"), name="plugged_cpu"))
''')


def _run(tmp_path, plugins_value, *words):
    env = os.environ | {"SAMP_JAX_PLUGINS": plugins_value,
                        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "samp_jax.app", *words], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_plugin_named_in_the_environment_registers_before_the_parser(tmp_path):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    run = _run(tmp_path, " my_plugin ,", "search", "--help")
    assert run.returncode == 0, run.stderr
    help_text = " ".join(run.stdout.split())
    assert "plugged_greedy (the greedy, from a plugin)" in help_text and "plugged_cpu" in help_text
    # without it, the choices refuse them
    plain = _run(tmp_path, "", "search", "--target", "plugged_cpu", "--data", "x")
    assert plain.returncode == 2 and "invalid choice: 'plugged_cpu'" in plain.stderr


def test_a_plugin_that_fails_is_one_line_naming_it(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('the plugin\\nbroke')\n")
    run = _run(tmp_path, "broken_plugin", "search", "--help")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [
        "samp-jax: error: plugin 'broken_plugin' (SAMP_JAX_PLUGINS) could not be loaded: "
        "RuntimeError: the plugin broke (SAMP_JAX_NO_PLUGINS=1 runs without plugins)"]
    missing = _run(tmp_path, "no_such_plugin", "--debug", "search", "--help")
    assert missing.returncode == 1 and "Traceback" in missing.stderr  # --debug shows it
    assert missing.stderr.strip().splitlines()[-1] == (
        "samp-jax: error: plugin 'no_such_plugin' (SAMP_JAX_PLUGINS) could not be loaded: "
        "ModuleNotFoundError: No module named 'no_such_plugin' (SAMP_JAX_NO_PLUGINS=1 runs "
        "without plugins)")


def test_no_plugins_runs_past_a_broken_one_and_a_name_must_be_a_function(fresh, tmp_path,
                                                                        monkeypatch):
    (tmp_path / "odd_plugin.py").write_text("NOT_A_FUNCTION = 3\nraise_me = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SAMP_JAX_PLUGINS", "odd_plugin:NOT_A_FUNCTION")
    with pytest.raises(plugins.PluginError, match=r"plugin 'odd_plugin:NOT_A_FUNCTION' "
                       r"\(SAMP_JAX_PLUGINS\) could not be loaded: TypeError: "
                       r"odd_plugin.NOT_A_FUNCTION is int, not a function to call"):
        plugins.load_plugins()
    monkeypatch.setenv("SAMP_JAX_NO_PLUGINS", "1")
    assert plugins.load_plugins() == []
    monkeypatch.setenv("SAMP_JAX_NO_PLUGINS", "0")  # 0 or empty: plugins load
    with pytest.raises(plugins.PluginError):
        plugins.load_plugins()


@pytest.fixture
def fresh(monkeypatch):
    """No plugin loaded yet in this process, and none named in the environment."""
    monkeypatch.setattr(plugins, "_LOADED", set())
    monkeypatch.delenv("SAMP_JAX_PLUGINS", raising=False)


def _distribution(folder: Path, entry_points: str) -> None:
    """A distribution installed in `folder` (its dist-info) declaring `entry_points`."""
    info = folder / "ep_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\n{entry_points}")


def test_entry_points_load_once_modules_imported_functions_called(fresh, tmp_path, monkeypatch):
    (tmp_path / "ep_plugin.py").write_text("CALLS = []\ndef register():\n    CALLS.append(1)\n")
    _distribution(tmp_path, "b_function = ep_plugin:register\na_module = ep_plugin\n")
    assert not plugins._group_declared()  # not on sys.path yet
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins._group_declared()
    assert plugins.load_plugins() == ["a_module", "b_function"]  # by name
    assert plugins.load_plugins() == []  # once per process
    assert sys.modules["ep_plugin"].CALLS == [1]


def test_an_entry_point_that_fails_is_named(fresh, tmp_path, monkeypatch):
    (tmp_path / "ep_plugin.py").write_text("")
    _distribution(tmp_path, "c_broken = ep_plugin:missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(plugins.PluginError, match=r"plugin 'c_broken' \(entry point of group "
                                                  r"'samp_jax.plugins': ep_plugin:missing\) could "
                                                  "not be loaded: AttributeError"):
        plugins.load_plugins()


def test_without_plugins_importlib_metadata_is_not_imported(tmp_path):
    """No plugin configured: the command's start costs what it did (no importlib.metadata)."""
    probe = ("import sys; from samp_jax.app import plugins; plugins.load_plugins(); "
             "print('importlib.metadata' in sys.modules)")
    env = os.environ | {"PYTHONPATH": str(ROOT), "SAMP_JAX_PLUGINS": ""}
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "False", run.stderr


def test_an_unsupported_model_type_names_register_family_and_the_plugins():
    from samp_jax.models.families import UnsupportedFamilyError, get_family
    with pytest.raises(UnsupportedFamilyError, match="samp_jax.models.register_family .*SAMP_JAX_PLUGINS"):
        get_family("mybert")
