"""``python -m bench``: every benchmark, one after the other, each printing its own figures.

``python -m bench --smoke`` runs each at a tiny size (the smoke test in tests/bench/ does): the
figures and checks are printed as usual, the targets are not enforced. Names pick benchmarks:
``python -m bench stream``. A benchmark that crashes prints its traceback and the others still run;
the exit status is 1 if any crashed, failed a check or (at full size) missed a target.

At full size the figures go to bench/results.md too (bench/results.py), with the commit, the date and
the machine; ``--results PATH`` writes them elsewhere (a smoke run writes only there).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    backfill,
    compaction,
    dashboard_page,
    history,
    live_edge,
    load,
    sandbox_streams,
    stream,
    symbols,
    transform,
)
from bench.report import Report
from bench.results import RESULTS_PATH, RunFacts, write_results

BENCHMARKS: dict[str, Callable[[bool], bool]] = {
    "stream": lambda smoke: stream.main(smoke),
    "backfill": lambda smoke: backfill.main(smoke),
    "load": lambda smoke: load.main(smoke),
    "transform": lambda smoke: transform.main(smoke),
    "history": lambda smoke: history.main(smoke),
    "symbols": lambda smoke: symbols.main(smoke),
    "dashboard": lambda smoke: dashboard_page.main(smoke),
    "live_edge": lambda smoke: live_edge.main(smoke),
    "compaction": lambda smoke: compaction.main(smoke),
    "sandbox": lambda smoke: sandbox_streams.main(smoke),
}


def run(name: str, smoke: bool) -> bool:
    try:
        return BENCHMARKS[name](smoke)
    except Exception:
        traceback.print_exc()
        print(f"\n{name}: the benchmark crashed (traceback above)", file=sys.stderr, flush=True)
        return False


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny size of each; checks only, no targets")
    parser.add_argument(
        "--results", type=Path, help=f"where the figures go (default: {RESULTS_PATH.name} beside this, full size only)"
    )
    parser.add_argument("names", nargs="*", help=f"which benchmarks, of {', '.join(BENCHMARKS)} (default: all)")
    arguments = parser.parse_args()
    unknown = [name for name in arguments.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)}")
    names = arguments.names or list(BENCHMARKS)
    results = arguments.results or (None if arguments.smoke else RESULTS_PATH)
    if results is not None and results.is_dir():
        parser.error(f"--results {results} is a folder, not a file")
    facts = RunFacts.here(Path(__file__).resolve().parents[1])  # before the run: the commit it measures
    passed = {name: run(name, arguments.smoke) for name in names}
    if results is not None:
        write_results(results, Report.printed, names, list(BENCHMARKS), facts)
        print(f"\nfigures written to {results}", flush=True)
    failed = [name for name, ok in passed.items() if not ok]
    scope = " (smoke: checks only, targets not enforced)" if arguments.smoke else ""
    print(f"\nbenchmarks {'failed: ' + ', '.join(failed) if failed else 'passed'}{scope}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
