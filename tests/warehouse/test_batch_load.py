"""The load of stream batches and of the hourly split: every trade once, whichever the load saw first.

On each backend: DuckDB, and Snowflake's SQL through fakesnow (its stage on the same lake)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from include.lake.keys import BATCH_PREFIX
from include.lake.markers import MarkerWriter
from include.lake.split import split_batches
from include.lake.store import LocalStore
from include.lake.trades import TradeColumns, batch_object
from include.timeutil import HOUR_US
from include.warehouse.base import Warehouse
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake
from tests.support.trades import START_US, columns

SYMBOLS = {"BTCUSDT": 1, "ETHUSDT": 50_000, "XRPUSDT": 900_000}
FLUSHES, PER_FLUSH = 12, 25  # 300 trades a symbol, one every 10 s: the first 50 minutes of the hour
WRITER = "stream-test"


def flush_part(symbol: str, flush: int) -> TradeColumns:
    every = columns(symbol, SYMBOLS[symbol], FLUSHES * PER_FLUSH)
    spread = every.take(np.arange(flush * PER_FLUSH, (flush + 1) * PER_FLUSH))
    times = START_US + 10_000_000 * (spread.trade_id - SYMBOLS[symbol])
    return TradeColumns(symbol, spread.trade_id, spread.price, spread.quantity, times, spread.is_buyer_maker)


def stream(lake: LocalStore, flushes: range) -> None:
    """The writer's flushes, each one batch of every symbol, each announced by its marker."""
    marker = MarkerWriter(lake, WRITER)
    for flush in flushes:
        flushed = START_US + (flush + 1) * 250_000_000
        key, data = batch_object([flush_part(s, flush) for s in SYMBOLS], "stream", flushed, WRITER, flushed)
        lake.put(key, data)
        marker.mark([key])


def every_id() -> Counter[tuple[str, int]]:
    return Counter((s, first + i) for s, first in SYMBOLS.items() for i in range(FLUSHES * PER_FLUSH))


def id_counts(warehouse: Warehouse) -> Counter[tuple[str, int]]:
    rows = warehouse.execute("select symbol, trade_id, count(*) from raw.trades group by 1, 2")
    return Counter({(str(s), int(i)): int(n) for s, i, n in rows})


def ledger_keys(warehouse: Warehouse) -> set[str]:
    return {row[0] for row in warehouse.execute("select file_key from raw.load_ledger")}


def test_batches_load_whole_and_their_split_adds_no_row(lake, each_warehouse):
    load_lake(lake, each_warehouse)  # an empty lake: from now on a load lists what markers name
    stream(lake, range(FLUSHES))
    first = load_lake(lake, each_warehouse)
    assert (first.files_loaded, first.rows_loaded, first.refused) == (FLUSHES, 3 * FLUSHES * PER_FLUSH, [])
    assert id_counts(each_warehouse) == every_id()

    split = split_batches(lake, START_US + HOUR_US)
    after = load_lake(lake, each_warehouse)  # the split's marker names the symbols' partitions

    assert sorted(after_key.split("/")[2] for after_key in split.written) == [f"symbol={s}" for s in sorted(SYMBOLS)]
    assert (after.files_loaded, after.rows_loaded) == (3, 0)
    assert id_counts(each_warehouse) == every_id()
    assert load_lake(lake, each_warehouse, full=True).rows_loaded == 0  # the nightly reconcile too


def test_a_load_that_fell_behind_the_split_gets_exactly_the_rest_from_the_split_files(lake, each_warehouse):
    load_lake(lake, each_warehouse)
    stream(lake, range(5))
    load_lake(lake, each_warehouse)  # flushes 0..4 are in; then the load stops for over an hour
    stream(lake, range(5, FLUSHES))
    split_batches(lake, START_US + HOUR_US)
    assert list(lake.list(BATCH_PREFIX)) == []  # flushes 5..11 were split before any load read them

    result = load_lake(lake, each_warehouse)

    assert result.rows_loaded == 3 * (FLUSHES - 5) * PER_FLUSH
    assert id_counts(each_warehouse) == every_id()


def test_the_reconcile_forgets_the_ledger_rows_of_batches_split_away_two_days_ago(lake, each_warehouse):
    stream(lake, range(FLUSHES))
    load_lake(lake, each_warehouse)
    batches = {info.key for info in lake.list(BATCH_PREFIX)}
    split = split_batches(lake, START_US + HOUR_US)  # START_US is long past: the hour is forgettable
    kept = sorted(batches)[4]
    lake.put(kept, b"a batch still there")  # a batch the listing shows is never forgotten

    load_lake(lake, each_warehouse, full=True)

    assert ledger_keys(each_warehouse) == {*split.written, kept}
    assert id_counts(each_warehouse) == every_id()


def test_batches_of_the_last_two_days_keep_their_ledger_rows(lake, each_warehouse):
    stream(lake, range(FLUSHES))
    load_lake(lake, each_warehouse)
    batches = {info.key for info in lake.list(BATCH_PREFIX)}
    split_batches(lake, START_US + HOUR_US)

    forgotten = each_warehouse.forget_gone_batches([], before_us=START_US)  # as if the hour were recent

    assert forgotten == 0
    assert {key for key in ledger_keys(each_warehouse) if key.startswith(BATCH_PREFIX)} == batches


def test_a_batch_uploaded_again_after_its_hour_was_split_and_forgotten_adds_no_row(lake, each_warehouse):
    """A PUT that landed though the writer saw it fail waits in the spool, and is uploaded again days
    later: the split's marker of its hour makes the load take only the ids the warehouse lacks."""
    stream(lake, range(FLUSHES))
    load_lake(lake, each_warehouse)
    again = sorted(lake.list(BATCH_PREFIX), key=lambda info: info.key)[3].key
    again_bytes = lake.get(again)
    split_batches(lake, START_US + HOUR_US)
    load_lake(lake, each_warehouse, full=True)  # the reconcile forgets the split batches' ledger rows
    assert again not in ledger_keys(each_warehouse)

    lake.put(again, again_bytes)
    MarkerWriter(lake, WRITER).mark([again])
    result = load_lake(lake, each_warehouse)

    assert (result.files_loaded, result.rows_loaded) == (1, 0)
    assert id_counts(each_warehouse) == every_id()


def test_a_split_file_and_the_compacted_file_after_it_in_one_load_add_each_id_once(lake, tmp_path):
    """A load that fell behind lists a symbol-hour's split file and the compacted file that replaced it
    (the compaction writes before it deletes): both rewrite the same rows. DuckDB only: on Snowflake
    the COPY of both keeps such duplicates, a gap not closed yet."""
    stream(lake, range(FLUSHES))
    split = split_batches(lake, START_US + HOUR_US)
    btc = next(key for key in split.written if "symbol=BTCUSDT" in key)
    compacted = btc.replace("/split-", "/compact-")
    lake.put(compacted, lake.get(btc))  # the same rows under the compacted file's name
    with DuckDBWarehouse(tmp_path / "behind.duckdb") as warehouse:
        result = warehouse.load(lake, [info for info in lake.list("trades/") if "symbol=BTCUSDT" in info.key])

        assert result.rows_loaded == FLUSHES * PER_FLUSH
        assert set(id_counts(warehouse).values()) == {1}
