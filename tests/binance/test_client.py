"""The Binance REST client against the sandbox over real HTTP, and its weight budget on a fake clock.

What the client returns is compared with what a plain ``http_get`` of the same URL returns; what it
did to the exchange is read from the sandbox's own ``/admin`` counts (429s, 418s, injected 5xx).
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.binance.client import BinanceClient, BinanceError, BinanceUnavailable, WeightBudget
from include.binance.protocol import WEIGHTS
from include.sandbox.faults import FaultSettings
from tests.support.net import admin, free_port, http_get, http_post_json

SYMBOL = "BTCUSDT"
MICRO = {"X-MBX-TIME-UNIT": "MICROSECOND"}


# Helpers ------------------------------------------------------------------------------------------


def direct(sandbox: Any, endpoint: str, **params: Any) -> Any:
    """The same request as the client's, sent with plain urllib (and the same time-unit header)."""
    query = urlencode({key: value for key, value in params.items() if value is not None})
    status, _, body = http_get(f"{sandbox.rest_url}/api/v3/{endpoint}?{query}", MICRO)
    assert status == 200, body
    return body


class Recorder:
    """A ``sleep`` that records the delays asked for; it sleeps for real only when told to."""

    def __init__(self, real: bool = False) -> None:
        self.delays: list[float] = []
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.real:
            time.sleep(seconds)


def set_faults(sandbox: Any, **changes: float) -> None:
    status, body = http_post_json(f"{sandbox.rest_url}/admin", changes)
    assert status == 200, body


def sleep_to_window_start(window_seconds: float, margin: float = 0.05) -> None:
    """Sleep until just after the next multiple of the window: the sandbox's windows are epoch-aligned."""
    now = time.time()
    time.sleep((math.floor(now / window_seconds) + 1) * window_seconds - now + margin)


@pytest.fixture
def client(history_sandbox: Any) -> Any:
    with BinanceClient(history_sandbox.rest_url, sleep=Recorder()) as binance:
        yield binance


# Each endpoint method returns what the exchange returns -------------------------------------------


def oldest(sandbox: Any, endpoint: str = "historicalTrades", key: str = "id") -> int:
    """The id of the oldest trade (or aggregate) the exchange serves: ids need not start at 1."""
    return int(direct(sandbox, endpoint, symbol=SYMBOL, fromId=1, limit=1)[0][key])


def test_historical_trades_match_a_direct_request(client, history_sandbox):
    first = oldest(history_sandbox)
    for from_id, limit in ((first, 1000), (first + 1233, 7), (first + 4999, 1)):
        got = client.historical_trades(SYMBOL, from_id=from_id, limit=limit)
        assert got == direct(history_sandbox, "historicalTrades", symbol=SYMBOL, fromId=from_id, limit=limit)
        assert [row["id"] for row in got] == list(range(from_id, from_id + limit))


def test_times_come_back_in_microseconds(client, history_sandbox):
    (row,) = client.historical_trades(SYMBOL, from_id=10, limit=1)
    status, _, (plain,) = http_get(
        f"{history_sandbox.rest_url}/api/v3/historicalTrades?symbol={SYMBOL}&fromId=10&limit=1"
    )
    assert status == 200
    assert plain["time"] == row["time"] // 1000  # the default unit is ms; ours is µs
    assert abs(row["time"] - time.time() * 1e6) < 3 * 3600 * 1e6


def test_recent_trades_are_the_latest_history(client, history_sandbox):
    got = client.recent_trades(SYMBOL, limit=5)
    assert len(got) == 5
    # Trades keep coming, so compare with history from the same first id, then check nothing is older.
    assert got == direct(history_sandbox, "historicalTrades", symbol=SYMBOL, fromId=got[0]["id"], limit=5)
    latest = direct(history_sandbox, "trades", symbol=SYMBOL, limit=1)
    assert latest[0]["id"] >= got[-1]["id"]
    assert client.recent_trades(SYMBOL)[-1]["id"] >= got[-1]["id"]  # the default limit of 1 is the last trade


