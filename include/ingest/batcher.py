"""Micro-batches: frames in, Parquet objects and quarantine records out.

``add`` is the hot path and does as little as it can: decode the frame and keep it. ``take`` swaps
the buffers out (cheap, on the event loop), and ``write`` does the heavy part off the loop:
validate the batch, drop ids already written, write one Parquet object per symbol and hour, write
the rejects to quarantine, and update the per-symbol heartbeats.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from include.ingest.parse import CombinedTrade, Control, Rejected, decode, validate
from include.lake.markers import mark_written
from include.lake.store import ObjectStore
from include.lake.trades import EXCHANGE, TradeColumns, write_trades

RECENT_IDS_KEPT = 200_000  # per symbol: enough to catch every duplicate of a connection handover


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class Batch:
    trades: list[CombinedTrade]
    raws: list[bytes]
    rejected: list[Rejected]
    first_received_us: int


@dataclass
class FlushResult:
    keys: list[str]
    trades_written: int
    duplicates: int
    quarantined: int
    seconds: float


@dataclass
class SymbolStatus:
    last_trade_id: int | None = None
    last_trade_time_us: int | None = None
    trades_written: int = 0


@dataclass
class StreamStats:
    received: int = 0
    written: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    reconnects: int = 0
    flush_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "written": self.written,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "quarantine_reasons": dict(self.quarantine_reasons),
            "batches": self.batches,
            "reconnects": self.reconnects,
        }


class MicroBatcher:
    def __init__(self, lake: ObjectStore, symbols: frozenset[str], source: str = "stream") -> None:
        self.lake = lake
        self.symbols = symbols
        self.source = source
        # One marker per shard: the sorted symbols name the writer, so a restart reuses it.
        self.writer = f"{source}-" + hashlib.sha1(",".join(sorted(symbols)).encode()).hexdigest()[:12]
        self.stats = StreamStats()
        self.status: dict[str, SymbolStatus] = {symbol: SymbolStatus() for symbol in symbols}
        self.connection: dict[str, object] = {"state": "starting"}
        self._recent: dict[str, np.ndarray] = {}
        self._reset()

    def _reset(self) -> None:
        self._trades: list[CombinedTrade] = []
        self._raws: list[bytes] = []
        self._rejected: list[Rejected] = []
        self._first_received_us = 0

    def __len__(self) -> int:
        return len(self._trades) + len(self._rejected)

    def add(self, frame: bytes) -> Control | None:
        """Keep one frame for the next batch; a control message is handed back, not kept."""
        message = decode(frame)
        if not self._first_received_us:
            self._first_received_us = now_us()
        if type(message) is CombinedTrade:
            self._trades.append(message)
            self._raws.append(frame)
            return None
        if type(message) is Rejected:
            self._rejected.append(message)
            return None
        return message  # type: ignore[return-value]

    def take(self) -> Batch:
        batch = Batch(self._trades, self._raws, self._rejected, self._first_received_us or now_us())
        self.stats.received += len(batch.trades) + len(batch.rejected)
        self._reset()
        return batch

    def _new_only(self, columns: TradeColumns) -> tuple[TradeColumns, int]:
        """Drop ids seen twice in the batch or already written (overlapping connections)."""
        ids, first = np.unique(columns.trade_id, return_index=True)
        recent = self._recent.get(columns.symbol)
        keep = first if recent is None else first[~np.isin(ids, recent, assume_unique=True)]
        fresh = columns.take(np.sort(keep))
        merged = fresh.trade_id if recent is None else np.union1d(recent, fresh.trade_id)
        self._recent[columns.symbol] = merged[-RECENT_IDS_KEPT:]
        return fresh, len(columns) - len(fresh)

    def write(self, batch: Batch) -> FlushResult:
        started = time.perf_counter()
        validated = validate(batch.trades, batch.raws, self.symbols)
        rejected = batch.rejected + validated.rejected
        ingested_at = now_us()
        keys: list[str] = []
        written = duplicates = 0
        for symbol, columns in validated.by_symbol.items():
            fresh, dropped = self._new_only(columns)
            duplicates += dropped
            if len(fresh):
                keys += write_trades(self.lake, fresh, self.source, ingested_at)
                written += len(fresh)
                status = self.status[symbol]
                last = int(np.argmax(fresh.trade_id))
                status.last_trade_id = max(status.last_trade_id or 0, int(fresh.trade_id[last]))
                status.last_trade_time_us = max(status.last_trade_time_us or 0, int(fresh.trade_time_us.max()))
                status.trades_written += len(fresh)
        if rejected:
            keys.append(self._quarantine(rejected, batch.first_received_us))
            self.stats.quarantine_reasons.update(_reason_kind(r.reason) for r in rejected)
        if keys:
            mark_written(self.lake, self.writer, keys)
        self.stats.written += written
        self.stats.duplicates += duplicates
        self.stats.quarantined += len(rejected)
        self.stats.batches += 1
        seconds = time.perf_counter() - started
        self.stats.flush_seconds.append(seconds)
        return FlushResult(keys, written, duplicates, len(rejected), seconds)

    def _quarantine(self, rejected: list[Rejected], received_us: int) -> str:
        moment = datetime.fromtimestamp(received_us / 1e6, UTC)
        key = (
            f"quarantine/exchange={EXCHANGE}/date={moment:%Y-%m-%d}/hour={moment:%H}/"
            f"{self.source}-{received_us}-{len(rejected)}.jsonl"
        )
        lines = [
            json.dumps(
                {
                    "received_at": moment.isoformat(),
                    "source": self.source,
                    "reason": item.reason,
                    "raw": item.raw.decode("utf-8", "backslashreplace"),
                }
            )
            for item in rejected
        ]
        self.lake.put(key, ("\n".join(lines) + "\n").encode())
        return key

    def write_heartbeats(self) -> None:
        """One small status object per symbol: what later parts and the dashboard read."""
        updated = datetime.now(UTC).isoformat()
        for symbol, status in self.status.items():
            body = {
                "symbol": symbol,
                "updated_at": updated,
                "last_trade_id": status.last_trade_id,
                "last_trade_time": None
                if status.last_trade_time_us is None
                else datetime.fromtimestamp(status.last_trade_time_us / 1e6, UTC).isoformat(),
                "lag_seconds": None
                if status.last_trade_time_us is None
                else round((now_us() - status.last_trade_time_us) / 1e6, 3),
                "trades_written": status.trades_written,
                "counters": self.stats.as_dict(),
                "connection": self.connection,
            }
            self.lake.put(heartbeat_key(symbol), json.dumps(body, indent=2).encode())


def heartbeat_key(symbol: str) -> str:
    return f"status/stream/exchange={EXCHANGE}/symbol={symbol}.json"


def _reason_kind(reason: str) -> str:
    """The reason without its details, for counting: 'malformed JSON: ...' -> 'malformed JSON'."""
    return reason.split(":", 1)[0]
