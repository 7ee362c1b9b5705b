"""The hourly split: a closed hour's stream batches become files per symbol-hour, every id kept once,
whatever step crashes; the current hour's batches wait."""

from __future__ import annotations

import numpy as np
import pytest

from include.lake.keys import BATCH_PREFIX, WRITES_PREFIX, hour_prefix, is_rewritten
from include.lake.markers import read_marker
from include.lake.split import split_batches
from include.lake.store import LocalStore
from include.lake.trades import TradeColumns, batch_object, read_table, read_trades
from include.timeutil import HOUR_US
from tests.lake.test_compaction import CrashingLake
from tests.support.trades import START_US, columns

SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT")
FIRST_IDS = {"BTCUSDT": 1_000, "ETHUSDT": 50_000, "XRPUSDT": 900_000}
FLUSHES, PER_FLUSH = 20, 10  # 200 trades a symbol, one every 20 s from 300 s into the hour
IN_FIRST_HOUR = 165  # (3600 - 300) / 20: flush 16 (160..169) reaches into the next hour


def trades(symbol: str, index: np.ndarray) -> TradeColumns:
    every = columns(symbol, FIRST_IDS[symbol], FLUSHES * PER_FLUSH)
    spread = TradeColumns(
        symbol,
        every.trade_id,
        every.price,
        every.quantity,
        START_US + 300_000_000 + 20_000_000 * (every.trade_id - FIRST_IDS[symbol]),
        every.is_buyer_maker,
    )
    return spread.take(index)


def put_batch(lake, parts: list[TradeColumns], writer: str, flushed_us: int) -> str:
    key, data = batch_object(parts, "stream", flushed_us, writer, flushed_us)
    lake.put(key, data)
    return key


