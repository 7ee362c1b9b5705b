"""A local spool in front of a remote lake: when S3 is unreachable nothing is lost or reordered.

A put that fails lands in the writer's own spool folder on local disk instead
(``Settings.spool_dir(writer)``). While anything is spooled, new puts queue behind it, and ``drain``
uploads the queue in order as soon as the lake answers again. The spool is on disk, so an outage
costs disk, not memory, and it survives a restart of the writer.

A writer holds its folder's owner lock (``fcntl.flock``) for as long as it runs. A writer that ended
while S3 was still down leaves a folder whose lock nobody holds: the next writer on the machine to
reach S3 takes that lock, uploads what is left and removes the folder, so no batch waits for a
writer that never comes back.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from include.lake.store import LakeError, ObjectInfo, ObjectStore

log = logging.getLogger(__name__)

OWNER_LOCK = ".owner.lock"
DRAIN_LOCK = ".drain.lock"
OWNER_WAIT_SECONDS = 60.0  # a writer restarted while another drains its folder waits this long
ORPHAN_SWEEP_SECONDS = 30.0  # how often a writer that reaches S3 looks for folders left behind


class SpoolBusy(RuntimeError):
    """A spool folder is held by another running writer: two writers must not share an id."""


def fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries to disk, so a rename or a new file in it survives a power loss.

    A read-only descriptor is enough for ``fsync`` on Linux, so this flushes a file's path too."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def try_lock(folder: Path, name: str = OWNER_LOCK) -> int | None:
    """An exclusive ``flock`` on ``folder/name`` if nobody holds it, else None.

    The lock file may be removed with its folder by whoever held it last; a lock taken on a file
    that is no longer at that path is worthless, so it is taken again on the file that is.
    """
    path = folder / name
    while True:
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            return None  # the folder is gone
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            return None
        try:
            current = os.stat(path).st_ino == os.fstat(handle).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return handle
        os.close(handle)


class SpoolFolder:
    """A queue of objects in a folder: entry ``<n>.data`` holds the bytes, ``<n>.key`` (written last)
    the key, so an entry counts once complete. Numbers sort in write order and are claimed by an
    exclusive create, so two processes adding to one folder never take the same number."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._next = 1

    def entries(self) -> list[str]:
        """Complete entries, oldest first."""
        return sorted(name.removesuffix(".key") for name in os.listdir(self.root) if name.endswith(".key"))

    def _highest(self) -> int:
        numbers = [int(name.split(".")[0]) for name in os.listdir(self.root) if name.endswith((".key", ".data"))]
        return max(numbers, default=0)

    def _claim(self) -> tuple[str, int]:
        number = max(self._next, self._highest() + 1)
        while True:
            entry = f"{number:012d}"
            try:
                return entry, os.open(self.root / f"{entry}.data", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                number += 1  # another process claimed it first

    def add(self, key: str, data: bytes) -> str:
        entry, handle = self._claim()
        self._next = int(entry) + 1
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        # The key file appears atomically (temporary name, then rename): it marks the entry complete.
        temporary, name = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
        with os.fdopen(temporary, "wb") as out:
            out.write(key.encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, self.root / f"{entry}.key")
        fsync_dir(self.root)
        return entry

    def read(self, entry: str) -> tuple[str, bytes]:
        return (self.root / f"{entry}.key").read_text(), (self.root / f"{entry}.data").read_bytes()

    def waiting(self) -> Iterator[tuple[str, str, bytes]]:
        """``(entry, key, data)`` of each complete entry, oldest first, read one at a time. An entry
        gone by the time it is read was uploaded and removed by a drain meanwhile: it no longer waits."""
        for entry in self.entries():
            try:
                key, data = self.read(entry)
            except FileNotFoundError:
                continue
            yield entry, key, data

    def drain(self, upload: Callable[[str, bytes], None]) -> bool:
        """Upload the entries in order; True when none is left. One drain at a time per folder."""
        handle = os.open(self.root / DRAIN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            for entry, key, data in self.waiting():
                try:
                    upload(key, data)
                except LakeError:
                    return False
                (self.root / f"{entry}.key").unlink(missing_ok=True)  # the entry no longer counts
                (self.root / f"{entry}.data").unlink(missing_ok=True)
                log.info("uploaded spooled %s", key)
            return True
        finally:
            os.close(handle)

    def drop_incomplete(self) -> None:
        """Remove data files whose key never came: their writer died mid-add, its put never returned."""
        names = set(os.listdir(self.root))
        for name in names:
            if name.endswith(".data") and name.replace(".data", ".key") not in names:
                (self.root / name).unlink(missing_ok=True)

    def remove_if_empty(self) -> bool:
        """Remove the folder once nothing is spooled in it; the caller holds its owner lock."""
        if any(not name.startswith(".") for name in os.listdir(self.root)):
            return False
        for name in os.listdir(self.root):
            (self.root / name).unlink(missing_ok=True)
        try:
            self.root.rmdir()
        except OSError:
            return False  # something arrived meanwhile; it stays for the next sweep
        return True


class SpoolingStore:
    """An object store whose puts never fail: what the lake refuses waits in the writer's spool."""

    def __init__(self, inner: ObjectStore, spool_dir: Path, owner_wait: float = OWNER_WAIT_SECONDS) -> None:
        self.inner = inner
        self.url = inner.url
        self.folder = SpoolFolder(spool_dir)
        self._owner = self._take_ownership(spool_dir, owner_wait)
        self._last_sweep = time.monotonic() - ORPHAN_SWEEP_SECONDS  # the first successful put sweeps

    @staticmethod
    def _take_ownership(spool_dir: Path, wait: float) -> int:
        deadline = time.monotonic() + wait
        while True:
            spool_dir.mkdir(parents=True, exist_ok=True)  # a sweep may have just removed it
            handle = try_lock(spool_dir)
            if handle is not None:
                return handle
            if time.monotonic() >= deadline:
                raise SpoolBusy(f"spool folder {spool_dir} is held by another running writer")
            time.sleep(0.1)  # another writer drains it right now: its drain ends soon

    @property
    def spool_dir(self) -> Path:
        return self.folder.root

    def spooled(self) -> list[str]:
        """Queue entries, oldest first."""
        return self.folder.entries()

    def put(self, key: str, data: bytes) -> None:
        if not self.drain():
            self.folder.add(key, data)
            return
        try:
            self.inner.put(key, data)
        except LakeError as error:
            log.warning("lake unreachable, spooling %s: %s", key, error)
            self.folder.add(key, data)
            return
        if time.monotonic() - self._last_sweep >= ORPHAN_SWEEP_SECONDS:
            self.adopt_orphans()

    def drain(self) -> bool:
        """Upload spooled objects in order; True when the spool is empty."""
        return self.folder.drain(self.inner.put)

    def adopt_orphans(self) -> int:
        """Upload what writers that are gone left in their spool folders; how many folders emptied.

        A folder is left behind when its owner lock is free: its writer ended or died. A writer
        that is still running holds its lock, and its folder is never touched.
        """
        self._last_sweep = time.monotonic()
        emptied = 0
        for folder in sorted(path for path in self.spool_dir.parent.iterdir() if path.is_dir()):
            if folder == self.spool_dir or not (folder / OWNER_LOCK).exists():
                continue  # this writer's own folder, or not a spool folder at all
            handle = try_lock(folder)
            if handle is None:
                continue
            try:
                orphan = SpoolFolder(folder)
                orphan.drop_incomplete()
                if orphan.entries():
                    log.info("draining %s, left behind by a writer that is gone", folder)
                if orphan.drain(self.inner.put) and orphan.remove_if_empty():
                    emptied += 1
            finally:
                os.close(handle)
        return emptied

    def close(self) -> None:
        """Give up the folder: removed when empty, else left (locked by nobody) for the next writer."""
        if self._owner < 0:
            return
        try:
            self.folder.remove_if_empty()
        finally:
            os.close(self._owner)
            self._owner = -1

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
