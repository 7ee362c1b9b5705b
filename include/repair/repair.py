"""Find a window's missing trades by id and fill them from Binance's REST history.

``repair_window`` is the whole job for one symbol and window; the ``repair_gaps`` DAG maps it over
symbols, and ``python -m include.cli backfill`` runs it over a date range that was never streamed.
Running it twice changes nothing: the second run finds nothing missing and writes no trade file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from include.binance.client import BinanceClient
from include.binance.protocol import MAX_LIMIT
from include.decimals import ScaleError, to_units
from include.lake.markers import mark_written
from include.lake.store import ObjectStore
from include.lake.trades import TradeColumns, read_trade_ids, write_trades
from include.repair.gaps import count, missing_ranges
from include.repair.ledger import WindowReport, read_report, write_report
from include.timeutil import to_us

log = logging.getLogger(__name__)
WINDOW = timedelta(hours=1)


class RepairIncomplete(RuntimeError):
    """After the fill, ids are still missing that REST did not report as holes: retry later."""


def expected_range(client: BinanceClient, symbol: str, start_us: int, end_us: int) -> tuple[int, int] | None:
    """``[first_id, end_id)``: the ids the window [start, end) must hold; None if it is not over yet."""
    first = client.first_trade_id_at_or_after(symbol, start_us)
    after = client.first_trade_id_at_or_after(symbol, end_us)
    if after is None:
        # No trade at or after the end: the window is over only once the exchange's clock has passed
        # its end (else more trades may still come); then the latest trade is its last.
        if client.server_time_us() < end_us:
            return None
        latest = client.recent_trades(symbol, limit=1)
        if not latest or int(latest[-1]["time"]) >= end_us:
            return None
        end_id = int(latest[-1]["id"]) + 1
    else:
        end_id = after[0]
    first_id = end_id if first is None or first[1] >= end_us else first[0]
    return first_id, end_id


@dataclass
class Fetched:
    columns: TradeColumns
    holes: list[int]
    refused: list[tuple[dict[str, object], str]]  # rows whose values do not fit the contract


def fetch_ranges(client: BinanceClient, symbol: str, ranges: list[tuple[int, int]]) -> Fetched:
    """Page historicalTrades through each range; ids REST skips are exchange-side holes."""
    ids: list[int] = []
    prices: list[int] = []
    quantities: list[int] = []
    times: list[int] = []
    makers: list[bool] = []
    holes: list[int] = []
    refused: list[tuple[dict[str, object], str]] = []
    for start, stop in ranges:
        cursor = start
        while cursor < stop:
            rows = client.historical_trades(symbol, from_id=cursor, limit=min(MAX_LIMIT, stop - cursor))
            got = [row for row in rows if cursor <= int(row["id"]) < stop]
            if not rows:
                holes.extend(range(cursor, stop))  # nothing at or after: none of these ids exists
                break
            for row in got:
                trade_id = int(row["id"])
                holes.extend(range(cursor, trade_id))
                cursor = trade_id + 1
                try:
                    price, quantity = to_units(str(row["price"])), to_units(str(row["qty"]))
                except ScaleError as error:
                    refused.append((row, str(error)))
                    continue
                ids.append(trade_id)
                prices.append(price)
                quantities.append(quantity)
                times.append(int(row["time"]))
                makers.append(bool(row["isBuyerMaker"]))
            if not got or int(rows[-1]["id"]) >= stop:
                # The page jumped past the range: the rest of it does not exist on the exchange.
                holes.extend(range(cursor, stop))
                break
    columns = TradeColumns(
        symbol,
        np.array(ids, dtype=np.int64),
        np.array(prices, dtype=np.int64),
        np.array(quantities, dtype=np.int64),
        np.array(times, dtype=np.int64),
        np.array(makers, dtype=np.bool_),
    )
    return Fetched(columns, holes, refused)


def _present(lake: ObjectStore, symbol: str, start_us: int, end_us: int, first_id: int, end_id: int) -> np.ndarray:
    ids = read_trade_ids(lake, symbol, start_us, end_us)
    return ids[(ids >= first_id) & (ids < end_id)]


def repair_window(
    client: BinanceClient, lake: ObjectStore, symbol: str, start: datetime, end: datetime
) -> WindowReport:
    """Check one symbol's window against the exchange, fill what is missing, record the result."""
    start_us, end_us = to_us(start), to_us(end)
    span = expected_range(client, symbol, start_us, end_us)
    if span is None:
        raise RepairIncomplete(f"{symbol}: no trade after {end.isoformat()} yet, so the window cannot be closed")
    first_id, end_id = span
    previous = read_report(lake, symbol, start)
    known_holes = set(previous.holes) if previous else set()
    present = _present(lake, symbol, start_us, end_us, first_id, end_id)
    missing = missing_ranges(first_id, end_id, present, known_holes)
    files: list[str] = []
    fetched = fetch_ranges(client, symbol, missing) if missing else None
    if fetched is not None:
        if fetched.refused:
            raise ValueError(f"{symbol}: REST returned values outside the contract: {fetched.refused[:3]}")
        if len(fetched.columns):
            files = write_trades(lake, fetched.columns, "backfill", to_us(datetime.now(UTC)))
            mark_written(lake, f"repair-{symbol}-{start:%Y%m%dT%H%M}", files)
        known_holes |= set(fetched.holes)
    still = missing_ranges(first_id, end_id, _present(lake, symbol, start_us, end_us, first_id, end_id), known_holes)
    report = WindowReport(
        symbol=symbol,
        start=start.isoformat(),
        end=end.isoformat(),
        first_id=first_id,
        end_id=end_id,
        expected=end_id - first_id,
        present_before=len(present),
        filled=len(fetched.columns) if fetched else 0,
        holes=sorted(known_holes),
        missing=count(still),
        files=files,
    )
    write_report(lake, report, start)
    log.info("%s", report.summary())
    if still:
        raise RepairIncomplete(f"{report.summary()}; still missing {still[:5]}")
    return report


def hour_windows(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Clock-hour windows covering [start, end), the first and last cut to the range."""
    cursor = start.replace(minute=0, second=0, microsecond=0)
    windows = []
    while cursor < end:
        following = cursor + WINDOW
        windows.append((max(cursor, start), min(following, end)))
        cursor = following
    return windows
