"""The sandbox exchange in tests: a config on a free port, its REST history, an in-process stream,
what its faults could have lost, and the lake judged against its history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from include.ingest.gaps import StartBoundary
from include.ingest.stream import StreamSettings
from include.ingest.worker import StreamWorker, WorkerSettings
from include.lake.store import ObjectStore
from include.lake.trades import TradeColumns, read_trades
from include.sandbox.config import SandboxConfig
from include.sandbox.server import RunningSandbox
from tests.support.net import MICRO, http_get


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """A sandbox on a free port; keyword arguments override SandboxConfig fields."""
    return replace(SandboxConfig(port=0), **overrides)


def rest_history(
    rest_url: str,
    symbol: str = "BTCUSDT",
    from_id: int = 0,
    headers: dict[str, str] | None = None,
    until_us: int | None = None,
    to_id: int | None = None,
    wait_out_errors: bool = False,
) -> list[dict[str, Any]]:
    """Every trade from ``from_id`` on, paged with historicalTrades (``limit=1000``) as a backfill would.

    Paging stops on an empty page, once ``to_id`` is reached, or once a page reaches ``until_us``
    (in the unit ``headers`` ask for); trades with ``id >= to_id`` or ``time >= until_us`` are left out.
    Any answer but 200 fails the test, unless ``wait_out_errors``: then a 429 is waited out
    (``Retry-After``) and a 5xx asked again.
    """
    rows: list[dict[str, Any]] = []
    while to_id is None or from_id < to_id:
        url = f"{rest_url}/api/v3/historicalTrades?symbol={symbol}&fromId={from_id}&limit=1000"
        status, head, page = http_get(url, headers)
        if wait_out_errors and status == 429:
            time.sleep(float({name.lower(): value for name, value in head.items()}["retry-after"]))
            continue
        if wait_out_errors and status >= 500:
            continue
        assert status == 200, (url, status, page)
        assert len(page) <= 1000
        rows.extend(
            row for row in page if (to_id is None or row["id"] < to_id) and (until_us is None or row["time"] < until_us)
        )
        if not page or (until_us is not None and page[-1]["time"] >= until_us):
            break
        from_id = page[-1]["id"] + 1
    return rows


def stream_for(
    lake: ObjectStore,
    ws_url: str,
    seconds: float,
    symbols: tuple[str, ...] = ("BTCUSDT",),
    before_stop: Callable[[StreamWorker], None] | None = None,
    flush_seconds: float = 1.0,
    worker_settings: dict[str, Any] | None = None,
    start_boundary: StartBoundary | None = None,
    **stream: Any,
) -> StreamWorker:
    """Run a StreamWorker in this process for ``seconds``, then stop it (it flushes what is left).

    ``before_stop(worker)`` runs (in a thread) after the ``seconds`` and before the stop; ``worker_settings``
    are WorkerSettings fields besides symbols, stream and flush_seconds; ``stream`` are
    StreamSettings fields besides ``ws_url``; ``start_boundary`` is the worker's (no start gap without).
    """
    settings = WorkerSettings(
        symbols=symbols,
        stream=StreamSettings(ws_url=ws_url, **stream),
        flush_seconds=flush_seconds,
        **(worker_settings or {}),
    )
    worker = StreamWorker(settings, lake, start_boundary=start_boundary)

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await asyncio.wait([running], timeout=seconds)
        assert not running.done(), f"the worker ended early: {running.exception() if running.done() else ''}"
        if before_stop is not None:
            await asyncio.to_thread(before_stop, worker)
        stop.set()
        await asyncio.wait_for(running, 60)

    asyncio.run(main())
    return worker


def id_runs(ids: set[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive ids, ``(first, last)``, in order."""
    runs: list[tuple[int, int]] = []
    for trade_id in sorted(ids):
        if runs and trade_id == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], trade_id)
        else:
            runs.append((trade_id, trade_id))
    return runs


class CutRecorder:
    """What the sandbox's connection cuts could have lost, from the exchange's own record.

    The fault record counts the cuts (``dropped_connections``); this listener on the exchange's
    trades (handed over in id order, on the sandbox's loop, between the cuts) notes the last id of
    each symbol made before each cut. A cut loses what was in flight on the connection and what was
    made until the client is subscribed again: per symbol, one run of consecutive ids that starts
    at or before that last id and ends at or after it. Anything else missing was lost by the client.
    """

    def __init__(self, sandbox: RunningSandbox) -> None:
        self._exchange = sandbox.exchange
        self._last: dict[str, int] = {}
        self._seen = self._exchange.record.dropped_connections
        self.cuts: list[dict[str, int]] = []  # per cut: the last id of each symbol made before it
        self._exchange.listeners.append(self._on_trades)

    def _note_cuts(self) -> None:
        dropped = self._exchange.record.dropped_connections
        if dropped != self._seen:
            self._seen = dropped
            self.cuts.append(dict(self._last))

    def _on_trades(self, new: dict[str, list[Any]]) -> None:
        self._note_cuts()
        for symbol, trades in new.items():
            self._last[symbol] = trades[-1].trade_id

    def unexplained(self, symbol: str, missing: set[int]) -> list[tuple[int, int]]:
        """The runs of ``missing`` ids of ``symbol`` that no cut can have lost."""
        self._note_cuts()  # a cut after the last trade: its run can only end the range, but count it
        last_ids = [cut[symbol] for cut in self.cuts if symbol in cut]
        return [(a, b) for a, b in id_runs(missing) if not any(a - 1 <= last <= b for last in last_ids)]