def test_agg_trades_match_a_direct_request(client, history_sandbox):
    from_id = oldest(history_sandbox, "aggTrades", "a") + 99
    by_id = client.agg_trades(SYMBOL, from_id=from_id, limit=50)
    assert by_id == direct(history_sandbox, "aggTrades", symbol=SYMBOL, fromId=from_id, limit=50)
    assert [row["a"] for row in by_id] == list(range(from_id, from_id + 50))
    start, end = by_id[10]["T"], by_id[30]["T"]
    by_time = client.agg_trades(SYMBOL, start_time_us=start, end_time_us=end, limit=1000)
    assert by_time == direct(history_sandbox, "aggTrades", symbol=SYMBOL, startTime=start, endTime=end, limit=1000)
    assert by_time[0]["T"] >= start
    assert by_time[-1]["T"] <= end


def test_klines_match_a_direct_request(client, history_sandbox):
    (first,) = client.historical_trades(SYMBOL, from_id=1, limit=1)
    start = first["time"] - first["time"] % 60_000_000 + 60_000_000
    end = start + 30 * 60_000_000 - 1
    got = client.klines(SYMBOL, "1m", start_time_us=start, end_time_us=end, limit=100)
    assert got == direct(
        history_sandbox, "klines", symbol=SYMBOL, interval="1m", startTime=start, endTime=end, limit=100
    )
    assert len(got) == 30
    assert [row[0] for row in got] == [start + i * 60_000_000 for i in range(30)]


def test_generic_get_matches_a_direct_request(client, history_sandbox):
    assert client.get("ping") == {}
    info = client.get("exchangeInfo", {"symbol": SYMBOL, "symbols": None})  # None parameters are left out
    expected = direct(history_sandbox, "exchangeInfo", symbol=SYMBOL)
    info.pop("serverTime"), expected.pop("serverTime")
    assert info == expected


def test_server_time_matches_a_direct_request(client, history_sandbox):
    before = direct(history_sandbox, "time")["serverTime"]
    served = client.server_time_us()
    after = direct(history_sandbox, "time")["serverTime"]
    # The sandbox answers /time in ms whatever the unit header says; the client reports µs either way.
    scale = 1000 if before < 10**14 else 1
    assert before * scale <= served <= after * scale + scale - 1
    assert abs(served - time.time() * 1e6) < 5e6


def test_first_trade_id_at_or_after_a_time(client, history_sandbox):
    trades = direct(history_sandbox, "historicalTrades", symbol=SYMBOL, fromId=2000, limit=200)
    for index in (0, 17, 100, 150):
        row = trades[index]
        # At a trade's own time: that trade, or an earlier one of the same microsecond.
        same_time = [t for t in trades if t["time"] == row["time"]]
        assert client.first_trade_id_at_or_after(SYMBOL, row["time"]) == (same_time[0]["id"], row["time"])
        # One µs later: the first trade strictly after the time.
        later = next(t for t in trades if t["time"] > row["time"])
        assert client.first_trade_id_at_or_after(SYMBOL, row["time"] + 1) == (later["id"], later["time"])
    assert client.first_trade_id_at_or_after(SYMBOL, int(time.time() * 1e6) + 3600 * 10**6) is None


# Binance's error bodies ---------------------------------------------------------------------------


def test_unknown_symbol_is_a_binance_error(client, history_sandbox):
    status, _, body = http_get(f"{history_sandbox.rest_url}/api/v3/historicalTrades?symbol=NOSUCHCOIN")
    with pytest.raises(BinanceError) as caught:
        client.historical_trades("NOSUCHCOIN", from_id=1)
    error = caught.value
    assert not isinstance(error, BinanceUnavailable)
    assert (error.status, error.code, error.msg) == (status, body["code"], body["msg"])
    assert (error.status, error.code) == (400, -1121)
    assert error.endpoint == "historicalTrades"
    assert client.stats.requests == 1  # a client error is not retried
    assert client._sleep.delays == []


def test_bad_interval_is_a_binance_error(client):
    with pytest.raises(BinanceError) as caught:
        client.klines(SYMBOL, "7m")
    assert (caught.value.status, caught.value.code, caught.value.msg) == (400, -1120, "Invalid interval.")
    assert client.stats.requests == 1


