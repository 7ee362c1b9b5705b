"""A local spool in front of a remote lake: when S3 is unreachable nothing is lost or reordered.

A put that fails lands in a spool folder on local disk instead. While anything is spooled, new puts
queue behind it, and ``drain`` uploads the queue in order as soon as the lake answers again. The
spool is on disk, so an outage costs disk, not memory, and it survives a restart of the worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from include.lake.store import LakeError, LocalStore, ObjectInfo, ObjectStore

log = logging.getLogger(__name__)


class SpoolingStore:
    def __init__(self, inner: ObjectStore, spool_dir: Path) -> None:
        self.inner = inner
        self.url = inner.url
        self.spool = LocalStore(spool_dir)
        spool_dir.mkdir(parents=True, exist_ok=True)
        existing = [int(name.split(".")[0]) for name in os.listdir(spool_dir) if name.endswith(".key")]
        self._next = max(existing, default=0) + 1

    def spooled(self) -> list[str]:
        """Queue entries, oldest first; an entry counts once its key file (written last) exists."""
        names = sorted(name for name in os.listdir(self.spool.root) if name.endswith(".key"))
        return [name.removesuffix(".key") for name in names]

    def put(self, key: str, data: bytes) -> None:
        if not self.drain():
            self._enqueue(key, data)
            return
        try:
            self.inner.put(key, data)
        except LakeError as error:
            log.warning("lake unreachable, spooling %s: %s", key, error)
            self._enqueue(key, data)

    def _enqueue(self, key: str, data: bytes) -> None:
        entry = f"{self._next:012d}"
        self._next += 1
        self.spool.put(f"{entry}.data", data)
        self.spool.put(f"{entry}.key", key.encode())

    def drain(self) -> bool:
        """Upload spooled objects in order; True when the spool is empty."""
        for entry in self.spooled():
            key = self.spool.get(f"{entry}.key").decode()
            try:
                self.inner.put(key, self.spool.get(f"{entry}.data"))
            except LakeError:
                return False
            self.spool.delete(f"{entry}.key")
            self.spool.delete(f"{entry}.data")
            log.info("uploaded spooled %s", key)
        return True

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
