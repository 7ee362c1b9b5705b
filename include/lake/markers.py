"""Write markers: how the rest of the product learns, cheaply, that the lake has new trade files.

Every writer (a stream shard, a repair task, a replay import) puts one small object per writer
under ``status/writes/`` after each write, naming the keys it just wrote. A watcher only has to
list that folder and compare ETags to know that something new landed, however large the lake is.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from include.lake.store import ObjectStore

WRITES_PREFIX = "status/writes/"


def mark_written(lake: ObjectStore, writer: str, keys: list[str]) -> None:
    body = {"writer": writer, "at": datetime.now(UTC).isoformat(), "keys": keys}
    lake.put(f"{WRITES_PREFIX}{writer}.json", json.dumps(body).encode())


def writes_fingerprint(lake: ObjectStore) -> str:
    """A digest of every writer's latest marker: it changes whenever any writer writes."""
    digest = hashlib.sha256()
    for info in lake.list(WRITES_PREFIX):
        digest.update(f"{info.key}\0{info.etag}\n".encode())
    return digest.hexdigest()
