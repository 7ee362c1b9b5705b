"""raw.stream_status, raw.completeness and raw.gap_fills: the lake's status objects, exactly, refreshed by
every load."""

import json
from datetime import UTC, datetime, timedelta

from include.lake.heartbeats import read_status, write_heartbeat
from include.lake.keys import gap_fill_key, report_key
from include.timeutil import from_us, to_us
from include.warehouse.load import load_lake
from tests.support.trades import START_US
from tests.support.warehouse import write_gap_fill, write_heartbeats, write_window

HOUR_8 = datetime(2026, 11, 24, 8, tzinfo=UTC)
HOUR_9 = datetime(2026, 11, 24, 9, tzinfo=UTC)
CONNECTION = {"state": "open", "connection": 3, "since": "2026-11-24T08:00:00+00:00"}
STREAM_COLUMNS = "exchange, symbol, updated_at, last_trade_id, last_trade_time, lag_seconds, connection"
WINDOW_COLUMNS = (
    "exchange, symbol, window_start, window_end, expected, present_before, filled, holes, hole_count, "
    "refused_count, missing, checked_at, first_id, end_id"
)
GAP_FILL_COLUMNS = "exchange, symbol, first_id, last_id, since, filled, holes, hole_count, missing, checked_at"


def instant(value):
    """A timestamp as µs since the epoch (both backends' instants compare exactly), None as None."""
    if value is None:
        return None
    return to_us(datetime.fromisoformat(value) if isinstance(value, str) else value)


def stream_rows(warehouse) -> set[tuple]:
    rows = warehouse.execute(f"select {STREAM_COLUMNS} from raw.stream_status")
    return {(ex, sym, instant(upd), tid, instant(tt), lag, conn) for ex, sym, upd, tid, tt, lag, conn in rows}


def window_rows(warehouse) -> set[tuple]:
    rows = warehouse.execute(f"select {WINDOW_COLUMNS} from raw.completeness")
    return {(*row[:2], instant(row[2]), instant(row[3]), *row[4:11], instant(row[11]), *row[12:]) for row in rows}


def gap_fill_rows(warehouse) -> set[tuple]:
    rows = warehouse.execute(f"select {GAP_FILL_COLUMNS} from raw.gap_fills")
    return {(*row[:4], instant(row[4]), *row[5:9], instant(row[9])) for row in rows}


def expected_heartbeat(lake, symbol: str) -> tuple:
    body = read_status(lake, symbol)
    connection = None if body["connection"] is None else json.dumps(body["connection"], sort_keys=True)
    return (
        "binance",
        symbol,
        instant(body["updated_at"]),
        body["last_trade_id"],
        instant(body["last_trade_time"]),
        body["lag_seconds"],
        connection,
    )


def expected_window(lake, symbol: str, start: datetime) -> tuple:
    body = json.loads(lake.get(report_key(symbol, start)))
    holes = body["holes"]
    return (
        "binance",
        symbol,
        to_us(start),
        instant(body["end"]),
        *(body[name] for name in ("expected", "present_before", "filled")),
        json.dumps(holes),
        len(holes),
        len(body["refused"]),
        body["missing"],
        instant(body["checked_at"]),
        body["first_id"],
        body["end_id"],
    )


def expected_gap_fill(body: dict) -> tuple:
    return (
        "binance",
        body["symbol"],
        body["first_id"],
        body["last_id"],
        instant(body["since"]),
        body["filled"],
        json.dumps(body["holes"]),
        len(body["holes"]),
        body["missing"],
        instant(body["checked_at"]),
    )


def loaded_at(warehouse, table: str, where: str) -> list:
    return [row[0] for row in warehouse.execute(f"select loaded_at from raw.{table} where {where}")]


