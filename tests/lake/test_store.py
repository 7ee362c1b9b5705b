"""The object-store layer on a local folder and on a real S3 endpoint (moto over HTTP)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from include.lake import store as store_module
from include.lake.store import LakeError, LocalStore, S3Store, open_lake
from tests.support.net import free_port
from tests.support.paths import REPO_ROOT
from tests.support.processes import run_to_end

BACKENDS = ["local", "s3"]
S3_PREFIX = "env/lake"


@pytest.fixture(params=BACKENDS)
def lake(request, tmp_path):
    """The same tests on both backends, each opened from its LAKE_URL as the product does."""
    if request.param == "local":
        return open_lake(f"file://{tmp_path / 'lake'}")
    s3 = request.getfixturevalue("moto_s3")
    return open_lake(s3.url(S3_PREFIX))


def test_open_lake_picks_the_backend(tmp_path, moto_s3):
    local = open_lake(f"file://{tmp_path}/lake")
    assert isinstance(local, LocalStore)
    assert local.root == (tmp_path / "lake").resolve()
    remote = open_lake(moto_s3.url("a/b/"))
    assert isinstance(remote, S3Store)
    assert (remote.bucket, remote.prefix, remote.url) == (moto_s3.bucket, "a/b", "s3://lake/a/b")
    bare = open_lake(moto_s3.url())
    assert isinstance(bare, S3Store)
    assert (bare.prefix, bare.url) == ("", "s3://lake")


@pytest.mark.parametrize("url", ["lake", "/abs/path", "http://host/x", "s3:///nobucket", "gs://bucket/x"])
def test_open_lake_refuses_other_urls(url):
    with pytest.raises(ValueError, match="LAKE_URL"):
        open_lake(url)


def test_put_get_exists_delete(lake):
    key = "trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=13/stream-1-2.parquet"
    data = bytes(range(256)) * 5
    assert not lake.exists(key)
    lake.put(key, data)
    assert lake.exists(key)
    assert lake.get(key) == data
    # a prefix of the key is not an object
    assert not lake.exists("trades/exchange=binance")
    lake.put(key, b"second version")
    assert lake.get(key) == b"second version"
    lake.delete(key)
    assert not lake.exists(key)
    lake.delete(key)  # deleting what is absent is not an error


def test_empty_object(lake):
    lake.put("status/empty.json", b"")
    assert lake.exists("status/empty.json")
    assert lake.get("status/empty.json") == b""
    assert [(info.key, info.size) for info in lake.list("status/")] == [("status/empty.json", 0)]


def test_get_missing_key_is_file_not_found(lake):
    with pytest.raises(FileNotFoundError):
        lake.get("nothing/here.json")


KEYS = [
    "a/b.txt",
    "a/b/c.txt",
    "a/b-1/d.txt",
    "a/bc.txt",
    "a/z.txt",
    "a/b/y/deep.txt",
    "b/one.txt",
    "root.txt",
    "status/stream/exchange=binance/symbol=BTCUSDT.json",
    "status/stream/exchange=binance/symbol=ETHUSDT.json",
    "status/writes/stream-1.json",
]


def test_list_is_sorted_and_filtered_by_prefix(lake):
    # written in an order that is neither sorted nor reverse sorted
    for index, key in enumerate(sorted(KEYS, key=lambda k: hash(k) % 7)):
        lake.put(key, key.encode() * (index + 1))
    listed = list(lake.list())
    assert [info.key for info in listed] == sorted(KEYS)
    sizes = {info.key: info.size for info in listed}
    assert sizes == {key: len(lake.get(key)) for key in KEYS}
    # a prefix is a plain string prefix, as on S3: "a/b" matches "a/b.txt", "a/b/...", "a/b-1/..." and "a/bc.txt"
    for prefix in ["a/b", "a/b/", "a/", "a", "status/writes/", "status/stream/exchange=binance/symbol=BTC", "zzz/"]:
        expected = sorted(key for key in KEYS if key.startswith(prefix))
        assert [info.key for info in lake.list(prefix)] == expected, prefix


def test_list_of_an_empty_lake(lake):
    assert list(lake.list()) == []
    assert list(lake.list("trades/")) == []


def test_etag_changes_with_content(lake):
    lake.put("k/v.json", b"aaaa")
    first = next(iter(lake.list("k/"))).etag
    assert next(iter(lake.list("k/"))).etag == first  # stable while nothing changes
    lake.put("k/v.json", b"bbbb")  # same size, other content
    assert next(iter(lake.list("k/"))).etag != first


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/./b", "a/../b", "..", ".", "a/", "../outside"])
def test_invalid_keys_are_refused(lake, key):
    with pytest.raises(ValueError, match="invalid object key"):
        lake.put(key, b"x")
    with pytest.raises(ValueError, match="invalid object key"):
        lake.get(key)
    with pytest.raises(ValueError, match="invalid object key"):
        lake.exists(key)
    with pytest.raises(ValueError, match="invalid object key"):
        lake.delete(key)
    assert list(lake.list()) == []


def test_s3_prefix_is_added_on_write_and_stripped_on_list(moto_s3):
    lake = open_lake(moto_s3.url(S3_PREFIX))
    other = open_lake(moto_s3.url("other"))
    lake.put("x/1.json", b"1")
    lake.put("x/2.json", b"2")
    other.put("x/3.json", b"3")
    assert sorted(moto_s3.keys()) == ["env/lake/x/1.json", "env/lake/x/2.json", "other/x/3.json"]
    assert [info.key for info in lake.list()] == ["x/1.json", "x/2.json"]
    assert [info.key for info in lake.list("x/")] == ["x/1.json", "x/2.json"]
    assert [info.key for info in other.list()] == ["x/3.json"]
    assert not lake.exists("x/3.json")
    whole = open_lake(moto_s3.url())
    assert [info.key for info in whole.list()] == ["env/lake/x/1.json", "env/lake/x/2.json", "other/x/3.json"]
    assert whole.get("env/lake/x/2.json") == b"2"


def test_s3_prefix_does_not_leak_into_a_longer_sibling(moto_s3):
    """s3://lake/env must not list objects of s3://lake/environment."""
    open_lake(moto_s3.url("environment")).put("a.json", b"1")
    lake = open_lake(moto_s3.url("env"))
    lake.put("b.json", b"2")
    assert [info.key for info in lake.list()] == ["b.json"]


