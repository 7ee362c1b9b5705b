"""Every fault mode of the sandbox, set from the config and at runtime through ``/admin``.

What the client sees is judged by this file's own reading of the frames (its own trade validator),
never by the sandbox's code, and compared with what the sandbox says it did (``GET /admin``).
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from include.sandbox.faults import MALFORMED_FRAMES_KEPT, MALFORMED_KINDS, FaultRecord, FaultSettings
from tests.support.net import admin, http_get, http_post_json, ws_client
from tests.support.waiting import wait_until

SYMBOLS = ("BTCUSDT", "ETHUSDT")
COMBINED = "/stream?streams=btcusdt@trade/ethusdt@trade"


# Helpers ------------------------------------------------------------------------------------------


def set_faults(sb: Any, **changes: float) -> dict[str, Any]:
    status, body = http_post_json(f"{sb.rest_url}/admin", changes)
    assert status == 200, body
    for name, value in changes.items():
        assert body["faults"][name] == value
    return body


def last_ids(admin_body: dict[str, Any]) -> dict[str, int]:
    """Each symbol's last trade id so far; -1 for a symbol with no trade yet (any id is past it: a
    sandbox just started on a busy machine may not have made one)."""
    return {
        symbol: -1 if info["last_id"] is None else info["last_id"] for symbol, info in admin_body["symbols"].items()
    }


_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_FIELDS: dict[str, type] = {"e": str, "E": int, "s": str, "t": int, "p": str, "q": str, "T": int, "m": bool, "M": bool}


def _number_problem(text: str, what: str) -> str | None:
    if text.startswith("-"):
        return f"negative_{what}"
    if not _DECIMAL.match(text):
        return f"bad_{what}"
    decimals = text.partition(".")[2]
    if len(decimals) > 8:
        return "excess_scale"
    if not text.replace(".", "").strip("0"):
        return f"zero_{what}"
    return None


def _unwrap(frame: str, combined: bool) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """``(problem, stream, trade)``: the trade payload and its stream name out of a frame."""
    try:
        message = json.loads(frame)
    except ValueError:
        return "truncated_json", None, None
    if not combined:
        return None, None, message
    if not isinstance(message, dict) or set(message) != {"stream", "data"}:
        return "bad_envelope", None, None
    return None, message["stream"], message["data"]


def _shape_problem(trade: Any) -> str | None:
    """A payload that is not an object, lacks a field, or has one of the wrong type."""
    if not isinstance(trade, dict):
        return "bad_envelope"
    if any(name not in trade for name in _FIELDS):
        return "missing_field"
    for name, kind in _FIELDS.items():
        value = trade[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return "wrong_type"
    return None


def _content_problem(trade: dict[str, Any], stream: str | None) -> str | None:
    """A well-formed payload that is not a trade of ours on its stream, or has a bad number."""
    if trade["e"] != "trade":
        return "wrong_event"
    if trade["s"] not in SYMBOLS:
        return "unknown_symbol"
    if stream is not None and stream != f"{trade['s'].lower()}@trade":
        return "stream_mismatch"
    return _number_problem(trade["p"], "price") or _number_problem(trade["q"], "quantity")


def classify(frame: str, combined: bool = True) -> tuple[str, dict[str, Any] | None]:
    """``("valid", trade)`` for a good Binance trade event, else ``(problem, None)``.

    Problems are named as a client would name them: unparsable JSON, a missing field, a field of
    the wrong type, a negative price, a zero quantity, more than 8 decimals, an unknown symbol.
    """
    problem, stream, trade = _unwrap(frame, combined)
    problem = problem or _shape_problem(trade)
    problem = problem or _content_problem(trade, stream)
    if problem:
        return problem, None
    return "valid", trade


def read_for(ws: ClientConnection, seconds: float) -> list[tuple[float, str]]:
    """(arrival time, frame) of every frame within ``seconds``."""
    frames: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = ws.recv(timeout=left)
        except TimeoutError:
            break
        frames.append((time.monotonic(), frame))
    return frames


def drain_past(ws: ClientConnection, last: dict[str, int], combined: bool = True) -> list[tuple[float, str]]:
    """Frames until a valid trade past ``last[symbol]`` has arrived for every symbol in ``last``.

    Frames are in order per connection, so everything the server queued before is then read.
    """
    frames: list[tuple[float, str]] = []
    waiting = set(last)
    deadline = time.monotonic() + 60
    while waiting:
        left = deadline - time.monotonic()
        assert left > 0, f"no trades past {last} for {waiting}"
        frame = ws.recv(timeout=left)
        frames.append((time.monotonic(), frame))
        verdict, trade = classify(frame, combined)
        if verdict == "valid" and trade is not None and trade["t"] > last.get(trade["s"], 1 << 62):
            waiting.discard(trade["s"])
    return frames


def valid_ids(frames: list[tuple[float, str]], combined: bool = True) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {symbol: [] for symbol in SYMBOLS}
    for _, frame in frames:
        verdict, trade = classify(frame, combined)
        if verdict == "valid" and trade is not None:
            ids[trade["s"]].append(trade["t"])
    return ids


def rest_ids(sb: Any, symbol: str, low: int, high: int) -> set[int]:
    """Every trade id REST history has in [low, high], page by page."""
    found: set[int] = set()
    from_id = low
    while from_id <= high:
        status, _, rows = http_get(f"{sb.rest_url}/api/v3/historicalTrades?symbol={symbol}&fromId={from_id}&limit=1000")
        assert status == 200, rows
        assert rows, f"no history from {from_id}"
        found.update(row["id"] for row in rows if row["id"] <= high)
        from_id = rows[-1]["id"] + 1
    return found


def assert_contiguous(ids: list[int]) -> None:
    assert ids, "no trades"
    assert ids == list(range(ids[0], ids[0] + len(ids))), f"not contiguous: {ids[:40]}..."


# The validator itself, on hand-made frames (so that a lenient validator cannot pass the tests) --


GOOD = '{"e":"trade","E":1,"s":"BTCUSDT","t":5,"p":"60000.01000000","q":"0.00100000","T":1,"m":true,"M":true}'


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (GOOD, "valid"),
        (GOOD[:-3], "truncated_json"),
        (GOOD.replace('"q":', '"x":'), "missing_field"),
        (GOOD.replace('"t":5', '"t":"5"'), "wrong_type"),
        (GOOD.replace('"m":true', '"m":1'), "wrong_type"),
        (GOOD.replace('"t":5', '"t":true'), "wrong_type"),
        (GOOD.replace('"p":"6', '"p":"-6'), "negative_price"),
        (GOOD.replace('"q":"0.00100000"', '"q":"0.00000000"'), "zero_quantity"),
        (GOOD.replace('"p":"60000.01000000"', '"p":"60000.01000000123"'), "excess_scale"),
        (GOOD.replace("BTCUSDT", "NOSUCHCOIN"), "unknown_symbol"),
        (GOOD.replace('"p":"60000.01000000"', '"p":"1e5"'), "bad_price"),
    ],
)
def test_own_validator_tells_good_from_broken_frames(frame, expected):
    assert classify(frame, combined=False)[0] == expected


# /admin ------------------------------------------------------------------------------------------


def _post_raw(url: str, data: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_admin_reports_and_validates_fault_settings(start_sandbox):
    faults = FaultSettings(skip_fraction=0.25, stall_seconds=2.0)
    with start_sandbox(symbols=("BTCUSDT",), faults=faults) as sb:
        body = admin(sb)
        assert body["faults"] == {
            "drop_connections_every": 0.0,
            "skip_fraction": 0.25,
            "malformed_fraction": 0.0,
            "stall_every": 0.0,
            "stall_seconds": 2.0,
            "rest_error_rate": 0.0,
        }
        assert body["record"]["skipped"] == 0
        assert body["record"]["malformed_total"] == 0
        refused = [
            {"no_such_fault": 1},
            {"skip_fraction": 1.5},
            {"rest_error_rate": -0.1},
            {"malformed_fraction": 2},
            {"stall_every": -1},
            {"stall_seconds": "5"},
            {"drop_connections_every": True},
            {"skip_fraction": None},
            {"skip_fraction": 0.5, "no_such_fault": 1},  # all or nothing
            {"skip_fraction": 0.5, "rest_error_rate": 7},
            [["skip_fraction", 0.5]],
        ]
        for payload in refused:
            status, answer = http_post_json(f"{sb.rest_url}/admin", payload)
            assert status == 400, payload
            assert isinstance(answer.get("error"), str), answer
        status, answer = _post_raw(f"{sb.rest_url}/admin", b"{not json")
        assert status == 400
        assert "error" in answer
        assert admin(sb)["faults"] == body["faults"], "a refused change was partly applied"
        changed = set_faults(sb, skip_fraction=0, rest_error_rate=0.5, stall_every=30)
        assert changed["faults"]["stall_seconds"] == 2.0  # untouched settings stay
        assert admin(sb)["faults"] == changed["faults"]


# drop_connections_every ------------------------------------------------------------------------


def _until_dropped(ws: ClientConnection, limit: float) -> ConnectionClosed | None:
    deadline = time.monotonic() + limit
    while (left := deadline - time.monotonic()) > 0:
        try:
            ws.recv(timeout=left)
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            return closed
    return None


def test_drop_connections_every_from_config(start_sandbox):
    every = 1.0
    faults = FaultSettings(drop_connections_every=every)
    with start_sandbox(symbols=("BTCUSDT",), rate=50, faults=faults) as sb:
        drops: list[float] = []
        lifetimes: list[float] = []
        for _ in range(3):
            with ws_client(f"{sb.ws_url}/ws/btcusdt@trade") as ws:
                opened = time.monotonic()
                closed = _until_dropped(ws, every + 10)
                assert closed is not None, "the connection was not dropped"
                assert closed.rcvd is None, f"dropped with a close frame {closed.rcvd}; expected an abrupt end"
                drops.append(time.monotonic())
                lifetimes.append(drops[-1] - opened)
        set_faults(sb, drop_connections_every=0)
        record = admin(sb)["record"]
        assert record["dropped_connections"] == len(drops)
        assert all(life <= every + 10 for life in lifetimes)
        gaps = [b - a for a, b in itertools.pairwise(drops)]
        assert all(gap >= every * 0.5 for gap in gaps), gaps  # about every N s, not back to back
        # Off again: a connection lives on.
        with ws_client(f"{sb.ws_url}/ws/btcusdt@trade") as ws:
            assert _until_dropped(ws, 2.5) is None
        assert admin(sb)["record"]["dropped_connections"] == len(drops)


def test_drop_connections_at_runtime(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT",), rate=50) as sb:
        with ws_client(f"{sb.ws_url}/ws/btcusdt@trade") as ws:
            assert _until_dropped(ws, 1.5) is None, "dropped while the fault is off"
            set_faults(sb, drop_connections_every=1.0)
            closed = _until_dropped(ws, 10)
            assert closed is not None
            assert closed.rcvd is None
        set_faults(sb, drop_connections_every=0)
        assert admin(sb)["record"]["dropped_connections"] == 1
        with ws_client(f"{sb.ws_url}/ws/btcusdt@trade") as ws:
            assert _until_dropped(ws, 2.0) is None


# skip_fraction -----------------------------------------------------------------------------------


def _check_skips(sb: Any, frames: list[tuple[float, str]], final: dict[str, Any]) -> None:
    """Ids missing from what the client got are exactly the ids the sandbox says it skipped."""
    received = valid_ids(frames)
    skipped_all = final["record"]["skipped_ids"]
    limits = last_ids(final)
    for symbol in SYMBOLS:
        got = [t for t in received[symbol] if t <= limits[symbol]]
        skipped = skipped_all.get(symbol, [])
        assert skipped, f"{symbol}: nothing was skipped"
        assert len(skipped) == len(set(skipped))
        assert got == sorted(set(got)), "duplicates or out of order"
        assert not set(got) & set(skipped), "a skipped id was sent after all"
        low = min(got[0], min(skipped))
        window = set(range(low, limits[symbol] + 1))
        assert window - set(got) == set(skipped), f"{symbol}: missing ids differ from record.skipped_ids"
        assert 0.03 < len(skipped) / len(window) < 0.6, (len(skipped), len(window))
        # REST history still has every skipped trade.
        assert set(skipped) <= rest_ids(sb, symbol, min(skipped), max(skipped))
    assert final["record"]["skipped"] == sum(len(ids) for ids in skipped_all.values())


def test_skip_fraction_from_config(start_sandbox):
    faults = FaultSettings(skip_fraction=0.25)
    with start_sandbox(symbols=SYMBOLS, rate=100, faults=faults) as sb:
        assert admin(sb)["record"]["skipped"] == 0
        with ws_client(sb.ws_url + COMBINED) as ws:
            frames = read_for(ws, 2.0)
            final = set_faults(sb, skip_fraction=0)
            frames += drain_past(ws, last_ids(final))
        _check_skips(sb, frames, final)
        assert admin(sb)["record"]["skipped_ids"] == final["record"]["skipped_ids"]  # frozen once off


def test_skip_fraction_at_runtime(start_sandbox):
    with start_sandbox(symbols=SYMBOLS, rate=100) as sb:
        with ws_client(sb.ws_url + COMBINED) as ws:
            frames = read_for(ws, 0.5)
            clean = valid_ids(frames)
            assert all(clean[s] for s in SYMBOLS)
            for symbol in SYMBOLS:
                assert_contiguous(clean[symbol])
            set_faults(sb, skip_fraction=0.25)
            frames += read_for(ws, 2.0)
            final = set_faults(sb, skip_fraction=0)
            frames += drain_past(ws, last_ids(final))
        assert all(min(ids) > max(clean[s]) for s, ids in final["record"]["skipped_ids"].items())
        _check_skips(sb, frames, final)


# malformed_fraction ------------------------------------------------------------------------------


def assert_record_is_what_was_received(record: dict[str, Any], frames: list[str], combined: bool = True) -> None:
    """The record's malformed frames are the broken frames the client got: text for text, kind for kind."""
    broken = [frame for frame in frames if classify(frame, combined)[0] != "valid"]
    assert Counter(record["malformed_frames"]) == Counter(broken), "the record's frames are not those received"
    kinds = Counter(classify(frame, combined)[0] for frame in broken)
    assert set(kinds) <= set(MALFORMED_KINDS), kinds
    assert kinds == record["malformed"], (kinds, record["malformed"])
    assert record["malformed_total"] == len(broken)
    assert record["malformed_frames_not_kept"] == 0


