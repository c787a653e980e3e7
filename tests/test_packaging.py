"""Packaging: the package data is declared and present, and the built wheel works on its own.

The slow test builds the sdist and, from it, the wheel (so both must carry the data files), then
installs the wheel with `--no-deps` into a fresh venv outside the source tree. The venv reaches
the third-party dependencies (jax, flax, ...) through a `.pth` line naming the dev venv's
site-packages. A directory named in a `.pth` file is appended to `sys.path` but is not itself
scanned for `.pth` files, so the dev venv's `__editable__.samp_jax-*.pth` (which installs the
finder for the editable checkout) never runs there: the new venv imports `samp_jax` from the
wheel or not at all. The test checks exactly that before and after installing.
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.helpers import ROOT

# (package, resource inside it) that must ship in the wheel.
PACKAGE_DATA = (
    ("samp_jax.app", "maps/minilm_snli_1pct.json"),
)
# Left out of the copy the sdist is built from (the build then writes nothing into the checkout):
# at the top level, and anywhere.
TOP_IGNORE = {".git", ".venv", ".golden-venv", ".ort-venv", ".whl", ".carry", "build", "dist", "out", "demo_out", "search_out"}
ANY_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")


def _copy_ignore(folder, names):
    ignored = set(ANY_IGNORE(folder, names))
    return ignored | (TOP_IGNORE & set(names) if Path(folder) == ROOT else set())


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _glob_matches(path: str, pattern: str) -> bool:
    """setuptools' package-data glob: `*` stays within one folder; `**` spans folders."""
    if "**" in pattern:
        return fnmatch.fnmatchcase(path, pattern)
    parts, pattern_parts = path.split("/"), pattern.split("/")
    return len(parts) == len(pattern_parts) and all(
        fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pattern_parts))


def _declared(package_data: dict, package: str, resource: str) -> bool:
    """True if `[tool.setuptools.package-data]` has a pattern, on `package`, a parent or a
    sub-package of it, that matches `resource`."""
    full = package.replace(".", "/") + "/" + resource
    for owner, patterns in package_data.items():
        prefix = owner.replace(".", "/") + "/"
        if full.startswith(prefix) and any(_glob_matches(full[len(prefix):], p) for p in patterns):
            return True
    return False


@pytest.mark.parametrize("package,resource", PACKAGE_DATA)
def test_package_data_is_present_and_declared(package, resource):
    target = importlib.resources.files(package).joinpath(*resource.split("/"))
    assert target.is_file(), f"{package}/{resource} is missing from the source tree"
    json.loads(target.read_text())  # well-formed
    package_data = _pyproject()["tool"]["setuptools"]["package-data"]
    assert _declared(package_data, package, resource), (
        f"{package}/{resource} is not matched by [tool.setuptools.package-data] {package_data}")


