"""The audit of the candle marts against the exchange: every closed, complete bucket, field by field, exactly.

For each symbol and interval, the buckets of ``marts.candles_<interval>`` that are closed and complete
(``is_complete``: no trade of theirs can be missing, by trade id; docs/architecture.md, "The live
edge") and not in ``marts.candle_audit`` yet, oldest first and at most ``MAX_BUCKETS_PER_AUDIT`` at a
time, are compared with ``/api/v3/klines``, fetched through the one REST client (within its weight
budget, up to 1000 buckets per request): prices and volumes as exact decimals (the exchange's
strings parsed by include/decimals.py, never a float), the trade count, and the close time. Each is
recorded in ``marts.candle_audit`` as ``match``, ``mismatch`` (the differing fields named, with both
values) or ``missing`` (the exchange returned no kline for it). The audit returns its result; a
caller raises or exits non-zero when it holds a mismatch.

An incomplete candle is never compared: what it lacks is not known, so a difference would say
nothing. It is not recorded either, so once the trades it lacked are loaded (or found to be
exchange-side holes) and it becomes complete, a later audit compares it; and a candle recorded once
is not compared again. So no cursor is needed: what is left to audit is exactly what the audit table
does not hold yet.

Times are asked for in µs (the client's ``X-MBX-TIME-UNIT``); Binance's close time is then the
bucket's last µs, where the marts (like Binance's default ms unit) end at its last ms: both are
compared in ms.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from include.binance.protocol import MAX_LIMIT
from include.candles import BY_NAME, INTERVAL_NAMES, KLINE_DECIMALS
from include.decimals import to_units
from include.timeutil import from_us, to_us
from include.warehouse.shared import Dialect, Execute
from include.warehouse.sql import in_transaction, row_chunks

if TYPE_CHECKING:
    from include.binance.client import BinanceClient

log = logging.getLogger(__name__)

# The audit reads the figures a kline also has; the exact decimals are compared as integers.
AUDITED_COLUMNS = ("open_time", *(name for name, _ in KLINE_DECIMALS), "trade_count", "close_time")
DECIMAL_SCALE = 16  # the finest scale of any candle column: both sides become integers of 1e-16
MATCH, MISMATCH, MISSING = "match", "mismatch", "missing"
# Buckets compared per symbol and interval in one audit: a first audit of a long history spreads over
# several runs (oldest first), each within a bounded number of requests.
MAX_BUCKETS_PER_AUDIT = 10 * MAX_LIMIT


@dataclass(frozen=True)
class BucketAudit:
    symbol: str
    interval: str
    open_time_us: int
    status: str
    differences: str = ""

    def describe(self) -> str:
        where = f"{self.symbol} {self.interval} {from_us(self.open_time_us).isoformat()}"
        return f"{where}: {self.differences}" if self.differences else f"{where}: {self.status}"


@dataclass
class AuditResult:
    buckets: list[BucketAudit] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for bucket in self.buckets if bucket.status == status)

    @property
    def failed(self) -> bool:
        """A bucket the warehouse holds differently from the exchange fails the audit."""
        return self.count(MISMATCH) > 0

    def as_dict(self) -> dict[str, int]:
        return {
            "buckets": len(self.buckets),
            MATCH: self.count(MATCH),
            MISMATCH: self.count(MISMATCH),
            MISSING: self.count(MISSING),
        }

    def first_differences(self, limit: int = 3) -> str:
        """The first mismatched buckets, with their differing fields, in one line."""
        found = [bucket.describe() for bucket in self.buckets if bucket.status == MISMATCH]
        more = f" (and {len(found) - limit} more)" if len(found) > limit else ""
        return " | ".join(found[:limit]) + more


def ensure_audit_table(execute: Execute, dialect: Dialect) -> None:
    """``marts.candle_audit``, created by the audit itself (dbt does not own it)."""
    execute("create schema if not exists marts")
    ts = dialect.timestamp_type
    execute(
        "create table if not exists marts.candle_audit (symbol varchar not null, interval varchar not null, "
        f"open_time {ts} not null, status varchar not null, differences varchar not null, audited_at {ts} not null)"
    )


def _units(text: str) -> int:
    return to_units(text, DECIMAL_SCALE)


def _warehouse_text(value: Decimal) -> str:
    return format(value, "f")


def compare(kline: Sequence[Any], candle: dict[str, Any]) -> str:
    """The fields where the warehouse's candle differs from the exchange's kline; "" when equal."""
    differences = []
    for name, index in KLINE_DECIMALS:
        ours = _warehouse_text(candle[name])
        if _units(ours) != _units(str(kline[index])):
            differences.append(f"{name}: warehouse {ours} != exchange {kline[index]}")
    if int(candle["trade_count"]) != int(kline[8]):
        differences.append(f"trade_count: warehouse {candle['trade_count']} != exchange {kline[8]}")
    ours_ms, theirs_ms = candle["close_time"] // 1000, int(kline[6]) // 1000
    if ours_ms != theirs_ms:
        differences.append(
            f"close_time: warehouse {from_us(candle['close_time']).isoformat()} "
            f"!= exchange {from_us(int(kline[6])).isoformat()}"
        )
    return "; ".join(differences)


class CandleAuditor:
    """Audits one warehouse (through its ``execute`` and dialect) against one exchange."""

    def __init__(
        self, execute: Execute, dialect: Dialect, exchange: BinanceClient, limit: int = MAX_BUCKETS_PER_AUDIT
    ) -> None:
        self.execute = execute
        self.dialect = dialect
        self.exchange = exchange
        self.limit = limit

    def audit(
        self, symbols: Iterable[str], start_us: int, end_us: int, now_us: int, intervals: Sequence[str] = INTERVAL_NAMES
    ) -> AuditResult:
        """Audit the closed, complete buckets of [start_us, end_us), closed by ``now_us``, not audited before."""
        ensure_audit_table(self.execute, self.dialect)
        result = AuditResult()
        for symbol in symbols:
            for interval in intervals:
                result.buckets.extend(self._audit_series(symbol, interval, start_us, min(end_us, now_us)))
        return result

    def _audit_series(self, symbol: str, interval: str, start_us: int, closed_by_us: int) -> list[BucketAudit]:
        width = BY_NAME[interval].length_us
        first = -(-start_us // width) * width  # the first bucket opening at or after the start (UTC aligned)
        last = (closed_by_us // width) * width - width  # the last bucket whose close is by then
        if last < first:
            return []
        candles = self._candles(symbol, interval, first, last)
        if not candles:
            return []
        klines = self._klines(symbol, interval, sorted(candles))
        audited = []
        for open_us, candle in sorted(candles.items()):
            kline = klines.get(open_us)
            if kline is None:
                audited.append(BucketAudit(symbol, interval, open_us, MISSING, "the exchange has no kline for it"))
                continue
            differences = compare(kline, candle)
            audited.append(BucketAudit(symbol, interval, open_us, MISMATCH if differences else MATCH, differences))
        self._record(audited)
        return audited

    def _klines(self, symbol: str, interval: str, opens: list[int]) -> dict[int, list[Any]]:
        """The exchange's klines of the buckets opening at ``opens`` (sorted), up to 1000 per request:
        a run of consecutive buckets costs one request per 1000, a lone bucket one."""
        width = BY_NAME[interval].length_us
        wanted, found = set(opens), {}
        index = 0
        while index < len(opens):
            start = opens[index]
            end = min(opens[-1], start + (MAX_LIMIT - 1) * width)
            page = self.exchange.klines(
                symbol, BY_NAME[interval].binance, start_time_us=start, end_time_us=end, limit=MAX_LIMIT
            )
            found.update({int(row[0]): row for row in page if int(row[0]) in wanted})
            while index < len(opens) and opens[index] <= end:
                index += 1
        return found

    def _candles(self, symbol: str, interval: str, first_us: int, last_us: int) -> dict[int, dict[str, Any]]:
        """The closed, complete candles opening in [first_us, last_us] not audited yet, oldest first,
        at most ``limit``."""
        p, ts = self.dialect.placeholder, self.dialect.timestamp_type
        columns = ", ".join(f"candles.{name}" for name in AUDITED_COLUMNS)
        rows = self.execute(
            f"select {columns} from marts.candles_{interval} as candles "
            "left join marts.candle_audit as audited on audited.symbol = candles.symbol "
            f"and audited.interval = {p} and audited.open_time = candles.open_time "
            f"where candles.symbol = {p} and candles.is_closed and candles.is_complete and audited.symbol is null "
            f"and candles.open_time between cast({p} as {ts}) and cast({p} as {ts}) "
            f"order by candles.open_time limit {int(self.limit)}",
            [interval, symbol, from_us(first_us).isoformat(), from_us(last_us).isoformat()],
        )
        candles = {}
        for row in rows:
            candle = dict(zip(AUDITED_COLUMNS, row, strict=True))
            candle["close_time"] = to_us(candle["close_time"])
            candles[to_us(candle["open_time"])] = candle
        return candles

    def _record(self, audited: list[BucketAudit]) -> None:
        if not audited:
            return
        audited_at = _now(self.execute)
        p, ts = self.dialect.placeholder, self.dialect.timestamp_type
        values = f"({p}, {p}, cast({p} as {ts}), {p}, {p}, cast({p} as {ts}))"

        def insert() -> None:
            for chunk in row_chunks(audited):
                self.execute(
                    "insert into marts.candle_audit (symbol, interval, open_time, status, differences, audited_at) "
                    "values " + ", ".join([values] * len(chunk)),
                    [
                        value
                        for bucket in chunk
                        for value in (
                            bucket.symbol,
                            bucket.interval,
                            from_us(bucket.open_time_us).isoformat(),
                            bucket.status,
                            bucket.differences,
                            audited_at,
                        )
                    ],
                )

        in_transaction(self.execute, self.dialect, insert)


def _now(execute: Execute) -> str:
    """The warehouse's clock, as ISO text (both connectors bind text the same way)."""
    moment = execute("select current_timestamp")[0][0]
    assert isinstance(moment, datetime)
    return moment.isoformat()


def audit_closed_candles(execute: Execute, dialect: Dialect, exchange: BinanceClient) -> AuditResult:
    """The scheduled audit: every symbol in the marts, every bucket closed and complete, not audited yet.

    A bucket is compared once the warehouse knows it whole (``is_complete``): by trade id, a stream
    alone can tell a minute whole (the ids before and after it are consecutive), and a gap leaves the
    buckets it touches out until it is filled, whoever fills it (the live gap fill, the hourly repair).
    A mismatch is then a real difference.
    """
    symbols = [row[0] for row in execute("select distinct symbol from marts.candles_1m order by symbol")]
    now_us = exchange.server_time_us()
    return CandleAuditor(execute, dialect, exchange).audit(symbols, 0, now_us, now_us)
