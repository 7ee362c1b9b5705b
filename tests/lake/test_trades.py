"""The raw trade contract: exact decimals, one file per hour, deterministic keys, Parquet in and out."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal, localcontext

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.lake.keys import BATCH_PREFIX
from include.lake.split import split_batches
from include.lake.store import LocalStore, open_lake
from include.lake.trades import (
    PRICE,
    QUOTE,
    TRADE_SCHEMA,
    TradeColumns,
    batch_object,
    decimal_array,
    read_table,
    read_trade_ids,
    read_trades,
    split_by_hour,
    to_table,
    trade_key,
    trade_keys,
    write_trades,
)
from include.timeutil import to_us
from tests.support.trades import SplitAfterFirstListing

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def at(hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> int:
    return to_us(datetime(2026, 11, 24, hour, minute, second, micro, tzinfo=UTC))


def dec(units: int, scale: int = 8) -> Decimal:
    """The exact decimal of integer units, built from text."""
    return Decimal(f"{units}E-{scale}")


def units_of(text: str) -> int:
    return int(Decimal(text).scaleb(8))


def columns(symbol: str, rows: list[tuple[int, str, str, int, bool]]) -> TradeColumns:
    """Rows of (trade_id, price text, quantity text, trade time µs, is_buyer_maker)."""
    return TradeColumns(
        symbol,
        np.array([row[0] for row in rows], dtype=np.int64),
        np.array([units_of(row[1]) for row in rows], dtype=np.int64),
        np.array([units_of(row[2]) for row in rows], dtype=np.int64),
        np.array([row[3] for row in rows], dtype=np.int64),
        np.array([row[4] for row in rows], dtype=np.bool_),
    )


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "lake")
    return open_lake(request.getfixturevalue("moto_s3").url("lake"))


# --- exact decimals --------------------------------------------------------------------------------

EDGE_UNITS = [
    0,
    1,
    -1,
    99_999_999,
    100_000_000,
    -100_000_000,
    6_075_960_000_000,  # "60759.60000000"
    10**18 - 1,  # the largest value the parser lets through: 9999999999.99999999
    2**62 + 12345,
    INT64_MAX,  # 92233720368.54775807
    INT64_MIN,  # -92233720368.54775808
    INT64_MIN + 1,
    -(10**18) + 7,
]


def test_decimal_array_holds_exact_values():
    array = decimal_array(np.array(EDGE_UNITS, dtype=np.int64), PRICE)
    array.validate(full=True)
    assert array.type == pa.decimal128(38, 8)
    assert array.null_count == 0
    values = array.to_pylist()
    assert values == [dec(units) for units in EDGE_UNITS]
    # the text form too, so that no rounding hides behind Decimal equality
    assert str(values[EDGE_UNITS.index(INT64_MAX)]) == "92233720368.54775807"
    assert str(values[EDGE_UNITS.index(INT64_MIN)]) == "-92233720368.54775808"
    assert values[EDGE_UNITS.index(-1)] == Decimal("-0.00000001")


def test_decimal_array_agrees_with_pyarrow_from_decimals():
    """The buffer trick builds the same array pyarrow builds from Python Decimals."""
    expected = pa.array([dec(units) for units in EDGE_UNITS], PRICE)
    assert decimal_array(np.array(EDGE_UNITS, dtype=np.int64), PRICE).equals(expected)


def test_decimal_array_from_a_strided_view_and_other_scales():
    units = np.array(EDGE_UNITS * 2, dtype=np.int64)[::2]  # not contiguous
    array = decimal_array(units, QUOTE)
    assert array.type == pa.decimal128(38, 16)
    assert array.to_pylist() == [dec(int(value), 16) for value in units]


def test_decimal_array_random_values_round_trip_through_parquet():
    rng = np.random.default_rng(7)
    units = rng.integers(INT64_MIN, INT64_MAX, size=2000, dtype=np.int64, endpoint=True)
    table = pa.table({"price": decimal_array(units, PRICE)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    back = pq.read_table(io.BytesIO(sink.getvalue()))["price"].to_pylist()
    assert back == [dec(int(value)) for value in units]


QUOTE_CASES = [
    ("60759.60000000", "0.00100000"),
    ("0.00000001", "0.00000001"),  # smallest: 1e-16, needs all 16 decimals
    ("0.05123456", "1.23456789"),  # ETHBTC-like
    ("9999999999.99999999", "9999999999.99999999"),  # largest the parser lets through
    ("4149.74000000", "0.43870000"),
    ("1.00000000", "123456.78901234"),
    ("0.33333333", "3.00000000"),
]


def test_quote_quantity_is_the_exact_product():
    rows = [(index + 1, p, q, at(13), False) for index, (p, q) in enumerate(QUOTE_CASES)]
    table = to_table(columns("BTCUSDT", rows), "stream", at(14))
    with localcontext() as context:
        context.prec = 80
        expected = [Decimal(p) * Decimal(q) for p, q in QUOTE_CASES]
    assert table.schema.field("quote_quantity").type == pa.decimal128(38, 16)
    assert table["quote_quantity"].to_pylist() == expected
    assert table["price"].to_pylist() == [Decimal(p) for p, _ in QUOTE_CASES]
    assert table["quantity"].to_pylist() == [Decimal(q) for _, q in QUOTE_CASES]
    assert table["quote_quantity"][1].as_py() == Decimal("0.0000000000000001")
    assert str(table["quote_quantity"][3].as_py()) == "99999999999999999800.0000000000000001"


def test_to_table_follows_the_contract():
    rows = [(7, "60759.60000000", "0.00100000", at(13, 5, 1, 123456), True)]
    table = to_table(columns("BTCUSDT", rows), "backfill", at(14, 0, 0, 42))
    assert table.schema.equals(TRADE_SCHEMA)
    row = table.to_pylist()[0]
    assert row == {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "trade_id": 7,
        "price": Decimal("60759.60000000"),
        "quantity": Decimal("0.00100000"),
        "quote_quantity": Decimal("60.75960000"),
        "trade_time": datetime(2026, 11, 24, 13, 5, 1, 123456, tzinfo=UTC),
        "is_buyer_maker": True,
        "source": "backfill",
        "ingested_at": datetime(2026, 11, 24, 14, 0, 0, 42, tzinfo=UTC),
    }
    # no float anywhere in the contract
    assert not any(pa.types.is_floating(field.type) for field in table.schema)


def test_to_table_refuses_an_unknown_source():
    with pytest.raises(ValueError, match="unknown source"):
        to_table(columns("BTCUSDT", [(1, "1", "1", at(13), False)]), "live", at(13))


# --- keys and hours --------------------------------------------------------------------------------


def test_trade_key_layout():
    assert (
        trade_key("BTCUSDT", at(13), "stream", 4_123_456_789, 4_123_460_000)
        == "trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=13/stream-4123456789-4123460000.parquet"
    )
    midnight = to_us(datetime(2027, 1, 1, tzinfo=UTC))
    assert (
        trade_key("ETHBTC", midnight, "replay", 1, 1)
        == "trades/exchange=binance/symbol=ETHBTC/date=2027-01-01/hour=00/replay-1-1.parquet"
    )


def test_split_by_hour_never_spans_an_hour_and_sorts_by_id():
    rows = [
        (105, "3", "1", at(13, 0, 0, 0), False),
        (101, "1", "1", at(12, 0, 0, 0), False),
        (104, "2", "1", at(12, 59, 59, 999_999), True),
        (103, "4", "1", at(12, 30), False),
        (106, "5", "1", at(13, 59, 59, 999_999), True),
    ]
    groups = split_by_hour(columns("BTCUSDT", rows))
    assert [hour for hour, _ in groups] == [at(12), at(13)]
    twelve, thirteen = groups[0][1], groups[1][1]
    assert twelve.trade_id.tolist() == [101, 103, 104]
    assert thirteen.trade_id.tolist() == [105, 106]
    # the other columns move with their ids
    assert twelve.price.tolist() == [units_of("1"), units_of("4"), units_of("2")]
    assert twelve.is_buyer_maker.tolist() == [False, False, True]
    assert thirteen.trade_time_us.tolist() == [at(13), at(13, 59, 59, 999_999)]
    assert twelve.symbol == thirteen.symbol == "BTCUSDT"


def test_write_trades_one_key_per_hour_at_the_boundary(tmp_path):
    lake = LocalStore(tmp_path)
    rows = [
        (11, "100.5", "2", at(12, 59, 59, 999_999), False),
        (12, "100.6", "3", at(13, 0, 0, 0), True),
    ]
    keys = write_trades(lake, columns("BTCUSDT", rows), "stream", at(13, 1))
    assert keys == [
        "trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=12/stream-11-11.parquet",
        "trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=13/stream-12-12.parquet",
    ]
    assert [info.key for info in lake.list()] == keys
    first = read_table(lake.get(keys[0]))
    assert first["trade_id"].to_pylist() == [11]
    assert first["trade_time"].to_pylist() == [datetime(2026, 11, 24, 12, 59, 59, 999_999, tzinfo=UTC)]
    second = read_table(lake.get(keys[1]))
    assert second["trade_id"].to_pylist() == [12]
    assert second["price"].to_pylist() == [Decimal("100.6")]


def test_writing_the_same_trades_twice_writes_the_same_objects(tmp_path):
    lake = LocalStore(tmp_path)
    rows = [(i, f"{i}.5", "0.001", at(12, 59) + i * 1_000_000, i % 2 == 0) for i in range(1, 200)]
    first = write_trades(lake, columns("ETHUSDT", rows), "stream", at(14))
    contents = {key: lake.get(key) for key in first}
    second = write_trades(lake, columns("ETHUSDT", list(reversed(rows))), "stream", at(14))
    assert second == first
    assert [info.key for info in lake.list()] == sorted(first)
    assert {key: lake.get(key) for key in first} == contents  # byte for byte
    third = write_trades(lake, columns("ETHUSDT", rows), "stream", at(15))  # later ingestion time
    assert third == first
    assert len(list(lake.list())) == len(first)


def test_parquet_has_the_contract_schema_and_zstd(tmp_path):
    lake = LocalStore(tmp_path)
    rows = [(i, "60759.6", "0.00012", at(13, 0, i), False) for i in range(1, 50)]
    (key,) = write_trades(lake, columns("BTCUSDT", rows), "stream", at(13, 5))
    parquet = pq.ParquetFile(io.BytesIO(lake.get(key)))
    assert parquet.schema_arrow.equals(TRADE_SCHEMA)
    # spelled out independently of TRADE_SCHEMA: the columns of docs/architecture.md, "Data contract"
    expected = [
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("trade_id", pa.int64()),
        ("price", pa.decimal128(38, 8)),
        ("quantity", pa.decimal128(38, 8)),
        ("quote_quantity", pa.decimal128(38, 16)),
        ("trade_time", pa.timestamp("us", tz="UTC")),
        ("is_buyer_maker", pa.bool_()),
        ("source", pa.string()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
    assert [(field.name, field.type) for field in parquet.schema_arrow] == expected
    assert not any(field.nullable for field in parquet.schema_arrow)
    metadata = parquet.metadata
    assert metadata.num_rows == 49
    assert metadata.num_columns == len(expected)
    for group in range(metadata.num_row_groups):
        for column in range(metadata.num_columns):
            assert metadata.row_group(group).column(column).compression == "ZSTD"
    table = parquet.read()
    assert table["quote_quantity"].to_pylist() == [Decimal("60759.6") * Decimal("0.00012")] * 49


# --- reading back ------------------------------------------------------------------------------------

# (trade id, time) per hour 11, 12, 13 of the day, and a trade the next day
TIMES = {
    1: at(11, 0),
    2: at(11, 59, 59, 999_999),
    3: at(12, 0),
    4: at(12, 29, 59, 999_999),
    5: at(12, 30),
    6: at(12, 59, 59, 999_999),
    7: at(13, 0),
    8: at(13, 45),
    9: to_us(datetime(2026, 11, 25, 0, 15, tzinfo=UTC)),
}


def write_sample(lake) -> list[str]:
    rows = [(trade_id, "1.5", "2", time, False) for trade_id, time in TIMES.items()]
    keys = write_trades(lake, columns("BTCUSDT", rows), "stream", at(14))
    # another symbol whose name starts with the first: never part of BTCUSDT's reads
    write_trades(lake, columns("BTCUSDTX", rows), "stream", at(14))
    return keys


def test_trade_keys_by_time_range(lake):
    keys = write_sample(lake)
    hour11, hour12, hour13, next_day = keys
    assert trade_keys(lake, "BTCUSDT") == keys
    assert trade_keys(lake, "BTCUSDT", at(12, 30), at(13)) == [hour12]
    assert trade_keys(lake, "BTCUSDT", at(12, 30), at(13, 0, 0, 1)) == [hour12, hour13]
    assert trade_keys(lake, "BTCUSDT", at(11, 59, 59, 999_999), at(12)) == [hour11]
    assert trade_keys(lake, "BTCUSDT", start_us=at(13)) == [hour13, next_day]
    assert trade_keys(lake, "BTCUSDT", end_us=at(12)) == [hour11]
    assert trade_keys(lake, "BTCUSDT", at(14), at(23)) == []
    assert trade_keys(lake, "BTC") == []
    assert trade_keys(lake, "ETHUSDT") == []


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, None),
        (at(12, 30), at(13)),
        (at(12), at(12, 30)),
        (at(11, 59, 59, 999_999), at(13, 0, 0, 1)),
        (at(13), None),
        (None, at(12)),
        (at(14), at(15)),
    ],
)
def test_read_trade_ids_by_time_range(lake, start, end):
    write_sample(lake)
    expected = [
        trade_id for trade_id, time in TIMES.items() if (start is None or time >= start) and (end is None or time < end)
    ]
    ids = read_trade_ids(lake, "BTCUSDT", start, end)
    assert ids.dtype == np.int64
    assert ids.tolist() == expected


def test_read_trade_ids_are_unique_across_sources(tmp_path):
    lake = LocalStore(tmp_path)
    stream = [(i, "1", "1", at(13, 0, i), False) for i in (10, 11, 12, 14)]
    backfill = [(i, "1", "1", at(13, 0, i), False) for i in (11, 12, 13)]
    write_trades(lake, columns("BTCUSDT", stream), "stream", at(14))
    write_trades(lake, columns("BTCUSDT", backfill), "backfill", at(14))
    assert len(read_trades(lake, "BTCUSDT")) == 7  # as stored, duplicates included
    assert read_trade_ids(lake, "BTCUSDT").tolist() == [10, 11, 12, 13, 14]


def test_read_trades_of_an_unknown_symbol_is_empty_with_the_schema(tmp_path):
    table = read_trades(LocalStore(tmp_path), "BTCUSDT")
    assert len(table) == 0
    assert table.schema.equals(TRADE_SCHEMA)
    assert read_trade_ids(LocalStore(tmp_path), "BTCUSDT").tolist() == []


def write_sample_as_batches(lake) -> list[str]:
    """The sample's trades as a stream writes them: one batch per flush, BTCUSDTX's rows beside BTCUSDT's."""
    rows = [(trade_id, "1.5", "2", time, False) for trade_id, time in TIMES.items()]
    keys = []
    for flush, part in enumerate(([r for r in rows if r[0] <= 4], [r for r in rows if 4 < r[0] <= 7], rows[-2:])):
        key, data = batch_object(
            [columns("BTCUSDTX", part), columns("BTCUSDT", part)], "stream", at(14), "stream-w", at(14) + flush
        )
        lake.put(key, data)
        keys.append(key)
    return keys


