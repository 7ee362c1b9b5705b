"""bench/results.md: one table of every benchmark's latest figures, each with its run's commit, date
and machine; a run of some benchmarks keeps the others' rows."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench.report import Figure, Report, Target
from bench.results import RunFacts, read_rows, write_results
from tests.support.paths import REPO_ROOT

ORDER = ["stream", "backfill", "load"]
MONDAY = RunFacts("aaaa11112222", "2026-12-07 04:00", "2 cores, 23.5 GiB, x86_64")
TUESDAY = RunFacts("bbbb33334444", "2026-12-08 05:00", "8 cores, 64.0 GiB, aarch64")


def _figure(benchmark: str, label: str, shown: str, target: str = "", note: str = "") -> Figure:
    return Figure(benchmark, label, shown, target, note)


def test_a_report_keeps_each_figure_as_printed_under_its_benchmark(capsys) -> None:
    before = len(Report.printed)
    report = Report("load: lake into DuckDB (10 trades)")
    report.figure("load throughput", 123456.789, "trades/s", target=Target(">=", 100_000), note="median of 3")
    printed = capsys.readouterr().out
    assert Report.printed[before:] == [
        _figure("load", "load throughput", "123,457 trades/s", "target >= 100,000: met", "median of 3")
    ]
    assert "123,457 trades/s" in printed


def test_a_run_of_some_benchmarks_replaces_their_rows_and_keeps_the_others(tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    first = [_figure("stream", "pipeline", "228,104 trades/s"), _figure("load", "load throughput", "9 trades/s")]
    write_results(results, first, ["stream", "load"], ORDER, MONDAY)
    write_results(results, [_figure("load", "load throughput", "11 trades/s")], ["load"], ORDER, TUESDAY)

    rows = read_rows(results)
    assert [(row.benchmark, row.value, row.commit, row.date, row.machine) for row in rows] == [
        ("stream", "228,104 trades/s", MONDAY.commit, MONDAY.date, MONDAY.machine),
        ("load", "11 trades/s", TUESDAY.commit, TUESDAY.date, TUESDAY.machine),
    ]


def test_rows_are_ordered_by_benchmark_and_a_pipe_in_a_note_survives(tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    write_results(results, [_figure("load", "ratio", "1.02", note="a | b")], ["load"], ORDER, MONDAY)
    write_results(results, [_figure("stream", "pipeline", "5 trades/s")], ["stream"], ORDER, MONDAY)
    rows = read_rows(results)
    assert [row.benchmark for row in rows] == ["stream", "load"]
    assert rows[1].note == "a | b"
    assert results.read_text().startswith("# Benchmark results\n")


def test_the_run_facts_name_this_checkout_and_this_machine() -> None:
    facts = RunFacts.here(REPO_ROOT)
    head = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert facts.commit.removesuffix("+changes") == head
    assert facts.machine.startswith(f"{os.cpu_count()} cores, ")


def test_outside_a_git_checkout_the_commit_says_unknown(tmp_path: Path) -> None:
    assert RunFacts.here(tmp_path).commit.startswith("unknown")
