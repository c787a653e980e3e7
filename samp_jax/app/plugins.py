"""Plugins: your own registrations, seen by the `samp-jax` console script.

The registries (`samp_jax.models.register_family`, `samp_jax.models.register_head`,
`samp_jax.ops.register_gemm_implementation`, `samp_jax.tasks.register_metric`,
`calibrate.register_strategy`, `calibrate.search.targets.register_target`) fill when your code
runs. A program of yours runs it before it calls samp-jax; the console script runs it when told
where it is, before it builds its parser (so `--target`, `--strategy` and `--metric` offer what
you registered), in this order:

1. the entry points of group `samp_jax.plugins` of the installed distributions, by name; in
   your `pyproject.toml`::

       [project.entry-points."samp_jax.plugins"]
       mine = "my_package.samp_jax_plugin"          # a module: imported
       # or "my_package.plugin:register"            # a function: called with no arguments

2. the modules (or `module:function`s) named in the environment variable `SAMP_JAX_PLUGINS`,
   comma-separated, in order, from `sys.path` (`PYTHONPATH`)::

       PYTHONPATH=. SAMP_JAX_PLUGINS=my_plugin,other.module:register samp-jax search ...

   (the `samp-jax` script does not look in the working directory; `python -m samp_jax.app`
   does).

Each plugin is loaded once per process. One that fails to load stops the command with one line
naming it and the error (exit code 1; `--debug` shows the traceback); `SAMP_JAX_NO_PLUGINS=1`
runs the command without any plugin (a broken one an installed package declares included).
"""

from __future__ import annotations

import importlib
import os
import sys

from samp_jax.core.errors import SampJaxError

ENVIRONMENT_VARIABLE = "SAMP_JAX_PLUGINS"
NO_PLUGINS_VARIABLE = "SAMP_JAX_NO_PLUGINS"  # set (not empty, not 0): no plugin is loaded
ENTRY_POINT_GROUP = "samp_jax.plugins"

_LOADED: set[str] = set()  # "source: name" of each plugin loaded in this process


class PluginError(SampJaxError):
    """A plugin could not be loaded; the message names it, where it was named, and the error."""


def load_plugins() -> list[str]:
    """Loads the entry points of `ENTRY_POINT_GROUP`, then the plugins named in
    `SAMP_JAX_PLUGINS`, each once per process; returns the names loaded now.

    Raises:
      PluginError: a plugin failed to import or to run (the original error is its cause).
    """
    loaded = []
    if os.environ.get(NO_PLUGINS_VARIABLE, "").strip() not in ("", "0"):
        return loaded
    for name, source, load in [*_entry_points(), *_named_in_environment()]:
        key = f"{source}: {name}"
        if key in _LOADED:
            continue
        try:
            target = load()
            if callable(target):  # a module is imported; a function is called
                target()
        except Exception as e:  # noqa: BLE001  (anything a plugin raises: one line, the plugin named)
            text = " ".join(str(e).split())
            raise PluginError(f"plugin {name!r} ({source}) could not be loaded: "
                              f"{type(e).__name__}{': ' + text if text else ''} "
                              f"({NO_PLUGINS_VARIABLE}=1 runs without plugins)") from e
        _LOADED.add(key)
        loaded.append(name)
    return loaded


def _entry_points():
    """`(name, source, load)` of each entry point of the group, by name."""
    if not _group_declared():
        return []
    from importlib.metadata import entry_points  # here: its import costs more than the look

    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    return [(ep.name, f"entry point of group {ENTRY_POINT_GROUP!r}: {ep.value}", ep.load)
            for ep in found]


def _group_declared() -> bool:
    """Whether a distribution on `sys.path` declares an entry point of the group: the
    `entry_points.txt` of each `*.dist-info` (or `*.egg-info`) folder is looked at, so that
    without plugins the command starts as fast as before (importing `importlib.metadata` and
    its scan cost several times as much)."""
    header = f"[{ENTRY_POINT_GROUP}]"
    for folder in sys.path:
        try:
            entries = os.scandir(folder or ".")
        except OSError:  # a zip file, a folder gone
            continue
        with entries:
            for entry in entries:
                if entry.name.endswith((".dist-info", ".egg-info")):
                    try:
                        with open(os.path.join(entry.path, "entry_points.txt"), encoding="utf-8") as f:
                            if header in f.read():
                                return True
                    except (OSError, UnicodeDecodeError):  # none, or unreadable
                        continue
    return False


def _named_in_environment():
    """`(name, source, load)` of each `module` or `module:function` in `SAMP_JAX_PLUGINS`."""
    out = []
    for spec in os.environ.get(ENVIRONMENT_VARIABLE, "").split(","):
        spec = spec.strip()
        if spec:
            out.append((spec, ENVIRONMENT_VARIABLE, lambda spec=spec: _load_spec(spec)))
    return out


def _load_spec(spec: str):
    """The module `spec` names, or its function for `module:function`."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    if not attribute:
        return module
    function = getattr(module, attribute)
    if not callable(function):
        raise TypeError(f"{module_name}.{attribute} is {type(function).__name__}, not a function "
                        "to call")
    return function
