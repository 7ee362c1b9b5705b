"""The candle marts in tests: a warehouse to transform, its marts read back, the exchange's klines."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from include.config import load_settings
from include.lake.store import ObjectStore
from include.timeutil import to_us
from include.transform import NIGHTLY_TAG, PER_BATCH_EXCLUDE, TransformResult, transform
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake
from include.warehouse.snapshot import CANDLE_TABLE_COLUMNS as MART_COLUMNS
from tests.support.net import MICRO, http_get

INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}  # seconds


class Candle(NamedTuple):
    """A mart row, every column but built_at (when the build that computed it ran: a full refresh and
    an incremental build of the same data differ in it, and only in it)."""

    symbol: str
    open_time: Any
    close_time: Any
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal | None
    volume: Decimal
    quote_volume: Decimal
    taker_buy_volume: Decimal
    taker_buy_quote_volume: Decimal
    trade_count: int
    first_trade_id: int | None
    last_trade_id: int | None
    last_trade_time: Any
    is_closed: bool
    is_complete: bool
    last_loaded_at: Any


assert Candle._fields == tuple(name for name, _ in MART_COLUMNS if name != "built_at")
CANDLE_COLUMNS = ", ".join(Candle._fields)  # the select list of a Candle
DECIMAL_FIELDS = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)


def load(lake: ObjectStore, path: Path) -> None:
    """Load the lake's new files into the DuckDB warehouse at ``path`` (closed again after)."""
    with DuckDBWarehouse(path) as warehouse:
        load_lake(lake, warehouse, full=True)  # a reconcile: files written without a marker too


def build(
    path: Path, target_dir: Path, full_refresh: bool = False, select: tuple[str, ...] = (), per_batch: bool = False
) -> TransformResult:
    """``dbt build`` on the DuckDB file ``path``; ``target_dir`` keeps dbt's artifacts for partial parsing.
    ``per_batch``: as the warehouse DAG builds after a micro-batch, without the tests tagged nightly."""
    settings = load_settings({"DUCKDB_PATH": str(path), "WAREHOUSE": "duckdb"})
    exclude = PER_BATCH_EXCLUDE if per_batch else ()
    return transform(settings, full_refresh=full_refresh, select=select, target_dir=target_dir, exclude=exclude)


def run_tests(path: Path, target_dir: Path, nightly: bool) -> TransformResult:
    """``dbt test`` on the DuckDB file ``path``, nothing built: the tests tagged nightly, as the nightly
    reconcile runs them (dags/warehouse.py, ``nightly_tests``), or the others, a per-batch build's."""
    settings = load_settings({"DUCKDB_PATH": str(path), "WAREHOUSE": "duckdb"})
    if nightly:
        return transform(settings, select=[f"tag:{NIGHTLY_TAG}"], target_dir=target_dir, command="test")
    return transform(settings, exclude=PER_BATCH_EXCLUDE, target_dir=target_dir, command="test")


def project_nodes(target_dir: Path) -> tuple[int, int]:
    """The numbers of models and of data tests in the dbt project, as ``dbt ls`` lists them."""
    from unittest import mock

    from dbt.cli.main import dbtRunner

    from include.transform import dbt_args

    unused = str(target_dir / "unused.duckdb")  # profiles.yml needs a path; ls opens no file
    settings = load_settings({"DUCKDB_PATH": unused, "WAREHOUSE": "duckdb"})
    counts = []
    for kind in ("model", "test"):
        args = [*dbt_args(settings, "ls", target_dir=target_dir), "--resource-type", kind, "--quiet"]
        with mock.patch.dict("os.environ", {"DUCKDB_PATH": unused}):
            outcome = dbtRunner().invoke(args)
        assert outcome.success, outcome.exception
        counts.append(len(outcome.result))
    return counts[0], counts[1]


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def candles(path: Path, interval: str) -> dict[tuple[str, int], Candle]:
    """The rows of ``marts.candles_<interval>`` by (symbol, open time in µs)."""
    rows = query(path, f"select {CANDLE_COLUMNS} from marts.candles_{interval}")
    return {(row[0], to_us(row[1])): Candle(*row) for row in rows}


def klines(rest_url: str, symbol: str, interval: str, start_us: int, end_us: int) -> dict[int, list[Any]]:
    """The exchange's klines opening in [start_us, end_us], by open time; times (parameters too) in µs."""
    found: dict[int, list[Any]] = {}
    cursor = start_us
    while cursor <= end_us:
        query = f"symbol={symbol}&interval={interval}&startTime={cursor}&endTime={end_us}&limit=1000"
        url = f"{rest_url}/api/v3/klines?{query}"
        status, _, page = http_get(url, MICRO)
        assert status == 200, (url, page)
        found.update({row[0]: row for row in page})
        if len(page) < 1000:
            break
        cursor = page[-1][0] + 1
    return found


# The kline's column of each decimal field (Binance's 12 columns).
KLINE_INDEX = dict(zip(DECIMAL_FIELDS, (1, 2, 3, 4, 5, 7, 9, 10), strict=True))


def kline_differences(candle: Candle, kline: list[Any]) -> list[str]:
    """The fields in which a mart candle differs from the exchange's kline (µs times), as text."""
    values = [getattr(candle, name) for name in DECIMAL_FIELDS]
    assert all(isinstance(value, Decimal) for value in values), "prices and volumes must be exact decimals"
    ours = {
        "open_time": to_us(candle.open_time),
        "close_time_ms": to_us(candle.close_time) // 1000,
        **dict(zip(DECIMAL_FIELDS, values, strict=True)),
        "trade_count": candle.trade_count,
    }
    theirs = {
        "open_time": kline[0],
        "close_time_ms": kline[6] // 1000,
        **{name: Decimal(kline[index]) for name, index in KLINE_INDEX.items()},
        "trade_count": kline[8],
    }
    return [f"{name}: {ours[name]} != {theirs[name]}" for name in ours if ours[name] != theirs[name]]


def assert_closed_candles_are_klines(
    path: Path, rest_url: str, symbols: tuple[str, ...], all_complete: bool = False
) -> dict[str, int]:
    """Every closed, complete candle of every mart equals the exchange's kline, field by field; the
    numbers compared per interval. An incomplete candle is not compared (what it lacks is not known);
    ``all_complete``: where every gap was repaired, every closed candle must be complete (so that the
    comparison cannot pass by skipping them), but a larger one that starts before the symbol's first
    minute (which no trade id can tell whole)."""
    compared: dict[str, int] = {}
    first_minute: dict[str, int] = {}
    for symbol, open_us in candles(path, "1m"):
        first_minute[symbol] = min(open_us, first_minute.get(symbol, open_us))
    for interval in INTERVALS:
        closed = {key: row for key, row in candles(path, interval).items() if row.is_closed}
        incomplete = sorted(
            (symbol, open_us)
            for (symbol, open_us), row in closed.items()
            if not row.is_complete and open_us >= first_minute[symbol]
        )
        assert not (all_complete and incomplete), f"{interval}: closed candles not complete: {incomplete[:5]}"
        closed = {key: row for key, row in closed.items() if row.is_complete}
        compared[interval] = len(closed)
        for symbol in symbols:
            opens = [open_us for sym, open_us in closed if sym == symbol]
            if not opens:
                continue
            exchange = klines(rest_url, symbol, interval, min(opens), max(opens))
            for open_us in opens:
                assert open_us in exchange, f"{symbol} {interval} {open_us}: no such kline"
                differences = kline_differences(closed[(symbol, open_us)], exchange[open_us])
                assert not differences, f"{symbol} {interval} candle at {open_us}: {differences}"
    return compared
