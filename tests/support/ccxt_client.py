"""ccxt's Binance, unmodified, pointed at a sandbox."""

from __future__ import annotations

import ccxt.pro

from include.sandbox.server import RunningSandbox


def ccxt_binance(sandbox: RunningSandbox) -> ccxt.pro.binance:
    """ccxt's Binance, on the sandbox: its spot REST and WebSocket URLs, and spot markets only (the
    futures exchangeInfo it would also load is not Binance spot). Nothing else is changed."""
    exchange = ccxt.pro.binance({"options": {"fetchMarkets": {"types": ["spot"]}}})
    exchange.urls["api"]["public"] = f"{sandbox.rest_url}/api/v3"
    exchange.urls["api"]["ws"]["spot"] = f"{sandbox.ws_url}/ws"
    return exchange
