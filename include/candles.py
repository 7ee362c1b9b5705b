"""What a candle is, defined once: the intervals the marts build, and the columns of a candle row.

Everything that needs either imports it from here: the audit, the dashboard's snapshot, queries and
view, the speed layer and the benchmarks. The dbt marts name their interval (``candles('5m')``) and
derive its length from the name; tests/test_candles.py checks that the marts dbt knows, and their
columns in ``_marts.yml``, are exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pyarrow as pa


@dataclass(frozen=True)
class Interval:
    """One candle interval: its name (the mart's suffix and the dashboard's key) and its length."""

    name: str
    length: timedelta
    binance: str  # Binance's interval string for /api/v3/klines (the same text for every interval here)

    @property
    def length_us(self) -> int:
        return self.length // timedelta(microseconds=1)

    @property
    def mart(self) -> str:
        """The dbt model (and table, in the ``marts`` schema) holding these candles."""
        return f"candles_{self.name}"


# Smallest first: 1m is built from the trades, every larger interval is rolled up from the 1m candles.
INTERVALS: tuple[Interval, ...] = (
    Interval("1m", timedelta(minutes=1), "1m"),
    Interval("5m", timedelta(minutes=5), "5m"),
    Interval("15m", timedelta(minutes=15), "15m"),
    Interval("1h", timedelta(hours=1), "1h"),
    Interval("4h", timedelta(hours=4), "4h"),
    Interval("1d", timedelta(days=1), "1d"),
)
INTERVAL_NAMES: tuple[str, ...] = tuple(interval.name for interval in INTERVALS)
BY_NAME: dict[str, Interval] = {interval.name: interval for interval in INTERVALS}
MINUTE = BY_NAME["1m"]


@dataclass(frozen=True)
class Column:
    """A column of the candle marts: its SQL type, its Arrow type, and where Binance's kline row has it."""

    name: str
    sql_type: str
    arrow_type: pa.DataType
    kline_index: int | None = None  # the field of a /api/v3/klines row holding the same figure

    @property
    def is_decimal(self) -> bool:
        return pa.types.is_decimal(self.arrow_type)


_TS, _TS_SQL = pa.timestamp("us", tz="UTC"), "timestamptz"
_PRICE, _PRICE_SQL = pa.decimal128(38, 8), "decimal(38, 8)"
_QUOTE, _QUOTE_SQL = pa.decimal128(38, 16), "decimal(38, 16)"  # a price times a quantity: 16 decimals
CANDLE_COLUMNS: tuple[Column, ...] = (
    Column("symbol", "varchar", pa.string()),
    Column("open_time", _TS_SQL, _TS, kline_index=0),
    Column("close_time", _TS_SQL, _TS, kline_index=6),
    Column("open", _PRICE_SQL, _PRICE, kline_index=1),
    Column("high", _PRICE_SQL, _PRICE, kline_index=2),
    Column("low", _PRICE_SQL, _PRICE, kline_index=3),
    Column("close", _PRICE_SQL, _PRICE, kline_index=4),
    Column("volume", _PRICE_SQL, _PRICE, kline_index=5),
    Column("quote_volume", _QUOTE_SQL, _QUOTE, kline_index=7),
    Column("taker_buy_volume", _PRICE_SQL, _PRICE, kline_index=9),
    Column("taker_buy_quote_volume", _QUOTE_SQL, _QUOTE, kline_index=10),
    Column("trade_count", "bigint", pa.int64(), kline_index=8),
    Column("first_trade_id", "bigint", pa.int64()),  # null for a bucket without a trade
    Column("last_trade_id", "bigint", pa.int64()),
    Column("last_trade_time", _TS_SQL, _TS),
    Column("is_closed", "boolean", pa.bool_()),
    Column("is_complete", "boolean", pa.bool_()),  # no trade id missing (docs/architecture.md, "The live edge")
    Column("last_loaded_at", _TS_SQL, _TS),
    Column("built_at", _TS_SQL, _TS),  # the dbt run that built the row; null on a row the speed layer made
)
CANDLE_COLUMN_NAMES: tuple[str, ...] = tuple(column.name for column in CANDLE_COLUMNS)
CANDLE_SCHEMA = pa.schema([(column.name, column.arrow_type) for column in CANDLE_COLUMNS])
DECIMAL_COLUMNS: tuple[str, ...] = tuple(column.name for column in CANDLE_COLUMNS if column.is_decimal)
# The figures a kline also has, compared by the audit: (column, index in the kline row).
KLINE_DECIMALS: tuple[tuple[str, int], ...] = tuple(
    (column.name, column.kline_index)
    for column in CANDLE_COLUMNS
    if column.is_decimal and column.kline_index is not None
)
