"""Replay of real data.binance.vision trade dumps through the sandbox's Binance REST and WebSocket API.

Every expectation is computed here from the CSV itself with ``csv`` and ``decimal.Decimal``, never
with the sandbox's own parsing, so a wrong parse, a lost row or a rounded price shows up as a diff.
"""

from __future__ import annotations

import csv
import itertools
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from include.sandbox.replay import ReplayFileError, load_replay, read_trades
from tests.support.exchange import rest_history
from tests.support.net import MICRO, http_get
from tests.support.paths import BTCUSDT_DUMP

FIRST_ID, LAST_ID = 553287559, 553289559
DAY_MS = int(datetime(2021, 1, 8, tzinfo=UTC).timestamp()) * 1000  # 2021-01-08 00:00 UTC


@dataclass(frozen=True)
class Row:
    trade_id: int
    price: Decimal
    qty: Decimal
    quote: Decimal
    time: int  # as written in the file: ms, or µs for files dated 2025 and later
    buyer_maker: bool


def raw_rows(path: Path = BTCUSDT_DUMP) -> list[list[str]]:
    with path.open(newline="") as handle:
        return [row for row in csv.reader(handle) if row]


def parse(rows: list[list[str]]) -> list[Row]:
    flags = {"True": True, "False": False}
    return [Row(int(r[0]), Decimal(r[1]), Decimal(r[2]), Decimal(r[3]), int(r[4]), flags[r[5]]) for r in rows]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return path


def dec8(value: Decimal) -> str:
    """Binance's decimal text: always 8 decimals."""
    return f"{value:.8f}"


def expected_trade(row: Row, time_value: int) -> dict[str, Any]:
    return {
        "id": row.trade_id,
        "price": dec8(row.price),
        "qty": dec8(row.qty),
        "quoteQty": dec8(row.quote),
        "time": time_value,
        "isBuyerMaker": row.buyer_maker,
        "isBestMatch": True,
    }


def get_ok(url: str, headers: dict[str, str] | None = None) -> Any:
    status, _, body = http_get(url, headers)
    assert status == 200, (url, status, body)
    return body


