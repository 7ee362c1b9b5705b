"""dashboard/live_edge.py, the speed layer: the lake's trades above the marts' frontier, merged onto the marts.

A scenario is a timeline of trades of one symbol (one every 7 s from 08:50 UTC, so minutes, 5m, 15m
and 1h buckets and the 09:00 hour partition are crossed). The "marts" are what the warehouse had
loaded: the trades up to the frontier's id, with the heartbeat of that load, as candles by the marts'
rules (tests/support/candle_rules.py, an independent row-by-row reading of docs/architecture.md),
published as a snapshot. The lake holds every trade, the later ones in overlapping files of two
stream writers and a backfill, and a newer heartbeat. What the speed layer shows must be exactly
what the marts will hold once the warehouse has loaded those trades: the same rules over every
trade with the newer heartbeat.

``test_the_speed_layer_equals_the_marts_built_from_the_same_lake`` checks that against the dbt
marts themselves (load + dbt build of the same lake); it skips, saying so, while the marts lack the
live-edge columns (the dbt change of issue 19 is made on another branch).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from dashboard.live_edge import MAX_BEHIND, read_lake_edge, with_live_edge
from dashboard.queries import MAX_CANDLES, MarketQueries
from include.candles import BY_NAME, CANDLE_SCHEMA, INTERVAL_NAMES
from include.config import load_settings
from include.lake import heartbeats
from include.lake.compaction import ExpectedIds, compact_hour, trade_files
from include.lake.heartbeats import read_status
from include.lake.keys import BATCH_PREFIX, hour_of_key, hour_prefix, is_compacted, trade_key
from include.lake.split import split_batches
from include.lake.store import LocalStore, ObjectInfo
from include.lake.trades import batch_object, read_table, read_trades, write_trades
from include.timeutil import HOUR_US, to_us
from include.warehouse.snapshot import publish_snapshot
from tests.support.candle_rules import MINUTE, bucket_of, minute_candles, roll_up
from tests.support.candles import build, load, query
from tests.support.dashboard import write_snapshot
from tests.support.trades import SplitAfterFirstListing, trade_columns

SYMBOL = "BTCUSDT"
FIRST_TRADE = datetime(2026, 11, 24, 8, 50, 3, tzinfo=UTC)
TRADE_SECONDS = 7
TRADES = 300  # ids 1..300, to 09:24:56
LOADED = 150  # the warehouse has ids 1..150 (the frontier: 09:07:26)
BUILT_COLUMNS = ("last_loaded_at", "built_at")  # the warehouse's own stamps


def trade_time(trade_id: int) -> datetime:
    return FIRST_TRADE + timedelta(seconds=TRADE_SECONDS * (trade_id - 1))


def write_ids(lake: LocalStore, ids: list[int], source: str = "stream") -> list[str]:
    times = [to_us(trade_time(trade_id)) for trade_id in ids]
    return write_trades(lake, trade_columns(SYMBOL, np.array(ids), np.array(times)), source, to_us(FIRST_TRADE))


def write_batch(lake: LocalStore, ids: list[int]) -> str:
    """``ids`` as a stream writer flushes them: one batch with another symbol's trades beside (not split yet)."""
    times = np.array([to_us(trade_time(trade_id)) for trade_id in ids])
    parts = [trade_columns(SYMBOL, np.array(ids), times), trade_columns("ETHUSDT", np.array(ids) + 10_000, times)]
    key, data = batch_object(parts, "stream", to_us(FIRST_TRADE), "stream-test", to_us(FIRST_TRADE))
    lake.put(key, data)
    return key


def write_heartbeat(lake: LocalStore, updated_at: datetime, last_trade_id: int) -> None:
    """The stream writer's heartbeat (include/lake/heartbeats.py) as of ``updated_at``."""
    status = {
        "last_trade_id": last_trade_id,
        "last_trade_time": trade_time(last_trade_id).isoformat(),
        "lag_seconds": 0.5,
        "trades_written": 1,
        "connection": {"connection": 0, "state": "connected"},
    }
    heartbeats.write_heartbeat(lake, "stream-test", updated_at, {}, {SYMBOL: status})