def test_metadata_license_and_markers():
    config = _pyproject()
    project = config["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert project["scripts"]["samp-jax"] == "samp_jax.app.entry:main"
    pins = set(project["dependencies"])
    assert {"jax==0.11.2", "jaxlib==0.11.2", "flax==0.12.10"} <= pins
    assert any(r.replace(" ", "").startswith("setuptools>=7") for r in config["build-system"]["requires"])
    pytest_options = config["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in pytest_options["addopts"].split()
    assert {m.split(":")[0] for m in pytest_options["markers"]} >= {"slow", "gpu"}


OPTIONAL_IMPORTS = {"torch", "transformers"}
"""Imported only by the bench's PyTorch contenders, which skip themselves without them."""
IMPORT_NAMES = {"jaxlib": "jaxlib", "ml_dtypes": "ml_dtypes", "pyarrow": "pyarrow"}


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the shipped files that import it (absolute imports outside the
    standard library and the three packages)."""
    import ast
    own = {"samp_jax", "calibrate", "pallas_kernels", "__future__"}
    found: dict[str, set[str]] = {}
    for package in ("samp_jax", "calibrate", "pallas_kernels"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in own:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_module_the_package_imports_is_a_declared_dependency():
    import re
    declared = {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].replace("-", "_").lower()
                for r in _pyproject()["project"]["dependencies"]}
    imports = _third_party_imports()
    undeclared = {m: files for m, files in imports.items()
                  if m not in OPTIONAL_IMPORTS and IMPORT_NAMES.get(m, m).lower() not in declared}
    assert not undeclared, f"imported but not in [project] dependencies: {undeclared}"
    # the optional ones stay in the bench, where a missing one skips a contender
    assert all(files == {"samp_jax/app/bench.py"} for m, files in imports.items()
               if m in OPTIONAL_IMPORTS), {m: imports[m] for m in OPTIONAL_IMPORTS & set(imports)}
    unused = declared - {IMPORT_NAMES.get(m, m).lower() for m in imports} - {"msgpack"}
    assert not unused, f"declared but never imported: {unused}"  # msgpack: flax's reader


def _run(args, *, cwd, env, timeout=600):
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{args} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
        f"\n--- stderr\n{result.stderr[-4000:]}")
    return result


def _build(source: Path, outdir: Path) -> tuple[Path, Path]:
    """sdist, then the wheel built from that sdist (`python -m build` does both)."""
    try:
        import build  # noqa: F401
        import setuptools
        isolation = int(setuptools.__version__.split(".")[0]) < 77
    except ImportError:
        isolation = True  # an isolated build needs the package registry
    if isolation:
        pytest.importorskip("build", reason="`build` is in the dev extra: run `make venv`")
    args = [sys.executable, "-m", "build", "--outdir", outdir, source]
    if not isolation:
        args.insert(3, "--no-isolation")
    _run(args, cwd=source, env={**os.environ})
    (sdist,), (wheel,) = outdir.glob("*.tar.gz"), outdir.glob("*.whl")
    return sdist, wheel


ROUND_TRIP = textwrap.dedent("""
    import sys
    from pathlib import Path

    import flax.nnx
    import numpy as np

    import samp_jax

    config = samp_jax.EncoderConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                                    intermediate_size=64, max_position_embeddings=32)
    model = samp_jax.EncoderModel(config, rngs=flax.nnx.Rngs(0))
    q = samp_jax.quantize(model, samp_jax.PrecisionMap.preset("fully_quant", config.num_layers))
    q.save(Path(sys.argv[1]))
    loaded = samp_jax.QuantizedModel.load(Path(sys.argv[1]))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, config.vocab_size, (2, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    a, b = np.asarray(q(ids, mask)), np.asarray(loaded(ids, mask))
    assert a.shape == (2, 12, 32) and np.isfinite(a).all(), (a.shape, a)
    np.testing.assert_array_equal(a, b)
    assert loaded.precision_map == q.precision_map
    print("round trip ok")
""")

WHERE = textwrap.dedent("""
    import importlib.resources, json, sys
    import samp_jax, calibrate, pallas_kernels
    print(json.dumps({
        "modules": [m.__file__ for m in (samp_jax, calibrate, pallas_kernels)],
        "data": [str(importlib.resources.files(p).joinpath(*r.split("/"))) for p, r in %r],
        "data_ok": [importlib.resources.files(p).joinpath(*r.split("/")).is_file() for p, r in %r],
        "editable": sorted(m for m in sys.modules if "editable" in m),
    }))
""" % (PACKAGE_DATA, PACKAGE_DATA))


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_source_tree(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=_copy_ignore)
    sdist, wheel = _build(source, tmp_path / "dist")

    import tarfile
    import zipfile
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    with tarfile.open(sdist) as tf:
        sdist_names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for package, resource in PACKAGE_DATA:
        path = package.replace(".", "/") + "/" + resource
        assert path in names, f"{path} is not in {wheel.name}"
        assert path in sdist_names, f"{path} is not in {sdist.name}"
    assert "LICENSE" in sdist_names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env={**os.environ})
    python = venv / "bin" / "python"
    site_packages = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              cwd=tmp_path, env={**os.environ}).stdout.strip())
    # pip of the dev venv, run for the new interpreter; before the .pth exists, so pip sees no
    # other samp-jax installation.
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", wheel], cwd=tmp_path, env={**os.environ})
    (site_packages / "_dev_venv_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    work = tmp_path / "work"  # a cwd outside the checkout; no PYTHONPATH
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    where = json.loads(_run([python, "-c", WHERE], cwd=work, env=env).stdout)
    for file in where["modules"] + where["data"]:
        assert Path(file).is_relative_to(site_packages), f"{file} is not from the wheel in {venv}"
    assert all(where["data_ok"]), where
    assert where["editable"] == [], where

    # Without the wheel's files the editable checkout must not be importable from the new venv.
    hidden = site_packages / "samp_jax"
    hidden.rename(site_packages / "_samp_jax_hidden")
    try:
        probe = subprocess.run([python, "-c", "import samp_jax"], cwd=work, env=env,
                               capture_output=True, text=True)
        assert probe.returncode != 0 and "No module named 'samp_jax'" in probe.stderr, probe
    finally:
        (site_packages / "_samp_jax_hidden").rename(hidden)

    script = venv / "bin" / "samp-jax"
    assert script.read_text().startswith(f"#!{python}")
    assert "usage: samp-jax" in _run([script, "--help"], cwd=work, env=env).stdout

    # The bench on the cached real MiniLM; the search map is the package-data JSON. (One
    # contender: tests/samp_jax/app's bench smoke covers the others from the checkout.)
    out = tmp_path / "bench.json"
    _run([script, "bench", "--quick", "--contenders", "samp_search_snli_1pct",
          "--out", out], cwd=work, env=env, timeout=900)
    rows = json.loads(out.read_text())["rows"]
    searched = [r for r in rows if r["contender"] == "samp_search_snli_1pct"]
    assert searched and all("median_ms" in r for r in searched), searched
    assert out.with_suffix(".png").is_file()

    result = _run([python, "-c", ROUND_TRIP, tmp_path / "quantized"], cwd=work, env=env)
    assert "round trip ok" in result.stdout