def _check_malformed(sb: Any, frames: list[tuple[float, str]], final: dict[str, Any]) -> None:
    # Read once the frames queued by `final` have arrived: the record counts a frame when it is written.
    record = admin(sb)["record"]
    assert_record_is_what_was_received(record, [frame for _, frame in frames])
    assert len(record["malformed"]) >= 4, f"too few kinds of broken frame to tell anything: {record['malformed']}"
    # Every valid trade still arrived, once, in order, and is REST's trade.
    received = valid_ids(frames)
    for symbol in SYMBOLS:
        ids = received[symbol]
        assert_contiguous(ids)
        assert ids[-1] > last_ids(final)[symbol]
        assert set(ids) <= rest_ids(sb, symbol, ids[0], ids[-1])


def test_malformed_fraction_from_config(start_sandbox):
    faults = FaultSettings(malformed_fraction=0.2)
    with start_sandbox(symbols=SYMBOLS, rate=100, faults=faults) as sb:
        with ws_client(sb.ws_url + COMBINED) as ws:
            frames = read_for(ws, 2.5)
            final = set_faults(sb, malformed_fraction=0)
            frames += drain_past(ws, last_ids(final))
        _check_malformed(sb, frames, final)


def test_malformed_fraction_at_runtime(start_sandbox):
    with start_sandbox(symbols=SYMBOLS, rate=100) as sb:
        with ws_client(sb.ws_url + COMBINED) as ws:
            frames = read_for(ws, 0.5)
            assert {classify(frame)[0] for _, frame in frames} == {"valid"}
            set_faults(sb, malformed_fraction=0.2)
            frames += read_for(ws, 2.5)
            final = set_faults(sb, malformed_fraction=0)
            frames += drain_past(ws, last_ids(final))
        _check_malformed(sb, frames, final)


