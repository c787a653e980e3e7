"""The long test files that tests/conftest.py starts first exist, and start first."""

import subprocess
import sys

from tests.conftest import LONGEST_FIRST
from tests.helpers import ROOT


def test_every_long_file_named_first_exists():
    missing = [path for path in LONGEST_FIRST if not (ROOT / path).is_file()]
    assert not missing, f"tests/conftest.py LONGEST_FIRST names files that are gone: {missing}"


def test_the_long_files_are_collected_first():
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist",
                           "-p", "no:cacheprovider", "tests/test_docs.py", "tests/test_examples.py",
                           "tests/test_architecture.py"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    files = [line.split("::", 1)[0] for line in done.stdout.splitlines() if "::" in line]
    assert files[0] == "tests/test_examples.py"
    assert set(files) == {"tests/test_docs.py", "tests/test_examples.py", "tests/test_architecture.py"}


def test_make_test_keeps_the_collection_order():
    """Without --no-loadscope-reorder, xdist starts the files with the most tests first and the
    order above does nothing."""
    makefile = (ROOT / "Makefile").read_text()
    assert "--dist loadfile" in makefile and "--no-loadscope-reorder" in makefile
