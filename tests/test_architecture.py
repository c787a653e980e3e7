"""The floor plan: one ordered list of folders, checked on the source (an AST walk).

A module may import modules on its own floor and on the floors below it, never above. Each
floor is one folder (a package); the two package front doors, `samp_jax` and `calibrate`
(their `__init__` re-exports), are floors of their own. `pallas_kernels` needs only jax and
numpy (and the standard library). Project modules are imported at module level, never inside
a function, so the dependency graph is what the file headers say.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers import ROOT

# Bottom to top. The README's floor plan is this list.
FLOORS = (
    "pallas_kernels",         # Pallas kernels and their references; jax and numpy only
    "samp_jax.core",          # precision map, quantization primitives, atomic files, assets
    "samp_jax.ops",           # the GEMM dispatch, fused ops, the INT8 hand-off policy
    "samp_jax.models",        # families, layers, heads, checkpoints, tokenizers
    "samp_jax.ptq",           # quantize(model, map, calibration), QuantizedModel, load()
    "samp_jax.serving",       # batching, forward, sharding, the AOT engine, multi-process
    "samp_jax.data",          # the packaged data sets
    "samp_jax.tasks",         # task types, data files, metrics, evaluation
    "samp_jax.training",      # fine-tuning
    "samp_jax",               # the library's front door (re-exports)
    "calibrate.calibration",  # observers, calibrators, static clips
    "calibrate.search",       # latency tables, targets, objectives, strategies, the search
    "calibrate",              # calibration's front door (re-exports)
    "samp_jax.workflows",     # the public end-to-end API
    "samp_jax.app",           # CLI, bench, demo: nothing imports it
)
PROJECT = ("pallas_kernels", "samp_jax", "calibrate")
FRONT_DOORS = ("samp_jax", "calibrate")
KERNEL_THIRD_PARTY = ("jax", "jaxlib", "numpy")
# The deferred project imports, and why: the console script holds back Ctrl-C while the CLI
# (JAX, the models) and the host-memory setup (ctypes) import, which it must do before them,
# and parses the arguments first, so that `--help` and a usage error load no JAX: the parser
# imports the two checks of a value that need the library (JAX) when a value is checked.
DEFERRED = {("samp_jax.app.entry", "samp_jax.app.cli"),
            ("samp_jax.app.entry", "samp_jax.core.host_memory"),
            ("samp_jax.app.entry", "samp_jax.app.parser"),
            ("samp_jax.app.parser", "calibrate.search.config"),
            ("samp_jax.app.arguments", "samp_jax.models.head_kinds")}


def floor_of(module: str) -> int | None:
    """The floor index of a dotted module name; None outside the project.

    Raises:
        ValueError: a project module that stands on no floor (a new folder not in `FLOORS`).
    """
    if module.split(".")[0] not in PROJECT:
        return None
    if module in FRONT_DOORS:
        return FLOORS.index(module)
    for index in range(len(FLOORS) - 1, -1, -1):
        floor = FLOORS[index]
        if floor not in FRONT_DOORS and (module == floor or module.startswith(floor + ".")):
            return index
    raise ValueError(f"{module} stands on no floor: put it in a folder of FLOORS")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, int, bool]]:
    """`(imported module, line, inside a function)` for every import statement in `path`."""
    return list(_imports(path, root, path.stat().st_mtime_ns))


@functools.cache
def _imports(path: Path, root: Path, mtime_ns: int) -> tuple[tuple[str, int, bool], ...]:
    """`imports`, parsed once per version of a file (the walk, the graph and the cycles share it)."""
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
                found.extend((f"{module}.{alias.name}" if _is_module(f"{module}.{alias.name}", root)
                              else module, child.lineno, in_function) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return tuple(found)


def _is_module(name: str, root: Path = ROOT) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def project_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for top in PROJECT for p in (root / top).rglob("*.py"))


def violations(files: list[Path] | None = None, root: Path = ROOT) -> list[str]:
    """Every import of a floor above, inside a function, or (kernels) of a library other than
    jax/numpy, in `files` (default: the whole project) under `root`."""
    stdlib = sys.stdlib_module_names
    problems = []
    for path in project_files(root) if files is None else files:
        importer = module_name(path, root)
        own = floor_of(importer)
        for module, line, in_function in imports(path, root):
            where = f"{path.relative_to(root)}:{line}: {importer} imports {module}"
            target = floor_of(module)
            if target is not None and target > own:
                problems.append(f"{where} ({FLOORS[own]} must not depend on {FLOORS[target]}, "
                                "a floor above it)")
            if target is not None and in_function and (importer, module) not in DEFERRED:
                problems.append(f"{where} inside a function (import project modules at the top)")
            top = module.split(".")[0]
            if own == 0 and target is None and top not in stdlib and top not in KERNEL_THIRD_PARTY:
                problems.append(f"{where} (pallas_kernels needs only {KERNEL_THIRD_PARTY})")
    return problems


def folder_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Floor → the other floors its modules import."""
    graph = defaultdict(set)
    for path in project_files(root):
        importer = FLOORS[floor_of(module_name(path, root))]
        for module, _, _ in imports(path, root):
            target = floor_of(module)
            if target is not None and FLOORS[target] != importer:
                graph[importer].add(FLOORS[target])
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (empty for an acyclic graph)."""
    found, state = [], {}

    def walk(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    return found


def test_every_module_imports_its_own_floor_and_below_only():
    assert violations() == []


def test_every_project_module_stands_on_a_floor_and_every_floor_is_a_folder():
    for path in project_files():
        floor_of(module_name(path))  # raises for a module on no floor
    for floor in FLOORS:
        assert (ROOT.joinpath(*floor.split(".")) / "__init__.py").is_file(), floor


def test_the_folders_have_no_cycle():
    graph = folder_graph()
    assert graph, "the walk found no imports at all"
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_floor_of_a_module():
    assert floor_of("pallas_kernels.numerics") == 0
    assert floor_of("samp_jax.core.precision") == FLOORS.index("samp_jax.core")
    assert floor_of("samp_jax.models.families.bert") == FLOORS.index("samp_jax.models")
    assert floor_of("samp_jax") == FLOORS.index("samp_jax")
    assert floor_of("calibrate.search.allocation") == FLOORS.index("calibrate.search")
    assert floor_of("samp_jax.app.cli") == len(FLOORS) - 1
    assert floor_of("numpy") is None
    with pytest.raises(ValueError, match="samp_jax.attic.x stands on no floor"):
        floor_of("samp_jax.attic.x")


@pytest.mark.parametrize("where, source, expected", [
    ("samp_jax/core", "import samp_jax.ops.dispatch\n", "samp_jax.core must not depend on samp_jax.ops"),
    ("samp_jax/models", "from samp_jax.ptq import quantize\n", "samp_jax.models must not depend on samp_jax.ptq"),
    ("samp_jax/serving", "import calibrate\n", "samp_jax.serving must not depend on calibrate"),
    ("calibrate/calibration", "from calibrate.search import latency\n",
     "calibrate.calibration must not depend on calibrate.search"),
    ("samp_jax/workflows", "from samp_jax.app import cli\n", "samp_jax.workflows must not depend on samp_jax.app"),
    ("samp_jax/models", "def f():\n    from samp_jax.core import atomic\n", "inside a function"),
    ("samp_jax/ops", "from ..ptq.quantized import quantize\n", "samp_jax.ops must not depend on samp_jax.ptq"),
    ("pallas_kernels", "import scipy\n", "pallas_kernels needs only"),
])
def test_the_checker_catches_a_planted_upward_import(tmp_path, where, source, expected):
    for floor in FLOORS:
        folder = tmp_path.joinpath(*floor.split("."))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text("")
        (folder / "quantized.py").write_text("")
    planted = tmp_path / where / "planted.py"
    planted.write_text(source)
    problems = violations([planted], tmp_path)
    assert any(expected in problem for problem in problems), problems


def test_a_planted_upward_import_is_a_folder_cycle(tmp_path):
    graph = folder_graph()
    graph["samp_jax.core"].add("samp_jax.ops")
    assert cycles(graph)


def test_kernels_package_does_not_load_the_library():
    code = ("import sys, pallas_kernels, pallas_kernels.int8_matmul, pallas_kernels.layernorm_quant\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('samp_jax', 'calibrate'))\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)


def test_the_subpackages_are_attributes_and_the_core_loads_no_floor_above_it():
    """`import samp_jax as sj; sj.tasks.load_task(...)`, as the README writes it, with nothing
    else imported first; a name that is not there is still an AttributeError. The library's
    floors, imported, load neither calibrate nor the workflows nor the app."""
    code = ("import sys\n"
            "import samp_jax as sj\n"
            "assert callable(sj.tasks.load_task) and sj.serving.Engine and sj.models.Tokenizer\n"
            "try:\n    sj.nothing\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)\n"
            "import samp_jax.ptq, samp_jax.serving, samp_jax.tasks, samp_jax.training\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'calibrate'"
            " or m.startswith(('samp_jax.app', 'samp_jax.workflows')))\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)


def test_importing_the_core_floor_does_not_load_jax():
    code = ("import sys, samp_jax, samp_jax.core.atomic, samp_jax.core.host_memory\n"
            "assert 'jax' not in sys.modules, 'jax loaded'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)
