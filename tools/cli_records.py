"""What the tools that run `samp-jax` end to end share: running one command with `--json`, the
search summary's fields a record keeps, and writing the record.

Used by `tools/multilabel_check.py` and `tools/scorer_check.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from samp_jax.app.search_command import TOLERANCE_NOT_MET

# The fields of `samp-jax search --json`'s summary that a record of a search keeps.
SEARCH_FIELDS = ("task_type", "metric", "tolerance", "test", "chosen_search_metric",
                 "fp32_search_metric", "int8_flop_fraction")


def run_json(command: list[str], what: str, *, tool: str) -> dict:
    """Runs a `samp-jax ... --json` command and returns its JSON summary; exits the tool with
    the last lines of its stderr when it fails. A search whose tolerance no map met (exit code
    3) is a result: its summary says `tolerance_met: false`."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, TOLERANCE_NOT_MET):
        sys.exit(f"{tool}: {what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def search_fields(summary: dict) -> dict:
    """The `SEARCH_FIELDS` of a search summary (`task_type` and `tolerance` may be absent)."""
    optional = ("task_type", "tolerance")
    return {key: summary.get(key) if key in optional else summary[key] for key in SEARCH_FIELDS}


def emit(record: dict, path: Path | None) -> None:
    """Prints the record and, when `path` is given, writes it there as JSON."""
    print(json.dumps(record, indent=1))
    if path is not None:
        path.write_text(json.dumps(record, indent=1) + "\n")