def all_agg_trades(rest_url: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = get_ok(f"{rest_url}/api/v3/aggTrades?symbol=BTCUSDT&fromId={len(rows)}&limit=1000", headers)
        if not page:
            return rows
        rows.extend(page)


def recv_json(ws: Any, timeout: float) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


CSV_ROWS = parse(raw_rows())


def test_the_sample_is_what_the_tests_assume():
    assert len(CSV_ROWS) == 2001
    assert [r.trade_id for r in CSV_ROWS] == list(range(FIRST_ID, LAST_ID + 1))
    assert CSV_ROWS[0].time >= DAY_MS
    assert CSV_ROWS[-1].time < DAY_MS + 60_000


# Historical mode ---------------------------------------------------------------------------------


def test_historical_rest_history_is_the_file_row_for_row(start_sandbox):
    with start_sandbox(replay=(BTCUSDT_DUMP,), replay_mode="historical", symbols=()) as sb:
        history = rest_history(sb.rest_url, from_id=FIRST_ID)
        # A fromId inside the file starts there.
        middle = get_ok(f"{sb.rest_url}/api/v3/historicalTrades?symbol=BTCUSDT&fromId={FIRST_ID + 1500}&limit=3")
    assert len(history) == 2001
    assert history == [expected_trade(row, row.time) for row in CSV_ROWS]
    assert [t["id"] for t in middle] == [FIRST_ID + 1500, FIRST_ID + 1501, FIRST_ID + 1502]


def test_historical_agg_trades_find_the_first_trade_at_or_after_a_time(start_sandbox):
    first, second = CSV_ROWS[0], CSV_ROWS[1]
    assert second.time > first.time
    with start_sandbox(replay=(BTCUSDT_DUMP,), replay_mode="historical", symbols=()) as sb:
        at_first = get_ok(f"{sb.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&startTime={first.time}&limit=1")
        after_first = get_ok(f"{sb.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&startTime={first.time + 1}&limit=1")
        before_day = get_ok(f"{sb.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&startTime={DAY_MS}&limit=1")
        aggs = all_agg_trades(sb.rest_url)
    assert len(at_first) == 1
    assert at_first[0]["f"] == FIRST_ID
    assert at_first[0]["T"] == first.time
    assert at_first[0]["p"] == dec8(first.price)
    assert after_first[0]["f"] == second.trade_id
    assert before_day[0]["f"] == FIRST_ID
    # The aggregates cover every trade exactly once, in order, and each holds trades of one time,
    # price and side whose quantities sum to the aggregate's.
    by_id = {row.trade_id: row for row in CSV_ROWS}
    covered = [i for agg in aggs for i in range(agg["f"], agg["l"] + 1)]
    assert covered == [row.trade_id for row in CSV_ROWS]
    for agg in aggs:
        members = [by_id[i] for i in range(agg["f"], agg["l"] + 1)]
        assert {(m.time, m.price, m.buyer_maker) for m in members} == {(agg["T"], Decimal(agg["p"]), agg["m"])}
        assert Decimal(agg["q"]) == sum(m.qty for m in members)


def test_historical_kline_is_recomputed_from_the_file(start_sandbox):
    taker_buys = [r for r in CSV_ROWS if not r.buyer_maker]
    expected = [
        DAY_MS,
        dec8(CSV_ROWS[0].price),
        dec8(max(r.price for r in CSV_ROWS)),
        dec8(min(r.price for r in CSV_ROWS)),
        dec8(CSV_ROWS[-1].price),
        dec8(sum(r.qty for r in CSV_ROWS)),
        DAY_MS + 60_000 - 1,
        dec8(sum(r.quote for r in CSV_ROWS)),
        2001,
        dec8(sum(r.qty for r in taker_buys)),
        dec8(sum(r.quote for r in taker_buys)),
        "0",
    ]
    with start_sandbox(replay=(BTCUSDT_DUMP,), replay_mode="historical", symbols=()) as sb:
        base = f"{sb.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m"
        ranged = get_ok(f"{base}&startTime={DAY_MS}&endTime={DAY_MS + 59_999}")
        limited = get_ok(f"{base}&startTime={DAY_MS}&limit=2")
    assert ranged == [expected]
    assert limited[0] == expected
    # The next minute had no trades in this file: volume 0 at the previous close.
    close = dec8(CSV_ROWS[-1].price)
    zero = dec8(Decimal(0))
    assert limited[1] == [DAY_MS + 60_000, close, close, close, close, zero, DAY_MS + 119_999, zero, 0, zero, zero, "0"]


def test_historical_replay_streams_nothing(start_sandbox):
    with (
        start_sandbox(replay=(BTCUSDT_DUMP,), replay_mode="historical", symbols=()) as sb,
        connect(f"{sb.ws_url}/stream?streams=btcusdt@trade", open_timeout=10) as ws,
    ):
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.0)
        assert len(sb.exchange.sources["BTCUSDT"].store) == 2001  # and nothing new appeared


# Zip files and microsecond files ------------------------------------------------------------------


def rest_snapshot(rest_url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """What a client sees over REST of the replayed file."""
    t0 = CSV_ROWS[0].time
    scale = 1000 if headers else 1
    return {
        "history": rest_history(rest_url, headers=headers),
        "recent": get_ok(f"{rest_url}/api/v3/trades?symbol=BTCUSDT&limit=1000", headers),
        "aggs": all_agg_trades(rest_url, headers),
        "agg_at": get_ok(f"{rest_url}/api/v3/aggTrades?symbol=BTCUSDT&startTime={(t0 + 1) * scale}&limit=3", headers),
        "klines_1m": get_ok(
            f"{rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m"
            f"&startTime={DAY_MS * scale}&endTime={(DAY_MS + 59_999) * scale}",
            headers,
        ),
        "klines_1s": get_ok(
            f"{rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1s&startTime={DAY_MS * scale}&limit=50", headers
        ),
    }


def zip_dump(tmp_path: Path) -> Path:
    path = tmp_path / "BTCUSDT-trades-2021-01-08.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-trades-2021-01-08.csv", BTCUSDT_DUMP.read_bytes())
    return path


def microsecond_dump(tmp_path: Path, sub_ms: Callable[[int], int]) -> tuple[Path, list[int]]:
    """The sample as a 2025-style file: times in µs, ``time * 1000 + sub_ms(time)``."""
    rows = raw_rows()
    micros = []
    for row in rows:
        ms = int(row[4])
        row[4] = str(ms * 1000 + sub_ms(ms))
        micros.append(int(row[4]))
    return write_csv(tmp_path / "BTCUSDT-trades-2025-01-08.csv", rows), micros


