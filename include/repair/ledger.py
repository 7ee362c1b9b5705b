"""The completeness ledger: per symbol and window, what was expected, present, filled and missing.

One small JSON object per symbol and window in the lake, rewritten by every check of that window:
``status/completeness/exchange=binance/symbol=BTCUSDT/date=2026-11-24/20261124T130000Z.json``
(``include/lake/keys.py``). It is where
exchange-side holes are recorded (ids Binance's REST does not return), so a later run does not
fetch them again, and what the dashboard and the warehouse load read to know how complete a window is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from include.lake.keys import ledger_symbol_prefix, report_key
from include.lake.store import ObjectStore


@dataclass
class WindowReport:
    symbol: str
    start: str  # ISO UTC
    end: str
    first_id: int | None  # expected ids are [first_id, end_id)
    end_id: int | None
    expected: int
    present_before: int
    filled: int
    holes: list[int] = field(default_factory=list)  # exchange-side: REST does not have them
    missing: int = 0  # still missing after the fill (0 when complete)
    files: list[str] = field(default_factory=list)
    checked_at: str = ""
    # REST rows the trade contract refuses (the stream's rules): {"id", "reason", "raw"}; still missing
    refused: list[dict[str, object]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.missing == 0

    def summary(self) -> str:
        return (
            f"{self.symbol} [{self.start}, {self.end}): expected {self.expected}, present {self.present_before}, "
            f"filled {self.filled}, holes {len(self.holes)}, missing {self.missing}"
            + (f" (refused {len(self.refused)})" if self.refused else "")
        )


def report_at(lake: ObjectStore, key: str) -> WindowReport:
    """The window report stored at ``key``."""
    return WindowReport(**json.loads(lake.get(key)))


def read_report(lake: ObjectStore, symbol: str, start: datetime) -> WindowReport | None:
    key = report_key(symbol, start)
    return report_at(lake, key) if lake.exists(key) else None


def write_report(lake: ObjectStore, report: WindowReport, start: datetime) -> str:
    report.checked_at = datetime.now(UTC).isoformat()
    key = report_key(report.symbol, start)
    lake.put(key, json.dumps(asdict(report), indent=2).encode())
    return key


def read_reports(lake: ObjectStore, symbol: str) -> list[WindowReport]:
    """Every window on record for a symbol, oldest first."""
    return [report_at(lake, info.key) for info in lake.list(ledger_symbol_prefix(symbol))]
