"""The import direction of the three packages, checked on their source (an AST walk).

    pallas_kernels  →  samp_jax (core)  →  calibrate  →  samp_jax.app

A module may import its own layer and the layers to its left, never one to its right; nothing
imports `samp_jax.app` but itself. `pallas_kernels` needs only jax and numpy (and the standard
library). Project modules are imported at module level, never inside a function, so the
dependency graph is what the file headers say.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

LAYERS = ("pallas_kernels", "samp_jax", "calibrate", "samp_jax.app")
PROJECT = ("pallas_kernels", "samp_jax", "calibrate")
KERNEL_THIRD_PARTY = ("jax", "jaxlib", "numpy")
# The one deferred project import, and why: the console script must be able to catch Ctrl-C
# while the CLI (JAX, the models) is still importing. It imports its own layer.
DEFERRED = {("samp_jax.app.entry", "samp_jax.app.cli")}


def layer_of(module: str) -> int | None:
    """The layer index of a dotted module name, or None for a module outside the project."""
    if module == "samp_jax.app" or module.startswith("samp_jax.app."):
        return LAYERS.index("samp_jax.app")
    top = module.split(".")[0]
    return LAYERS.index(top) if top in PROJECT else None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, int, bool]]:
    """`(imported module, line, inside a function)` for every import statement in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[:len(package.split(".")) - child.level + 1]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module
                # `from samp_jax.app import bench` imports the submodule samp_jax.app.bench
                found.extend((f"{module}.{alias.name}" if layer_of(f"{module}.{alias.name}") is not None
                              and _is_module(f"{module}.{alias.name}") else module,
                              child.lineno, in_function) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def project_files() -> list[Path]:
    return sorted(p for top in PROJECT for p in (ROOT / top).rglob("*.py"))


def violations(files: list[Path] | None = None, root: Path = ROOT) -> list[str]:
    """Every import against the layer order, inside a function, or (kernels) of a library
    other than jax/numpy, in `files` (default: the whole project) under `root`."""
    stdlib = sys.stdlib_module_names
    problems = []
    for path in project_files() if files is None else files:
        importer = module_name(path, root)
        own = layer_of(importer)
        for module, line, in_function in imports(path, root):
            where = f"{path.relative_to(root)}:{line}: {importer} imports {module}"
            target = layer_of(module)
            if target is not None and target > own:
                problems.append(f"{where} ({LAYERS[own]} must not depend on {LAYERS[target]})")
            if target is not None and in_function and (importer, module) not in DEFERRED:
                problems.append(f"{where} inside a function (import project modules at the top)")
            top = module.split(".")[0]
            if own == 0 and target is None and top not in stdlib and top not in KERNEL_THIRD_PARTY:
                problems.append(f"{where} (pallas_kernels needs only {KERNEL_THIRD_PARTY})")
    return problems


def test_layers_import_in_one_direction_only():
    assert violations() == []


def test_the_checker_sees_every_package_and_resolves_relative_imports():
    files = project_files()
    assert {module_name(p).split(".")[0] for p in files} == set(PROJECT)
    assert any(module_name(p).startswith("samp_jax.app") for p in files)
    assert layer_of("samp_jax.app.cli") == 3 and layer_of("samp_jax.models.layers") == 1
    assert layer_of("calibrate.search") == 2 and layer_of("pallas_kernels.numerics") == 0
    assert layer_of("numpy") is None


@pytest.mark.parametrize("source, expected", [
    ("import calibrate\n", "samp_jax must not depend on calibrate"),
    ("from samp_jax.app import cli\n", "samp_jax must not depend on samp_jax.app"),
    ("def f():\n    from samp_jax.models import layers\n", "inside a function"),
    ("from .app.cli import main\n", "samp_jax must not depend on samp_jax.app"),
])
def test_the_checker_catches_a_planted_violation(tmp_path, source, expected):
    planted = tmp_path / "samp_jax" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(source)
    assert any(expected in problem for problem in violations([planted], tmp_path))


def test_kernels_package_does_not_load_the_library():
    code = ("import sys, pallas_kernels, pallas_kernels.int8_matmul, pallas_kernels.layernorm_quant\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('samp_jax', 'calibrate'))\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)


def test_core_does_not_load_calibrate_or_the_app():
    code = ("import sys, samp_jax\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'calibrate'"
            " or m.startswith('samp_jax.app'))\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)