def test_trade_keys_and_reads_see_the_stream_batches_not_split_yet(lake):
    first, second, third = write_sample_as_batches(lake)  # ids 1..4, 5..7, 8..9
    assert trade_keys(lake, "BTCUSDT") == [first, second, third]
    assert trade_keys(lake, "BTCUSDT", at(12, 30), at(13)) == [second]  # by the times in their names
    assert trade_keys(lake, "BTCUSDT", at(13, 0, 0, 1), at(13, 45)) == []
    assert trade_keys(lake, "BTCUSDT", at(13, 45)) == [third]
    for start, end in ((None, None), (at(12, 30), at(13)), (at(12), at(13, 45)), (at(13), None)):
        expected = [i for i, time in TIMES.items() if (start is None or time >= start) and (end is None or time < end)]
        table = read_trades(lake, "BTCUSDT", start, end)
        assert table["trade_id"].to_pylist() == expected
        assert set(table["symbol"].to_pylist()) <= {"BTCUSDT"}  # never the other symbol of the batch


class SplittingLake(LocalStore):
    """A lake whose first read of a stream batch comes after the hourly split deleted every batch."""

    split = False

    def get(self, key: str) -> bytes:
        if key.startswith(BATCH_PREFIX) and not self.split:
            self.split = True
            split_batches(self, at(23))
        return super().get(key)


def test_a_read_that_loses_its_batches_to_the_split_reads_the_split_files(tmp_path):
    lake = SplittingLake(tmp_path)
    write_sample_as_batches(lake)

    ids = read_trades(lake, "BTCUSDT")["trade_id"].to_pylist()

    assert lake.split
    assert list(lake.list(BATCH_PREFIX)) == []
    assert ids == list(TIMES)


def test_a_read_the_split_runs_under_between_its_listings_misses_no_row(tmp_path):
    lake = SplitAfterFirstListing(tmp_path, at(23))
    write_sample_as_batches(lake)

    ids = read_trades(lake, "BTCUSDT")["trade_id"].to_pylist()

    assert lake.split
    assert list(lake.list(BATCH_PREFIX)) == []
    assert ids == list(TIMES)