def rules(trades: list[dict[str, Any]], heartbeat: datetime | None) -> dict[str, list[dict[str, Any]]]:
    """Every interval's candles of ``trades`` by the marts' rules (the oracle)."""
    minutes = minute_candles(SYMBOL, trades, heartbeat)
    return {
        interval: minutes if interval == "1m" else roll_up(minutes, BY_NAME[interval].length)
        for interval in INTERVAL_NAMES
    }


def shown(table: pa.Table) -> list[dict[str, Any]]:
    """Candle rows without the warehouse's own stamps."""
    return [{key: value for key, value in row.items() if key not in BUILT_COLUMNS} for row in table.to_pylist()]


def expected(candles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{name: row[name] for name in CANDLE_SCHEMA.names if name not in BUILT_COLUMNS} for row in candles]


@dataclass
class Scenario:
    lake: LocalStore
    snapshot: Path
    loaded: list[dict[str, Any]]  # the trades the marts hold
    now: datetime  # the dashboard's clock

    def queries(self) -> MarketQueries:
        return MarketQueries.duckdb_snapshot(self.snapshot)

    def live(self, interval: str) -> Any:
        return with_live_edge(self.queries().edge(SYMBOL, interval, limit=MAX_CANDLES), self.lake, self.now)

    def lake_trades(self) -> list[dict[str, Any]]:
        return read_trades(self.lake, SYMBOL).to_pylist()


def make_scenario(
    folder: Path,
    lake_ids: list[int],
    loaded: int = LOADED,
    load_heartbeat: timedelta = timedelta(seconds=2),
    heartbeat: timedelta = timedelta(seconds=2),
) -> Scenario:
    """The marts of ids 1..``loaded`` (heartbeat ``load_heartbeat`` after the last of them); the lake
    with ids 1..``loaded`` and ``lake_ids`` above them (a stream batch not split yet, an overlapping
    stream file and a backfill of their middle, so most ids are there twice or three times), heartbeat
    ``heartbeat`` after the last."""
    lake = LocalStore(folder / "lake")
    write_ids(lake, list(range(1, loaded + 1)))
    newer = sorted(lake_ids)
    if newer:
        third = len(newer) // 3
        write_batch(lake, newer[: 2 * third + 1])
        write_ids(lake, newer[third:])
        write_ids(lake, newer[third : 2 * third], source="backfill")
    loaded_trades = [row for row in read_trades(lake, SYMBOL).to_pylist() if row["trade_id"] <= loaded]
    marts = rules(loaded_trades, trade_time(loaded) + load_heartbeat)
    snapshot = write_snapshot(folder / "marts.duckdb", marts, trade_time(loaded) + timedelta(seconds=5))
    last = max([loaded, *newer])
    write_heartbeat(lake, trade_time(last) + heartbeat, last)
    return Scenario(lake, snapshot, loaded_trades, trade_time(last) + heartbeat + timedelta(seconds=1))


def heartbeat_of(scenario: Scenario) -> datetime:
    return datetime.fromisoformat(read_status(scenario.lake, SYMBOL)["updated_at"])


# --- trades above the frontier -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return make_scenario(tmp_path_factory.mktemp("live"), list(range(LOADED + 1, TRADES + 1)))


@pytest.mark.parametrize("interval", list(INTERVAL_NAMES))
def test_trades_above_the_frontier_are_in_the_candles_of_every_interval(live_scenario, interval):
    live = live_scenario.live(interval)
    want = rules(live_scenario.lake_trades(), heartbeat_of(live_scenario))[interval]
    assert shown(live.candles) == expected(want)
    assert live.candles.schema == CANDLE_SCHEMA  # exact decimals: decimal128(38, 8) and (38, 16)
    marts = live_scenario.queries().candles(SYMBOL, interval, limit=MAX_CANDLES)
    assert live.candles.num_rows > marts.num_rows or interval in ("1h", "4h", "1d")  # later buckets appeared
    assert shown(live.candles) != shown(marts)
    assert live.new_trades == TRADES - LOADED  # every id once, however many files hold it


