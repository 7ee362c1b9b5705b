"""A fresh clone of this checkout's HEAD, as a new user gets it: only what git holds (no dbt manifest, no data)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.paths import REPO_ROOT


def fresh_clone(destination: Path) -> Path:
    """Clone HEAD into ``destination`` (under the test's tmp_path) and return it."""
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(destination)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return destination
