"""The load after compaction: a compacted file never loads a trade twice, and never loses one.

On each backend: DuckDB, and Snowflake's SQL through fakesnow (its stage on the same lake)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from snowflake.connector.errors import ProgrammingError

from include.lake.compaction import ExpectedIds, compact_hour, trade_files
from include.lake.markers import mark_written
from include.lake.store import LocalStore
from include.lake.trades import read_trades, write_trades
from include.warehouse.base import Warehouse
from include.warehouse.load import load_lake
from tests.support.trades import START_US, columns

SYMBOL, FIRST_ID, TRADES = "BTCUSDT", 1, 300
EXPECTED = ExpectedIds(FIRST_ID, FIRST_ID + TRADES)


def stream_hour(lake: LocalStore) -> None:
    """30 stream files of 10 trades, and a backfill repeating 5 of them (raw.trades may hold both)."""
    every = columns(SYMBOL, FIRST_ID, TRADES)
    for start in range(0, TRADES, 10):
        write_trades(lake, every.take(np.arange(start, start + 10)), "stream", START_US)
    write_trades(lake, every.take(np.arange(40, 45)), "backfill", START_US + 1)


def id_counts(warehouse: Warehouse) -> Counter[int]:
    return Counter(
        {int(i): int(n) for i, n in warehouse.execute("select trade_id, count(*) from raw.trades group by 1")}
    )


def values(warehouse: Warehouse) -> set[tuple]:
    """Each row's id and exact decimals (the warehouse's loaded_at aside)."""
    return {tuple(row) for row in warehouse.execute("select trade_id, price, quantity, quote_quantity from raw.trades")}


def lake_values(lake: LocalStore) -> set[tuple]:
    rows = read_trades(lake, SYMBOL).select(["trade_id", "price", "quantity", "quote_quantity"]).to_pylist()
    return {tuple(row.values()) for row in rows}


def test_compacting_what_was_loaded_adds_no_row(lake, each_warehouse):
    stream_hour(lake)
    assert load_lake(lake, each_warehouse).rows_loaded == TRADES + 5
    before = id_counts(each_warehouse)

    compact_hour(lake, SYMBOL, START_US, EXPECTED)
    # The stream writes on, and its marker names the compacted hour's partition again.
    mark_written(lake, "stream-test", write_trades(lake, columns(SYMBOL, 10_000, 5, START_US + 1), "stream", 0))
    after = load_lake(lake, each_warehouse)

    assert (after.files_loaded, after.rows_loaded, after.refused) == (2, 5, [])
    assert id_counts(each_warehouse) == before + Counter(range(10_000, 10_005))
    assert load_lake(lake, each_warehouse, full=True).rows_loaded == 0  # the nightly reconcile too
    assert id_counts(each_warehouse) == before + Counter(range(10_000, 10_005))


def test_a_warehouse_that_never_saw_the_small_files_loads_the_compacted_one_whole(lake, each_warehouse):
    stream_hour(lake)
    truth = lake_values(lake)
    compact_hour(lake, SYMBOL, START_US, EXPECTED)

    assert load_lake(lake, each_warehouse).rows_loaded == TRADES
    assert id_counts(each_warehouse) == Counter(range(FIRST_ID, FIRST_ID + TRADES))
    assert values(each_warehouse) == truth


def test_a_half_loaded_hour_gets_exactly_the_rest_from_the_compacted_file(lake, each_warehouse):
    stream_hour(lake)
    files = trade_files(lake, SYMBOL, START_US)
    each_warehouse.load(lake, files[::2])  # the load fell behind: every other file only
    loaded = id_counts(each_warehouse)
    assert 0 < len(loaded) < TRADES

    compact_hour(lake, SYMBOL, START_US, EXPECTED)
    result = load_lake(lake, each_warehouse)

    counts = id_counts(each_warehouse)
    assert set(counts) == set(range(FIRST_ID, FIRST_ID + TRADES))
    assert result.rows_loaded == TRADES - len(loaded)
    assert all(counts[i] == loaded.get(i, 1) for i in counts), "a trade was loaded twice"


class CompactingAfterListing(LocalStore):
    """A lake whose hour is compacted right after a load lists its partition, before any file is read."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.compacted = False

    def list(self, prefix: str = ""):
        yield from super().list(prefix)
        if prefix.startswith("trades/") and not self.compacted:
            self.compacted = True
            compact_hour(self, SYMBOL, START_US, EXPECTED)


