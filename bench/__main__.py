"""``python -m bench``: every benchmark, one after the other, each printing its own figures.

``python -m bench --smoke`` runs each at a tiny size (the smoke test in tests/bench/ does): the
figures and checks are printed as usual, the targets are not enforced. Names pick benchmarks:
``python -m bench stream``. A benchmark that crashes prints its traceback and the others still run;
the exit status is 1 if any crashed, failed a check or (at full size) missed a target.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable

from bench import backfill, dashboard_page, live_edge, load, stream, transform

BENCHMARKS: dict[str, Callable[[bool], bool]] = {
    "stream": lambda smoke: stream.main(smoke),
    "backfill": lambda smoke: backfill.main(smoke),
    "load": lambda smoke: load.main(smoke),
    "transform": lambda smoke: transform.main(smoke),
    "dashboard": lambda smoke: dashboard_page.main(smoke),
    "live_edge": lambda smoke: live_edge.main(smoke),
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
    parser.add_argument("names", nargs="*", help=f"which benchmarks, of {', '.join(BENCHMARKS)} (default: all)")
    arguments = parser.parse_args()
    unknown = [name for name in arguments.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)}")
    passed = {name: run(name, arguments.smoke) for name in arguments.names or BENCHMARKS}
    failed = [name for name, ok in passed.items() if not ok]
    scope = " (smoke: checks only, targets not enforced)" if arguments.smoke else ""
    print(f"\nbenchmarks {'failed: ' + ', '.join(failed) if failed else 'passed'}{scope}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