def test_the_frontier_minute_merges_the_marts_part_and_the_new_trades(live_scenario):
    minutes = {row["open_time"]: row for row in live_scenario.live("1m").candles.to_pylist()}
    marts = {row["open_time"]: row for row in live_scenario.queries().candles(SYMBOL, "1m").to_pylist()}
    frontier = max(time for time, row in marts.items() if row["trade_count"])
    merged, before = minutes[frontier], marts[frontier]
    new = [
        row
        for row in live_scenario.lake_trades()
        if row["trade_id"] > LOADED and row["trade_time"] < frontier + timedelta(minutes=1)
    ]
    unique = {row["trade_id"]: row for row in new}
    assert unique, "the scenario puts new trades in the frontier's minute"
    assert merged["open"] == before["open"]
    assert merged["close"] == unique[max(unique)]["price"]
    assert merged["trade_count"] == before["trade_count"] + len(unique)
    assert merged["volume"] == before["volume"] + sum(row["quantity"] for row in unique.values())
    assert (merged["first_trade_id"], merged["last_trade_id"]) == (before["first_trade_id"], max(unique))
    assert merged["built_at"] is None  # made by the speed layer, not built by the warehouse


def test_a_price_beyond_a_floats_precision_stays_exact(tmp_path):
    scenario = make_scenario(tmp_path, list(range(LOADED + 1, LOADED + 20)))
    minutes = scenario.live("1m").candles.to_pylist()
    prices = {row["price"] for row in scenario.lake_trades() if row["trade_id"] > LOADED}
    closes = {row["close"] for row in minutes if row["last_trade_id"] and row["last_trade_id"] > LOADED}
    assert closes <= prices
    assert all(float(price) != price for price in prices)  # 60000.xxxxxxxx: not a float's value


