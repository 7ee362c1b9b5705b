"""Find a window's missing trades by id and fill them from Binance's REST history.

``repair_window`` is the whole job for one symbol and window; the ``repair_gaps`` DAG maps it over
symbols, and ``python -m include.cli backfill`` runs it over a date range that was never streamed.
Running it twice changes nothing: the second run finds nothing missing and writes no trade file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np

from include.binance.client import BinanceClient
from include.binance.protocol import MAX_LIMIT
from include.ingest.parse import CombinedTrade, Rejected, validate
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
    columns: TradeColumns  # the rows the trade contract accepts
    holes: list[int]  # ids REST shows do not exist
    refused: list[dict[str, object]]  # rows the contract refuses: {"id", "reason", "raw"}


def _row_id(row: object) -> int | None:
    trade_id = row.get("id") if isinstance(row, dict) else None
    return trade_id if type(trade_id) is int else None


def _page_range(client: BinanceClient, symbol: str, start: int, stop: int) -> tuple[list[dict[str, Any]], list[int]]:
    """The REST rows of ids in ``[start, stop)``, and the ids REST shows do not exist.

    An id is a hole only on evidence: REST answered a later id in its place. A page that is empty,
    or brings nothing new, says nothing about the ids after it (the exchange's history may lag
    behind its stream): those stay missing, for the check to report and a later run to fetch.
    """
    rows: list[dict[str, Any]] = []
    holes: list[int] = []
    cursor = start
    while cursor < stop:
        page = client.historical_trades(symbol, from_id=cursor, limit=min(MAX_LIMIT, stop - cursor))
        ids = [_row_id(row) for row in page]
        before = cursor
        for row, trade_id in zip(page, ids, strict=True):
            if trade_id is None:
                rows.append(row)  # for the contract check to refuse, and the ledger to record
            elif cursor <= trade_id < stop:
                holes.extend(range(cursor, trade_id))
                rows.append(row)
                cursor = trade_id + 1
        if max(filter(None, ids), default=0) >= stop:
            holes.extend(range(cursor, stop))  # the page went past the range: the rest does not exist
            break
        if cursor == before:
            break
    return rows, holes


def _as_stream_message(symbol: str, row: dict[str, Any]) -> dict[str, object]:
    """A historicalTrades row as the stream's trade message, so that one rule checks both."""
    data = {
        "e": "trade",
        "E": row.get("time"),
        "s": symbol,
        "t": row.get("id"),
        "p": row.get("price"),
        "q": row.get("qty"),
        "T": row.get("time"),
        "m": row.get("isBuyerMaker"),
    }
    return {"stream": f"{symbol.lower()}@trade", "data": data}


def to_contract(symbol: str, rows: list[dict[str, Any]]) -> tuple[TradeColumns, list[dict[str, object]]]:
    """REST rows into trade columns by the stream's own validation; the rows it refuses, with the reason."""
    trades: list[CombinedTrade] = []
    raws: list[bytes] = []
    rejected: list[Rejected] = []
    for row in rows:
        raw = json.dumps(row).encode()
        try:
            trades.append(msgspec.convert(_as_stream_message(symbol, row), CombinedTrade))
            raws.append(raw)
        except msgspec.ValidationError as error:
            rejected.append(Rejected(raw, f"invalid trade row: {error}"))
    validated = validate(trades, raws, frozenset({symbol}))
    refused = [
        {"id": _row_id(json.loads(item.raw)), "reason": item.reason, "raw": item.raw.decode()}
        for item in rejected + validated.rejected
    ]
    return validated.by_symbol.get(symbol) or _no_trades(symbol), refused


def _no_trades(symbol: str) -> TradeColumns:
    empty = np.array([], dtype=np.int64)
    return TradeColumns(symbol, empty, empty, empty, empty, np.array([], dtype=np.bool_))


def fetch_ranges(client: BinanceClient, symbol: str, ranges: list[tuple[int, int]]) -> Fetched:
    """Page historicalTrades through each range and check every row by the trade contract."""
    rows: list[dict[str, Any]] = []
    holes: list[int] = []
    for start, stop in ranges:
        got, skipped = _page_range(client, symbol, start, stop)
        rows += got
        holes += skipped
    columns, refused = to_contract(symbol, rows)
    return Fetched(columns, holes, refused)


def _present(lake: ObjectStore, symbol: str, start_us: int, end_us: int, first_id: int, end_id: int) -> np.ndarray:
    ids = read_trade_ids(lake, symbol, start_us, end_us)
    return ids[(ids >= first_id) & (ids < end_id)]


def _fill(
    client: BinanceClient, lake: ObjectStore, symbol: str, start: datetime, missing: list[tuple[int, int]]
) -> tuple[Fetched, list[str]]:
    """Fetch the missing ranges and write what the contract accepts as one backfill write."""
    fetched = fetch_ranges(client, symbol, missing)
    files: list[str] = []
    if len(fetched.columns):
        files = write_trades(lake, fetched.columns, "backfill", to_us(datetime.now(UTC)))
        mark_written(lake, f"repair-{symbol}-{start:%Y%m%dT%H%M}", files)
    return fetched, files


def _incomplete_message(report: WindowReport, still: list[tuple[int, int]]) -> str:
    message = f"{report.summary()}; still missing {still[:5]}"
    if report.refused:
        shown = "; ".join(f"{item['reason']}: {item['raw']}" for item in report.refused[:3])
        message += f"; REST rows the trade contract refuses ({len(report.refused)}): {shown}"
    return message


def repair_window(
    client: BinanceClient, lake: ObjectStore, symbol: str, start: datetime, end: datetime
) -> WindowReport:
    """Check one symbol's window against the exchange, fill what is missing, record the result.

    The fill is checked against the lake: what is still missing afterwards (REST lagging behind,
    or rows the trade contract refuses) is in the window's ledger report and raises
    ``RepairIncomplete``; the next run fetches it again.
    """
    start_us, end_us = to_us(start), to_us(end)
    span = expected_range(client, symbol, start_us, end_us)
    if span is None:
        raise RepairIncomplete(f"{symbol}: no trade after {end.isoformat()} yet, so the window cannot be closed")
    first_id, end_id = span
    previous = read_report(lake, symbol, start)
    known_holes = set(previous.holes) if previous else set()
    present = _present(lake, symbol, start_us, end_us, first_id, end_id)
    missing = missing_ranges(first_id, end_id, present, known_holes)
    fetched, files = _fill(client, lake, symbol, start, missing) if missing else (None, [])
    if fetched is not None:
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
        refused=fetched.refused if fetched else [],
    )
    write_report(lake, report, start)
    log.info("%s", report.summary())
    if still:
        raise RepairIncomplete(_incomplete_message(report, still))
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