def test_zip_dump_gives_the_same_rest_output_as_the_csv(start_sandbox, tmp_path):
    with start_sandbox(replay=(BTCUSDT_DUMP,), symbols=()) as sb:
        from_csv = rest_snapshot(sb.rest_url)
        from_csv_us = rest_snapshot(sb.rest_url, MICRO)
    with start_sandbox(replay=(zip_dump(tmp_path),), symbols=()) as sb:
        from_zip = rest_snapshot(sb.rest_url)
        from_zip_us = rest_snapshot(sb.rest_url, MICRO)
    assert from_csv["history"] == [expected_trade(row, row.time) for row in CSV_ROWS]
    assert from_zip == from_csv
    assert from_zip_us == from_csv_us
    # A millisecond file asked for microseconds gives whole milliseconds in µs.
    assert [t["time"] for t in from_zip_us["history"]] == [row.time * 1000 for row in CSV_ROWS]
    assert from_zip_us["klines_1m"][0][0] == DAY_MS * 1000


@pytest.mark.parametrize(
    "sub_ms",
    [lambda ms: 0, lambda ms: ms % 997],
    ids=["whole-milliseconds", "with-sub-millisecond-digits"],
)
def test_microsecond_dump_gives_the_same_rest_output_and_exact_microseconds(start_sandbox, tmp_path, sub_ms):
    path, micros = microsecond_dump(tmp_path, sub_ms)
    assert all(m >= 10**15 for m in micros)  # really a µs file
    with start_sandbox(replay=(BTCUSDT_DUMP,), symbols=()) as sb:
        from_ms_file = rest_snapshot(sb.rest_url)
    with start_sandbox(replay=(path,), symbols=()) as sb:
        from_us_file = rest_snapshot(sb.rest_url)
        history_us = rest_history(sb.rest_url, headers=MICRO)
        # startTime in µs one microsecond after the first trade finds the second trade.
        after_first = get_ok(f"{sb.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&startTime={micros[0] + 1}&limit=1", MICRO)
        latest = get_ok(f"{sb.rest_url}/api/v3/trades?symbol=BTCUSDT&limit=1", MICRO)
    assert from_us_file == from_ms_file
    assert [t["time"] for t in from_ms_file["history"]] == [row.time for row in CSV_ROWS]  # ms by default
    assert history_us == [expected_trade(row, micro) for row, micro in zip(CSV_ROWS, micros, strict=True)]
    assert after_first[0]["f"] == FIRST_ID + 1
    assert after_first[0]["T"] == micros[1]
    assert latest[0]["time"] == micros[-1]


# Live mode ----------------------------------------------------------------------------------------

SPEED = 20.0