def test_the_status_objects_arrive_exactly(each_warehouse, lake):
    write_heartbeats(lake, {"BTCUSDT": (4242, START_US + 123_456), "ETHUSDT": None}, CONNECTION)
    write_window(lake, "BTCUSDT", HOUR_8, filled=2, holes=(103, 105))
    write_window(lake, "BTCUSDT", HOUR_9, refused=1)
    write_window(lake, "ETHUSDT", HOUR_8)
    # A gap with an exchange-side hole and a start gap whose empty range only carries its anchor.
    fills = [
        write_gap_fill(lake, "BTCUSDT", 4243, 4250, holes=(4245,), missing=1),
        write_gap_fill(lake, "ETHUSDT", 900, 899, since=HOUR_9),
    ]
    result = load_lake(lake, each_warehouse)
    assert (result.status_objects, result.refused) == (6, [])  # one heartbeat object, both symbols' rows
    assert stream_rows(each_warehouse) == {expected_heartbeat(lake, s) for s in ("BTCUSDT", "ETHUSDT")}
    ethusdt = [row for row in stream_rows(each_warehouse) if row[1] == "ETHUSDT"]
    assert ethusdt[0][3:6] == (None, None, None), "no trade yet: no id, time or lag"
    assert window_rows(each_warehouse) == {
        expected_window(lake, "BTCUSDT", HOUR_8),
        expected_window(lake, "BTCUSDT", HOUR_9),
        expected_window(lake, "ETHUSDT", HOUR_8),
    }
    checked_at = instant(json.loads(lake.get(report_key("BTCUSDT", HOUR_8)))["checked_at"])
    hour_8 = ("binance", "BTCUSDT", to_us(HOUR_8), to_us(HOUR_9), 10, 6, 2, "[103, 105]", 2, 0, 0, checked_at, 100, 110)
    assert hour_8 in window_rows(each_warehouse)
    assert gap_fill_rows(each_warehouse) == {expected_gap_fill(body) for body in fills}
    start_gap = ("binance", "ETHUSDT", 900, 899, to_us(HOUR_9), 0, "[]", 0, 0)
    assert start_gap in {row[:-1] for row in gap_fill_rows(each_warehouse)}
    # One refresh, one loaded_at, on every row of the three tables.
    stamps = [
        stamp
        for table in ("stream_status", "completeness", "gap_fills")
        for stamp in loaded_at(each_warehouse, table, "true")
    ]
    assert len(stamps) == 7
    assert len(set(stamps)) == 1


def test_a_rerun_changes_nothing_and_a_rewritten_window_replaces_its_row(each_warehouse, lake):
    write_heartbeats(lake, {"BTCUSDT": (10, START_US)}, CONNECTION)
    write_window(lake, "BTCUSDT", HOUR_8, filled=1)
    write_window(lake, "BTCUSDT", HOUR_9, filled=1)
    load_lake(lake, each_warehouse)
    before = (stream_rows(each_warehouse), window_rows(each_warehouse))
    stamps = {table: loaded_at(each_warehouse, table, "true") for table in ("stream_status", "completeness")}

    again = load_lake(lake, each_warehouse)
    assert again.status_objects == 0
    assert (stream_rows(each_warehouse), window_rows(each_warehouse)) == before
    assert {table: loaded_at(each_warehouse, table, "true") for table in stamps} == stamps

    # The repair checks hour 8 again (two more filled, one hole found) and the stream moves on.
    write_window(lake, "BTCUSDT", HOUR_8, filled=3, holes=(107,))
    write_heartbeats(lake, {"BTCUSDT": (20, START_US + 1_000_000)}, CONNECTION)
    result = load_lake(lake, each_warehouse)
    assert result.status_objects == 2
    assert stream_rows(each_warehouse) == {expected_heartbeat(lake, "BTCUSDT")}
    assert window_rows(each_warehouse) == {
        expected_window(lake, "BTCUSDT", HOUR_8),
        expected_window(lake, "BTCUSDT", HOUR_9),
    }
    hour_9 = f"window_start = '{HOUR_9.isoformat()}'"
    assert loaded_at(each_warehouse, "completeness", hour_9) == [stamps["completeness"][0]], "hour 9 untouched"
    (new_stamp,) = loaded_at(each_warehouse, "completeness", f"window_start = '{HOUR_8.isoformat()}'")
    assert new_stamp > stamps["completeness"][0]