# --- missing ids ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gap_scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """Ids LOADED+1..+3 not in the lake (the frontier's minute loses its next trades), and 20 ids later
    (140 s: at least one whole minute has no trade we know of)."""
    missing = {LOADED + 1, LOADED + 2, LOADED + 3, *range(200, 220)}
    return make_scenario(tmp_path_factory.mktemp("gap"), [i for i in range(LOADED + 1, TRADES + 1) if i not in missing])


@pytest.mark.parametrize("interval", list(INTERVAL_NAMES))
def test_missing_ids_make_the_buckets_they_touch_incomplete(gap_scenario, interval):
    live = gap_scenario.live(interval)
    assert shown(live.candles) == expected(rules(gap_scenario.lake_trades(), heartbeat_of(gap_scenario))[interval])


def test_the_touched_minutes_are_incomplete_and_an_unknown_one_has_no_prices(gap_scenario):
    rows = gap_scenario.live("1m").candles.to_pylist()
    width = timedelta(minutes=1)
    touched = [
        (trade_time(LOADED), trade_time(LOADED + 4)),
        (trade_time(199), trade_time(220)),
    ]
    for row in rows:
        if row["open_time"] + width <= trade_time(LOADED) - width:
            continue  # the marts' own, untouched
        in_span = any(start < row["open_time"] + width and stop >= row["open_time"] for start, stop in touched)
        if in_span:
            assert row["is_complete"] is False, row["open_time"]
    unknown = [row for row in rows if row["trade_count"] == 0 and not row["is_complete"]]
    assert unknown, "a minute inside the 140 s gap has no trade"
    assert all(row[name] is None for row in unknown for name in ("open", "high", "low", "close"))
    complete = [row for row in rows if row["open_time"] > trade_time(230) and row["is_closed"]]
    assert complete
    assert all(row["is_complete"] for row in complete)  # after the gap, complete again


# --- closed and frontier states ------------------------------------------------------------------------


def test_a_frontier_the_marts_closed_without_a_trade_after_it_completes_with_the_next_trade(tmp_path):
    """The marts' last minute with trades was closed by the heartbeat before its next trade was loaded:
    incomplete there (nothing after it known). The next trade in the lake completes it."""
    frontier_end = bucket_of(trade_time(LOADED), MINUTE) + MINUTE
    scenario = make_scenario(
        tmp_path,
        list(range(LOADED + 1, LOADED + 30)),
        load_heartbeat=frontier_end - trade_time(LOADED) + timedelta(seconds=1),
    )
    opened = frontier_end - MINUTE
    marts = {row["open_time"]: row for row in scenario.queries().candles(SYMBOL, "1m").to_pylist()}
    assert (marts[opened]["is_closed"], marts[opened]["is_complete"]) == (True, False)
    live = {row["open_time"]: row for row in scenario.live("1m").candles.to_pylist()}
    assert (live[opened]["is_closed"], live[opened]["is_complete"]) == (True, True)
    for interval in INTERVAL_NAMES:
        want = rules(scenario.lake_trades(), heartbeat_of(scenario))[interval]
        assert shown(scenario.live(interval).candles) == expected(want), interval


def test_a_closed_frontier_stays_incomplete_while_no_trade_after_it_is_known(tmp_path):
    """Late trades of the frontier's own minute, which the heartbeat had closed: still nothing known
    after the minute, so it stays incomplete (its next trade may be missing)."""
    opened = bucket_of(trade_time(LOADED), MINUTE)
    late = [trade_id for trade_id in range(LOADED + 1, LOADED + 10) if trade_time(trade_id) < opened + MINUTE]
    assert late, "ids after the frontier in its own minute"
    past_end = opened + MINUTE + timedelta(seconds=1)
    scenario = make_scenario(
        tmp_path, late, load_heartbeat=past_end - trade_time(LOADED), heartbeat=past_end - trade_time(late[-1])
    )
    live = {row["open_time"]: row for row in scenario.live("1m").candles.to_pylist()}
    assert (live[opened]["is_closed"], live[opened]["is_complete"], live[opened]["last_trade_id"]) == (
        True,
        False,
        late[-1],
    )
    for interval in INTERVAL_NAMES:
        want = rules(scenario.lake_trades(), heartbeat_of(scenario))[interval]
        assert shown(scenario.live(interval).candles) == expected(want), interval


@pytest.mark.parametrize("after", [timedelta(seconds=1), timedelta(minutes=3)], ids=["heartbeat-1s", "heartbeat-3min"])
def test_the_heartbeat_closes_buckets_past_the_last_trade(tmp_path, after):
    scenario = make_scenario(tmp_path, list(range(LOADED + 1, LOADED + 41)), heartbeat=after)
    rows = scenario.live("1m").candles.to_pylist()
    last = trade_time(LOADED + 40)  # 09:12:06
    assert rows[-1]["open_time"] <= last + after < rows[-1]["open_time"] + timedelta(minutes=1)
    last_traded = max(row["open_time"] for row in rows if row["trade_count"])
    assert next(row for row in rows if row["open_time"] == last_traded)["is_closed"] is (after > timedelta(minutes=1))
    for interval in INTERVAL_NAMES:
        want = rules(scenario.lake_trades(), heartbeat_of(scenario))[interval]
        assert shown(scenario.live(interval).candles) == expected(want), interval


# --- nothing above the frontier -----------------------------------------------------------------------


def test_nothing_above_the_frontier_leaves_the_marts_unchanged_and_reads_no_file(tmp_path):
    scenario = make_scenario(tmp_path, [])
    # A file whose name says its ids are at or below the frontier is skipped unread (this one is no Parquet).
    scenario.lake.put(trade_key(SYMBOL, to_us(trade_time(LOADED)) // HOUR_US * HOUR_US, "stream", 140, LOADED), b"x")
    for interval in INTERVAL_NAMES:
        marts = scenario.queries().edge(SYMBOL, interval, limit=MAX_CANDLES)
        live = with_live_edge(marts, scenario.lake, scenario.now)
        assert live.new_trades == 0
        assert live.candles.equals(marts.candles)
        assert live.minutes.equals(marts.minutes)
    edge = read_lake_edge(scenario.lake, scenario.queries().edge(SYMBOL, "1m").frontier, scenario.now)
    assert (edge.trades.num_rows, edge.files_read) == (0, 0)
    assert edge.files_listed > 0


# --- what is listed -----------------------------------------------------------------------------------


class ListingRecorder(LocalStore):
    """A local lake that records the prefixes listed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listed: list[str] = []

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.listed.append(prefix)
        return super().list(prefix)


