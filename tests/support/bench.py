"""Running ``python -m bench --smoke`` and reading what it prints (bench/report.py's layout)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.paths import REPO_ROOT
from tests.support.processes import run_to_end

_HEADER = re.compile(r"^== (?P<name>\w+): ")
_FIGURE = re.compile(r"^(?P<label>[^:]+?)\s*:\s+(?P<value>-?[0-9][0-9,]*(?:\.[0-9]+)?)(?:\s|$)")
_CHECK = re.compile(r"^check (?P<label>.+?)\s*: (?P<status>ok|FAILED)\b")


@dataclass
class Section:
    figures: dict[str, float] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)


@dataclass
class SmokeRun:
    returncode: int
    stdout: str
    stderr: str
    sections: dict[str, Section]
    results: Path  # the results file the run wrote (bench/results.md's layout)


def parse_sections(stdout: str) -> dict[str, Section]:
    """Each ``== name: ...`` section's figure lines (label: number) and check lines (ok/FAILED)."""
    sections: dict[str, Section] = {}
    current: Section | None = None
    for line in stdout.splitlines():
        if header := _HEADER.match(line):
            current = sections.setdefault(header["name"], Section())
        elif current is not None and (check := _CHECK.match(line)):
            current.checks[check["label"]] = check["status"]
        elif current is not None and (figure := _FIGURE.match(line)):
            current.figures[figure["label"]] = float(figure["value"].replace(",", ""))
    return sections


def run_smoke(names: list[str], deadline_seconds: float, results: Path) -> SmokeRun:
    """``python -m bench --smoke --results RESULTS NAMES...`` to its end, its output parsed by section."""
    argv = [sys.executable, "-m", "bench", "--smoke", "--results", str(results), *names]
    done = run_to_end(argv, cwd=REPO_ROOT, timeout=deadline_seconds)
    return SmokeRun(done.returncode, done.stdout, done.stderr, parse_sections(done.stdout), results)


def written_figures(run: SmokeRun) -> dict[tuple[str, str], float]:
    """(benchmark, figure) -> value, as the run's results file holds them."""
    from bench.results import read_rows

    return {(row.benchmark, row.figure): _number(row.value) for row in read_rows(run.results)}


def printed_figures(run: SmokeRun) -> dict[tuple[str, str], float]:
    """(benchmark, figure) -> value, as the run printed them."""
    return {(name, label): value for name, section in run.sections.items() for label, value in section.figures.items()}


def _number(shown: str) -> float:
    return float(shown.split()[0].replace(",", ""))
