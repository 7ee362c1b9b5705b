"""Binance client libraries no one here wrote, pointed at the sandbox, work unmodified.

python-binance drives REST; ccxt's ``ccxt.pro.binance`` streams trades over WebSocket the way it
does against Binance (a connection to ``/ws/<connection number>``, then ``SUBSCRIBE``). Only their
URLs change; every call they make is their own. What they return is checked against the sandbox's
answers read directly over HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import ccxt.pro
import pytest
from binance.client import Client
from binance.exceptions import BinanceAPIException

from tests.support.ccxt_client import ccxt_binance
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
    from_id = direct(history_sandbox, "aggTrades", symbol=SYMBOL, fromId=0, limit=1)[0]["a"] + 100
    by_id = client.get_aggregate_trades(symbol=SYMBOL, fromId=from_id, limit=200)
    assert by_id == direct(history_sandbox, "aggTrades", symbol=SYMBOL, fromId=from_id, limit=200)
    assert [a["a"] for a in by_id] == list(range(from_id, from_id + 200))
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


# ccxt: a WebSocket client that subscribes after connecting ------------------------------------


async def watch_until(exchange: ccxt.pro.binance, symbols: list[str], count: int) -> list[dict[str, Any]]:
    """Trades from ``watch_trades_for_symbols`` until ``count`` have arrived (generous deadline)."""
    seen: list[dict[str, Any]] = []
    while len(seen) < count:
        seen += await asyncio.wait_for(exchange.watch_trades_for_symbols(symbols), 60)
    return seen


def test_ccxt_streams_trades_over_a_numbered_connection_with_subscribe(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT", "ETHUSDT"), rate=50) as sb:

        async def main() -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]], list[str]]:
            exchange = ccxt_binance(sb)
            try:
                markets = await exchange.load_markets()  # ccxt's own call: GET /api/v3/exchangeInfo
                btc = await watch_until(exchange, ["BTC/USDT"], 200)
                # Both symbols in one SUBSCRIBE (ccxt opens its next numbered connection for it).
                both = await watch_until(exchange, ["BTC/USDT", "ETH/USDT"], 200)
                # UNSUBSCRIBE: ccxt waits for the reply that carries its request id.
                await asyncio.wait_for(exchange.un_watch_trades("BTC/USDT"), 60)
                urls = [client.url for client in exchange.clients.values()]
                return sorted(markets), btc, both, urls
            finally:
                await exchange.close()

        markets, btc, both, urls = asyncio.run(main())
        streams = {
            symbol: rest_trades(sb, symbol, [t for t in btc + both if t["info"]["s"] == symbol])
            for symbol in ("BTCUSDT", "ETHUSDT")
        }
    assert markets == ["BTC/USDT", "ETH/USDT"]
    assert urls
    for url in urls:
        assert url.startswith(f"{sb.ws_url}/ws/")
        assert url.removeprefix(f"{sb.ws_url}/ws/").isdigit()  # a connection number, not a stream
    assert {trade["symbol"] for trade in both} >= {"ETH/USDT"}
    for symbol, (streamed, rest) in streams.items():
        assert streamed, symbol
        assert streamed == rest, symbol  # every trade ccxt saw is the exchange's trade, as REST has it


def rest_trades(sandbox, symbol: str, streamed: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """The streamed trades of ``symbol`` (raw payload fields, deduplicated) and REST's same ids."""
    by_id = {t["info"]["t"]: t["info"] for t in streamed}
    ids = sorted(by_id)
    rows = direct(sandbox, "historicalTrades", symbol=symbol, fromId=ids[0], limit=1000)
    rest = {row["id"]: row for row in rows}
    mine = [(i, by_id[i]["p"], by_id[i]["q"], by_id[i]["T"], by_id[i]["m"]) for i in ids]
    theirs = [(i, rest[i]["price"], rest[i]["qty"], rest[i]["time"], rest[i]["isBuyerMaker"]) for i in ids if i in rest]
    return mine, theirs
