"""Whether the running dag-processor has parsed every DAG file, and which ones failed to import.

``up`` prints "cryptoflow is up" only once this check passes (it is the dag-processor's ``ready`` step in
include/up.py). A DAG file that fails to import is otherwise invisible from the command line: every
service stays healthy while the DAG is simply missing, as the warehouse DAG was when its dbt manifest
had not been built.

Airflow is asked through its REST API (``/api/v2/importErrors`` and ``/api/v2/dags``) on the API server
``up`` started first. It answers in milliseconds from the metadata database, and in the all-admins mode
of local ``up`` (the SimpleAllAdminMiddleware) it needs no token. ``airflow dags list-import-errors``
reads the same tables, but each look starts a Python that imports Airflow: seconds of CPU on two
cores, every poll, while the dag-processor is busy parsing.

Only parses of this start count: an import error or a parse time older than ``since`` may come from an
earlier run on the same Airflow home, before the file was fixed or broken.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.supervisor import StartupError

PAGE = 100  # the API's largest page by default; this project has a handful of DAG files


def dag_files(folder: Path) -> list[str]:
    """The files of the DAG folder the dag-processor imports, relative to it.

    Airflow's default safe mode skips a Python file that does not hold both "airflow" and "dag"
    (case-insensitive); such a file is no DAG file and is never reported as parsed.
    """
    found = []
    for path in sorted(folder.rglob("*.py")):
        text = path.read_text(errors="replace").lower()
        if "airflow" in text and "dag" in text:
            found.append(path.relative_to(folder).as_posix())
    return found


def _last_line(stack_trace: str) -> str:
    """The error itself, e.g. ``FileNotFoundError: Could not find manifest ...``."""
    lines = [line.strip() for line in stack_trace.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@dataclass
class EveryDagParsed:
    """The ``ready`` step: None once every DAG file has parsed since ``since``; what is awaited while
    some has not; a StartupError naming each file that failed to import once none is awaited."""

    api_url: str  # the API server, e.g. http://127.0.0.1:8080
    dags_folder: Path
    since: datetime = field(default_factory=lambda: datetime.now(UTC))

    def _since_start(self, timestamp: str | None) -> bool:
        return timestamp is not None and datetime.fromisoformat(timestamp) >= self.since

    def __call__(self) -> str | None:
        try:
            errors = _get(f"{self.api_url}/api/v2/importErrors?limit={PAGE}")["import_errors"]
            dags = _get(f"{self.api_url}/api/v2/dags?limit={PAGE}")["dags"]
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return f"answer {self.api_url}/api/v2/importErrors"
        files = dag_files(self.dags_folder)
        failed = {
            error["filename"]: _last_line(error["stack_trace"])
            for error in errors
            if error["filename"] in files and self._since_start(error["timestamp"])
        }
        parsed = {dag["relative_fileloc"] for dag in dags if self._since_start(dag["last_parsed_time"])}
        folder = self.dags_folder.name
        broken = "; ".join(f"{folder}/{name} failed to import: {error}" for name, error in sorted(failed.items()))
        unparsed = [f"{folder}/{name}" for name in files if name not in failed and name not in parsed]
        if unparsed:
            return f"parse {', '.join(unparsed)}" + (f" ({broken})" if broken else "")
        if broken:
            raise StartupError(broken)
        return None
