"""The published figures: every results page re-renders from its committed JSON, every result
JSON says where it came from, estimates say so in the table itself, and the docs speak of the
project only (no history of runs or sessions)."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from samp_jax.core.provenance import KEYS, check_provenance, code_commit, provenance
from tests.helpers import ROOT


def _render_docs():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "tools" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RESULT_JSON = sorted([*(ROOT / "docs" / "results").rglob("*.json"),
                      *(ROOT / "benchmarks" / "results").rglob("*.json")])
# Files that are data a run wrote beside its result, not results themselves.
NOT_RESULTS = {"precision_map.json", "predict.json"}


def test_every_results_page_matches_what_its_json_renders():
    assert _render_docs().stale_pages() == []


@pytest.mark.parametrize("path", [p for p in RESULT_JSON if p.name not in NOT_RESULTS],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_result_json_records_command_commit_device_and_date(path):
    check_provenance(json.loads(path.read_text()), str(path))


def test_check_provenance_names_what_is_missing():
    with pytest.raises(ValueError, match="x.json: no 'provenance' block"):
        check_provenance({"rows": []}, "x.json")
    with pytest.raises(ValueError, match=r"provenance lacks \['commit', 'date'\]"):
        check_provenance({"provenance": {"command": "c", "device": "d"}}, "x.json")


def test_provenance_records_this_checkout():
    block = provenance("python tools/x.py", "cpu")
    assert tuple(block) == KEYS
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", block["commit"]) or block["commit"].startswith("samp-jax ")
    assert block["commit"] == code_commit()
    with pytest.raises(ValueError, match="command and device"):
        provenance("", "cpu")


def test_the_commit_is_the_checkouts_own_not_that_of_a_repository_around_it(tmp_path):
    """An installed package's folder inside a user's git project records the version, not
    the project's commit."""
    import subprocess
    from samp_jax.core.version import __version__
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "site-packages").mkdir()
    (tmp_path / "site-packages" / "x.py").write_text("")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "a user's project"], check=True)
    assert code_commit(tmp_path / "site-packages") == f"samp-jax {__version__}"
    assert re.fullmatch(r"[0-9a-f]{12}", code_commit(tmp_path))
    assert code_commit(tmp_path.parent / "no-such-folder") == f"samp-jax {__version__}"


def test_an_estimated_latency_says_estimated_in_the_table(tmp_path):
    render = _render_docs()
    source = json.loads((ROOT / "benchmarks/results/search-snli-cpu/comparison.json").read_text())
    for row in source["rows"]:
        row["latency_source"] = "estimated (H100 SXM (nominal spec), 32x128)"
    (tmp_path / "comparison.json").write_text(json.dumps(source))
    lines = render.comparison_section(tmp_path / "comparison.json")
    headers = [line for line in lines if "latency (ms" in line]
    assert headers and all("estimated" in line for line in headers)
    measured = render.comparison_section(ROOT / "benchmarks/results/search-snli-cpu/comparison.json")
    assert not any("estimated" in line for line in measured if "latency (ms" in line)


# A measured figure: 3.8e-6, 875 ms, 2.55 s, 20 min, 2.4x / 1.4×, 0.7565, 75.8%.
MEASURED = re.compile(r"\b\d+(?:\.\d+)?e-?\d+\b|\b\d+(?:\.\d+)?\s?(?:ms|s|min|minutes|seconds)\b|"
                      r"\b\d+\.\d+\s?[×x]|\b\d\.\d{2,}(?![.\d])|\d%")
# Hand-written pages whose figures all come from rendered blocks.
RENDERED_FIGURES_ONLY = [ROOT / "docs" / "families.md"]


@pytest.mark.parametrize("path", RENDERED_FIGURES_ONLY, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_page_quotes_measured_figures_only_through_its_rendered_blocks(path):
    render = _render_docs()
    text = render.RENDER_BLOCK.sub("", path.read_text())
    prose = [re.sub(r"`[^`]*`", "", line) for line in text.splitlines() if not line.startswith("    ")]
    found = [f"{path.name}: {line.strip()}" for line in prose if MEASURED.search(line)]
    assert found == []
    assert MEASURED.search("took 875 ms, 2.4x less") and not MEASURED.search("4 layers, hidden 128, 2 × 37")


def test_family_timings_name_the_device_and_a_shared_cpu():
    render = _render_docs()
    data = {"provenance": {"device": "AMD EPYC (avx2), 2 cores"},
            "conditions": {"platform": "cpu", "cores": 2, "load_average_at_start": 3.0,
                           "load_average_after_timings": 4.0}}
    assert render.timing_conditions(data).startswith("on AMD EPYC (avx2), 2 cores (a CPU shared with other work")
    data["conditions"]["load_average_at_start"] = 0.2
    assert "shared" not in render.timing_conditions(data) and "0.2" in render.timing_conditions(data)
    data["conditions"]["platform"] = "gpu"
    data["provenance"]["device"] = "NVIDIA H100 80GB HBM3"
    assert render.timing_conditions(data) == "on NVIDIA H100 80GB HBM3"


def test_a_rendered_block_names_a_section_the_renderer_knows():
    render = _render_docs()
    block = "<!-- render: family_figures.json#no_such_section -->\n<!-- end render -->"
    with pytest.raises(KeyError, match="section='no_such_section' is not one of"):
        render.RENDER_BLOCK.sub(render.render_block, block)
    with pytest.raises(FileNotFoundError, match="renders missing.json"):
        render.RENDER_BLOCK.sub(render.render_block, "<!-- render: missing.json -->\n<!-- end render -->")


HISTORY = re.compile(r"\b(this|that|the previous|an earlier|the last|the next|a later) session\b|"
                     r"\bsession before\b|\bissue #?\d+\b|\bno GPU has been lent\b", re.IGNORECASE)


@pytest.mark.parametrize("path", [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_speak_of_the_project_only(path):
    found = [f"{path.name}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
             if HISTORY.search(line)]
    assert found == []


def test_the_readme_is_a_user_guide_that_starts_with_the_two_commands():
    """At most 250 lines; design notes and result tables live under docs/. The first code block
    holds `make demo` and `make test`."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    first_block = text.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


@pytest.mark.slow
def test_the_readme_python_block_runs_as_written(tmp_path, monkeypatch):
    """README's "In Python" block: load, calibrate, quantize, save, serve the saved folder."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## In Python"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102  the documented code itself
    assert scope["emb"].shape == (2, 384) and (tmp_path / "minilm-int8" / "tokenizer.json").is_file()
    assert scope["engine"].num_compilations > 0