def _hours(first: datetime, last: datetime) -> list[str]:
    return [hour_prefix(SYMBOL, hour) for hour in range(to_us(first), to_us(last) + 1, HOUR_US)]


@pytest.mark.parametrize(
    ("now", "hours"),
    [
        # the frontier (09:07) in the current hour: the previous and the current hour
        (datetime(2026, 11, 24, 9, 30, tzinfo=UTC), (datetime(2026, 11, 24, 8), datetime(2026, 11, 24, 9))),
        # a minute before the next hour: that one too (a trade stamped a little ahead of our clock)
        (datetime(2026, 11, 24, 9, 59, 30, tzinfo=UTC), (datetime(2026, 11, 24, 8), datetime(2026, 11, 24, 10))),
        # the warehouse hours behind: from the frontier's hour on
        (datetime(2026, 11, 24, 12, 30, tzinfo=UTC), (datetime(2026, 11, 24, 9), datetime(2026, 11, 24, 12))),
    ],
    ids=["current hour", "hour's turn", "hours behind"],
)
def test_only_the_hours_that_can_hold_new_trades_are_listed(live_scenario, now, hours):
    lake = ListingRecorder(live_scenario.lake.root)
    frontier = live_scenario.queries().edge(SYMBOL, "1m").frontier
    read_lake_edge(lake, frontier, now)
    first, last = (moment.replace(tzinfo=UTC) for moment in hours)
    # and first the stream batches not split yet: one listing of their folder, however many symbols
    assert [prefix for prefix in lake.listed if prefix.startswith("trades/")] == [BATCH_PREFIX, *_hours(first, last)]


# --- against the dbt marts ----------------------------------------------------------------------------


def _publish(lake: LocalStore, work: Path) -> Path:
    """Load the lake's new files into the warehouse, dbt build, publish the snapshot; its path."""
    warehouse = work / "warehouse.duckdb"
    load(lake, warehouse)
    build(warehouse, work / "target")
    marts = [name for (name,) in query(warehouse, _MART_COLUMNS_SQL)]
    assert marts == CANDLE_SCHEMA.names, "the dashboard reads the marts' columns, in order"
    settings = load_settings({"DUCKDB_PATH": str(warehouse), "WAREHOUSE": "duckdb", "DATA_DIR": str(work)})
    path = publish_snapshot(settings).path
    assert path is not None
    return path


_MART_COLUMNS_SQL = (
    "select column_name from information_schema.columns where table_schema = 'marts' and table_name = 'candles_1m' "
    "order by ordinal_position"
)


@pytest.mark.slow
@pytest.mark.parametrize("missing", [(), (LOADED + 1, LOADED + 2, *range(200, 220))], ids=["all ids", "ids missing"])
def test_the_speed_layer_equals_the_marts_built_from_the_same_lake(tmp_path, missing):
    """The speed layer over the marts of ids 1..LOADED, with the lake's later trades (duplicated across
    writers) and a newer heartbeat, equals the marts once the warehouse has loaded those trades too."""
    lake = LocalStore(tmp_path / "lake")
    write_ids(lake, list(range(1, LOADED + 1)))
    write_heartbeat(lake, trade_time(LOADED) + timedelta(seconds=2), LOADED)
    snapshot = _publish(lake, tmp_path)
    newer = [trade_id for trade_id in range(LOADED + 1, TRADES + 1) if trade_id not in missing]
    third = len(newer) // 3
    write_ids(lake, newer[: 2 * third + 1])
    write_ids(lake, newer[third:])
    write_heartbeat(lake, trade_time(TRADES) + timedelta(seconds=3), TRADES)
    now = trade_time(TRADES) + timedelta(seconds=4)
    queries = MarketQueries.duckdb_snapshot(snapshot)
    live = {
        interval: with_live_edge(queries.edge(SYMBOL, interval, limit=MAX_CANDLES), lake, now)
        for interval in INTERVAL_NAMES
    }
    assert all(result.new_trades == len(newer) for result in live.values())

    loaded = MarketQueries.duckdb_snapshot(_publish(lake, tmp_path))
    for interval in INTERVAL_NAMES:
        assert shown(live[interval].candles) == shown(loaded.candles(SYMBOL, interval, limit=MAX_CANDLES)), interval
        marts_after = loaded.edge(SYMBOL, interval, limit=MAX_CANDLES)
        assert with_live_edge(marts_after, lake, now).new_trades == 0  # the marts have taken over


