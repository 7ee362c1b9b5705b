"""The candle marts in tests: a warehouse to transform, its marts read back, the exchange's klines."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from include.config import load_settings
from include.lake.store import ObjectStore
from include.timeutil import to_us
from include.transform import TransformResult, transform
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake
from tests.support.net import MICRO, http_get

INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}  # seconds
CANDLE_COLUMNS = (
    "symbol, open_time, close_time, open, high, low, close, volume, quote_volume, "
    "taker_buy_volume, taker_buy_quote_volume, trade_count, is_closed"
)


def load(lake: ObjectStore, path: Path) -> None:
    """Load the lake's new files into the DuckDB warehouse at ``path`` (closed again after)."""
    with DuckDBWarehouse(path) as warehouse:
        load_lake(lake, warehouse, full=True)  # a reconcile: files written without a marker too


def build(path: Path, target_dir: Path, full_refresh: bool = False, select: tuple[str, ...] = ()) -> TransformResult:
    """``dbt build`` on the DuckDB file ``path``; ``target_dir`` keeps dbt's artifacts for partial parsing."""
    settings = load_settings({"DUCKDB_PATH": str(path), "WAREHOUSE": "duckdb"})
    return transform(settings, full_refresh=full_refresh, select=select, target_dir=target_dir)


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


def candles(path: Path, interval: str) -> dict[tuple[str, int], tuple]:
    """The rows of ``marts.candles_<interval>`` by (symbol, open time in µs)."""
    rows = query(path, f"select {CANDLE_COLUMNS} from marts.candles_{interval}")
    return {(row[0], to_us(row[1])): row for row in rows}


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


def kline_differences(candle: tuple, kline: list[Any]) -> list[str]:
    """The fields in which a mart candle differs from the exchange's kline (µs times), as text."""
    _, open_time, close_time, *values, trade_count, _ = candle
    ours = {
        "open_time": to_us(open_time),
        "close_time_ms": to_us(close_time) // 1000,
        "open": values[0],
        "high": values[1],
        "low": values[2],
        "close": values[3],
        "volume": values[4],
        "quote_volume": values[5],
        "taker_buy_volume": values[6],
        "taker_buy_quote_volume": values[7],
        "trade_count": trade_count,
    }
    theirs = {
        "open_time": kline[0],
        "close_time_ms": kline[6] // 1000,
        "open": Decimal(kline[1]),
        "high": Decimal(kline[2]),
        "low": Decimal(kline[3]),
        "close": Decimal(kline[4]),
        "volume": Decimal(kline[5]),
        "quote_volume": Decimal(kline[7]),
        "taker_buy_volume": Decimal(kline[9]),
        "taker_buy_quote_volume": Decimal(kline[10]),
        "trade_count": kline[8],
    }
    assert all(isinstance(value, Decimal) for value in values), "prices and volumes must be exact decimals"
    return [f"{name}: {ours[name]} != {theirs[name]}" for name in ours if ours[name] != theirs[name]]


def assert_closed_candles_are_klines(path: Path, rest_url: str, symbols: tuple[str, ...]) -> dict[str, int]:
    """Every closed candle of every mart equals the exchange's kline, field by field; closed ones per interval."""
    compared: dict[str, int] = {}
    for interval in INTERVALS:
        closed = {key: row for key, row in candles(path, interval).items() if row[-1]}
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