def test_illegal_parameter_is_a_binance_error(client):
    with pytest.raises(BinanceError) as caught:
        client.get("historicalTrades", {"symbol": SYMBOL, "fromId": "abc"})
    assert caught.value.code == -1100
    with pytest.raises(BinanceError) as caught:
        client.get("aggTrades", {"symbol": SYMBOL, "fromId": 1, "startTime": 1})
    assert caught.value.code == -1128


# The weight limit ---------------------------------------------------------------------------------


def test_budget_waits_instead_of_breaking_the_limit(start_sandbox):
    window = 2.0
    with start_sandbox(
        symbols=(SYMBOL,), rate=2.0, history_seconds=3600, weight_limit=200, weight_window_seconds=window
    ) as sb:
        first = oldest(sb)
        sleeps = Recorder(real=True)
        with BinanceClient(sb.rest_url, weight_limit=200, sleep=sleeps) as binance:
            binance.budget.window_seconds = window  # the sandbox's short window instead of Binance's minute
            pages = [binance.historical_trades(SYMBOL, from_id=first + 100 * i, limit=100) for i in range(12)]
            stats = binance.stats
        counts = admin(sb)["rest"]
    # 12 x 25 = 300 weight, more than the 200 of a window: the budget had to wait.
    assert [page[0]["id"] for page in pages] == [first + 100 * i for i in range(12)]
    assert all(len(page) == 100 for page in pages)
    assert stats.rate_limited == 0
    assert stats.requests == 12
    assert counts["429"] == 0
    assert counts["418"] == 0
    assert sleeps.delays, "the budget never waited"
    assert all(0 < delay <= window + 0.1 for delay in sleeps.delays)


def test_429_caused_by_another_client_is_waited_out(start_sandbox):
    window = 10.0  # nine requests must fall in one window even on a busy machine
    with start_sandbox(
        symbols=(SYMBOL,), rate=2.0, history_seconds=3600, weight_limit=200, weight_window_seconds=window
    ) as sb:
        sleeps = Recorder(real=True)
        with BinanceClient(sb.rest_url, weight_limit=200, sleep=sleeps) as binance:
            binance.budget.window_seconds = window
            retry_after: list[str] = []
            binance._http.event_hooks["response"].append(
                lambda response: (
                    retry_after.append(response.headers["Retry-After"]) if response.status_code == 429 else None
                )
            )
            sleep_to_window_start(window)
            # Another process on the same IP uses the whole window: 8 x 25 = 200, exactly the limit.
            for _ in range(8):
                status, headers, body = http_get(f"{sb.rest_url}/api/v3/historicalTrades?symbol={SYMBOL}&fromId=1")
                assert status == 200, body
            assert headers["X-MBX-USED-WEIGHT-1M"] == "200"
            got = binance.historical_trades(SYMBOL, from_id=42, limit=10)
            stats = binance.stats
        counts = admin(sb)["rest"]
        expected = direct(sb, "historicalTrades", symbol=SYMBOL, fromId=42, limit=10)
    assert got == expected
    assert stats.rate_limited == 1
    assert stats.requests == 2
    assert len(retry_after) == 1
    assert sleeps.delays == [float(retry_after[0])]  # exactly what Binance asked for, nothing else
    assert counts["429"] == 1
    assert counts["418"] == 0


def test_418_is_not_retried(start_sandbox):
    with start_sandbox(symbols=(SYMBOL,), rate=2.0, history_seconds=600, weight_limit=50) as sb:
        if time.time() % 60 > 50:
            sleep_to_window_start(60)  # the six requests below must fall in one minute, even on a busy machine
        # Someone else on the IP keeps going after a 429 and gets the IP banned.
        statuses = [http_get(f"{sb.rest_url}/api/v3/historicalTrades?symbol={SYMBOL}")[0] for _ in range(6)]
        assert statuses[:3] == [200, 200, 429]
        assert statuses[-1] == 418
        sleeps = Recorder()
        with BinanceClient(sb.rest_url, sleep=sleeps) as binance, pytest.raises(BinanceError) as caught:
            binance.historical_trades(SYMBOL, from_id=1)
        assert not isinstance(caught.value, BinanceUnavailable)
        assert (caught.value.status, caught.value.code) == (418, -1003)
        assert binance.stats.requests == 1
        assert sleeps.delays == []