def test_a_status_object_that_is_not_json_is_refused_once_and_read_again_when_rewritten(each_warehouse, lake):
    write_window(lake, "BTCUSDT", HOUR_8)
    bad = report_key("BTCUSDT", HOUR_9)
    lake.put(bad, b"{not json")
    first = load_lake(lake, each_warehouse)
    assert len(first.refused) == 1
    assert first.refused[0].startswith(f"{bad}: not a status object of raw.completeness")
    assert window_rows(each_warehouse) == {expected_window(lake, "BTCUSDT", HOUR_8)}
    assert load_lake(lake, each_warehouse).refused == []
    write_window(lake, "BTCUSDT", HOUR_9)
    assert load_lake(lake, each_warehouse).refused == []
    assert len(window_rows(each_warehouse)) == 2


def test_a_window_without_its_id_range_loads_with_null_ids(each_warehouse, lake):
    """A ledger object written before the ledger held first_id and end_id (they were added later)."""
    write_window(lake, "BTCUSDT", HOUR_8)
    body = json.loads(lake.get(report_key("BTCUSDT", HOUR_8)))
    del body["first_id"], body["end_id"]
    lake.put(report_key("BTCUSDT", HOUR_8), json.dumps(body).encode())
    assert load_lake(lake, each_warehouse).refused == []
    assert [row[-2:] for row in window_rows(each_warehouse)] == [(None, None)]


def test_a_rewritten_gap_fill_replaces_its_row_and_a_bad_one_is_refused_by_name(each_warehouse, lake):
    write_gap_fill(lake, "BTCUSDT", 10, 19, missing=4)
    load_lake(lake, each_warehouse)
    # The fill ran again: the 4 still missing were found, 2 of them exchange-side holes.
    again = write_gap_fill(lake, "BTCUSDT", 10, 19, holes=(12, 17))
    bad = gap_fill_key("BTCUSDT", HOUR_8, 30, 31)
    lake.put(bad, json.dumps({**again, "first_id": "30", "last_id": 31}).encode())
    result = load_lake(lake, each_warehouse)
    assert len(result.refused) == 1
    assert result.refused[0].startswith(f"{bad}: not a status object of raw.gap_fills (TypeError")
    assert "'30'" in result.refused[0]
    assert gap_fill_rows(each_warehouse) == {expected_gap_fill(again)}
    assert [row[5:9] for row in gap_fill_rows(each_warehouse)] == [(8, "[12, 17]", 2, 0)]


def test_two_writers_carrying_a_symbol_make_one_row_the_newest(each_warehouse, lake):
    """Overlapping stream windows: the old and the new writer both report BTCUSDT; one row, the newer's."""
    now = datetime.now(UTC)  # a heartbeat a day old is pruned by the first (whole-lake) load
    old = {"last_trade_id": 10, "last_trade_time": from_us(START_US).isoformat(), "lag_seconds": 1.0}
    new = {"last_trade_id": 20, "last_trade_time": from_us(START_US + 1).isoformat(), "lag_seconds": 0.5}
    write_heartbeat(lake, "window-1", now - timedelta(seconds=9), {}, {"BTCUSDT": old | {"connection": None}})
    write_heartbeat(lake, "window-2", now - timedelta(seconds=5), {}, {"BTCUSDT": new | {"connection": None}})

    load_lake(lake, each_warehouse)

    (row,) = stream_rows(each_warehouse)
    assert row[3] == 20
    assert row == expected_heartbeat(lake, "BTCUSDT")


def test_a_heartbeat_changed_later_with_an_older_time_never_turns_a_symbol_back(each_warehouse, lake):
    """Writer A's newer heartbeat is loaded; then writer B's, stamped earlier (its clock behind), changes."""
    now = datetime.now(UTC)
    newer = {"last_trade_id": 20, "last_trade_time": now.isoformat(), "lag_seconds": 0.5, "connection": None}
    older = {"last_trade_id": 10, "last_trade_time": now.isoformat(), "lag_seconds": 1.0, "connection": None}
    write_heartbeat(lake, "writer-a", now - timedelta(seconds=5), {}, {"BTCUSDT": newer})
    load_lake(lake, each_warehouse)
    write_heartbeat(lake, "writer-b", now - timedelta(seconds=9), {}, {"BTCUSDT": older})

    load_lake(lake, each_warehouse)

    (row,) = stream_rows(each_warehouse)
    assert row[3] == 20
