"""Where a symbol's history starts for a stream whose lake holds nothing before its first trade.

The exchange vouches for a boundary as "the first trade at or after time T is id X". Two are at
hand: the end of the last complete window of the completeness ledger (its ``end_id`` is the first
trade at or after its end), and else, asked of REST, the first trade at or after the start of the
hour of the stream's first trade. The stream records the ids from X to its first trade as a
``start`` gap with T as its ``since`` (include/ingest/gaps.py); the live fill fetches them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from include.binance.client import BinanceClient
from include.ingest.gaps import Boundary
from include.lake.keys import ledger_symbol_prefix
from include.lake.store import ObjectStore
from include.repair.ledger import report_at
from include.timeutil import from_us, hour_start_us, to_us


def ledger_boundary(lake: ObjectStore, symbol: str, before_us: int) -> Boundary | None:
    """The end of the latest complete window that ends at or before ``before_us``, from the
    ledger's partitions of that day and the day before (a bounded listing); None if there is none."""
    day = from_us(before_us)
    for date in (day, day - timedelta(days=1)):
        keys = [info.key for info in lake.list(f"{ledger_symbol_prefix(symbol)}date={date:%Y-%m-%d}/")]
        for key in sorted(keys, reverse=True):  # named by window start: the latest first
            report = report_at(lake, key)
            end_us = to_us(datetime.fromisoformat(report.end))
            if report.complete and report.end_id is not None and end_us <= before_us:
                return Boundary(report.end_id, end_us)
    return None


def rest_boundary(client: BinanceClient, symbol: str, time_us: int) -> Boundary | None:
    """The first trade at or after the start of the hour of ``time_us``, as the exchange says."""
    hour = hour_start_us(time_us)
    found = client.first_trade_id_at_or_after(symbol, hour)
    return None if found is None else Boundary(found[0], hour)


def start_boundary(client: BinanceClient, lake: ObjectStore, symbol: str, time_us: int) -> Boundary | None:
    """The boundary before a stream's first trade at ``time_us``: the ledger's, else REST's."""
    return ledger_boundary(lake, symbol, time_us) or rest_boundary(client, symbol, time_us)
