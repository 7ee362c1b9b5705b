"""``bench/results.md``: every figure of every benchmark in one table, each row with the commit, the
date and the machine of the run that measured it, so that a reader sees today's numbers without
running anything.

``make bench`` writes it at full size (a smoke run's figures mean nothing, so ``--smoke`` writes only
where ``--results`` says). A run of some benchmarks (``make bench BENCH=stream``) replaces those
benchmarks' rows and keeps the others', each with its own commit and date.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.report import Figure

RESULTS_PATH = Path(__file__).with_name("results.md")
COLUMNS = ("Benchmark", "Figure", "Value", "Target", "Note", "Commit", "Date (UTC)", "Machine")
TITLE = "# Benchmark results"
INTRO = (
    "Written by `make bench` (`python -m bench`): the figures of each benchmark's latest full-size run.\n"
    "Each row names the commit (`+changes`: with uncommitted changes), the date and the machine that\n"
    "measured it. Do not edit by hand: run `make bench` (or `make bench BENCH=<name>`) to refresh it."
)
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


@dataclass(frozen=True)
class Row:
    benchmark: str
    figure: str
    value: str
    target: str
    note: str
    commit: str
    date: str
    machine: str

    def line(self) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in astuple(self)) + " |"


@dataclass(frozen=True)
class RunFacts:
    """Where and when figures were measured."""

    commit: str
    date: str
    machine: str

    @classmethod
    def here(cls, repo: Path) -> RunFacts:
        cores = os.cpu_count() or 0
        memory = psutil.virtual_memory().total / 2**30
        machine = f"{cores} cores, {memory:.1f} GiB, {platform.machine()}"
        return cls(_commit(repo), datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), machine)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def _commit(repo: Path) -> str:
    """The checked-out commit, marked ``+changes`` when files other than the results differ from it."""
    commit = _git(repo, "rev-parse", "--short=12", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    changed = [line for line in _git(repo, "status", "--porcelain").splitlines() if not line.endswith("results.md")]
    return f"{commit}+changes" if changed else commit


def read_rows(path: Path) -> list[Row]:
    """The table's rows as a previous run wrote them (none when there is no file)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        cells = [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(line.strip())[1:-1]]
        if len(cells) == len(COLUMNS) and cells[0] != COLUMNS[0] and not set(cells[0]) <= {"-", ":"}:
            rows.append(Row(*cells))
    return rows


def render(rows: Sequence[Row]) -> str:
    header = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    return "\n".join([TITLE, "", INTRO, "", header, rule, *(row.line() for row in rows)]) + "\n"


def write_results(
    path: Path, figures: Iterable[Figure], ran: Sequence[str], order: Sequence[str], facts: RunFacts
) -> None:
    """Replaces the rows of the benchmarks in ``ran`` with ``figures`` and keeps every other row;
    rows are ordered by benchmark as ``order`` lists them, each benchmark's figures as printed."""
    kept = [row for row in read_rows(path) if row.benchmark not in ran]
    new = [
        Row(figure.benchmark, figure.label, figure.shown, figure.target, figure.note, *astuple(facts))
        for figure in figures
    ]
    rank = {name: n for n, name in enumerate(order)}
    rows = sorted(kept + new, key=lambda row: rank.get(row.benchmark, len(rank)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(rows))
