"""The lake as Airflow Assets, announced the moment new files land.

``LAKE_TRADES`` carries an ``AssetWatcher``: the triggerer runs ``LakeWritesTrigger``, which lists
the lake's small write markers (``status/writes/``) every couple of seconds and fires an asset
event when any of them changed. Every writer leaves such a marker (stream micro-batches, repair,
imports), so DAGs scheduled on ``LAKE_TRADES`` start within seconds of any flush, not at the end of
a stream window, and nothing has to hold Airflow credentials to announce a file.

``LAKE_GAPS`` is watched the same way over another folder of markers, ``status/gap_writes/``: each
stream writer names there the gap records it wrote (``status/gaps/``), so the ``fill_gaps`` DAG
starts within seconds of a gap being seen. Both folders hold one small object per writer, so a
poll costs one listing of a few objects however large the lake grows.

The trigger keeps the last fingerprint it announced in the lake (``status/watchers/``), because the
triggerer re-creates a watcher's trigger after each event: the new instance must not announce the
same files again, and one that missed a change while being re-created still sees it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from include.config import load_settings
from include.lake.keys import GAP_WRITES_PREFIX, WRITES_PREFIX, watcher_key
from include.lake.markers import writes_fingerprint
from include.lake.store import open_lake

log = logging.getLogger(__name__)


class LakeWritesTrigger(BaseEventTrigger):
    """Fires when any marker under ``prefix`` changed since the last announcement of ``name``."""

    def __init__(
        self,
        lake_url: str | None = None,
        name: str = "lake_trades",
        poll_seconds: float = 2.0,
        prefix: str = WRITES_PREFIX,
    ) -> None:
        super().__init__()
        self.lake_url = lake_url  # None: LAKE_URL, read when the trigger runs, never at DAG parse
        self.name = name
        self.poll_seconds = poll_seconds
        self.prefix = prefix

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"lake_url": self.lake_url, "name": self.name, "poll_seconds": self.poll_seconds, "prefix": self.prefix},
        )

    def _check(self) -> str | None:
        """The new fingerprint when the lake changed since the last announcement, else None."""
        lake = open_lake(self.lake_url or load_settings().lake_url)
        cursor_key = watcher_key(self.name)
        current = writes_fingerprint(lake, self.prefix)
        announced = json.loads(lake.get(cursor_key))["fingerprint"] if lake.exists(cursor_key) else None
        if current == announced:
            return None
        lake.put(cursor_key, json.dumps({"fingerprint": current}).encode())
        return current

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                fingerprint = await asyncio.to_thread(self._check)
            except Exception:  # a lake outage must not kill the watcher: try again next poll
                log.exception("checking %s for new writes failed", self.lake_url)
                fingerprint = None
            if fingerprint is not None:
                yield TriggerEvent({"lake_url": self.lake_url, "fingerprint": fingerprint})
                return
            await asyncio.sleep(self.poll_seconds)


def lake_trades_asset() -> Asset:
    # No setting is read here: this runs when every DAG file is parsed, and a bad LAKE_URL must fail
    # the tasks that use it, not the parse of every DAG. The watcher reads LAKE_URL when it runs.
    return Asset(
        name="lake_trades",
        uri="cryptoflow://lake/trades",
        group="lake",
        watchers=[AssetWatcher(name="lake_trades_writes", trigger=LakeWritesTrigger())],
    )


def lake_gaps_asset() -> Asset:
    """The gaps the stream recorded; its watcher fires when a writer records one."""
    return Asset(
        name="lake_gaps",
        uri="cryptoflow://lake/gaps",
        group="lake",
        watchers=[
            AssetWatcher(name="lake_gaps_writes", trigger=LakeWritesTrigger(name="lake_gaps", prefix=GAP_WRITES_PREFIX))
        ],
    )


LAKE_TRADES = lake_trades_asset()
LAKE_GAPS = lake_gaps_asset()
