"""The one Binance spot REST client of the product: public market data, within the weight limit.

Binance meters REST use per IP in request *weight* per clock minute and reports the running total
in ``X-MBX-USED-WEIGHT-1M``. Past the limit it answers 429 with ``Retry-After``; a client that keeps
going is banned with 418, from two minutes up to three days. So this client:

- budgets from the header: before each request it checks that the weight fits in what is left of
  the current minute (less a reserve for other processes on the same IP), else it sleeps to the
  next minute. The header is the IP's total, so concurrent tasks see each other's use;
- honours ``Retry-After`` on a 429 (which the budget should never let happen) and backs off
  exponentially on 5xx and network errors;
- turns Binance's error bodies (``{"code": -1121, "msg": "Invalid symbol."}``) into ``BinanceError``.

Times are asked for and returned in microseconds (``X-MBX-TIME-UNIT: MICROSECOND``), the unit of
the data contract.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from include.binance.protocol import MAX_LIMIT, WEIGHTS
from include.binance.protocol import WEIGHT_LIMIT_PER_MINUTE as DEFAULT_WEIGHT_LIMIT
from include.timeutil import us_from_ms_or_us

log = logging.getLogger(__name__)


class BinanceError(RuntimeError):
    """Binance refused a request; ``code`` and ``msg`` are Binance's own."""

    def __init__(self, status: int, code: int | None, msg: str, endpoint: str) -> None:
        super().__init__(f"Binance {endpoint}: HTTP {status}, code {code}: {msg}")
        self.status, self.code, self.msg, self.endpoint = status, code, msg, endpoint


class BinanceUnavailable(BinanceError):
    """5xx answers or network errors outlasted every retry."""


class UnlistedSymbols(ValueError):
    """Symbols the exchange does not list (or does not trade); the message names them and the exchange."""

    def __init__(self, symbols: list[str], base_url: str, trading: bool) -> None:
        names = ", ".join(map(repr, symbols))
        subject = f"symbol {names} is" if len(symbols) == 1 else f"symbols {names} are"
        super().__init__(f"{subject} not listed{' as trading' if trading else ''} on {base_url}")
        self.symbols = symbols


