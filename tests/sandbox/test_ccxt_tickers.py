"""ccxt, unmodified, reads the sandbox's tickers and candles: over REST they agree with each other and
with the trades, and over WebSocket ``watch_ticker`` and ``watch_ohlcv`` keep a live view that ends
equal to REST once the market stops."""

from __future__ import annotations

import asyncio
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlencode

from tests.support.ccxt_client import ccxt_binance
from tests.support.net import http_get
from tests.support.waiting import wait_until

SYMBOL, MARKET = "BTCUSDT", "BTC/USDT"


def direct(sandbox, endpoint, **params):
    status, _, body = http_get(f"{sandbox.rest_url}/api/v3/{endpoint}?{urlencode(params)}")
    assert status == 200, body
    return body


def as_text(payload):
    return {name: str(value) for name, value in payload.items()}


def exact(number):
    """ccxt's float of an 8-decimal string, back to that decimal (it round-trips: under 16 digits)."""
    return Decimal(repr(number))


def test_ccxt_fetch_ticker_tickers_and_ohlcv_agree_with_each_other_and_the_trades(start_sandbox):
    with start_sandbox(rate=2.0, history_seconds=600) as sandbox:
        frozen = sandbox.exchange.now_us()
        sandbox.exchange.clock_us = lambda: frozen

        async def main():
            exchange = ccxt_binance(sandbox)
            try:
                ticker = await exchange.fetch_ticker(MARKET)
                tickers = await exchange.fetch_tickers()
                candles = await exchange.fetch_ohlcv(MARKET, "1m", since=int(ticker["info"]["openTime"]), limit=1000)
                return ticker, tickers, candles
            finally:
                await exchange.close()

        ticker, tickers, candles = asyncio.run(main())
        rest = direct(sandbox, "ticker/24hr", symbol=SYMBOL)
        last_trade = direct(sandbox, "trades", symbol=SYMBOL, limit=1)[0]
    assert as_text(ticker["info"]) == as_text(rest)  # ccxt keeps the raw payload, its numbers as text
    assert set(tickers) == {"BTC/USDT", "ETH/USDT"}
    # ccxt rounds its own 'average' differently for one ticker and for many: not the exchange's figure.
    assert {k: v for k, v in tickers[MARKET].items() if k != "average"} == {
        k: v for k, v in ticker.items() if k != "average"
    }
    assert exact(ticker["last"]) == Decimal(last_trade["price"])
    traded = [c for c in candles if c[5]]
    assert traded
    assert exact(ticker["baseVolume"]) == sum(exact(c[5]) for c in candles)
    assert exact(ticker["high"]) == max(exact(c[2]) for c in traded)
    assert exact(ticker["low"]) == min(exact(c[3]) for c in traded)
    assert (ticker["open"], ticker["close"]) == (traded[0][1], traded[-1][4])


def test_ccxt_pro_watch_ticker_and_ohlcv_end_equal_to_rest(start_sandbox):
    with start_sandbox(symbols=(SYMBOL,), rate=5.0, history_seconds=120) as sandbox:
        frozen: list[int] = []
        real_clock = sandbox.exchange.clock_us
        sandbox.exchange.clock_us = lambda: frozen[0] if frozen else real_clock()

        def rest_candle():
            row = direct(sandbox, "klines", symbol=SYMBOL, interval="1m", limit=1)[0]
            return [row[0], *(float(v) for v in row[1:6])]

        async def main():
            exchange = ccxt_binance(sandbox)
            try:
                live = [await asyncio.wait_for(exchange.watch_ticker(MARKET), 30) for _ in range(2)]
                await asyncio.wait_for(exchange.watch_ohlcv(MARKET, "1m"), 30)
                frozen.append(sandbox.exchange.now_us())  # the market stops
                ticker = live[-1]
                while int(ticker["info"]["C"]) != frozen[0] // 1000:
                    ticker = await asyncio.wait_for(exchange.watch_ticker(MARKET), 30)
                candle = rest_candle()
                candles = await asyncio.wait_for(exchange.watch_ohlcv(MARKET, "1m"), 30)
                while candles[-1] != candle:
                    candles = await asyncio.wait_for(exchange.watch_ohlcv(MARKET, "1m"), 30)
                return live, ticker, candles[-1]
            finally:
                await exchange.close()

        wait_until(lambda: direct(sandbox, "ticker/24hr", symbol=SYMBOL)["count"], 30, "a trade")
        live, ticker, candle = asyncio.run(main())
        rest = direct(sandbox, "ticker/24hr", symbol=SYMBOL)
        assert candle == rest_candle()
    assert [t["symbol"] for t in live] == [MARKET, MARKET]
    assert (ticker["last"], ticker["open"], ticker["high"], ticker["low"]) == tuple(
        float(rest[k]) for k in ("lastPrice", "openPrice", "highPrice", "lowPrice")
    )
    assert (ticker["baseVolume"], ticker["quoteVolume"], ticker["vwap"]) == tuple(
        float(rest[k]) for k in ("volume", "quoteVolume", "weightedAvgPrice")
    )
    # ccxt takes Binance's P, but recomputes a percentage that rounds to zero from the change and the
    # open: either way it rounds to REST's three decimals.
    percentage = Decimal(repr(ticker["percentage"])).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    assert percentage == Decimal(rest["priceChangePercent"])
