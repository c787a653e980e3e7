"""Where a result came from: the `provenance` block every committed result JSON carries.

    {"command": ..., "commit": ..., "device": ..., "date": ...}

`provenance(command, device)` fills the commit from the git checkout the code runs from (with
`-dirty` when it has uncommitted changes), or the package version when it is installed from a
wheel; the date is UTC. The docs renderer prints this block under every table.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

from samp_jax.core.version import __version__

KEYS = ("command", "commit", "device", "date")
_CHECKOUT = Path(__file__).resolve().parents[2]


def code_commit(checkout: Path = _CHECKOUT) -> str:
    """The short commit of `checkout` (`-dirty` when tracked files changed), or
    `samp-jax <version>` when the code does not run from a git checkout: `checkout` must be
    the top of a work tree, not a folder inside another repository (an installed package's
    `site-packages` inside a user's project)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if top != Path(checkout).resolve():
            return f"samp-jax {__version__}"
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return f"samp-jax {__version__}"
    return commit + ("-dirty" if dirty else "")


def provenance(command: str, device: str) -> dict:
    """The provenance block of a result made now by `command` on `device`."""
    if not command or not device:
        raise ValueError(f"a result needs its command and device, got {command=} {device=}")
    return {"command": command, "commit": code_commit(), "device": device,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")}


def check_provenance(record: dict, where: str) -> None:
    """Raises ValueError naming `where` when `record` lacks a complete provenance block."""
    block = record.get("provenance")
    if not isinstance(block, dict):
        raise ValueError(f"{where}: no 'provenance' block (expected keys {KEYS})")
    missing = [key for key in KEYS if not block.get(key)]
    if missing:
        raise ValueError(f"{where}: provenance lacks {missing}")
