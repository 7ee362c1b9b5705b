"""The spool in front of S3 (a real moto server over HTTP): an outage loses and reorders nothing."""

from __future__ import annotations

import os

import pytest

from include.lake.spool import SpoolingStore
from include.lake.store import LakeError, S3Store

PREFIX = "lake"


class Recording:
    """An object store that notes the keys it stored, in order, after the inner store took them."""

    def __init__(self, inner, fail_after: int | None = None) -> None:
        self.inner = inner
        self.url = inner.url
        self.stored: list[str] = []
        self.fail_after = fail_after  # raise LakeError once this many puts went through
        self.fail_next = 0  # raise LakeError on this many next puts (S3 flapping)

    def put(self, key, data):
        if self.fail_after is not None and len(self.stored) >= self.fail_after:
            raise LakeError("injected outage")
        if self.fail_next:
            self.fail_next -= 1
            raise LakeError("injected flap")
        self.inner.put(key, data)
        self.stored.append(key)

    def get(self, key):
        return self.inner.get(key)

    def exists(self, key):
        return self.inner.exists(key)

    def list(self, prefix=""):
        return self.inner.list(prefix)

    def delete(self, key):
        self.inner.delete(key)


def s3_store(moto_s3) -> S3Store:
    """A fresh client each time, as a restarted worker would have; no retries, so outages are quick."""
    return S3Store(moto_s3.bucket, PREFIX, moto_s3.client())


def objects(count: int, tag: str = "") -> list[tuple[str, bytes]]:
    """Distinct keys in an order that is not sorted, with distinct binary contents."""
    return [
        (f"trades/part={(index * 7) % count}/obj-{tag}{index}.parquet", bytes([index % 256, 0, 255]) * (index + 3))
        for index in range(count)
    ]


def spooled_keys(spool: SpoolingStore) -> list[str]:
    return [spool.spool.get(f"{entry}.key").decode() for entry in spool.spooled()]


def test_outage_spools_in_order_and_drain_uploads_in_order(moto_s3, tmp_path):
    recording = Recording(s3_store(moto_s3))
    spool = SpoolingStore(recording, tmp_path / "spool")
    items = objects(6)
    moto_s3.stop()
    for key, data in items:
        spool.put(key, data)  # never raises
    assert recording.stored == []
    assert spooled_keys(spool) == [key for key, _ in items]
    assert [spool.spool.get(f"{entry}.data") for entry in spool.spooled()] == [data for _, data in items]
    assert spool.drain() is False  # still down: nothing moves
    assert spooled_keys(spool) == [key for key, _ in items]

    moto_s3.start()  # back, empty: the bucket is re-created
    assert spool.drain() is True
    assert recording.stored == [key for key, _ in items]
    for key, data in items:
        assert spool.get(key) == data
        assert spool.exists(key)
    assert spool.spooled() == []
    assert os.listdir(tmp_path / "spool") == []
    assert sorted(moto_s3.keys()) == sorted(f"{PREFIX}/{key}" for key, _ in items)
    assert sorted(info.key for info in spool.list("trades/")) == sorted(key for key, _ in items)


def test_without_outage_puts_go_straight_through(moto_s3, tmp_path):
    recording = Recording(s3_store(moto_s3))
    spool = SpoolingStore(recording, tmp_path / "spool")
    spool.put("a/b.json", b"1")
    assert recording.stored == ["a/b.json"]
    assert spool.spooled() == []
    assert spool.get("a/b.json") == b"1"
    spool.delete("a/b.json")
    assert not spool.exists("a/b.json")