def test_malformed_frames_on_a_raw_stream(start_sandbox):
    faults = FaultSettings(malformed_fraction=0.3)
    with (
        start_sandbox(symbols=("BTCUSDT",), rate=100, faults=faults) as sb,
        ws_client(f"{sb.ws_url}/ws/btcusdt@trade") as ws,
    ):
        frames = read_for(ws, 2.0)
        final = set_faults(sb, malformed_fraction=0)
        frames += drain_past(ws, {"BTCUSDT": last_ids(final)["BTCUSDT"]}, combined=False)
        record = admin(sb)["record"]
    assert_record_is_what_was_received(record, [frame for _, frame in frames], combined=False)
    assert len(record["malformed"]) >= 4, record["malformed"]
    assert_contiguous(valid_ids(frames, combined=False)["BTCUSDT"])


def read_until_dropped(ws: ClientConnection) -> list[str]:
    """Every frame until the sandbox ends the connection without a close frame (a drop)."""
    frames: list[str] = []
    deadline = time.monotonic() + 60
    closed: ConnectionClosed | None = None
    while closed is None and (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(ws.recv(timeout=left))
        except ConnectionClosed as error:
            closed = error
    assert closed is not None, "the connection was not dropped within 60 s"
    assert closed.rcvd is None, f"closed with a close frame {closed.rcvd}, not dropped"
    return frames


def test_every_malformed_frame_sent_across_dropped_connections_is_in_the_record(start_sandbox):
    """A client that reconnects after each drop has received, between them, exactly the record's frames."""
    faults = FaultSettings(malformed_fraction=0.2, drop_connections_every=0.5)
    with start_sandbox(symbols=SYMBOLS, rate=100, faults=faults) as sb:
        received: list[str] = []
        for _ in range(4):
            with ws_client(sb.ws_url + COMBINED) as ws:
                received += read_until_dropped(ws)
        # No client is connected now: nothing is sent, whatever the faults.
        record = set_faults(sb, malformed_fraction=0, drop_connections_every=0)["record"]
    assert record["dropped_connections"] == 4
    assert record["malformed_total"] >= 10, record["malformed"]  # enough to mean something
    assert_record_is_what_was_received(record, received)


def test_malformed_frames_held_back_and_lost_with_a_dropped_connection_are_not_recorded(start_sandbox):
    """Frames queued for a connection during a stall and never written, because it is dropped before
    the stall ends, reached no client: the record does not count them."""
    with start_sandbox(symbols=SYMBOLS, rate=100) as sb, ws_client(sb.ws_url + COMBINED) as ws:
        received = [frame for _, frame in drain_past(ws, last_ids(admin(sb)))]
        # A stall that outlasts the test, renewed every housekeeping round: from its start nothing is written.
        set_faults(sb, stall_every=0.01, stall_seconds=3600)
        wait_until(lambda: admin(sb)["record"]["stalls"] >= 1, 60, "the sandbox to record a stall")
        # Every trade made from now on is queued behind a broken copy of it, and held back.
        held = set_faults(sb, malformed_fraction=1)
        wait_until(
            lambda: all(admin(sb)["symbols"][s]["last_id"] > last_ids(held)[s] for s in SYMBOLS),
            60,
            "trades made (and malformed frames queued) during the stall",
        )
        set_faults(sb, drop_connections_every=0.01)
        wait_until(lambda: admin(sb)["record"]["dropped_connections"] >= 1, 60, "the sandbox to drop the connection")
        final = set_faults(sb, malformed_fraction=0, drop_connections_every=0, stall_every=0, stall_seconds=5)
        received += read_until_dropped(ws)
    assert final["record"]["dropped_connections"] == 1
    assert final["record"]["malformed_total"] == 0, final["record"]["malformed"]
    assert_record_is_what_was_received(final["record"], received)
    assert received, "nothing was streamed before the stall"


def _lagging_client(sb: Any, path: str) -> ClientConnection:
    """A client that reads nothing until asked (it buffers one message) through a small socket buffer:
    the sandbox's socket buffers fill up, then its transport's own."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", sb.port))
    return connect(sb.ws_url + path, sock=sock, ping_interval=None, max_queue=1, compression=None, proxy=None)


def _transport_holds(sb: Any) -> int:
    """Bytes written to the one connection's transport that its socket has not taken yet (read from
    the sandbox's thread: a number, read once)."""
    connections = list(sb.hub.connections)
    return connections[0].transport.get_write_buffer_size() if connections else 0


def test_a_dropped_connection_still_delivers_what_was_written_to_it(start_sandbox):
    """A drop while the client is behind: the frames the record counts as sent, still in the sandbox's
    buffers when the connection is cut, reach the client before the end."""
    faults = FaultSettings(malformed_fraction=1)
    # No pings: a pong arriving after the drop, unread, would make the kernel reset the connection.
    with (
        start_sandbox(symbols=("BTCUSDT",), rate=5000, ping_interval=3600, faults=faults) as sb,
        _lagging_client(sb, "/ws/btcusdt@trade") as ws,
    ):
        wait_until(lambda: _transport_holds(sb) > 64 << 10, 120, "the sandbox's transport to hold frames")
        set_faults(sb, drop_connections_every=0.01)
        wait_until(lambda: admin(sb)["record"]["dropped_connections"] >= 1, 60, "the drop")
        record = set_faults(sb, malformed_fraction=0, drop_connections_every=0)["record"]
        received = read_until_dropped(ws)
    assert record["malformed_total"] > 1000, record["malformed_total"]
    assert_record_is_what_was_received(record, received, combined=False)


def test_the_record_keeps_the_text_of_malformed_frames_up_to_its_bound():
    record = FaultRecord()
    for number in range(MALFORMED_FRAMES_KEPT + 5):
        record.malformed_sent(MALFORMED_KINDS[number % 2], f"frame {number}")
    summary = record.as_dict()
    assert summary["malformed_total"] == MALFORMED_FRAMES_KEPT + 5
    assert sum(summary["malformed"].values()) == MALFORMED_FRAMES_KEPT + 5
    assert summary["malformed_frames"] == [f"frame {number}" for number in range(MALFORMED_FRAMES_KEPT)]
    assert summary["malformed_frames_not_kept"] == 5


# stall_every + stall_seconds ---------------------------------------------------------------------


def _gaps(frames: list[tuple[float, str]], longer_than: float) -> list[tuple[int, float]]:
    """(index of the first frame after the gap, gap length) for every silence longer than given."""
    return [
        (i, frames[i][0] - frames[i - 1][0])
        for i in range(1, len(frames))
        if frames[i][0] - frames[i - 1][0] > longer_than
    ]


def _check_stall(frames: list[tuple[float, str]], stall_seconds: float) -> list[tuple[int, float]]:
    gaps = _gaps(frames, stall_seconds * 0.6)
    assert gaps, "data never stopped"
    # Lower bounds only: a busy machine can lengthen a silence, never shorten what the sandbox held.
    for index, _ in gaps:
        # What resumes first was traded during the stall and held back, not dropped.
        _, trade = classify(frames[index][1])
        assert trade is not None
        arrived_ms = time.time() * 1000 - (time.monotonic() - frames[index][0]) * 1000
        assert arrived_ms - trade["T"] > stall_seconds * 1000 * 0.3
    for symbol, ids in valid_ids(frames).items():
        assert_contiguous(ids)  # nothing lost
        assert symbol in SYMBOLS
    return gaps


def test_stall_from_config(start_sandbox):
    faults = FaultSettings(stall_every=2.0, stall_seconds=1.5)
    with start_sandbox(symbols=SYMBOLS, rate=100, faults=faults) as sb:
        with ws_client(sb.ws_url + COMBINED) as ws:
            frames = read_for(ws, 4.5)
            final = set_faults(sb, stall_every=0)
            frames += drain_past(ws, last_ids(final))
        gaps = _check_stall(frames, 1.5)
        assert final["record"]["stalls"] >= len(gaps)


def read_until_stalled(sb: Any, ws: ClientConnection) -> list[tuple[float, str]]:
    """Frames read until the sandbox's own record counts a stall."""
    frames: list[tuple[float, str]] = []

    def stalled() -> bool:
        frames.extend(read_for(ws, 0.2))
        return admin(sb)["record"]["stalls"] >= 1

    wait_until(stalled, 60, "the sandbox to record a stall")
    return frames


def test_stall_at_runtime(start_sandbox):
    """Judged by the sandbox's record, not the client's clock: no stall while the fault is off, one
    once it is set, none after it is cleared; and across the stall every trade arrives, once."""
    with start_sandbox(symbols=SYMBOLS, rate=100) as sb, ws_client(sb.ws_url + COMBINED) as ws:
        before = drain_past(ws, last_ids(admin(sb)))
        fault_off = admin(sb)
        assert fault_off["record"]["stalls"] == 0, "a stall while the fault is off"
        set_faults(sb, stall_every=2.0, stall_seconds=1.5)
        during = read_until_stalled(sb, ws)
        final = set_faults(sb, stall_every=0)
        after = drain_past(ws, last_ids(final))  # waits out a stall still under way
        tail = drain_past(ws, last_ids(admin(sb)))
        assert admin(sb)["record"]["stalls"] == final["record"]["stalls"], "a stall after the fault was off"
    for symbol, ids in valid_ids(before + during + after + tail).items():
        # From before the fault was set to after it was cleared, held back during the stall, never dropped.
        assert ids[0] <= last_ids(fault_off)[symbol] < last_ids(final)[symbol] < ids[-1]
        assert_contiguous(ids)


# rest_error_rate ---------------------------------------------------------------------------------


REST_PATHS = [
    "/api/v3/ping",
    "/api/v3/time",
    "/api/v3/exchangeInfo",
    "/api/v3/trades?symbol=BTCUSDT&limit=5",
    "/api/v3/historicalTrades?symbol=BTCUSDT&limit=5",
    "/api/v3/aggTrades?symbol=BTCUSDT&limit=5",
    "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5",
]


def _statuses(sb: Any, paths: list[str]) -> list[tuple[int, Any]]:
    out = []
    for path in paths:
        status, _, body = http_get(sb.rest_url + path)
        out.append((status, body))
    return out


def _is_binance_5xx(status: int, body: Any) -> bool:
    return (
        500 <= status <= 599
        and isinstance(body, dict)
        and body.get("code") == -1001
        and isinstance(body.get("msg"), str)
        and set(body) == {"code", "msg"}
    )


def test_rest_error_rate(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT",), rate=20, faults=FaultSettings(rest_error_rate=1.0)) as sb:
        answers = _statuses(sb, REST_PATHS * 2)
        assert all(_is_binance_5xx(status, body) for status, body in answers), answers
        assert admin(sb)["record"]["rest_errors"] == len(answers)

        set_faults(sb, rest_error_rate=0)
        answers = _statuses(sb, REST_PATHS * 2)
        assert all(status == 200 for status, _ in answers), answers
        assert admin(sb)["record"]["rest_errors"] == 2 * len(REST_PATHS)

        set_faults(sb, rest_error_rate=0.5)
        answers = _statuses(sb, ["/api/v3/ping"] * 60)
        errors = [a for a in answers if a[0] != 200]
        assert all(_is_binance_5xx(*a) for a in errors), errors
        assert all(body == {} for status, body in answers if status == 200)
        assert 0 < len(errors) < len(answers), "a fraction gives some errors and some successes"
        assert admin(sb)["record"]["rest_errors"] == 2 * len(REST_PATHS) + len(errors)

        set_faults(sb, rest_error_rate=1)
        assert _is_binance_5xx(*_statuses(sb, ["/api/v3/time"])[0])
