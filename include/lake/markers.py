"""Write markers: how the rest of the product learns, cheaply, where the lake has new trade files.

Every writer (a stream shard, a repair window) puts one small object per writer under
``status/writes/`` after each write. It names the keys just written and every partition
(``trades/.../date=.../hour=.../``) the writer wrote in the last two days, so a reader that missed
several writes still learns every partition they touched. A watcher only has to list that folder
and compare ETags to know that something new landed; a loader only has to list those partitions,
however large the lake is.

The stream's gap records (``status/gaps/``) are announced the same way, by a second marker per
writer under ``status/gap_writes/``: the ``lake_gaps`` watcher lists only that small folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from include.lake.keys import WRITES_PREFIX, marker_key, partition_of
from include.lake.store import ObjectStore

# How long a writer keeps naming a partition after its last write there: far longer than a loader
# is ever behind, and a full reconcile covers anything older.
PARTITION_MEMORY = timedelta(days=2)


@dataclass
class WriteMarker:
    writer: str
    at: str  # ISO time of the writer's latest write
    keys: list[str] = field(default_factory=list)  # the keys of that latest write
    partitions: dict[str, str] = field(default_factory=dict)  # partition -> ISO time last written

    def to_json(self) -> bytes:
        body = {"writer": self.writer, "at": self.at, "keys": self.keys, "partitions": self.partitions}
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> WriteMarker:
        body = json.loads(data)
        keys = body.get("keys", [])
        # Markers written before partitions were recorded still name their keys' partitions.
        partitions = body.get("partitions") or dict.fromkeys({partition_of(key) for key in keys}, body["at"])
        return cls(writer=body["writer"], at=body["at"], keys=keys, partitions=partitions)


def read_marker(lake: ObjectStore, key: str) -> WriteMarker | None:
    return WriteMarker.from_json(lake.get(key)) if lake.exists(key) else None


class MarkerWriter:
    """One writer's marker. A restarted writer carries on the partitions its predecessor named.

    ``prefix`` is the folder of markers it belongs to: ``status/writes/`` for trade files (the
    loader's), ``status/gap_writes/`` for gap records (the live fill's)."""

    def __init__(self, lake: ObjectStore, writer: str, prefix: str = WRITES_PREFIX) -> None:
        self.lake = lake
        self.writer = writer
        self.key = marker_key(writer, prefix)
        previous = read_marker(lake, self.key)
        self.partitions: dict[str, str] = dict(previous.partitions) if previous else {}

    def mark(self, keys: Iterable[str]) -> WriteMarker:
        now = datetime.now(UTC)
        keys = list(keys)
        for partition in {partition_of(key) for key in keys} - {""}:
            self.partitions[partition] = now.isoformat()
        horizon = now - PARTITION_MEMORY
        self.partitions = {p: at for p, at in self.partitions.items() if datetime.fromisoformat(at) >= horizon}
        marker = WriteMarker(self.writer, now.isoformat(), keys, dict(self.partitions))
        self.lake.put(self.key, marker.to_json())
        return marker


def mark_written(lake: ObjectStore, writer: str, keys: list[str]) -> None:
    """A one-off writer's marker (a repair window): the partitions of exactly these keys."""
    MarkerWriter(lake, writer).mark(keys)


def writes_fingerprint(lake: ObjectStore, prefix: str = WRITES_PREFIX) -> str:
    """A digest of every writer's latest marker under ``prefix``: it changes whenever any writer writes."""
    digest = hashlib.sha256()
    for info in lake.list(prefix):
        digest.update(f"{info.key}\0{info.etag}\n".encode())
    return digest.hexdigest()