def test_a_file_compacted_between_the_listing_and_the_read_comes_in_the_same_load(lake, each_warehouse):
    load_lake(lake, each_warehouse)  # an empty lake: from now on a load lists what markers name
    stream_hour(lake)
    mark_written(lake, "stream-test", [info.key for info in lake.list("trades/")])
    racing = CompactingAfterListing(lake.root)

    result = load_lake(racing, each_warehouse)

    assert racing.compacted
    assert result.refused == []
    assert id_counts(each_warehouse) == Counter(range(FIRST_ID, FIRST_ID + TRADES))
    assert ledger_keys(each_warehouse) == {info.key for info in lake.list("trades/")}  # the compacted file
    assert load_lake(lake, each_warehouse).files_loaded == 0


def ledger_keys(warehouse: Warehouse) -> set[str]:
    return {row[0] for row in warehouse.execute("select file_key from raw.load_ledger")}


def test_the_ledger_forgets_the_files_a_compacted_file_replaced_once_they_are_gone(lake, each_warehouse):
    stream_hour(lake)
    load_lake(lake, each_warehouse)
    small = ledger_keys(each_warehouse)
    assert len(small) == 31
    survivor = sorted(small)[3]
    survivor_bytes = lake.get(survivor)

    result = compact_hour(lake, SYMBOL, START_US, EXPECTED)
    lake.put(survivor, survivor_bytes)  # as if the compaction had crashed before deleting this one
    load_lake(lake, each_warehouse, full=True)

    assert ledger_keys(each_warehouse) == {result.compacted_key, survivor}
    assert load_lake(lake, each_warehouse, full=True).files_loaded == 0  # and nothing loads again


def test_a_failure_to_forget_replaced_rows_never_refuses_or_copies_again_a_loaded_file(lake, snowflake_warehouse):
    """Forgetting happens after the COPYs, outside their error handling: a failure there (a grant
    missing on Snowflake) fails the load loudly, and the compacted file stays loaded once."""
    stream_hour(lake)
    load_lake(lake, snowflake_warehouse)
    compact_hour(lake, SYMBOL, START_US, EXPECTED)

    def denied(*_: object) -> int:
        raise ProgrammingError(msg="Insufficient privileges to operate on table 'LOAD_LEDGER'")

    snowflake_warehouse.forget_replaced = denied
    with pytest.raises(ProgrammingError, match="Insufficient privileges"):
        load_lake(lake, snowflake_warehouse, full=True)

    (compacted,) = [info.key for info in lake.list("trades/")]
    rows = snowflake_warehouse.execute("select file_key from raw.load_ledger where file_key = %s", [compacted])
    assert rows == [(compacted,)]
    assert snowflake_warehouse.execute("select count(*) from raw.load_refusals") == [(0,)]


def test_a_small_file_written_again_into_a_compacted_hour_adds_no_row(lake, each_warehouse):
    """A file the compaction replaced comes back (a spool drained late) after the ledger forgot it."""
    stream_hour(lake)
    small = sorted(info.key for info in lake.list("trades/"))[0]
    small_bytes = lake.get(small)
    load_lake(lake, each_warehouse)
    compact_hour(lake, SYMBOL, START_US, EXPECTED)
    load_lake(lake, each_warehouse, full=True)  # loads the compacted file, forgets the small ones
    assert small not in ledger_keys(each_warehouse)
    before = id_counts(each_warehouse)

    lake.put(small, small_bytes)
    again = load_lake(lake, each_warehouse, full=True)

    assert (again.files_loaded, again.rows_loaded) == (1, 0)
    assert id_counts(each_warehouse) == before
