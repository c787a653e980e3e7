"""tools/fresh_splits.py: the seeds' test blocks are disjoint, no split of a seed holds one of its
test rows, the carve is seeded, and the committed records are the tool's own output."""

import dataclasses
import importlib.util
import json
import sys

import pytest

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("fresh_splits", ROOT / "tools" / "fresh_splits.py")
fresh_splits = importlib.util.module_from_spec(spec)
sys.modules.setdefault("fresh_splits", fresh_splits)  # dataclasses look their module up
spec.loader.exec_module(fresh_splits)


def _study(rows, fresh_count, **sizes):
    pools = lambda: (rows[:fresh_count], rows)  # noqa: E731
    return fresh_splits.Study("toy", "toy rows", fresh_splits._text_key, pools,
                              {"test": 10, "search": 8, "calibration": 6, "dev": 4, "train": None,
                               **sizes})


ROWS = [{"text": f"row {i}", "label": "positive" if i % 3 else "negative"} for i in range(120)]


def test_test_blocks_are_disjoint_and_drawn_from_the_fresh_rows_only():
    study = _study(ROWS, fresh_count=40)
    blocks = fresh_splits.test_blocks(study, ROWS[:40], 3)
    keys = [{row["text"] for row in block} for block in blocks]
    assert [len(k) for k in keys] == [10, 10, 10]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert set().union(*keys) <= {row["text"] for row in ROWS[:40]}


def test_a_seed_never_sees_its_test_rows_in_another_split_and_the_carve_is_seeded():
    study = _study(ROWS, fresh_count=40)
    block = fresh_splits.test_blocks(study, ROWS[:40], 1)[0]
    splits = fresh_splits.carve(study, 7, ROWS, block)
    test_keys = {row["text"] for row in splits["test"]}
    seen = [row["text"] for name in ("calibration", "search", "dev", "train") for row in splits[name]]
    assert not test_keys & set(seen)
    assert len(seen) == len(set(seen)) == len(ROWS) - 10  # every other row once, train the rest
    assert {k: len(v) for k, v in splits.items()} == {"test": 10, "calibration": 6, "search": 8,
                                                      "dev": 4, "train": 92}
    assert fresh_splits.carve(study, 7, ROWS, block) == splits
    assert fresh_splits.carve(study, 8, ROWS, block)["search"] != splits["search"]


def test_too_few_rows_is_refused_before_any_run():
    study = _study(ROWS, fresh_count=25)
    with pytest.raises(SystemExit, match="3 test blocks of 10 need 30 fresh rows; there are 25"):
        fresh_splits.test_blocks(study, ROWS[:25], 3)
    sized = dataclasses.replace(study, sizes={**study.sizes, "train": 500})
    with pytest.raises(SystemExit, match="train needs 500 rows"):
        fresh_splits.carve(sized, 1, ROWS, ROWS[:10])


@pytest.mark.parametrize("path", sorted((ROOT / "docs" / "results").glob("fresh_splits_*.json")),
                         ids=lambda p: p.stem)
def test_committed_records_summarize_their_own_rows(path):
    record = json.loads(path.read_text())
    changes = [row["test_relative_change"] for row in record["rows"]
               if row["test_relative_change"] is not None]
    assert record["test_relative_change"]["min"] == min(changes)
    assert record["test_relative_change"]["max"] == max(changes)
    assert record["test_relative_change"]["mean"] == pytest.approx(sum(changes) / len(changes))
    assert record["provenance"]["command"].startswith("python tools/fresh_splits.py ")
    for row in record["rows"]:  # a record that says what was kept says what the search warned of
        if "kept_default" in row:
            assert isinstance(row["search_warnings"], list) and row["default_option"]


def test_the_page_says_where_a_search_kept_the_default_and_what_it_warned_of(monkeypatch):
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "tools" / "render_docs.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    row = {"seed": 4, "search_rows": 9, "test_rows": 20, "metric": "accuracy", "fp32_test": 0.8,
           "chosen_test": 0.8, "test_relative_change": 0.0, "int8_flop_fraction": 0.0,
           "search_warnings": ["the search split has 9 rows: too few"], "default_option": "fp32",
           "kept_default": True}
    moved = {**row, "seed": 5, "int8_flop_fraction": 0.5, "search_warnings": [],
             "kept_default": False}
    older = {k: v for k, v in row.items() if k not in ("kept_default", "search_warnings")}
    record = {"provenance": {"command": "python tools/fresh_splits.py", "commit": "abc",
                             "device": "cpu", "date": "2026-01-01"},
              "study": "toy", "tolerance": 0.01, "rows": [row, moved, {**older, "seed": 6}],
              "test_relative_change": {"mean": 0.0, "min": 0.0, "max": 0.0, "stdev": 0.0}}
    monkeypatch.setattr(render, "load", lambda name: record if name == "fresh_splits_snli_embed.json"
                        else None)
    page = "\n".join(render.fresh_splits_section())
    assert "| toy | 4 | 9 | 20 | accuracy |" in page and "| 0% (all fp32 kept) |" in page
    assert "| 50% |" in page  # a moved map is not said to be kept
    assert page.count("kept") == 1  # a record that does not say so is not read as kept
    assert "- toy (seed 4): the search split has 9 rows: too few" in page