def held(symbol: str) -> list[int]:
    """The indexes of the symbol's trades the batches hold: XRPUSDT is in every third flush, and the overlap."""
    return [i for i in range(FLUSHES * PER_FLUSH) if symbol != "XRPUSDT" or (i // PER_FLUSH) % 3 == 0 or 95 <= i < 125]


def stream_batches(lake, btc_without: frozenset[int] = frozenset()) -> dict[str, set[tuple]]:
    """Two writers' flushes of three symbols over an hour and past its end, with a handover overlap
    (BTCUSDT's trades ``btc_without`` left out). Returns each symbol's rows, one per id, as first written."""
    for flush in range(FLUSHES):
        index = np.arange(flush * PER_FLUSH, (flush + 1) * PER_FLUSH)
        parts = [
            trades(symbol, index if symbol != "BTCUSDT" else np.setdiff1d(index, list(btc_without)))
            for symbol in SYMBOLS
            if not (symbol == "XRPUSDT" and flush % 3)
        ]
        put_batch(lake, parts, "stream-a", START_US + 500_000_000 + flush * 200_000_000)
    overlap = np.arange(95, 125)  # a second writer repeats 30 trades of each symbol
    put_batch(lake, [trades(symbol, overlap) for symbol in SYMBOLS], "stream-b", START_US + 2_600_000_000)
    return {symbol: symbol_rows(lake, symbol) for symbol in SYMBOLS}


def symbol_rows(lake, symbol: str) -> set[tuple]:
    first_written = {}
    rows = read_trades(lake, symbol).to_pylist()
    for row in sorted(rows, key=lambda r: (r["trade_id"], r["ingested_at"], r["source"])):
        first_written.setdefault(row["trade_id"], row)
    return {tuple(row.values()) for row in first_written.values()}


def batches(lake) -> list[str]:
    return [info.key for info in lake.list(BATCH_PREFIX)]


def split_files(lake, symbol: str, hour: int) -> dict[str, list[int]]:
    """The split files of a symbol-hour and their ids, each file named by its first and last id."""
    files = {}
    for info in lake.list(hour_prefix(symbol, hour)):
        assert is_rewritten(info.key)
        ids = read_table(lake.get(info.key))["trade_id"].to_pylist()
        assert info.key.endswith(f"split-{ids[0]}-{ids[-1]}.parquet")
        files[info.key] = ids
    return files


def split_ids(lake, symbol: str, hour: int) -> list[int]:
    """Every id of the symbol-hour's split files: each in one file only."""
    ids = sorted(i for file_ids in split_files(lake, symbol, hour).values() for i in file_ids)
    assert len(ids) == len(set(ids))
    return ids


def test_a_closed_hours_batches_become_one_file_per_symbol_hour_with_every_id_once(tmp_path):
    lake = LocalStore(tmp_path)
    truth = stream_batches(lake)
    next_hour = [key for key in batches(lake) if "/hour=11/" in key]
    assert len(batches(lake)) == FLUSHES + 1
    assert len(next_hour) == 3

    result = split_batches(lake, START_US + HOUR_US)

    assert batches(lake) == next_hour, "the next hour's batches wait for it to close"
    assert len(result.deleted) == FLUSHES + 1 - 3
    for symbol in SYMBOLS:
        first = FIRST_IDS[symbol]
        assert split_ids(lake, symbol, START_US) == [first + i for i in held(symbol) if i < IN_FIRST_HOUR]
        reached = [first + i for i in held(symbol) if IN_FIRST_HOUR <= i < 170]  # flush 16's part past the hour
        assert split_ids(lake, symbol, START_US + HOUR_US) == reached
        assert symbol_rows(lake, symbol) == truth[symbol]
    marker = read_marker(lake, f"{WRITES_PREFIX}split-2026-11-24T10.json")
    assert marker is not None
    assert set(marker.keys) == set(result.written)

    split_batches(lake, START_US + 2 * HOUR_US)

    assert batches(lake) == []
    for symbol in SYMBOLS:
        first = FIRST_IDS[symbol]
        assert split_ids(lake, symbol, START_US + HOUR_US) == [first + i for i in held(symbol) if i >= IN_FIRST_HOUR]
        assert symbol_rows(lake, symbol) == truth[symbol]
        assert len(read_trades(lake, symbol)) == len(held(symbol))  # each id once


def test_a_late_batch_adds_a_file_of_its_new_ids_and_never_rewrites_one(tmp_path):
    lake = LocalStore(tmp_path)
    truth = stream_batches(lake, btc_without=frozenset({60}))
    split_batches(lake, START_US + HOUR_US)
    before = {info.key: lake.get(info.key) for info in lake.list(hour_prefix("BTCUSDT", START_US))}
    assert FIRST_IDS["BTCUSDT"] + 60 not in split_ids(lake, "BTCUSDT", START_US)
    # Ids the hour holds, first and last of its file among them: nothing new, nothing written.
    put_batch(lake, [trades("BTCUSDT", np.array([0, 50, IN_FIRST_HOUR - 1]))], "stream-c", START_US + 5_000_000_000)
    split_batches(lake, START_US + HOUR_US)
    assert {info.key: lake.get(info.key) for info in lake.list(hour_prefix("BTCUSDT", START_US))} == before
    # The id the hour lacked: a file of its own, under a key never used (the load's ledger knows keys).
    put_batch(lake, [trades("BTCUSDT", np.array([59, 60, 61]))], "stream-d", START_US + 5_100_000_000)

    result = split_batches(lake, START_US + HOUR_US)

    first = FIRST_IDS["BTCUSDT"]
    assert [key.rsplit("/", 1)[-1] for key in result.written] == [f"split-{first + 60}-{first + 60}.parquet"]
    after = {info.key: lake.get(info.key) for info in lake.list(hour_prefix("BTCUSDT", START_US))}
    assert {key: after[key] for key in before} == before  # the earlier file as it was
    assert split_ids(lake, "BTCUSDT", START_US) == [first + i for i in range(IN_FIRST_HOUR)]
    assert symbol_rows(lake, "BTCUSDT") >= truth["BTCUSDT"]


def test_a_crash_at_any_step_is_made_whole_by_running_it_again(tmp_path):
    clean = LocalStore(tmp_path / "clean")
    truth = stream_batches(clean)
    result = split_batches(clean, START_US + HOUR_US)
    finished = {info.key: clean.get(info.key) for info in clean.list("trades/")}
    changes = len(result.written) + 1 + len(result.deleted)  # the files, the marker, the deletes
    for crash_at in (1, 3, len(result.written), len(result.written) + 1, len(result.written) + 2, changes):
        lake = CrashingLake(tmp_path / f"crash-{crash_at}", crash_at=0)
        stream_batches(lake)
        lake.crash_at = lake.changes + crash_at
        with pytest.raises(RuntimeError, match="crash at change"):
            split_batches(lake, START_US + HOUR_US)
        for symbol in SYMBOLS:
            assert symbol_rows(lake, symbol) == truth[symbol], f"a crash at change {crash_at} lost a trade"

        split_batches(lake, START_US + HOUR_US)

        assert {info.key: lake.get(info.key) for info in lake.list("trades/")} == finished
