"""The spool in front of S3 (a real moto server over HTTP): an outage loses and reorders nothing,
and no writer's spool is overwritten, drained twice or left behind by another writer."""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import pytest

from include.lake.spool import SpoolBusy, SpoolFolder, SpoolingStore
from include.lake.store import LakeError, S3Store
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group
from tests.support.waiting import wait_until

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
    return [spool.folder.read(entry)[0] for entry in spool.spooled()]


def test_outage_spools_in_order_and_drain_uploads_in_order(moto_s3, tmp_path):
    recording = Recording(s3_store(moto_s3))
    spool = SpoolingStore(recording, tmp_path / "spool" / "writer-a")
    items = objects(6)
    moto_s3.stop()
    for key, data in items:
        spool.put(key, data)  # never raises
    assert recording.stored == []
    assert spooled_keys(spool) == [key for key, _ in items]
    assert [spool.folder.read(entry)[1] for entry in spool.spooled()] == [data for _, data in items]
    assert spool.drain() is False  # still down: nothing moves
    assert spooled_keys(spool) == [key for key, _ in items]

    moto_s3.start()  # back, empty: the bucket is re-created
    assert spool.drain() is True
    assert recording.stored == [key for key, _ in items]
    for key, data in items:
        assert spool.get(key) == data
        assert spool.exists(key)
    assert spool.spooled() == []
    assert [name for name in os.listdir(spool.spool_dir) if not name.startswith(".")] == []
    assert sorted(moto_s3.keys()) == sorted(f"{PREFIX}/{key}" for key, _ in items)
    assert sorted(info.key for info in spool.list("trades/")) == sorted(key for key, _ in items)


def test_without_outage_puts_go_straight_through(moto_s3, tmp_path):
    recording = Recording(s3_store(moto_s3))
    spool = SpoolingStore(recording, tmp_path / "spool" / "writer-a")
    spool.put("a/b.json", b"1")
    assert recording.stored == ["a/b.json"]
    assert spool.spooled() == []
    assert spool.get("a/b.json") == b"1"
    spool.delete("a/b.json")
    assert not spool.exists("a/b.json")


def test_new_puts_queue_behind_the_spool(moto_s3, tmp_path):
    recording = Recording(s3_store(moto_s3))
    spool = SpoolingStore(recording, tmp_path / "spool" / "writer-a")
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
    spool = SpoolingStore(recording, tmp_path / "spool" / "writer-a")
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
    spool = SpoolingStore(s3_store(moto_s3), tmp_path / "spool" / "writer-a")
    moto_s3.stop()
    for version in range(5):
        spool.put("status/stream/exchange=binance/symbol=BTCUSDT.json", f"v{version}".encode())
    moto_s3.start()
    assert spool.drain() is True
    assert spool.get("status/stream/exchange=binance/symbol=BTCUSDT.json") == b"v4"


def test_a_restarted_worker_drains_what_was_spooled(moto_s3, tmp_path):
    spool_dir = tmp_path / "spool" / "writer-a"
    before = objects(4, "before-")
    after = objects(2, "after-")
    moto_s3.stop()
    first = SpoolingStore(s3_store(moto_s3), spool_dir)
    for key, data in before:
        first.put(key, data)
    first.close()  # the worker ends with S3 still down; a retry of it comes back with the same id

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
    spool = SpoolingStore(recording, tmp_path / "spool" / "writer-a")
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
    spool = SpoolingStore(s3_store(moto_s3), tmp_path / "spool" / "writer-a")
    moto_s3.stop()
    spool.put("a.json", b"1")
    with pytest.raises(LakeError):
        spool.get("a.json")
    moto_s3.start()
    assert not spool.exists("a.json")  # not uploaded until drained
    assert spool.drain() is True
    assert spool.get("a.json") == b"1"


# One folder per writer: never shared, never drained twice, never left behind -----------------------

_ADD_ENTRIES = """
import sys, time
from pathlib import Path
from include.lake.spool import SpoolFolder
folder, tag, count, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
spool = SpoolFolder(folder)
while not go.exists():  # both processes start adding at the same moment
    time.sleep(0.001)
for index in range(count):
    spool.add(f"trades/{tag}/{index}.parquet", f"{tag}:{index}".encode())
"""


