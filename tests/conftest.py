"""Shared test fixtures: a real sandbox exchange on a real socket, and the shared Binance samples."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from include.ingest.stream import StreamSettings
from include.ingest.worker import StreamWorker, WorkerSettings
from include.lake.store import ObjectStore
from include.sandbox.config import SandboxConfig
from include.sandbox.server import RunningSandbox, serve_in_thread

REPO_ROOT = Path(__file__).resolve().parents[1]
BINANCE_SAMPLES = REPO_ROOT.parent / "shared" / "data" / "binance"
BTCUSDT_DUMP = BINANCE_SAMPLES / "BTCUSDT-trades-2021-01-08-head2001.csv"
MICRO = {"X-MBX-TIME-UNIT": "MICROSECOND"}  # ask the exchange for times in µs


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """A sandbox on a free port; keyword arguments override SandboxConfig fields."""
    return replace(SandboxConfig(port=0), **overrides)


@pytest.fixture
def start_sandbox() -> Callable[..., AbstractContextManager[RunningSandbox]]:
    """``with start_sandbox(rate=50, ...) as sandbox:`` serves a sandbox for the block."""
    return lambda **overrides: serve_in_thread(sandbox_config(**overrides))


@pytest.fixture(scope="module")
def history_sandbox() -> Iterator[RunningSandbox]:
    """A sandbox with two hours of synthetic history at 2 trades/s, shared by a test module."""
    with serve_in_thread(sandbox_config(rate=2.0, history_seconds=2 * 3600)) as sandbox:
        yield sandbox


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """GET a URL; the status, the headers and the decoded JSON body (or text), errors included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, head, body = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, head, body = error.code, dict(error.headers), error.read()
    try:
        return status, head, json.loads(body)
    except json.JSONDecodeError:
        return status, head, body.decode()


def admin(sandbox: RunningSandbox | str) -> dict[str, Any]:
    """The sandbox's ``GET /admin``: fault settings, what the faults did, and the last trade ids."""
    base = sandbox if isinstance(sandbox, str) else sandbox.rest_url
    status, _, body = http_get(f"{base}/admin")
    assert status == 200, body
    return body


@contextmanager
def ws_client(url: str) -> Iterator[ClientConnection]:
    """A plain client: no client-side pings (they would count against the 5/s limit), no proxy."""
    with connect(
        url, ping_interval=None, proxy=None, compression=None, max_queue=None, open_timeout=10, close_timeout=5
    ) as ws:
        yield ws


def http_post_json(url: str, payload: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --- S3 without AWS: a real moto server over HTTP ---------------------------------------------

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
MOTO_BUCKET = "lake"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MotoServer:
    """``moto_server`` in a subprocess: real S3 over HTTP, stoppable and restartable on the same port.

    Like the real thing across an outage, nothing persists across a restart: buckets are gone.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        command = [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server on port {self.port} exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server on port {self.port} did not answer in {timeout} s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def reset(self) -> None:
        """Forget every bucket and object (moto's own reset endpoint)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


@dataclass
class MotoS3:
    """A bucket on a running moto server, with the AWS_* environment pointing at it."""

    server: MotoServer
    bucket: str

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    def url(self, prefix: str = "") -> str:
        """The lake URL of a prefix in the bucket, for ``open_lake``."""
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def client(self, **config: Any) -> Any:
        """A boto3 client for the server; short timeouts and no retries unless overridden."""
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {"retries": {"total_max_attempts": 1, "mode": "standard"}, "connect_timeout": 2}
        options["read_timeout"] = 10
        options.update(config)
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1", config=Config(**options))

    def create_bucket(self) -> None:
        self.client().create_bucket(Bucket=self.bucket)

    def keys(self) -> list[str]:
        """Every raw key in the bucket, prefixes included (straight from S3, not through the lake)."""
        page = self.client().list_objects_v2(Bucket=self.bucket)
        return [item["Key"] for item in page.get("Contents", [])]

    def stop(self) -> None:
        """An S3 outage: the server goes away and its port refuses connections."""
        self.server.stop()

    def start(self, create_bucket: bool = True) -> None:
        """The server comes back on the same port, empty; the bucket is re-created unless told not to."""
        self.server.start()
        if create_bucket:
            self.create_bucket()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto_server process for the test session (restarted by tests that simulate an outage)."""
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials and no shared config files: nothing can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def moto_s3(moto_server: MotoServer, aws_test_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    """An empty bucket ``lake`` on the moto server; AWS_ENDPOINT_URL points at it, so
    ``open_lake(moto_s3.url("prefix"))`` works as in production. ``moto_s3.stop()`` / ``.start()``
    take S3 away and bring it back on the same port."""
    moto_server.start()  # a previous test may have left it stopped
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    s3 = MotoS3(moto_server, MOTO_BUCKET)
    s3.create_bucket()
    yield s3
    moto_server.start()


# --- The exchange's REST history and an in-process streaming worker ---------------------------------


def rest_history(
    rest_url: str,
    symbol: str = "BTCUSDT",
    from_id: int = 0,
    headers: dict[str, str] | None = None,
    until_us: int | None = None,
    to_id: int | None = None,
    wait_out_errors: bool = False,
) -> list[dict[str, Any]]:
    """Every trade from ``from_id`` on, paged with historicalTrades (``limit=1000``) as a backfill would.

    Paging stops on an empty page, once ``to_id`` is reached, or once a page reaches ``until_us``
    (in the unit ``headers`` ask for); trades with ``id >= to_id`` or ``time >= until_us`` are left out.
    Any answer but 200 fails the test, unless ``wait_out_errors``: then a 429 is waited out
    (``Retry-After``) and a 5xx asked again.
    """
    rows: list[dict[str, Any]] = []
    while to_id is None or from_id < to_id:
        url = f"{rest_url}/api/v3/historicalTrades?symbol={symbol}&fromId={from_id}&limit=1000"
        status, head, page = http_get(url, headers)
        if wait_out_errors and status == 429:
            time.sleep(float({name.lower(): value for name, value in head.items()}["retry-after"]))
            continue
        if wait_out_errors and status >= 500:
            continue
        assert status == 200, (url, status, page)
        assert len(page) <= 1000
        rows.extend(
            row for row in page if (to_id is None or row["id"] < to_id) and (until_us is None or row["time"] < until_us)
        )
        if not page or (until_us is not None and page[-1]["time"] >= until_us):
            break
        from_id = page[-1]["id"] + 1
    return rows


def stream_for(
    lake: ObjectStore,
    ws_url: str,
    seconds: float,
    symbols: tuple[str, ...] = ("BTCUSDT",),
    before_stop: Callable[[], None] | None = None,
    flush_seconds: float = 1.0,
    **stream: Any,
) -> StreamWorker:
    """Run a StreamWorker in this process for ``seconds``, then stop it (it flushes what is left).

    ``before_stop`` runs (in a thread) after the ``seconds`` and before the stop; ``stream`` are
    StreamSettings fields besides ``ws_url``.
    """
    worker = StreamWorker(
        WorkerSettings(symbols=symbols, stream=StreamSettings(ws_url=ws_url, **stream), flush_seconds=flush_seconds),
        lake,
    )

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await asyncio.wait([running], timeout=seconds)
        assert not running.done(), f"the worker ended early: {running.exception() if running.done() else ''}"
        if before_stop is not None:
            await asyncio.to_thread(before_stop)
        stop.set()
        await asyncio.wait_for(running, 60)

    asyncio.run(main())
    return worker
