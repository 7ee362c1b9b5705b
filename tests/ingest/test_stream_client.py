"""The small parts of the stream client (include/ingest/stream.py): shards, URLs, backoff, budget."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from include.ingest.stream import (
    MAX_STREAMS_PER_CONNECTION,
    ConnectionBudget,
    ShardConnection,
    StreamSettings,
    backoff_delay,
    shard,
    stream_names,
    stream_url,
)

# Shards -------------------------------------------------------------------------------------------


def test_binance_allows_1024_streams_per_connection():
    assert MAX_STREAMS_PER_CONNECTION == 1024


@pytest.mark.parametrize("size", [0, -1, 1025, 5000])
def test_a_shard_size_outside_1_to_1024_is_refused(size):
    with pytest.raises(ValueError, match=str(size)):
        shard(["btcusdt@trade"], size)


def test_shards_cover_every_stream_once_in_order_and_never_exceed_the_size():
    streams = [f"sym{i}usdt@trade" for i in range(2500)]
    shards = shard(streams)
    assert [len(part) for part in shards] == [1024, 1024, 452]
    assert [name for part in shards for name in part] == streams
    assert [len(part) for part in shard(streams[:7], 3)] == [3, 3, 1]
    assert shard(streams[:1024]) == [streams[:1024]]
    assert shard(streams[:5], 1) == [[name] for name in streams[:5]]
    assert shard([]) == []


def test_stream_names_are_lower_case_trade_streams():
    assert stream_names(("BTCUSDT", "ETHBTC")) == ["btcusdt@trade", "ethbtc@trade"]


# URLs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["ws://127.0.0.1:9100", "ws://127.0.0.1:9100/", "wss://stream.binance.com:9443"])
def test_stream_url_is_a_combined_stream_in_microseconds(base):
    url = stream_url(base, ["btcusdt@trade", "ethusdt@trade"])
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == base.rstrip("/")
    assert parts.path == "/stream"
    assert parse_qs(parts.query) == {"streams": ["btcusdt@trade/ethusdt@trade"], "timeUnit": ["MICROSECOND"]}


# Backoff ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(12))
def test_backoff_is_between_half_and_all_of_the_capped_exponential_step(attempt):
    base, cap = 0.5, 30.0
    step = min(cap, base * 2**attempt)
    rng = random.Random(attempt)
    delays = [backoff_delay(attempt, base, cap, rng) for _ in range(300)]
    assert all(step / 2 <= delay <= step for delay in delays), (step, min(delays), max(delays))
    # Jitter: the delays spread over the interval instead of all clients retrying in lock step.
    assert len(set(delays)) == len(delays)
    assert min(delays) < step * 0.6
    assert max(delays) > step * 0.9


def test_backoff_never_exceeds_the_cap_however_many_attempts_failed():
    # An outage of a few hours at the 30 s cap is about a thousand failed attempts.
    rng = random.Random(7)
    for attempt in (20, 64, 1023, 1024, 1100, 10_000):
        delay = backoff_delay(attempt, 0.5, 30.0, rng)
        assert 15.0 <= delay <= 30.0, (attempt, delay)


def test_backoff_grows_with_the_attempts_until_the_cap():
    rng = random.Random(3)
    means = [sum(backoff_delay(n, 0.1, 5.0, rng) for _ in range(400)) / 400 for n in range(9)]
    # 0.1 s doubling: 0.1, 0.2, ... 3.2, then capped at 5 from attempt 6 on.
    assert means[:7] == sorted(means[:7])
    for n in range(6):
        assert means[n] == pytest.approx(0.75 * 0.1 * 2**n, rel=0.1)
    for n in (6, 7, 8):
        assert means[n] == pytest.approx(0.75 * 5.0, rel=0.1)  # capped: uniform over [2.5, 5]


# Connection budget --------------------------------------------------------------------------------


# The test stamps an attempt just after acquire() returns, the budget just before: on a busy machine
# the process can be preempted in between, so one stamp may come late and the next on time. 50 ms
# covers that and still catches a budget that lets limit + 1 through in a window (those come within
# the shards' 0-50 ms pauses of each other, far below window - 50 ms).
STAMP_SLACK = 0.05


def _window_violations(stamps: list[float], limit: int, window: float) -> list[tuple[float, float]]:
    """Pairs of attempts ``limit`` apart that are closer than ``window``: more than ``limit`` in a window."""
    stamps = sorted(stamps)
    return [(a, b) for a, b in zip(stamps, stamps[limit:], strict=False) if b - a < window - STAMP_SLACK]


def test_the_budget_never_allows_more_than_n_attempts_per_sliding_window():
    limit, window = 3, 0.4

    async def main() -> list[float]:
        budget = ConnectionBudget(limit, window)
        stamps: list[float] = []

        async def shard_attempts(count: int) -> None:
            for _ in range(count):
                await budget.acquire()
                stamps.append(time.monotonic())
                await asyncio.sleep(random.uniform(0, 0.05))

        # Four shards share one budget, as the worker's shards share one per process.
        await asyncio.wait_for(asyncio.gather(*(shard_attempts(3) for _ in range(4))), 60)
        return stamps

    stamps = asyncio.run(main())
    assert len(stamps) == 12
    assert _window_violations(stamps, limit, window) == []
    # Twelve attempts at three per window need at least three full windows after the first.
    assert max(stamps) - min(stamps) >= 3 * window - STAMP_SLACK


def test_the_first_n_attempts_are_not_delayed_by_the_budget():
    async def main() -> int:
        budget = ConnectionBudget(5, 3600.0)
        for _ in range(5):
            await asyncio.wait_for(budget.acquire(), 30)
        try:
            await asyncio.wait_for(budget.acquire(), 0.5)
        except TimeoutError:
            return 5
        return 6

    assert asyncio.run(main()) == 5  # the sixth waits for the (hour-long) window


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_shard_that_cannot_connect_retries_only_within_the_budget_and_stops_on_request():
    """Nothing listens: with a budget of 3 attempts per 10 minutes, 3 s of fast retries make 3 attempts,
    and a stop request is honoured at once, not after the budget's window."""
    settings = StreamSettings(
        ws_url=f"ws://127.0.0.1:{_closed_port()}",
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.05,
        open_timeout_seconds=5,
    )
    states: list[dict[str, object]] = []

    async def main() -> None:
        stop = asyncio.Event()
        connection = ShardConnection(
            ["btcusdt@trade"],
            settings,
            lambda frame: None,
            lambda frame: None,
            ConnectionBudget(3, 600.0),
            on_state=states.append,
        )
        task = asyncio.create_task(connection.run(stop))
        # Wait for the budget to be spent: three failed attempts, then the wait for the window.
        deadline = asyncio.get_running_loop().time() + 120
        while sum(state["state"] == "reconnecting" for state in states) < 3:
            assert asyncio.get_running_loop().time() < deadline, states
            await asyncio.sleep(0.05)
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 30)  # far less than the 600 s window it would otherwise wait out
        assert connection.connects == 0

    asyncio.run(main())
    failures = [state for state in states if state["state"] == "reconnecting"]
    assert len(failures) == 3, failures
    assert [state["attempt"] for state in failures] == [1, 2, 3]
    assert all(state["error"] for state in failures)
