"""The stream's heartbeats: one object per writer, holding the status of every symbol it streams.

``status/stream/exchange=binance/writer=<writer>.json`` (``include/lake/keys.py``)::

    {"writer", "updated_at", "counters": {...the writer's stream counters, "recent_reconnects": [ISO times]...},
     "symbols": {"BTCUSDT": {"last_trade_id", "last_trade_time", "lag_seconds", "trades_written",
                             "gaps", "gap_ids", "connection"}, ...}}

A writer rewrites its one object at every flush: the lake receives one heartbeat per flush however
many symbols the writer streams (one object per symbol per flush was most of what a 400-symbol stream
wrote), and two writers (overlapping stream windows) never write the same object. A symbol's status
is the newest ``updated_at`` among the writers that carry it (``read_status``); a writer that has been
silent for a day is pruned by the nightly reconcile (``prune_stale``).

``recent_reconnects`` are the times the writer's connections were opened again after one was lost
(a planned handover, where both connections overlap, is not one) within the last ``RECONNECT_WINDOW``,
at most ``MAX_RECENT_RECONNECTS``: what the reconnect-storm alert reads (include/alerts/health_checks.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from include.binance.protocol import CONNECTION_ATTEMPT_WINDOW_SECONDS, CONNECTION_ATTEMPTS_PER_WINDOW
from include.lake.keys import HEARTBEAT_PREFIX, heartbeat_key
from include.lake.store import ObjectStore

# A heartbeat this old belongs to a writer that ended without a successor carrying it on.
STALE_AFTER = timedelta(days=1)
# How far back a heartbeat reports its writer's reconnects.
RECONNECT_WINDOW = timedelta(minutes=10)
# Binance lets one IP open this many connections within the window, so a writer cannot reconnect more
# often: the list a heartbeat carries stays small however bad the network is.
MAX_RECENT_RECONNECTS = int(
    CONNECTION_ATTEMPTS_PER_WINDOW * RECONNECT_WINDOW.total_seconds() / CONNECTION_ATTEMPT_WINDOW_SECONDS
)


def write_heartbeat(
    lake: ObjectStore, writer: str, updated_at: datetime, counters: dict[str, Any], symbols: dict[str, dict[str, Any]]
) -> str:
    """Write ``writer``'s heartbeat: the status of each of its symbols at ``updated_at``; its key."""
    body = {"writer": writer, "updated_at": updated_at.isoformat(), "counters": counters, "symbols": symbols}
    key = heartbeat_key(writer)
    lake.put(key, json.dumps(body, indent=2).encode())
    return key


def symbol_statuses(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each symbol's status in one writer's heartbeat, with the writer's ``updated_at`` and counters.

    A heartbeat of one symbol (``status/stream/.../symbol=S.json``, as writers before this layout left
    them in a lake) is that symbol's status as it is."""
    if "symbols" not in body:
        yield body
        return
    for symbol, status in body["symbols"].items():
        yield {"symbol": symbol, "updated_at": body["updated_at"], "counters": body.get("counters"), **status}


# A reader's copy of the heartbeats it read: key -> (ETag, body). Only a changed one is read again.
BodyCache = dict[str, tuple[str, dict[str, Any]]]


def read_statuses(lake: ObjectStore, cache: BodyCache | None = None) -> dict[str, dict[str, Any]]:
    """Every symbol's newest status across the writers' heartbeats.

    A reader that asks often (the dashboard, every 2 s) passes a ``cache``: one listing, and a read
    of only the heartbeats whose ETag changed."""
    cache = {} if cache is None else cache
    newest: dict[str, dict[str, Any]] = {}
    listed = set()
    for info in lake.list(HEARTBEAT_PREFIX):
        listed.add(info.key)
        held = cache.get(info.key)
        if held is None or held[0] != info.etag:
            try:
                cache[info.key] = (info.etag, json.loads(lake.get(info.key)))
            except FileNotFoundError:  # pruned since the listing
                continue
        for status in symbol_statuses(cache[info.key][1]):
            held = newest.get(status["symbol"])
            if held is None or _updated(status) > _updated(held):
                newest[status["symbol"]] = status
    for gone in set(cache) - listed:
        del cache[gone]
    return newest


def read_heartbeats(lake: ObjectStore) -> list[dict[str, Any]]:
    """Every writer's heartbeat as it wrote it (one per writer), in key order."""
    bodies = []
    for info in sorted(lake.list(HEARTBEAT_PREFIX), key=lambda info: info.key):
        try:
            bodies.append(json.loads(lake.get(info.key)))
        except FileNotFoundError:  # pruned since the listing
            continue
    return bodies


def recent_reconnects(body: dict[str, Any], since: datetime) -> list[datetime]:
    """The reconnects a writer's heartbeat reports at or after ``since``, oldest first."""
    counters = body.get("counters") or {}
    times = (datetime.fromisoformat(text) for text in counters.get("recent_reconnects", ()))
    return sorted(moment for moment in times if moment >= since)


def read_status(lake: ObjectStore, symbol: str, cache: BodyCache | None = None) -> dict[str, Any] | None:
    """The symbol's newest status; None when no writer's heartbeat carries it."""
    return read_statuses(lake, cache).get(symbol)


def prune_stale(lake: ObjectStore, now: datetime | None = None) -> list[str]:
    """Delete the heartbeats of writers silent for ``STALE_AFTER``; the keys deleted."""
    horizon = (now or datetime.now(UTC)) - STALE_AFTER
    deleted = []
    for info in lake.list(HEARTBEAT_PREFIX):
        try:
            body = json.loads(lake.get(info.key))
        except FileNotFoundError:
            continue
        if _updated(body) < horizon:
            lake.delete(info.key)
            deleted.append(info.key)
    return deleted


def _updated(body: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(body["updated_at"])
