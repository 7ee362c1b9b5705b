"""When a symbol-hour may be compacted: once the repair has verified it complete.

The completeness ledger's report of the window says which ids the hour must hold (``[first_id,
end_id)`` but the exchange-side holes) and that none is missing; compaction then checks the files hold
exactly those (``include/lake/compaction.py``). A window the repair has not verified, one still
missing ids, or one that is not a whole clock hour (a backfill cut to a range) is left as it is; so
is an hour that still has stream batches (one that came after the split: the next split takes it).
"""

from __future__ import annotations

from datetime import datetime

from include.lake.compaction import Compaction, ExpectedIds, compact_hour
from include.lake.store import ObjectStore
from include.lake.trades import batch_keys
from include.repair.ledger import read_report
from include.repair.repair import WINDOW
from include.timeutil import HOUR_US, to_us


class NotRepaired(RuntimeError):
    """The window has no complete repair report: it is not compacted (yet)."""


def compact_window(lake: ObjectStore, symbol: str, start: datetime, end: datetime) -> Compaction:
    """Compact the symbol's files of the clock hour ``[start, end)`` if the repair verified it complete."""
    if end - start != WINDOW or to_us(start) % HOUR_US != 0:
        raise NotRepaired(f"{symbol} [{start.isoformat()}, {end.isoformat()}) is not one clock hour")
    report = read_report(lake, symbol, start)
    whole = report is not None and datetime.fromisoformat(report.end) == end
    if report is None or not whole or not report.complete or report.first_id is None or report.end_id is None:
        state = "no repair report" if report is None else report.summary()
        raise NotRepaired(f"{symbol} [{start.isoformat()}, {end.isoformat()}) is not verified complete: {state}")
    if batch_keys(lake, to_us(start), to_us(end)):  # a batch came after the split: the repair counted its ids
        raise NotRepaired(f"{symbol} [{start.isoformat()}, {end.isoformat()}) has stream batches not split yet")
    expected = ExpectedIds(report.first_id, report.end_id, frozenset(report.holes))
    return compact_hour(lake, symbol, to_us(start), expected)