def test_live_replay_streams_the_file_shifted_to_now_at_speed(start_sandbox):
    original_ms = {row.trade_id: row.time for row in CSV_ROWS}
    by_id = {row.trade_id: row for row in CSV_ROWS}
    received: list[tuple[float, dict[str, Any]]] = []
    with start_sandbox(replay=(BTCUSDT_DUMP,), replay_mode="live", speed=SPEED, symbols=()) as sb:
        with connect(f"{sb.ws_url}/stream?streams=btcusdt@trade", open_timeout=10) as ws:
            deadline = time.monotonic() + 20  # the file lasts 46 s: 2.3 s at 20x
            while time.monotonic() < deadline:
                message = recv_json(ws, timeout=max(deadline - time.monotonic(), 0.01))
                received.append((time.time() * 1000, message))
                if message["data"]["t"] == LAST_ID:
                    break
        started_ms = sb.exchange.replay_started_us / 1000
        history = rest_history(sb.rest_url)

    events = [message["data"] for _, message in received]
    assert all(message["stream"] == "btcusdt@trade" for _, message in received)
    ids = [event["t"] for event in events]
    # Trades that played before the connection opened are not streamed, the rest all are, in order.
    assert ids, "nothing streamed"
    assert ids[-1] == LAST_ID
    assert ids == list(range(ids[0], LAST_ID + 1))
    assert len(ids) >= 1000, f"only {len(ids)} of 2001 trades streamed; the connection came too late"
    for event in events:
        row = by_id[event["t"]]
        assert (event["e"], event["s"], event["p"], event["q"], event["m"], event["M"]) == (
            "trade",
            "BTCUSDT",
            dec8(row.price),
            dec8(row.qty),
            row.buyer_maker,
            True,
        )
        assert "b" not in event  # buyer/seller order ids, removed on 2024-06-18
        assert "a" not in event
    # Times are shifted to now: each trade arrives at about its own time, not in 2021.
    for arrived_ms, message in received:
        event = message["data"]
        assert -5 <= arrived_ms - event["T"] <= 2000, (arrived_ms, event)
        assert event["E"] >= event["T"]
    # The first trade of the file plays when the replay starts; the rest follow at 1/SPEED the gaps.
    for event in events:
        expected = started_ms + (original_ms[event["t"]] - CSV_ROWS[0].time) / SPEED
        assert abs(event["T"] - expected) <= 1.5, (event, expected)
    for before, after in itertools.pairwise(events):
        original_gap = original_ms[after["t"]] - original_ms[before["t"]]
        assert abs((after["T"] - before["T"]) - original_gap / SPEED) <= 1.5, (before, after)
    span = events[-1]["T"] - events[0]["T"]
    original_span = original_ms[events[-1]["t"]] - original_ms[events[0]["t"]]
    assert original_span > 30_000
    assert abs(span - original_span / SPEED) <= 1.5

    # REST history afterwards: the whole file with shifted times, and exactly what was streamed.
    assert [t["id"] for t in history] == [row.trade_id for row in CSV_ROWS]
    for trade, row in zip(history, CSV_ROWS, strict=True):
        assert trade == expected_trade(row, trade["time"])
        assert abs(trade["time"] - (started_ms + (row.time - CSV_ROWS[0].time) / SPEED)) <= 1.5
    rest_by_id = {t["id"]: t for t in history}
    for event in events:
        trade = rest_by_id[event["t"]]
        assert (trade["price"], trade["qty"], trade["time"], trade["isBuyerMaker"]) == (
            event["p"],
            event["q"],
            event["T"],
            event["m"],
        )


# Holes, malformed files, and replay next to synthetic symbols ------------------------------------


def middle_of_a_same_time_run() -> int:
    """An id between two trades of the same time, price and side: one aggregate on Binance."""
    for before, row, after in zip(CSV_ROWS, CSV_ROWS[1:], CSV_ROWS[2:], strict=False):
        if len({(r.time, r.price, r.buyer_maker) for r in (before, row, after)}) == 1:
            return row.trade_id
    raise AssertionError("the sample has no run of three same-time trades")


REMOVED = {FIRST_ID + 1, *range(FIRST_ID + 700, FIRST_ID + 710), middle_of_a_same_time_run(), FIRST_ID + 1999}


def test_holes_in_a_dump_stay_holes(start_sandbox, tmp_path):
    rows = [row for row in raw_rows() if int(row[0]) not in REMOVED]
    path = write_csv(tmp_path / "BTCUSDT-trades-2021-01-08.csv", rows)
    kept = [row for row in CSV_ROWS if row.trade_id not in REMOVED]
    assert len(kept) == 2001 - len(REMOVED)
    with start_sandbox(replay=(path,), symbols=()) as sb:
        history = rest_history(sb.rest_url)
        from_hole = get_ok(f"{sb.rest_url}/api/v3/historicalTrades?symbol=BTCUSDT&fromId={FIRST_ID + 700}&limit=2")
        aggs = all_agg_trades(sb.rest_url)
        kline = get_ok(
            f"{sb.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={DAY_MS}&endTime={DAY_MS + 59_999}"
        )
    assert history == [expected_trade(row, row.time) for row in kept]
    # fromId on a missing id starts at the next id that exists.
    assert [t["id"] for t in from_hole] == [FIRST_ID + 710, FIRST_ID + 711]
    # No aggregate spans a hole, and the aggregates hold exactly the remaining trades.
    covered = [i for agg in aggs for i in range(agg["f"], agg["l"] + 1)]
    assert covered == [row.trade_id for row in kept]
    assert kline[0][8] == len(kept)
    assert Decimal(kline[0][5]) == sum(row.qty for row in kept)