@dataclass
class WeightBudget:
    """This process's view of the IP's request weight in the current minute window."""

    limit: int = DEFAULT_WEIGHT_LIMIT
    reserve: int = 100  # left for other processes on the same IP, whose use we learn only afterwards
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    window_seconds: float = 60.0
    used: int = 0
    window: int = -1
    waited_seconds: float = field(default=0.0)

    def _roll(self) -> None:
        window = int(self.clock() // self.window_seconds)
        if window != self.window:
            self.window, self.used = window, 0

    def acquire(self, weight: int) -> None:
        """Block until ``weight`` fits in the current window."""
        self._roll()
        if self.used + weight > self.limit - self.reserve:
            pause = (self.window + 1) * self.window_seconds - self.clock() + 0.05
            if pause > 0:
                log.info("weight budget: %d of %d used this minute; waiting %.1f s", self.used, self.limit, pause)
                self.sleep(pause)
                self.waited_seconds += pause
            self._roll()
        self.used += weight  # until the server says otherwise

    def observe(self, used_header: str | None) -> None:
        """The server's count for the IP: the truth, including other processes' use."""
        if used_header and used_header.isdigit():
            self._roll()
            self.used = int(used_header)


@dataclass
class RequestStats:
    requests: int = 0
    rate_limited: int = 0  # 429s
    server_errors: int = 0
    network_errors: int = 0


class BinanceClient:
    def __init__(
        self,
        base_url: str,
        weight_limit: int = DEFAULT_WEIGHT_LIMIT,
        timeout_seconds: float = 10.0,
        max_attempts: int = 8,
        backoff_cap_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.budget = WeightBudget(limit=weight_limit, sleep=sleep)
        self.stats = RequestStats()
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._backoff_cap = backoff_cap_seconds
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_seconds,
            headers={"X-MBX-TIME-UNIT": "MICROSECOND", "User-Agent": "cryptoflow"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BinanceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _backoff(self, attempt: int) -> float:
        step = min(self._backoff_cap, 0.25 * 2 ** min(attempt, 16))
        return random.uniform(step / 2, step)

    def _wait(self, seconds: float, attempt: int) -> None:
        """Wait before the next attempt; after the last one there is none, so giving up is immediate."""
        if attempt + 1 < self._max_attempts:
            self._sleep(seconds)

    def get(self, endpoint: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``/api/v3/<endpoint>`` within the weight budget, retrying what is worth retrying."""
        weight = WEIGHTS[endpoint]
        clean = {key: value for key, value in (params or {}).items() if value is not None}
        last_problem = ""
        for attempt in range(self._max_attempts):
            self.budget.acquire(weight)
            self.stats.requests += 1
            try:
                response = self._http.get(f"/api/v3/{endpoint}", params=clean)
            except httpx.TransportError as error:
                self.stats.network_errors += 1
                last_problem = f"network error: {error}"
                self._wait(self._backoff(attempt), attempt)
                continue
            self.budget.observe(response.headers.get("X-MBX-USED-WEIGHT-1M"))
            if response.status_code == 200:
                return _json_body(response, endpoint)
            body = _error_body(response)
            if response.status_code == 429:
                self.stats.rate_limited += 1
                retry_after = float(response.headers.get("Retry-After", "60"))
                log.warning("429 from %s: waiting the %s s Binance asks for", endpoint, retry_after)
                self._wait(retry_after, attempt)
                continue
            if response.status_code == 418:
                raise BinanceError(418, body.get("code"), str(body.get("msg", "IP banned")), endpoint)
            if response.status_code >= 500:
                self.stats.server_errors += 1
                last_problem = f"HTTP {response.status_code}: {body.get('msg', response.text[:200])}"
                self._wait(self._backoff(attempt), attempt)
                continue
            raise BinanceError(response.status_code, body.get("code"), str(body.get("msg", response.text)), endpoint)
        raise BinanceUnavailable(0, None, f"gave up after {self._max_attempts} attempts: {last_problem}", endpoint)

    # Endpoints the product uses ---------------------------------------------------------------

    def server_time_us(self) -> int:
        # serverTime may come in ms despite X-MBX-TIME-UNIT (the sandbox does that)
        return us_from_ms_or_us(int(self.get("time")["serverTime"]))

    def symbol_statuses(self) -> dict[str, str | None]:
        """Every symbol the exchange lists, with its status (``TRADING``, ``BREAK``, ...; None if not given)."""
        info = self.get("exchangeInfo")
        return {str(item["symbol"]): item.get("status") for item in info.get("symbols", [])}

    def historical_trades(self, symbol: str, from_id: int, limit: int = MAX_LIMIT) -> list[dict[str, Any]]:
        return self.get("historicalTrades", {"symbol": symbol, "fromId": from_id, "limit": limit})

    def recent_trades(self, symbol: str, limit: int = 1) -> list[dict[str, Any]]:
        return self.get("trades", {"symbol": symbol, "limit": limit})

    def agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_time_us: int | None = None,
        end_time_us: int | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        return self.get(
            "aggTrades",
            {"symbol": symbol, "fromId": from_id, "startTime": start_time_us, "endTime": end_time_us, "limit": limit},
        )

    def klines(
        self,
        symbol: str,
        interval: str,
        start_time_us: int | None = None,
        end_time_us: int | None = None,
        limit: int = 500,
    ) -> list[list[Any]]:
        return self.get(
            "klines",
            {
                "symbol": symbol,
                "interval": interval,
                "startTime": start_time_us,
                "endTime": end_time_us,
                "limit": limit,
            },
        )

    def first_trade_id_at_or_after(self, symbol: str, time_us: int) -> tuple[int, int] | None:
        """(trade id, trade time µs) of the first trade at or after ``time_us``; None if none yet.

        aggTrades with ``startTime`` and ``limit=1`` answers it for weight 4: the first aggregate at
        or after the time, whose ``f`` is its first trade id.
        """
        rows = self.agg_trades(symbol, start_time_us=time_us, limit=1)
        return (int(rows[0]["f"]), int(rows[0]["T"])) if rows else None


def unlisted_symbols(client: BinanceClient, symbols: Iterable[str], *, trading: bool = True) -> list[str]:
    """Which of ``symbols`` the exchange does not list, in the order given (one exchangeInfo request).

    With ``trading`` (what a stream needs) a listed symbol whose status is given and is not
    ``TRADING`` counts as unlisted too; without it (history of a halted or delisted pair) it does not.
    """
    statuses = client.symbol_statuses()
    return [
        symbol
        for symbol in dict.fromkeys(symbols)
        if symbol not in statuses or (trading and statuses[symbol] not in (None, "TRADING"))
    ]


def require_listed(client: BinanceClient, symbols: Iterable[str], *, trading: bool = True) -> None:
    """Raise ``UnlistedSymbols`` naming every one of ``symbols`` the exchange does not list."""
    unlisted = unlisted_symbols(client, symbols, trading=trading)
    if unlisted:
        raise UnlistedSymbols(unlisted, client.base_url, trading)


def _json_body(response: httpx.Response, endpoint: str) -> Any:
    """A 200's JSON; a body that is not JSON means the URL is not a Binance API, named as such."""
    try:
        return response.json()
    except ValueError:
        problem = f"the answer is not JSON (is this a Binance API?): {response.text[:80]!r}"
        raise BinanceError(200, None, problem, endpoint) from None


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"msg": response.text[:200]}
    return body if isinstance(body, dict) else {"msg": str(body)[:200]}
