"""Compaction: a verified symbol-hour's files become one, every id kept once, whatever step crashes."""

from __future__ import annotations

import numpy as np
import pytest

from include.lake.compaction import ExpectedIds, NotVerified, compact_hour, trade_files
from include.lake.keys import hour_prefix, is_compacted
from include.lake.store import LocalStore
from include.lake.trades import read_table, read_trades, write_trades
from include.timeutil import HOUR_US
from tests.support.trades import START_US, columns

SYMBOL = "BTCUSDT"
FIRST_ID, TRADES = 1_000, 600  # ids 1000..1599, one a second from the start of the hour


def stream_hour(lake: LocalStore) -> set[tuple]:
    """The hour as a stream leaves it: 60 files of 10, a second writer's overlap, and a backfill repeating ids.

    Returns the rows a compacted file must hold: one per id, as first written."""
    every = columns(SYMBOL, FIRST_ID, TRADES)
    for start in range(0, TRADES, 10):
        write_trades(lake, every.take(np.arange(start, start + 10)), "stream", START_US + start)
    write_trades(lake, every.take(np.arange(95, 125)), "stream", START_US + 10_000_000)  # a handover overlap
    write_trades(lake, every.take(np.arange(300, 305)), "backfill", START_US + 20_000_000)
    rows = read_trades(lake, SYMBOL).to_pylist()
    first_written = {}
    for row in sorted(rows, key=lambda r: (r["trade_id"], r["ingested_at"], r["source"])):
        first_written.setdefault(row["trade_id"], row)
    return {tuple(row.values()) for row in first_written.values()}


def hour_rows(lake: LocalStore) -> list[tuple]:
    return [tuple(row.values()) for row in read_trades(lake, SYMBOL).to_pylist()]


EXPECTED = ExpectedIds(FIRST_ID, FIRST_ID + TRADES)


def test_an_hour_of_small_files_becomes_one_file_with_every_id_once(tmp_path):
    lake = LocalStore(tmp_path)
    truth = stream_hour(lake)
    assert len(trade_files(lake, SYMBOL, START_US)) == 62

    result = compact_hour(lake, SYMBOL, START_US, EXPECTED)

    (only,) = trade_files(lake, SYMBOL, START_US)
    assert only.key == result.compacted_key == f"{hour_prefix(SYMBOL, START_US)}compact-1000-1599.parquet"
    assert is_compacted(only.key)
    assert (result.files_before, result.trades, len(result.deleted)) == (62, TRADES, 62)
    rows = hour_rows(lake)
    assert len(rows) == TRADES
    assert set(rows) == truth
    assert read_table(lake.get(only.key))["trade_id"].to_pylist() == list(range(FIRST_ID, FIRST_ID + TRADES))
    assert list(lake.list("status/")) == []  # no marker of its own: the small files' writers named the partition

    again = compact_hour(lake, SYMBOL, START_US, EXPECTED)
    assert again.compacted_key is None
    assert trade_files(lake, SYMBOL, START_US) == [only]


def test_a_file_landing_in_a_compacted_hour_is_folded_in_by_the_next_compaction(tmp_path):
    lake = LocalStore(tmp_path)
    truth = stream_hour(lake)
    compact_hour(lake, SYMBOL, START_US, EXPECTED)
    write_trades(lake, columns(SYMBOL, FIRST_ID + 7, 3, START_US + 7_000_000), "backfill", START_US + 99)
    assert len(trade_files(lake, SYMBOL, START_US)) == 2

    result = compact_hour(lake, SYMBOL, START_US, EXPECTED)

    assert len(trade_files(lake, SYMBOL, START_US)) == 1
    assert len(result.deleted) == 1
    assert set(hour_rows(lake)) == truth
    assert len(hour_rows(lake)) == TRADES


@pytest.mark.parametrize(
    ("expected", "why"),
    [
        (ExpectedIds(FIRST_ID, FIRST_ID + TRADES + 1), "1 expected ones missing"),
        (ExpectedIds(FIRST_ID + 1, FIRST_ID + TRADES), "1 unexpected"),
        (ExpectedIds(FIRST_ID, FIRST_ID + TRADES, frozenset({FIRST_ID + 5})), "1 unexpected"),
    ],
)
def test_an_hour_that_does_not_hold_exactly_the_verified_ids_is_left_alone(tmp_path, expected, why):
    lake = LocalStore(tmp_path)
    stream_hour(lake)
    before = {info.key: info.etag for info in lake.list("")}

    with pytest.raises(NotVerified, match=why):
        compact_hour(lake, SYMBOL, START_US, expected)

    assert {info.key: info.etag for info in lake.list("")} == before


def test_holes_are_not_expected(tmp_path):
    lake = LocalStore(tmp_path)
    every = columns(SYMBOL, FIRST_ID, 20)
    write_trades(lake, every.take(np.array([i for i in range(20) if i != 4])), "stream", START_US)
    write_trades(lake, every.take(np.array([0, 1])), "backfill", START_US + 1)

    result = compact_hour(lake, SYMBOL, START_US, ExpectedIds(FIRST_ID, FIRST_ID + 20, frozenset({FIRST_ID + 4})))

    assert result.trades == 19
    assert len(trade_files(lake, SYMBOL, START_US)) == 1


class CrashingLake(LocalStore):
    """A local lake whose ``crash_at``-th change (put or delete) raises before it happens."""

    def __init__(self, root, crash_at: int) -> None:
        super().__init__(root)
        self.crash_at, self.changes = crash_at, 0

    def _change(self) -> None:
        self.changes += 1
        if self.changes == self.crash_at:
            raise RuntimeError(f"crash at change {self.crash_at}")

    def put(self, key: str, data: bytes) -> None:
        self._change()
        super().put(key, data)

    def delete(self, key: str) -> None:
        self._change()
        super().delete(key)


def test_a_crash_at_any_step_is_made_whole_by_running_it_again(tmp_path):
    clean = LocalStore(tmp_path / "clean")
    truth = stream_hour(clean)
    compact_hour(clean, SYMBOL, START_US, EXPECTED)
    finished = {info.key: clean.get(info.key) for info in clean.list("trades/")}
    # 1: the compacted file, 2..63: the 62 deletes
    for crash_at in (1, 2, 3, 33, 63):
        lake = CrashingLake(tmp_path / f"crash-{crash_at}", crash_at=0)
        stream_hour(lake)
        lake.crash_at = lake.changes + crash_at  # counted from here
        with pytest.raises(RuntimeError, match="crash at change"):
            compact_hour(lake, SYMBOL, START_US, EXPECTED)
        assert truth <= set(hour_rows(lake)), f"a trade was lost by a crash at change {crash_at}"

        compact_hour(lake, SYMBOL, START_US, EXPECTED)

        assert {info.key: lake.get(info.key) for info in lake.list("trades/")} == finished


def test_nothing_to_compact_in_an_empty_hour(tmp_path):
    lake = LocalStore(tmp_path)
    result = compact_hour(lake, SYMBOL, START_US + HOUR_US, EXPECTED)
    assert (result.compacted_key, result.files_before) == (None, 0)
    assert list(lake.list("")) == []