# 5xx and network errors ---------------------------------------------------------------------------


def test_server_errors_are_retried_until_success(start_sandbox):
    faults = FaultSettings(rest_error_rate=0.5)
    with start_sandbox(symbols=(SYMBOL,), rate=2.0, history_seconds=3600, faults=faults) as sb:
        sleeps = Recorder()
        with BinanceClient(sb.rest_url, max_attempts=40, sleep=sleeps) as binance:
            pages = [binance.historical_trades(SYMBOL, from_id=1 + 50 * i, limit=50) for i in range(20)]
            stats = binance.stats
        injected = admin(sb)["record"]["rest_errors"]
        set_faults(sb, rest_error_rate=0.0)
        expected = [direct(sb, "historicalTrades", symbol=SYMBOL, fromId=1 + 50 * i, limit=50) for i in range(20)]
    assert pages == expected
    assert stats.server_errors > 0
    assert stats.server_errors == injected
    assert stats.requests == 20 + stats.server_errors
    assert len(sleeps.delays) == stats.server_errors  # one backoff per 5xx


def test_persistent_server_errors_give_up_with_capped_growing_backoff(start_sandbox):
    faults = FaultSettings(rest_error_rate=1.0)
    attempts, cap = 9, 4.0
    with start_sandbox(symbols=(SYMBOL,), rate=2.0, history_seconds=60, faults=faults) as sb:
        sleeps = Recorder()
        with (
            BinanceClient(sb.rest_url, max_attempts=attempts, backoff_cap_seconds=cap, sleep=sleeps) as binance,
            pytest.raises(BinanceUnavailable) as caught,
        ):
            binance.historical_trades(SYMBOL, from_id=1)
        injected = admin(sb)["record"]["rest_errors"]
    assert "9 attempts" in caught.value.msg
    assert binance.stats.requests == attempts
    assert binance.stats.server_errors == attempts
    assert injected == attempts
    delays = sleeps.delays
    # A backoff between attempts, none after the last one (giving up needs no wait).
    assert len(delays) == attempts - 1
    assert all(0 < delay <= cap for delay in delays)
    for attempt, delay in enumerate(delays):
        step = min(cap, 0.25 * 2**attempt)  # doubling from 0.25 s, capped; jittered within [step/2, step]
        assert step / 2 <= delay <= step
    assert delays[-1] >= cap / 2
    uncapped = [delay for attempt, delay in enumerate(delays) if 0.25 * 2 ** (attempt + 1) <= cap]
    assert uncapped == sorted(uncapped)
    assert delays[-1] > delays[0] * 4


def test_closed_port_gives_up_with_network_errors():
    sleeps = Recorder()
    with (
        BinanceClient(f"http://127.0.0.1:{free_port()}", max_attempts=3, timeout_seconds=2, sleep=sleeps) as binance,
        pytest.raises(BinanceUnavailable) as caught,
    ):
        binance.server_time_us()
    assert binance.stats.network_errors == 3
    assert binance.stats.requests == 3
    assert binance.stats.server_errors == 0
    assert "network error" in caught.value.msg
    assert len(sleeps.delays) == 2


def test_client_requests_in_microseconds_and_names_itself(history_sandbox):
    seen: list[httpx.Request] = []
    with BinanceClient(history_sandbox.rest_url) as binance:
        binance._http.event_hooks["request"].append(seen.append)
        binance.agg_trades(SYMBOL, from_id=1, limit=1)
    (request,) = seen
    assert request.headers["X-MBX-TIME-UNIT"] == "MICROSECOND"
    assert request.url.path == "/api/v3/aggTrades"
    assert dict(request.url.params) == {"symbol": SYMBOL, "fromId": "1", "limit": "1"}


# WeightBudget on a fake clock ---------------------------------------------------------------------


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def budget_on(fake: FakeTime, limit: int = 200, reserve: int = 0, window_seconds: float = 60.0) -> WeightBudget:
    return WeightBudget(limit=limit, reserve=reserve, clock=fake.clock, sleep=fake.sleep, window_seconds=window_seconds)


