"""tools/mutation_check.py stays in step with the code: every mutant's text occurs exactly once
in its file (a patch that no longer matches would test nothing), its tests exist, and the
committed result lists every mutant as killed."""

import importlib.util
import json
import sys

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "tools" / "mutation_check.py")
mutation_check = importlib.util.module_from_spec(spec)
sys.modules.setdefault("mutation_check", mutation_check)  # dataclasses look their module up
spec.loader.exec_module(mutation_check)


def test_every_mutant_applies_to_the_current_code():
    names = [m.name for m in mutation_check.MUTANTS]
    assert len(names) == len(set(names))
    for mutant in mutation_check.MUTANTS:
        text = (ROOT / mutant.path).read_text()
        assert text.count(mutant.old) == 1, mutant.name
        assert mutant.old != mutant.new
        for group in mutation_check.split_runs(mutant.tests):
            assert (ROOT / group[0]).is_file(), (mutant.name, group[0])
            assert len(group) in (1, 3) and (len(group) == 1 or group[1] == "-k")


def test_split_runs_groups_files_with_their_expressions():
    split = mutation_check.split_runs(("a.py", "-k", "x", "b.py", "c.py", "-k", "y or z"))
    assert split == [["a.py", "-k", "x"], ["b.py"], ["c.py", "-k", "y or z"]]
    first_two = mutation_check.MUTANTS[:2]
    assert mutation_check.baseline_selection(first_two)[-2] == "-k"


def test_the_committed_result_covers_every_mutant_and_each_was_killed():
    result = json.loads((ROOT / "docs" / "results" / "mutation.json").read_text())
    assert [row["name"] for row in result["mutants"]] == [m.name for m in mutation_check.MUTANTS]
    assert all(row["killed"] and row["killing_tests"] for row in result["mutants"])
    assert (ROOT / "docs" / "results" / "mutation.md").read_text() == mutation_check.render(result)