def test_a_warehouse_more_than_a_day_behind_turns_the_live_edge_off_and_says_so(live_scenario):
    lake = ListingRecorder(live_scenario.lake.root)
    marts = live_scenario.queries().edge(SYMBOL, "5m", limit=MAX_CANDLES)
    later = marts.frontier.last_trade_time + MAX_BEHIND + timedelta(seconds=1)
    live = with_live_edge(marts, lake, later)
    assert live.candles.equals(marts.candles)
    assert live.new_trades == 0
    assert live.off == "the warehouse's newest trade is more than 24 h old: the live edge waits for it to catch up"
    assert lake.listed == []  # not a day of listings every refresh
    assert with_live_edge(marts, lake, later - timedelta(seconds=2)).off is None


class CompactingOnFirstRead(LocalStore):
    """A local lake whose first read finds its file just compacted away (the race with compaction)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.compacted: str | None = None

    def get(self, key: str) -> bytes:
        if self.compacted is None and not is_compacted(key):
            self.compacted = key
            hour = hour_of_key(key)
            plain = LocalStore(self.root)
            files = trade_files(plain, SYMBOL, hour)  # what compaction sees: not the stream batches
            ids = np.unique(np.concatenate([read_table(plain.get(i.key))["trade_id"].to_numpy() for i in files]))
            holes = frozenset(range(int(ids[0]), int(ids[-1]) + 1)) - set(ids.tolist())
            compact_hour(self, SYMBOL, hour, ExpectedIds(int(ids[0]), int(ids[-1]) + 1, holes))
        return super().get(key)


def test_a_file_compacted_between_the_listing_and_the_read_is_read_from_the_compacted_file(live_scenario):
    frontier = live_scenario.queries().edge(SYMBOL, "1m").frontier
    expected = read_lake_edge(live_scenario.lake, frontier, live_scenario.now).trades
    lake = CompactingOnFirstRead(live_scenario.lake.root)

    edge = read_lake_edge(lake, frontier, live_scenario.now)

    assert lake.compacted is not None
    assert not lake.exists(lake.compacted)
    assert edge.trades.equals(expected)


class SplittingOnFirstBatchRead(LocalStore):
    """A local lake whose first read of a stream batch finds it just split away (the race with the split)."""

    split = False

    def get(self, key: str) -> bytes:
        if key.startswith(BATCH_PREFIX) and not self.split:
            self.split = True
            split_batches(self, to_us(datetime.now(UTC)))  # every hour before now: all of them
        return super().get(key)


def test_a_batch_split_between_the_listing_and_the_read_is_read_from_the_split_files(tmp_path):
    scenario = make_scenario(tmp_path, list(range(LOADED + 1, TRADES + 1)))
    frontier = scenario.queries().edge(SYMBOL, "1m").frontier
    expected = read_lake_edge(scenario.lake, frontier, scenario.now).trades
    lake = SplittingOnFirstBatchRead(scenario.lake.root)

    edge = read_lake_edge(lake, frontier, scenario.now)

    assert lake.split
    assert list(lake.list(BATCH_PREFIX)) == []
    assert edge.trades.equals(expected)


def test_a_split_between_the_listings_of_batches_and_of_hours_misses_no_trade(tmp_path):
    scenario = make_scenario(tmp_path, list(range(LOADED + 1, TRADES + 1)))
    frontier = scenario.queries().edge(SYMBOL, "1m").frontier
    expected = read_lake_edge(scenario.lake, frontier, scenario.now).trades
    lake = SplitAfterFirstListing(scenario.lake.root, to_us(datetime.now(UTC)))

    edge = read_lake_edge(lake, frontier, scenario.now)

    assert lake.split
    assert list(lake.list(BATCH_PREFIX)) == []
    assert edge.trades.equals(expected)
