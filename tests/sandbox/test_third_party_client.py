"""A Binance client library no one here wrote (python-binance), pointed at the sandbox, works unmodified.

Only its base URL changes; every call it makes is its own. What it returns is checked against the
sandbox's answers read directly over HTTP.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from binance.client import Client
from binance.exceptions import BinanceAPIException

from tests.support.net import http_get

SYMBOL = "BTCUSDT"
MINUTE = 60_000


def client_for(sandbox, **kwargs):
    client = Client(ping=False, **kwargs)  # no API key: market data is public
    client.API_URL = f"{sandbox.rest_url}/api"
    return client


def direct(sandbox, endpoint, headers=None, **params):
    query = urlencode({k: v for k, v in params.items() if v is not None})
    status, _, body = http_get(f"{sandbox.rest_url}/api/v3/{endpoint}?{query}", headers)
    assert status == 200, body
    return body


def server_ms(sandbox):
    return direct(sandbox, "time")["serverTime"]


@pytest.fixture(scope="module")
def client(history_sandbox):
    return client_for(history_sandbox)


@pytest.fixture(scope="module")
def first_trade(history_sandbox):
    return direct(history_sandbox, "historicalTrades", symbol=SYMBOL, fromId=0, limit=1)[0]


def test_client_really_talks_to_the_sandbox(client, history_sandbox):
    assert client.ping() == {}
    before = server_ms(history_sandbox)
    served = client.get_server_time()["serverTime"]
    after = server_ms(history_sandbox)
    assert before <= served <= after


def test_exchange_info(client, history_sandbox):
    theirs = client.get_exchange_info()
    ours = direct(history_sandbox, "exchangeInfo")
    assert {k: v for k, v in theirs.items() if k != "serverTime"} == {
        k: v for k, v in ours.items() if k != "serverTime"
    }
    symbols = {s["symbol"] for s in theirs["symbols"]}
    assert symbols == {"BTCUSDT", "ETHUSDT"}
    info = client.get_symbol_info("ETHUSDT")  # a library helper built on exchangeInfo
    assert info is not None
    assert info["baseAsset"] == "ETH"
    assert info["quoteAsset"] == "USDT"


def test_recent_trades(client, history_sandbox):
    recent = client.get_recent_trades(symbol=SYMBOL, limit=20)
    assert len(recent) == 20
    ids = [t["id"] for t in recent]
    assert ids == list(range(ids[0], ids[0] + 20))
    assert direct(history_sandbox, "historicalTrades", symbol=SYMBOL, fromId=ids[0], limit=20) == recent


def test_historical_trades(client, history_sandbox, first_trade):
    from_id = first_trade["id"] + 1234
    theirs = client.get_historical_trades(symbol=SYMBOL, fromId=from_id, limit=300)
    assert len(theirs) == 300
    assert theirs[0]["id"] == from_id
    assert theirs == direct(history_sandbox, "historicalTrades", symbol=SYMBOL, fromId=from_id, limit=300)


def test_aggregate_trades(client, history_sandbox, first_trade):
    by_id = client.get_aggregate_trades(symbol=SYMBOL, fromId=100, limit=200)
    assert by_id == direct(history_sandbox, "aggTrades", symbol=SYMBOL, fromId=100, limit=200)
    assert [a["a"] for a in by_id] == list(range(100, 300))
    start = first_trade["time"] + 30 * MINUTE
    end = start + 5 * MINUTE
    by_time = client.get_aggregate_trades(symbol=SYMBOL, startTime=start, endTime=end, limit=1000)
    assert by_time
    assert by_time == direct(history_sandbox, "aggTrades", symbol=SYMBOL, startTime=start, endTime=end, limit=1000)
    assert all(start <= a["T"] <= end for a in by_time)


def test_klines(client, history_sandbox, first_trade):
    start = first_trade["time"] - first_trade["time"] % MINUTE + MINUTE
    end = start + 60 * MINUTE
    theirs = client.get_klines(symbol=SYMBOL, interval=Client.KLINE_INTERVAL_1MINUTE, startTime=start, endTime=end)
    assert len(theirs) == 61
    assert theirs == direct(history_sandbox, "klines", symbol=SYMBOL, interval="1m", startTime=start, endTime=end)


def test_microsecond_time_unit(history_sandbox, first_trade):
    client = client_for(history_sandbox, time_unit="MICROSECOND")
    theirs = client.get_historical_trades(symbol=SYMBOL, fromId=first_trade["id"], limit=50)
    in_ms = direct(history_sandbox, "historicalTrades", symbol=SYMBOL, fromId=first_trade["id"], limit=50)
    assert [t["time"] // 1000 for t in theirs] == [t["time"] for t in in_ms]
    assert any(t["time"] % 1000 for t in theirs)


def test_errors_reach_the_library_as_binance_errors(client):
    with pytest.raises(BinanceAPIException) as caught:
        client.get_recent_trades(symbol="NOSUCHCOIN")
    assert caught.value.status_code == 400
    assert caught.value.code == -1121
    assert caught.value.message == "Invalid symbol."
    with pytest.raises(BinanceAPIException) as caught:
        client.get_klines(symbol=SYMBOL, interval="7m")
    assert caught.value.code == -1120


def test_aggregate_trade_iter_from_a_start_time(client, history_sandbox):
    start = server_ms(history_sandbox) - 10 * MINUTE
    streamed = list(client.aggregate_trade_iter(SYMBOL, start_str=start))
    assert len(streamed) > 100
    first = direct(history_sandbox, "aggTrades", symbol=SYMBOL, startTime=start, limit=1)[0]
    assert streamed[0] == first
    assert streamed[0]["T"] >= start
    ids = [a["a"] for a in streamed]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # no aggregate lost or repeated between pages
    ours = []
    while len(ours) < len(streamed):
        ours += direct(history_sandbox, "aggTrades", symbol=SYMBOL, fromId=ids[0] + len(ours), limit=1000)
    assert ours[: len(streamed)] == streamed
    # Resuming from the last known aggregate id yields what came after it.
    resumed = client.aggregate_trade_iter(SYMBOL, last_id=ids[-50])
    assert [next(resumed) for _ in range(49)] == streamed[-49:]


def test_get_historical_klines_pages_like_our_reads(client, history_sandbox, first_trade):
    first_open = first_trade["time"] - first_trade["time"] % MINUTE
    now = server_ms(history_sandbox)
    end = now - now % MINUTE - MINUTE  # closed minutes only, so nothing changes between reads
    minutes = client.get_historical_klines(SYMBOL, Client.KLINE_INTERVAL_1MINUTE, start_str=0, end_str=end)
    assert minutes[0][0] == first_open  # the library found the first kline by itself
    assert minutes[-1][0] == end
    assert minutes == direct(
        history_sandbox, "klines", symbol=SYMBOL, interval="1m", startTime=0, endTime=end, limit=1000
    )
    # 1s klines over 25 minutes: 1,500 rows, more than one page of 1,000.
    start = first_open + 10 * MINUTE
    seconds_end = start + 25 * MINUTE - 1000
    seconds = client.get_historical_klines(SYMBOL, Client.KLINE_INTERVAL_1SECOND, start_str=start, end_str=seconds_end)
    assert [k[0] for k in seconds] == list(range(start, seconds_end + 1, 1000))
    ours = direct(
        history_sandbox, "klines", symbol=SYMBOL, interval="1s", startTime=start, endTime=seconds_end, limit=1000
    )
    ours += direct(
        history_sandbox,
        "klines",
        symbol=SYMBOL,
        interval="1s",
        startTime=ours[-1][0] + 1,
        endTime=seconds_end,
        limit=1000,
    )
    assert seconds == ours
