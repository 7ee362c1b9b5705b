"""The sandbox speaks Binance spot's wire format: payloads compared with real Binance samples.

Each sandbox response is compared with a response recorded from Binance itself (in BINANCE_SAMPLES):
the same keys in the same order, the same JSON type per key, and the same textual shape per value
(decimal strings with exactly 8 decimals, millisecond timestamps of the same width).
"""

from __future__ import annotations

import json
import re
import time

import pytest
from websockets.sync.client import connect

from tests.support.net import http_get
from tests.support.paths import BINANCE_SAMPLES

DECIMAL_8 = re.compile(r"^\d+\.\d{8}$")
DIGITS = re.compile(r"^\d+$")
# Keys whose values are times: their width (13 digits for ms) must match Binance's.
TIME_KEYS = {"time", "T", "E"}
REMOVED_FROM_TRADE_EVENT = {"b", "a"}  # buyer/seller order ids, removed by Binance on 2024-06-18


def load_sample(name):
    return json.loads((BINANCE_SAMPLES / name).read_text())


def shape(value):
    """A description of a JSON value's type and textual form, independent of its magnitude."""
    if isinstance(value, str):
        if DECIMAL_8.match(value):
            return ("str", "decimal-8")
        if DIGITS.match(value):
            return ("str", "digits")
        return ("str", "text")
    return (type(value).__name__,)


def assert_same_object_shape(sample, actual, removed=frozenset()):
    expected_keys = [key for key in sample if key not in removed]
    assert list(actual) == expected_keys
    for key in expected_keys:
        assert shape(actual[key]) == shape(sample[key]), (key, sample[key], actual[key])
        if key in TIME_KEYS:
            assert len(str(actual[key])) == len(str(sample[key])), (key, sample[key], actual[key])


def rest(sandbox, path):
    status, _, body = http_get(f"{sandbox.rest_url}{path}")
    assert status == 200, body
    return body


def test_samples_are_what_these_tests_assume():
    """Guard against a changed sample silently weakening the checks below."""
    trades = load_sample("http_spot_market_trades.json")
    assert shape(trades[0]["price"]) == ("str", "decimal-8")
    assert shape(trades[0]["isBuyerMaker"]) == ("bool",)
    assert shape(trades[0]["time"]) == ("int",)
    event = load_sample("ws_spot_trade.json")
    assert set(event["data"]) >= REMOVED_FROM_TRADE_EVENT
    klines = load_sample("http_spot_market_klines.json")
    assert {len(row) for row in klines} == {12}


@pytest.mark.parametrize(
    ("sample_name", "path"),
    [
        ("http_spot_market_trades.json", "/api/v3/trades?symbol=BTCUSDT&limit=10"),
        ("http_spot_market_historical_trades.json", "/api/v3/historicalTrades?symbol=BTCUSDT&limit=10"),
        ("http_spot_market_agg_trades.json", "/api/v3/aggTrades?symbol=BTCUSDT&limit=10"),
    ],
)
def test_rest_trade_rows_match_binance(start_sandbox, sample_name, path):
    sample = load_sample(sample_name)
    with start_sandbox(rate=20, history_seconds=60) as sandbox:
        rows = rest(sandbox, path)
    assert isinstance(rows, list)
    assert len(rows) == 10
    for row in rows:
        assert isinstance(row, dict)
        # Every sample row has the same layout; compare with each, not just the first.
        for sample_row in sample:
            assert_same_object_shape(sample_row, row)
        for key, value in row.items():
            if shape(sample[0][key]) == ("str", "decimal-8"):
                assert DECIMAL_8.match(value), (key, value)


def test_klines_rows_match_binance(start_sandbox):
    sample = load_sample("http_spot_market_klines.json")
    with start_sandbox(rate=20, history_seconds=600) as sandbox:
        rows = rest(sandbox, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5")
    assert len(rows) == 5
    for row in rows:
        assert isinstance(row, list)
        assert len(row) == 12
        for sample_row in sample:
            assert [shape(value) for value in row] == [shape(value) for value in sample_row]
        # Open and close times are milliseconds, as wide as Binance's.
        assert len(str(row[0])) == len(str(sample[0][0]))
        assert len(str(row[6])) == len(str(sample[0][6]))


def receive_trade_events(url, count, timeout=15.0):
    messages = []
    deadline = time.monotonic() + timeout
    with connect(url, open_timeout=10) as ws:
        while len(messages) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {len(messages)} of {count} messages within {timeout} s"
            messages.append(json.loads(ws.recv(timeout=remaining)))
    return messages


def test_combined_stream_trade_event_matches_binance(start_sandbox):
    sample = load_sample("ws_spot_trade.json")
    with start_sandbox(rate=50, symbols=("BTCUSDT", "ETHUSDT")) as sandbox:
        messages = receive_trade_events(f"{sandbox.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade", 40)
    seen_symbols = set()
    for message in messages:
        assert list(message) == list(sample)  # exactly {"stream": ..., "data": ...}
        data = message["data"]
        assert message["stream"] == f"{data['s'].lower()}@trade"
        assert_same_object_shape(sample["data"], data, removed=REMOVED_FROM_TRADE_EVENT)
        assert data["e"] == sample["data"]["e"] == "trade"
        assert DECIMAL_8.match(data["p"])
        assert DECIMAL_8.match(data["q"])
        assert data["E"] >= data["T"]
        seen_symbols.add(data["s"])
    assert seen_symbols == {"BTCUSDT", "ETHUSDT"}


def test_raw_stream_sends_the_bare_event(start_sandbox):
    sample = load_sample("ws_spot_trade.json")
    with start_sandbox(rate=50, symbols=("BTCUSDT",)) as sandbox:
        events = receive_trade_events(f"{sandbox.ws_url}/ws/btcusdt@trade", 10)
    for event in events:
        assert_same_object_shape(sample["data"], event, removed=REMOVED_FROM_TRADE_EVENT)
        assert event["s"] == "BTCUSDT"


def test_microsecond_stream_widens_only_the_times(start_sandbox):
    sample = load_sample("ws_spot_trade.json")["data"]
    with start_sandbox(rate=50, symbols=("BTCUSDT",)) as sandbox:
        events = receive_trade_events(f"{sandbox.ws_url}/ws/btcusdt@trade?timeUnit=MICROSECOND", 10)
        status, _, history = http_get(
            f"{sandbox.rest_url}/api/v3/historicalTrades?symbol=BTCUSDT&limit=20&fromId={events[0]['t']}"
        )
    assert status == 200
    by_id = {row["id"]: row for row in history}
    for event in events:
        assert list(event) == [key for key in sample if key not in REMOVED_FROM_TRADE_EVENT]
        assert len(str(event["T"])) == len(str(sample["T"])) + 3
        assert len(str(event["E"])) == len(str(sample["E"])) + 3
        # The same trade in milliseconds over REST: the µs time truncates to it.
        assert event["T"] // 1000 == by_id[event["t"]]["time"]