def test_weights_are_binances():
    assert WEIGHTS["historicalTrades"] == 25
    assert WEIGHTS["trades"] == 25
    assert WEIGHTS["aggTrades"] == 4
    assert WEIGHTS["klines"] == 2


def test_budget_sleeps_to_the_start_of_the_next_window():
    fake = FakeTime(6000.0 + 17.25)  # 17.25 s into a minute
    budget = budget_on(fake, limit=100)
    budget.acquire(60)
    assert fake.sleeps == []
    budget.acquire(40)  # exactly the limit: still fits
    assert fake.sleeps == []
    budget.acquire(1)
    (slept,) = fake.sleeps
    assert 6060.0 <= fake.now < 6060.1  # woke just after the minute turned, not a whole minute later
    assert slept == pytest.approx(60.0 - 17.25, abs=0.1)
    assert budget.used == 1  # the new minute holds only the new request
    assert budget.waited_seconds == pytest.approx(slept)


def test_budget_keeps_the_reserve_free():
    fake = FakeTime(120.0)
    budget = budget_on(fake, limit=100, reserve=30)
    budget.acquire(70)
    assert fake.sleeps == []
    budget.acquire(1)
    assert len(fake.sleeps) == 1
    assert 180.0 <= fake.now < 180.1


def test_budget_forgets_a_past_window_without_sleeping():
    fake = FakeTime(0.0)
    budget = budget_on(fake, limit=100, window_seconds=10.0)
    budget.acquire(90)
    fake.now = 10.0  # the next window started on its own
    budget.acquire(90)
    assert fake.sleeps == []
    assert budget.used == 90


def test_observe_takes_the_servers_number():
    fake = FakeTime(30.0)
    budget = budget_on(fake, limit=200)
    budget.acquire(25)
    assert budget.used == 25
    budget.observe("180")  # other processes on the IP used weight too
    assert budget.used == 180
    budget.acquire(25)  # 205 would break the limit
    assert len(fake.sleeps) == 1
    assert 60.0 <= fake.now < 60.1
    budget.observe("10")  # the server knows best, also when it counts less
    assert budget.used == 10
    budget.acquire(190)
    assert len(fake.sleeps) == 1


@pytest.mark.parametrize("header", [None, "", "abc", "-5", "1.5"])
def test_observe_ignores_a_missing_or_broken_header(header):
    fake = FakeTime(30.0)
    budget = budget_on(fake)
    budget.acquire(25)
    budget.observe(header)
    assert budget.used == 25


def test_observe_in_a_new_window_is_kept():
    fake = FakeTime(50.0)
    budget = budget_on(fake, limit=100)
    budget.acquire(95)
    fake.now = 61.0
    budget.observe("4")  # the first answer of the new minute
    assert budget.used == 4
    budget.acquire(96)
    assert fake.sleeps == []
    budget.acquire(1)
    assert len(fake.sleeps) == 1


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=60, max_value=400),
    reserve=st.integers(min_value=0, max_value=30),
    window_seconds=st.sampled_from([1.0, 3.0, 60.0]),
    start=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    steps=st.lists(
        st.tuples(st.sampled_from(sorted(set(WEIGHTS.values()))), st.floats(min_value=0, max_value=2.0)),
        max_size=80,
    ),
)
def test_budget_never_lets_a_window_exceed_the_limit(limit, reserve, window_seconds, start, steps):
    fake = FakeTime(start)
    budget = budget_on(fake, limit=limit, reserve=reserve, window_seconds=window_seconds)
    spent: dict[int, int] = {}
    for weight, pause in steps:
        fake.now += pause
        before = len(fake.sleeps)
        window_before = math.floor(fake.now / window_seconds)
        budget.acquire(weight)
        window = math.floor(fake.now / window_seconds)
        if len(fake.sleeps) > before:
            # It waited only because the request did not fit, and only into the very next window.
            assert spent.get(window_before, 0) + weight > limit - reserve
            assert window == window_before + 1
        spent[window] = spent.get(window, 0) + weight
        assert spent[window] <= limit - reserve