def test_new_puts_queue_behind_the_spool(moto_s3, tmp_path):
    recording = Recording(s3_store(moto_s3))
    spool = SpoolingStore(recording, tmp_path / "spool")
    moto_s3.stop()
    spool.put("q/1.json", b"one")
    spool.put("q/2.json", b"two")
    moto_s3.start(create_bucket=False)  # S3 answers again, but refuses (no bucket yet)
    spool.put("q/3.json", b"three")  # must not overtake 1 and 2
    assert recording.stored == []
    assert spooled_keys(spool) == ["q/1.json", "q/2.json", "q/3.json"]
    moto_s3.create_bucket()
    spool.put("q/4.json", b"four")  # drains the queue first, then goes through itself
    assert recording.stored == ["q/1.json", "q/2.json", "q/3.json", "q/4.json"]
    assert spool.spooled() == []
    assert [spool.get(f"q/{n}.json") for n in (1, 2, 3, 4)] == [b"one", b"two", b"three", b"four"]


def test_a_new_put_never_overtakes_a_spooled_one_that_failed_again(moto_s3, tmp_path):
    """S3 answers again, but the upload of the oldest spooled object fails once more: the new put waits."""
    recording = Recording(s3_store(moto_s3))
    spool = SpoolingStore(recording, tmp_path / "spool")
    moto_s3.stop()
    spool.put("f/1.json", b"one")
    moto_s3.start()
    recording.fail_next = 1  # the retry of f/1.json fails; a direct upload of f/2.json would succeed
    spool.put("f/2.json", b"two")
    assert recording.stored == []
    assert spooled_keys(spool) == ["f/1.json", "f/2.json"]
    spool.put("f/3.json", b"three")
    assert recording.stored == ["f/1.json", "f/2.json", "f/3.json"]
    assert spool.spooled() == []


def test_the_last_write_of_a_key_wins_after_the_outage(moto_s3, tmp_path):
    """A heartbeat rewritten during an outage ends with its newest content, not an older one."""
    spool = SpoolingStore(s3_store(moto_s3), tmp_path / "spool")
    moto_s3.stop()
    for version in range(5):
        spool.put("status/stream/exchange=binance/symbol=BTCUSDT.json", f"v{version}".encode())
    moto_s3.start()
    assert spool.drain() is True
    assert spool.get("status/stream/exchange=binance/symbol=BTCUSDT.json") == b"v4"


def test_a_restarted_worker_drains_what_was_spooled(moto_s3, tmp_path):
    spool_dir = tmp_path / "spool"
    before = objects(4, "before-")
    after = objects(2, "after-")
    moto_s3.stop()
    first = SpoolingStore(s3_store(moto_s3), spool_dir)
    for key, data in before:
        first.put(key, data)
    del first  # the worker dies

    recording = Recording(s3_store(moto_s3))
    second = SpoolingStore(recording, spool_dir)  # the worker starts again, S3 still down
    assert spooled_keys(second) == [key for key, _ in before]
    for key, data in after:
        second.put(key, data)  # queued after what the previous worker spooled
    assert spooled_keys(second) == [key for key, _ in before + after]
    moto_s3.start()
    assert second.drain() is True
    assert recording.stored == [key for key, _ in before + after]
    for key, data in before + after:
        assert second.get(key) == data


def test_a_drain_cut_short_keeps_the_rest_in_order(moto_s3, tmp_path):
    recording = Recording(s3_store(moto_s3), fail_after=2)  # S3 goes away again after two uploads
    spool = SpoolingStore(recording, tmp_path / "spool")
    moto_s3.stop()
    items = objects(5)
    for key, data in items:
        spool.put(key, data)
    moto_s3.start()
    assert spool.drain() is False
    assert recording.stored == [key for key, _ in items[:2]]
    assert spooled_keys(spool) == [key for key, _ in items[2:]]
    recording.fail_after = None
    assert spool.drain() is True
    assert recording.stored == [key for key, _ in items]
    for key, data in items:
        assert spool.get(key) == data


def test_reads_go_to_the_lake_not_the_spool(moto_s3, tmp_path):
    spool = SpoolingStore(s3_store(moto_s3), tmp_path / "spool")
    moto_s3.stop()
    spool.put("a.json", b"1")
    with pytest.raises(LakeError):
        spool.get("a.json")
    moto_s3.start()
    assert not spool.exists("a.json")  # not uploaded until drained
    assert spool.drain() is True
    assert spool.get("a.json") == b"1"