def test_s3_list_pages_through_more_than_a_thousand_objects(moto_s3):
    lake = open_lake(moto_s3.url(S3_PREFIX))
    client = moto_s3.client()
    keys = [f"many/{index:05d}.json" for index in range(1005)]
    for key in keys:  # straight through boto3: quicker than a thousand lake puts
        client.put_object(Bucket=moto_s3.bucket, Key=f"{S3_PREFIX}/{key}", Body=b"{}")
    assert [info.key for info in lake.list("many/")] == keys


def test_s3_etag_is_the_md5_of_the_content(moto_s3):
    import hashlib

    lake = open_lake(moto_s3.url(S3_PREFIX))
    lake.put("a.bin", b"hello")
    assert [info.etag for info in lake.list()] == [hashlib.md5(b"hello").hexdigest()]


# --- atomic writes on a local folder ------------------------------------------------------------


def _all_files(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def test_local_write_that_fails_leaves_no_object_and_no_stray_file(tmp_path, monkeypatch):
    lake = LocalStore(tmp_path)

    def crash(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(store_module.os, "fsync", crash)
    with pytest.raises(OSError, match="disk on fire"):
        lake.put("a/b/c.parquet", b"x" * 10_000)
    assert not lake.exists("a/b/c.parquet")
    assert list(lake.list()) == []
    assert _all_files(tmp_path) == []  # not even a hidden temporary file


def test_local_overwrite_that_fails_keeps_the_old_object(tmp_path, monkeypatch):
    lake = LocalStore(tmp_path)
    lake.put("a/b.json", b"old complete object")

    def crash(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(store_module.os, "replace", crash)
    with pytest.raises(OSError, match="rename failed"):
        lake.put("a/b.json", b"new object that never lands")
    assert lake.get("a/b.json") == b"old complete object"
    assert _all_files(tmp_path) == ["a/b.json"]


def test_local_write_killed_mid_way_is_never_visible(tmp_path):
    """A process killed half way through a write (no cleanup runs) leaves only a hidden temporary file."""
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from include.lake import store

        lake = store.LocalStore(Path({str(tmp_path)!r}))
        lake.put("a/old.json", b"old")

        def die(fd):
            os._exit(9)  # the process dies here: the data is written but never renamed into place

        store.os.fsync = die
        lake.put("a/new.json", b"half" * 1000)
        """
    )
    result = run_to_end([sys.executable, "-c", script], timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 9, result.stderr
    lake = LocalStore(tmp_path)
    strays = [name for name in _all_files(tmp_path) if name != "a/old.json"]
    assert len(strays) == 1  # the killed write left its temporary file behind ...
    assert Path(strays[0]).name.startswith(".")  # ... under a hidden name
    assert not lake.exists("a/new.json")
    assert [info.key for info in lake.list()] == ["a/old.json"]
    assert [info.key for info in lake.list("a/")] == ["a/old.json"]
    lake.put("a/new.json", b"complete")  # the next write of the key is not disturbed by the stray
    assert lake.get("a/new.json") == b"complete"


# --- an S3 outage --------------------------------------------------------------------------------


def _unreachable_store() -> S3Store:
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    return S3Store("lake", "prefix", client)


@pytest.mark.parametrize(
    "call",
    [
        lambda lake: lake.put("a/b.json", b"x"),
        lambda lake: lake.get("a/b.json"),
        lambda lake: lake.exists("a/b.json"),
        lambda lake: list(lake.list("a/")),
        lambda lake: lake.delete("a/b.json"),
    ],
    ids=["put", "get", "exists", "list", "delete"],
)
def test_s3_outage_raises_lake_error(call):
    with pytest.raises(LakeError, match="s3://lake/prefix"):
        call(_unreachable_store())


def test_s3_outage_through_open_lake_raises_lake_error(aws_test_env, monkeypatch):
    """The production client (open_lake, endpoint from AWS_ENDPOINT_URL) also turns an outage into LakeError."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    lake = open_lake("s3://lake/prefix")
    with pytest.raises(LakeError):
        lake.put("a/b.json", b"x")


def test_s3_server_stopped_then_back(moto_s3):
    lake = open_lake(moto_s3.url(S3_PREFIX))
    lake.put("before.json", b"1")
    moto_s3.stop()
    with pytest.raises(LakeError):
        lake.put("during.json", b"2")
    moto_s3.start()
    assert not lake.exists("before.json")  # moto keeps nothing across a restart
    lake.put("after.json", b"3")
    assert lake.get("after.json") == b"3"


def test_s3_missing_bucket_is_a_lake_error_not_a_missing_key(moto_s3):
    lake = open_lake("s3://no-such-bucket/prefix")
    with pytest.raises(LakeError):
        lake.put("a.json", b"x")
    with pytest.raises(LakeError):
        list(lake.list())
