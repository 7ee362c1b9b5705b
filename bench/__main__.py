"""``python -m bench``: every benchmark, one after the other, each printing its own figures."""

from __future__ import annotations

import sys

from bench import backfill, load, stream


def main() -> int:
    results = [stream.main(), backfill.main(), load.main()]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
