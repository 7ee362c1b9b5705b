"""The lake watchers fire once per new write, survive being re-created, and ignore nothing.

``lake_trades`` watches the write markers (``status/writes/``); ``lake_gaps`` the gap markers
(``status/gap_writes/``): each fires for its own folder only."""

import asyncio

import pytest
from lake_assets import LAKE_GAPS, LAKE_TRADES, LakeWritesTrigger

from include.lake.keys import GAP_WRITES_PREFIX, WRITES_PREFIX
from include.lake.markers import MarkerWriter, mark_written
from include.lake.store import LocalStore


async def first_event(trigger, timeout):
    async def wait():
        async for event in trigger.run():
            return event
        return None

    try:
        return await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        return None


@pytest.fixture
def lake(tmp_path):
    return LocalStore(tmp_path)


# An event that must come may take a while on a busy machine; one that must not come is judged
# over a short window, which can only let a bug pass, never fail a correct trigger.
LIVENESS = 60


def trigger_for(lake):
    return LakeWritesTrigger(lake_url=lake.url, poll_seconds=0.05)


def test_a_write_fires_once_and_a_recreated_trigger_does_not_repeat_it(lake):
    mark_written(lake, "stream-a", ["trades/x.parquet"])
    event = asyncio.run(first_event(trigger_for(lake), timeout=LIVENESS))
    assert event is not None
    assert event.payload["lake_url"] == lake.url
    # The triggerer re-creates the trigger after each event: the same write must not fire again.
    assert asyncio.run(first_event(trigger_for(lake), timeout=0.5)) is None


def test_every_writer_and_every_new_write_fires(lake):
    mark_written(lake, "stream-a", ["k1"])
    assert asyncio.run(first_event(trigger_for(lake), timeout=LIVENESS)) is not None
    mark_written(lake, "repair-b", ["k2"])
    first = asyncio.run(first_event(trigger_for(lake), timeout=LIVENESS))
    mark_written(lake, "stream-a", ["k3"])
    second = asyncio.run(first_event(trigger_for(lake), timeout=LIVENESS))
    assert first is not None
    assert second is not None
    assert first.payload["fingerprint"] != second.payload["fingerprint"]


def test_a_write_while_the_trigger_waits_fires_it(lake):
    mark_written(lake, "stream-a", ["k1"])
    asyncio.run(first_event(trigger_for(lake), timeout=LIVENESS))

    async def write_later_and_wait():
        waiting = asyncio.create_task(first_event(trigger_for(lake), timeout=LIVENESS))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        mark_written(lake, "stream-a", ["k2"])
        return await waiting

    assert asyncio.run(write_later_and_wait()) is not None


def test_the_trigger_serializes_to_its_importable_class_and_arguments(lake):
    classpath, kwargs = trigger_for(lake).serialize()
    assert classpath == "lake_assets.LakeWritesTrigger"
    assert kwargs == {"lake_url": lake.url, "name": "lake_trades", "poll_seconds": 0.05, "prefix": WRITES_PREFIX}
    assert LakeWritesTrigger(**kwargs).serialize() == (classpath, kwargs)


def gap_trigger_for(lake):
    return LakeWritesTrigger(lake_url=lake.url, name="lake_gaps", poll_seconds=0.05, prefix=GAP_WRITES_PREFIX)


def test_the_gap_watcher_fires_on_a_gap_marker_and_not_on_trade_writes(lake):
    asyncio.run(first_event(gap_trigger_for(lake), timeout=LIVENESS))  # the empty folder, announced once
    mark_written(lake, "stream-a", ["trades/x.parquet"])  # a micro-batch without a gap
    assert asyncio.run(first_event(gap_trigger_for(lake), timeout=0.5)) is None
    assert asyncio.run(first_event(trigger_for(lake), timeout=LIVENESS)) is not None  # the trades' watcher did
    MarkerWriter(lake, "stream-a", GAP_WRITES_PREFIX).mark(["status/gaps/exchange=binance/symbol=X/date=d/1-2-w.json"])
    event = asyncio.run(first_event(gap_trigger_for(lake), timeout=LIVENESS))
    assert event is not None
    assert asyncio.run(first_event(gap_trigger_for(lake), timeout=0.5)) is None  # announced once
    assert asyncio.run(first_event(trigger_for(lake), timeout=0.5)) is None  # not a trade write


def test_each_asset_watches_its_own_folder_under_its_own_cursor():
    (trades,) = LAKE_TRADES.watchers
    (gaps,) = LAKE_GAPS.watchers
    assert (LAKE_GAPS.name, LAKE_GAPS.uri) == ("lake_gaps", "cryptoflow://lake/gaps")
    assert trades.trigger.serialize()[1]["prefix"] == WRITES_PREFIX
    assert gaps.trigger.serialize()[1]["prefix"] == GAP_WRITES_PREFIX
    assert trades.trigger.serialize()[1]["name"] != gaps.trigger.serialize()[1]["name"]
