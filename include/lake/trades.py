"""The raw trade contract in the lake: schema, deterministic keys, and Parquet in and out.

One row per exchange trade (docs/architecture.md, "Data contract"). Prices and quantities are decimal(38, 8) built
straight from integer 1e-8 units, so no value passes through a float. ``quote_quantity`` is
price x quantity exactly, which can need up to 16 decimals (e.g. ETHBTC), hence decimal(38, 16).
A symbol's file never spans two hours, and its key is derived from its content, so writing the same
trades twice writes the same object.

The stream writes a *batch* per flush instead (``batch_object``): every symbol of its shard in one
object, a row group per symbol, so a reader of one symbol decodes only that symbol's rows. The hourly
split (include/lake/split.py) turns a closed hour's batches into files per symbol-hour. Readers of a
symbol (``trade_keys``, ``read_trades``, ``read_symbol_rows``) see both, so nothing depends on whether
the split has run yet.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from include.lake.keys import (
    BATCH_PREFIX,
    EXCHANGE,
    batch_key,
    batch_times_of_key,
    hour_of_key,
    hour_prefix,
    symbol_prefix,
    trade_key,
)
from include.timeutil import HOUR_US, hour_start_us

PRICE = pa.decimal128(38, 8)
QUOTE = pa.decimal128(38, 16)
SOURCES = ("stream", "backfill", "replay")
READ_ATTEMPTS = 3  # listings a reader makes when files vanish under it (compaction, the split)
T = TypeVar("T")
TRADE_SCHEMA = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("trade_id", pa.int64(), nullable=False),
        pa.field("price", PRICE, nullable=False),
        pa.field("quantity", PRICE, nullable=False),
        pa.field("quote_quantity", QUOTE, nullable=False),
        pa.field("trade_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("is_buyer_maker", pa.bool_(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


def decimal_array(units: np.ndarray, dtype: pa.Decimal128Type) -> pa.Array:
    """A decimal128 array whose unscaled values are ``units`` (int64), exactly, with no arithmetic.

    decimal128 stores a 16-byte little-endian two's complement integer per value: the low half is
    the int64 itself and the high half its sign extension.
    """
    units = np.ascontiguousarray(units, dtype=np.int64)
    words = np.empty((len(units), 2), dtype=np.int64)
    words[:, 0] = units
    words[:, 1] = units >> 63
    return pa.Array.from_buffers(dtype, len(units), [None, pa.py_buffer(words.tobytes())])


def scaled_product(left: pa.Array, right: pa.Array) -> pa.Array:
    """price x quantity as decimal(38, 16): exact, since 8 + 8 decimals fit 16."""
    product = pc.multiply(left.cast(pa.decimal128(18, 8)), right.cast(pa.decimal128(18, 8)))
    return product.cast(QUOTE)


@dataclass(frozen=True)
class TradeColumns:
    """Trades of one symbol as columns; prices and quantities in 1e-8 units, times in µs."""

    symbol: str
    trade_id: np.ndarray
    price: np.ndarray
    quantity: np.ndarray
    trade_time_us: np.ndarray
    is_buyer_maker: np.ndarray

    def __len__(self) -> int:
        return len(self.trade_id)

    def take(self, index: np.ndarray) -> TradeColumns:
        return TradeColumns(
            self.symbol,
            self.trade_id[index],
            self.price[index],
            self.quantity[index],
            self.trade_time_us[index],
            self.is_buyer_maker[index],
        )


_COLUMN_ARRAYS = ("trade_id", "price", "quantity", "trade_time_us", "is_buyer_maker")


def to_table(columns: TradeColumns, source: str, ingested_at_us: int) -> pa.Table:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    n = len(columns)
    price = decimal_array(columns.price, PRICE)
    quantity = decimal_array(columns.quantity, PRICE)
    return pa.Table.from_arrays(
        [
            pa.array([EXCHANGE] * n, pa.string()),
            pa.array([columns.symbol] * n, pa.string()),
            pa.array(columns.trade_id, pa.int64()),
            price,
            quantity,
            scaled_product(price, quantity),
            pa.array(columns.trade_time_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(columns.is_buyer_maker, pa.bool_()),
            pa.array([source] * n, pa.string()),
            pa.array(np.full(n, ingested_at_us, dtype=np.int64)).cast(pa.timestamp("us", tz="UTC")),
        ],
        schema=TRADE_SCHEMA,
    )


def split_by_hour(columns: TradeColumns) -> list[tuple[int, TradeColumns]]:
    """The trades grouped by the UTC hour of their trade time, each group sorted by trade id."""
    hours = columns.trade_time_us // HOUR_US
    if len(hours) and hours.min() == hours.max() and bool(np.all(columns.trade_id[1:] > columns.trade_id[:-1])):
        return [(int(hours[0]) * HOUR_US, columns)]  # the usual micro-batch: one hour, in id order
    groups = []
    for hour in np.unique(hours):
        index = np.flatnonzero(hours == hour)
        part = columns.take(index)
        groups.append((int(hour) * HOUR_US, part.take(np.argsort(part.trade_id, kind="stable"))))
    return groups


_PARQUET_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    # Dictionaries only where values repeat; ids and times are near-sequential, which delta
    # encoding stores in a few bits each. Both halve the write cost and the size.
    "use_dictionary": ["exchange", "symbol", "source"],
    "column_encoding": {"trade_id": "DELTA_BINARY_PACKED", "trade_time": "DELTA_BINARY_PACKED"},
}


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **_PARQUET_OPTIONS)  # type: ignore[arg-type]
    return sink.getvalue()


def batch_bytes(tables: Sequence[pa.Table]) -> bytes:
    """One Parquet object, each table a row group of its own (a symbol's rows: its statistics let a
    reader of one symbol skip the others)."""
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, TRADE_SCHEMA, **_PARQUET_OPTIONS) as writer:  # type: ignore[arg-type]
        for table in tables:
            writer.write_table(table, row_group_size=max(len(table), 1))
    return sink.getvalue()


def trade_objects(columns: TradeColumns, source: str, ingested_at_us: int) -> list[tuple[str, bytes]]:
    """Trades as Parquet objects, one per hour, under deterministic keys: (key, bytes) pairs."""
    objects = []
    for hour_start, part in split_by_hour(columns):
        if len(part):
            key = trade_key(part.symbol, hour_start, source, int(part.trade_id[0]), int(part.trade_id[-1]))
            objects.append((key, parquet_bytes(to_table(part, source, ingested_at_us))))
    return objects


def batch_object(
    parts: Sequence[TradeColumns], source: str, ingested_at_us: int, writer: str, flushed_us: int
) -> tuple[str, bytes] | None:
    """A flush's trades of every symbol as one object (``keys.batch_key``): sorted by symbol then id,
    a row group per symbol. None when there is no trade."""
    by_symbol: dict[str, list[TradeColumns]] = {}
    for part in parts:
        if len(part):
            by_symbol.setdefault(part.symbol, []).append(part)
    if not by_symbol:
        return None
    tables = []
    for symbol in sorted(by_symbol):
        merged = concat_columns(by_symbol[symbol])
        tables.append(to_table(merged.take(np.argsort(merged.trade_id, kind="stable")), source, ingested_at_us))
    first = min(int(part.trade_time_us.min()) for group in by_symbol.values() for part in group)
    last = max(int(part.trade_time_us.max()) for group in by_symbol.values() for part in group)
    return batch_key(writer, first, last, flushed_us), batch_bytes(tables)


def concat_columns(parts: Sequence[TradeColumns]) -> TradeColumns:
    """Trades of one symbol from several parts, as one (in the parts' order)."""
    if len(parts) == 1:
        return parts[0]
    return TradeColumns(
        parts[0].symbol,
        *(np.concatenate([getattr(part, name) for part in parts]) for name in _COLUMN_ARRAYS),
    )


def write_trades(lake: object, columns: TradeColumns, source: str, ingested_at_us: int) -> list[str]:
    """Write trades as one Parquet object per hour under deterministic keys; the keys written."""
    objects = trade_objects(columns, source, ingested_at_us)
    for key, data in objects:
        lake.put(key, data)  # type: ignore[attr-defined]
    return [key for key, _ in objects]


def read_table(data: bytes, columns: Sequence[str] | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(data), columns=list(columns) if columns else None)


def batch_keys(lake: object, start_us: int | None = None, end_us: int | None = None) -> list[str]:
    """Keys of the stream batches whose trade times overlap [start_us, end_us), in time order.

    The batches not split yet are a few hours' flushes at most, so they are listed whole and picked
    by the times in their names."""
    keys = []
    for info in lake.list(BATCH_PREFIX):  # type: ignore[attr-defined]
        times = batch_times_of_key(info.key)
        if times is None:
            continue
        if (start_us is None or times[1] >= start_us) and (end_us is None or times[0] < end_us):
            keys.append(info.key)
    return keys


def read_symbol_rows(lake: object, key: str, symbol: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A trade file's rows of one symbol: a batch's row groups of that symbol, or a symbol's whole file."""
    data = lake.get(key)  # type: ignore[attr-defined]
    if batch_times_of_key(key) is None:
        return read_table(data, columns)
    return pq.read_table(
        io.BytesIO(data), columns=list(columns) if columns else None, filters=[("symbol", "=", symbol)]
    )


def trade_keys(lake: object, symbol: str, start_us: int | None = None, end_us: int | None = None) -> list[str]:
    """Keys of the symbol's trade files whose hour overlaps [start_us, end_us), then of the stream
    batches not split yet whose times overlap it (they hold other symbols too: ``read_symbol_rows``).

    A bounded range lists only its hour partitions: a month holds thousands of them. The batches are
    listed first: the split writes a symbol's file before it deletes the batches, so whatever left the
    batch listing by the time the symbol's partitions are listed is in a file listed there."""
    batches = batch_keys(lake, start_us, end_us)
    return _symbol_file_keys(lake, symbol, start_us, end_us) + batches


def _symbol_file_keys(lake: object, symbol: str, start_us: int | None, end_us: int | None) -> list[str]:
    if start_us is not None and end_us is not None:
        hours = range(hour_start_us(start_us), end_us, HOUR_US)
        listed = (info for hour in hours for info in lake.list(hour_prefix(symbol, hour)))  # type: ignore[attr-defined]
        return [info.key for info in listed if info.key.endswith(".parquet")]
    keys = []
    for info in lake.list(symbol_prefix(symbol)):  # type: ignore[attr-defined]
        if not info.key.endswith(".parquet"):
            continue
        hour = hour_of_key(info.key)
        if (start_us is None or hour + HOUR_US > start_us) and (end_us is None or hour < end_us):
            keys.append(info.key)
    return keys


def read_again_if_vanished(read: Callable[[], T]) -> T:
    """``read()``, listing and reading again (``READ_ATTEMPTS`` in all) when a file listed is gone
    before it is read: it was compacted or split, and the files that replaced it were written before
    it was deleted, so a new listing finds them."""
    for _ in range(READ_ATTEMPTS - 1):
        try:
            return read()
        except FileNotFoundError:
            continue
    return read()


def read_trades(lake: object, symbol: str, start_us: int | None = None, end_us: int | None = None) -> pa.Table:
    """Every row of the symbol's trade files in [start_us, end_us), as stored (duplicates included)."""
    return read_again_if_vanished(lambda: _read_trades(lake, symbol, start_us, end_us))


def _read_trades(lake: object, symbol: str, start_us: int | None, end_us: int | None) -> pa.Table:
    tables = [read_symbol_rows(lake, key, symbol) for key in trade_keys(lake, symbol, start_us, end_us)]
    if not tables:
        return TRADE_SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    times = pc.cast(table["trade_time"], pa.int64())
    mask = np.ones(len(table), dtype=bool)
    if start_us is not None:
        mask &= times.to_numpy() >= start_us
    if end_us is not None:
        mask &= times.to_numpy() < end_us
    return table.filter(pa.array(mask))


def read_trade_ids(lake: object, symbol: str, start_us: int | None = None, end_us: int | None = None) -> np.ndarray:
    """Sorted unique trade ids in the lake for a symbol and time range, from every source."""
    table = read_trades(lake, symbol, start_us, end_us)
    return np.unique(table["trade_id"].to_numpy())