@pytest.mark.parametrize(
    ("line", "column", "bad"),
    [
        (1234, 1, "39,432.48"),
        (1234, 1, "abc"),
        (7, 1, "39432.123456789"),  # more decimals than 8: refused, never rounded
        (2001, 2, "-0.5"),
        (1, 4, "yesterday"),
        (500, 0, "12x"),
    ],
    ids=["price-comma", "price-text", "price-9-decimals", "negative-qty", "time-text", "id-text"],
)
def test_a_malformed_dump_names_the_file_and_the_line(tmp_path, line, column, bad):
    rows = raw_rows()
    rows[line - 1][column] = bad
    path = write_csv(tmp_path / "BTCUSDT-trades-2021-01-08.csv", rows)
    with pytest.raises(ReplayFileError) as caught:
        read_trades(path)
    assert f"{path}:{line}:" in str(caught.value)
    with pytest.raises(ReplayFileError, match=f":{line}:"):
        load_replay([path])


def test_a_short_line_names_the_file_and_the_line(tmp_path):
    rows = raw_rows()
    rows[41] = rows[41][:3]
    path = write_csv(tmp_path / "BTCUSDT-trades-2021-01-08.csv", rows)
    with pytest.raises(ReplayFileError) as caught:
        read_trades(path)
    assert f"{path}:42:" in str(caught.value)


def test_a_malformed_line_inside_a_zip_names_the_zip_and_the_line(tmp_path):
    rows = raw_rows()
    rows[99][1] = "n/a"
    inner = write_csv(tmp_path / "inner.csv", rows)
    path = tmp_path / "BTCUSDT-trades-2021-01-08.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(inner, "BTCUSDT-trades-2021-01-08.csv")
    with pytest.raises(ReplayFileError) as caught:
        read_trades(path)
    assert f"{path}:100:" in str(caught.value)


def test_a_malformed_dump_stops_the_sandbox_from_starting(start_sandbox, tmp_path):
    rows = raw_rows()
    rows[9][1] = "bad"
    path = write_csv(tmp_path / "BTCUSDT-trades-2021-01-08.csv", rows)
    with pytest.raises(ReplayFileError, match=":10:"), start_sandbox(replay=(path,), symbols=()):
        pytest.fail("the sandbox started on a malformed dump")


@pytest.mark.parametrize("symbols", [("ETHUSDT",), ("BTCUSDT", "ETHUSDT")], ids=["eth", "btc-and-eth"])
def test_replay_and_synthetic_symbols_together(start_sandbox, symbols):
    with start_sandbox(replay=(BTCUSDT_DUMP,), replay_mode="historical", symbols=symbols, rate=100.0) as sb:
        with connect(f"{sb.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade", open_timeout=10) as ws:
            streams = set()
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                try:
                    message = recv_json(ws, timeout=max(deadline - time.monotonic(), 0.01))
                except TimeoutError:
                    break
                streams.add(message["stream"])
                assert message["data"]["s"] == "ETHUSDT"
        info = get_ok(f"{sb.rest_url}/api/v3/exchangeInfo")
        btc = rest_history(sb.rest_url)
        eth = get_ok(f"{sb.rest_url}/api/v3/trades?symbol=ETHUSDT&limit=1000")
    assert streams == {"ethusdt@trade"}  # the synthetic symbol streams, the historical replay does not
    assert sorted(s["symbol"] for s in info["symbols"]) == ["BTCUSDT", "ETHUSDT"]
    # A replayed symbol is the file alone, even when it is also named as a synthetic symbol.
    assert btc == [expected_trade(row, row.time) for row in CSV_ROWS]
    assert len(eth) >= 20
    eth_ids = [t["id"] for t in eth]
    assert eth_ids == sorted(eth_ids)
    now_ms = time.time() * 1000
    assert all(now_ms - 60_000 < t["time"] <= now_ms + 5 for t in eth)  # synthetic trades happen now


def test_a_live_replay_waits_for_its_delay_then_streams_from_the_first_trade(start_sandbox):
    with start_sandbox(
        replay=(BTCUSDT_DUMP,), replay_mode="live", speed=1000.0, replay_delay_seconds=1.5, symbols=()
    ) as sb:
        # Before the delay is over nothing has played: a client that connects now gets every trade.
        assert rest_history(sb.rest_url) == []
        with connect(f"{sb.ws_url}/stream?streams=btcusdt@trade", open_timeout=10) as ws:
            first = recv_json(ws, timeout=10)["data"]
        assert first["t"] == CSV_ROWS[0].trade_id
        assert first["T"] >= sb.exchange.started_us // 1000 + 1500