def test_two_processes_adding_to_one_folder_lose_no_entry(tmp_path):
    """Numbers are claimed by an exclusive create: two processes never write the same entry."""
    folder, go, count = tmp_path / "spool" / "shared", tmp_path / "go", 300
    with contextlib.ExitStack() as started:
        processes = [
            started.enter_context(
                process_group(
                    [sys.executable, "-c", _ADD_ENTRIES, str(folder), tag, str(count), str(go)], cwd=REPO_ROOT
                )
            )
            for tag in ("a", "b")
        ]
        wait_until(lambda: folder.is_dir(), 60, "the processes to start")
        go.touch()
        assert [process.wait(timeout=120) for process in processes] == [0, 0]
    entries = SpoolFolder(folder).entries()
    read = [SpoolFolder(folder).read(entry) for entry in entries]
    assert sorted(key for key, _ in read) == sorted(f"trades/{t}/{i}.parquet" for t in "ab" for i in range(count))
    assert all(data == f"{key.split('/')[1]}:{key.split('/')[2].split('.')[0]}".encode() for key, data in read)
    for tag in "ab":  # each process's entries sort in the order it wrote them
        mine = [int(key.split("/")[2].split(".")[0]) for key, _ in read if key.split("/")[1] == tag]
        assert mine == list(range(count))


def test_a_drain_while_another_runs_uploads_each_entry_once(tmp_path):
    """Two drains of one folder at once (a writer and one adopting its folder): one waits for the other."""
    folder = SpoolFolder(tmp_path / "spool" / "w")
    items = objects(5)
    for key, data in items:
        folder.add(key, data)
    uploaded: list[str] = []
    gate, waiting = threading.Event(), []

    def upload(key, data):
        waiting.append(key)
        assert gate.wait(60)
        uploaded.append(key)

    results: list[bool] = []
    drains = [threading.Thread(target=lambda: results.append(folder.drain(upload))) for _ in range(2)]
    for drain in drains:
        drain.start()
    wait_until(lambda: waiting, 60, "the first drain to upload")
    # Without a lock the second drain would now be blocked on the same first entry; give it the chance.
    with contextlib.suppress(AssertionError):
        wait_until(lambda: len(waiting) > 1, 1.0, "a second upload")
    gate.set()
    for drain in drains:
        drain.join(60)
    assert results == [True, True]
    assert uploaded == [key for key, _ in items]
    assert folder.entries() == []


def test_an_entry_gone_by_the_time_it_is_read_is_skipped(tmp_path):
    """An entry another drain uploaded and removed after this drain listed the folder is not a crash."""
    folder = SpoolFolder(tmp_path / "spool" / "w")
    items = objects(3)
    for key, data in items:
        folder.add(key, data)
    _, second, _ = folder.entries()
    uploaded = []

    def upload(key, data):
        if not uploaded:  # as if a concurrent drain took the second entry meanwhile
            (folder.root / f"{second}.key").unlink()
            (folder.root / f"{second}.data").unlink()
        uploaded.append(key)

    assert folder.drain(upload) is True
    assert uploaded == [items[0][0], items[2][0]]


def test_one_folder_one_running_writer(moto_s3, tmp_path):
    spool_dir = tmp_path / "spool" / "writer-a"
    first = SpoolingStore(s3_store(moto_s3), spool_dir)
    with pytest.raises(SpoolBusy, match="writer-a"):
        SpoolingStore(s3_store(moto_s3), spool_dir, owner_wait=0.2)
    first.close()
    SpoolingStore(s3_store(moto_s3), spool_dir).close()  # once it ended, a retry with its id may take it


def test_a_writer_that_ended_during_the_outage_is_drained_by_the_next_writer(moto_s3, tmp_path):
    root = tmp_path / "spool"
    moto_s3.stop()
    ended = SpoolingStore(s3_store(moto_s3), root / "writer-ended")
    running = SpoolingStore(s3_store(moto_s3), root / "writer-running")
    left, held = objects(4, "left-"), objects(2, "held-")
    for key, data in left:
        ended.put(key, data)
    for key, data in held:
        running.put(key, data)
    ended.close()  # its window ended with S3 still down: nobody will come back for this folder
    moto_s3.start()

    recording = Recording(s3_store(moto_s3))
    SpoolingStore(recording, root / "writer-next").put("status/next.json", b"{}")  # reaches S3: sweeps
    assert recording.stored == ["status/next.json", *(key for key, _ in left)]
    for key, data in left:
        assert recording.get(key) == data
    assert not (root / "writer-ended").exists()
    # A writer that is still running keeps its folder: it drains it itself, in its own order.
    assert spooled_keys(running) == [key for key, _ in held]
    assert running.drain() is True
    assert [recording.get(key) for key, _ in held] == [data for _, data in held]


def test_a_writer_that_died_mid_add_leaves_nothing_that_blocks_the_next(moto_s3, tmp_path):
    root = tmp_path / "spool"
    dead = SpoolFolder(root / "writer-dead")
    (dead.root / ".owner.lock").touch()
    dead.add("a.json", b"a")
    (dead.root / "000000000002.data").write_bytes(b"half")  # its key never came
    recording = Recording(s3_store(moto_s3))
    assert SpoolingStore(recording, root / "writer-next").adopt_orphans() == 1
    assert recording.stored == ["a.json"]
    assert not dead.root.exists()
