"""S3 without AWS: a real moto server over HTTP, stoppable and restartable to simulate an outage."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.net import free_port

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
MOTO_BUCKET = "lake"


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