# The lake judged against the exchange's own history -----------------------------------------------


def history(rest_url: str, symbol: str, first_id: int, last_id: int) -> dict[int, dict[str, Any]]:
    """The exchange's own record of trades ``first_id..last_id`` (REST historicalTrades, in µs), by id."""
    return {row["id"]: row for row in rest_history(rest_url, symbol, first_id, MICRO, to_id=last_id + 1)}


def lake_ids(table: pa.Table) -> np.ndarray:
    return table["trade_id"].to_numpy()


def assert_no_duplicates(ids: np.ndarray) -> None:
    unique, counts = np.unique(ids, return_counts=True)
    assert len(ids), "the lake holds no trades"
    assert (counts == 1).all(), f"ids stored more than once: {unique[counts > 1][:10].tolist()}"


def assert_contiguous(ids: np.ndarray) -> None:
    ids = np.unique(ids)
    missing = sorted(set(range(int(ids[0]), int(ids[-1]) + 1)) - set(ids.tolist()))
    assert not missing, f"{len(missing)} ids missing between {ids[0]} and {ids[-1]}: {missing[:20]}"


def units(text: str) -> int:
    """A decimal string of the exchange as integer 1e-8 units, exactly (it must have at most 8 decimals)."""
    value = Decimal(text).scaleb(8)
    assert value == value.to_integral_value(), text
    return int(value)


def rest_columns(symbol: str, rows: list[dict[str, Any]]) -> TradeColumns:
    """REST historicalTrades rows (µs times) as the lake's trade columns, computed here, not by the product."""
    return TradeColumns(
        symbol,
        np.array([row["id"] for row in rows], dtype=np.int64),
        np.array([units(row["price"]) for row in rows], dtype=np.int64),
        np.array([units(row["qty"]) for row in rows], dtype=np.int64),
        np.array([row["time"] for row in rows], dtype=np.int64),
        np.array([row["isBuyerMaker"] for row in rows], dtype=np.bool_),
    )


STREAMED = frozenset({"stream"})
STREAMED_OR_BACKFILLED = frozenset({"stream", "backfill"})


def assert_matches_exchange(
    table: pa.Table, exchange: dict[int, dict[str, Any]], symbol: str, sources: frozenset[str] = STREAMED
) -> None:
    """Every row is the exchange's trade with that id, value for value (exact decimals, µs times),
    written by one of ``sources`` (the lake's ``source`` column: ``stream`` or ``backfill``).

    Which ids must be there, and only once, is the caller's to check (``assert_contiguous``,
    ``assert_no_duplicates``, or a window's exact id list)."""
    ids = table["trade_id"].to_pylist()
    prices = table["price"].to_pylist()
    quantities = table["quantity"].to_pylist()
    quotes = table["quote_quantity"].to_pylist()
    times = pc.cast(table["trade_time"], pa.int64()).to_pylist()
    makers = table["is_buyer_maker"].to_pylist()
    assert set(table["symbol"].to_pylist()) <= {symbol}
    assert set(table["exchange"].to_pylist()) <= {"binance"}
    assert set(table["source"].to_pylist()) <= sources, set(table["source"].to_pylist())
    for i, trade_id in enumerate(ids):
        truth = exchange.get(trade_id)
        assert truth is not None, f"trade {trade_id} is in the lake but not in the exchange's history"
        assert isinstance(prices[i], Decimal)
        assert prices[i] == Decimal(truth["price"]), (trade_id, prices[i], truth)
        assert quantities[i] == Decimal(truth["qty"]), (trade_id, quantities[i], truth)
        assert quotes[i] == prices[i] * quantities[i], (trade_id, quotes[i])
        assert times[i] == truth["time"], (trade_id, times[i], truth)
        assert makers[i] == truth["isBuyerMaker"], (trade_id, truth)


def assert_lake_is_the_exchange_history(lake: ObjectStore, rest_url: str, symbol: str) -> np.ndarray:
    """No duplicates, no gap from the first id streamed to the last, and every value as the exchange has it.

    Returns the sorted ids."""
    table = read_trades(lake, symbol)
    ids = lake_ids(table)
    assert_no_duplicates(ids)
    first, last = int(ids.min()), int(ids.max())
    exchange = history(rest_url, symbol, first, last)
    assert sorted(exchange) == list(range(first, last + 1)), "the exchange itself has holes in this range"
    assert_contiguous(ids)
    assert_matches_exchange(table, exchange, symbol)
    return np.sort(ids)


def import_history(rest_url: str, lake: ObjectStore, symbols: tuple[str, ...], start_us: int, end_us: int) -> None:
    """The exchange's trades of [start_us, end_us) into the lake, as the repair imports them: window
    by clock hour, each checked complete and recorded in the completeness ledger."""
    from include.binance.client import BinanceClient
    from include.repair.repair import hour_windows, repair_window
    from include.timeutil import from_us

    with BinanceClient(rest_url) as client:
        for symbol in symbols:
            for window_start, window_end in hour_windows(from_us(start_us), from_us(end_us)):
                repair_window(client, lake, symbol, window_start, window_end)
