"""The one object-store layer of the product: the lake is a local folder or an S3 bucket.

Every write is atomic: an object is either absent or complete, never partial. On a local folder
that is a write to a temporary name, an fsync and a rename; on S3 a PUT is atomic by nature.
``open_lake(LAKE_URL)`` picks the backend; S3 credentials come from Airflow's ``aws_default``
connection when one is configured, else from the environment (``AWS_*``, ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # S3's ETag; for files, size and mtime in ns: changes whenever the content does


class LakeError(RuntimeError):
    """The object store could not be reached or refused a request."""


class ObjectStore(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key


def _check_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key, or a key followed by "/"."""
    if prefix:
        _check_key(prefix.removesuffix("/"))
    return prefix


class LocalStore:
    """A folder as a lake (``file:///path``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temporary names start with "." so listings never show a partial object.
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, sorted by key as S3 lists them."""
        _check_prefix(prefix)
        folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        yield from self._walk(folder, prefix)

    def _walk(self, folder: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(self.root / folder if folder else self.root))
        except (FileNotFoundError, NotADirectoryError):
            return
        # A folder sorts as its name plus "/": "a/b-1/x" < "a/b.txt" < "a/b/x", the order of the keys.
        named = [(entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name, entry) for entry in entries]
        for name, entry in sorted(named, key=lambda item: item[0]):
            key = folder + name
            if name.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(key, prefix)
            elif not name.startswith(".") and key.startswith(prefix):  # "." names are temporary files
                stat = entry.stat()
                yield ObjectInfo(key, stat.st_size, f"{stat.st_size}-{stat.st_mtime_ns}")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Store:
    """An S3 bucket and prefix as a lake (``s3://bucket/prefix``): AWS, MinIO or moto."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"{self.url}/{kwargs.get('Key', '')}") from error
            raise LakeError(f"S3 {method} on {self.url} failed: {error}") from error
        except BotoCoreError as error:
            raise LakeError(f"S3 {method} on {self.url} failed: {error}") from error

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        return self._call("get_object", Key=self._key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Key=self._key(key))
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = (f"{self.prefix}/" if self.prefix else "") + _check_prefix(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        token: dict[str, str] = {}
        while True:
            page = self._call("list_objects_v2", Prefix=full, **token)
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"][strip:], item["Size"], item["ETag"].strip('"'))
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=self._key(key))


def s3_client(aws_conn_id: str | None = None) -> Any:
    """A boto3 S3 client: from an Airflow connection when given, else from the environment."""
    from botocore.config import Config

    config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=10)
    if aws_conn_id:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=aws_conn_id, config=config).get_conn()
    import boto3

    # boto3 reads AWS_ENDPOINT_URL itself, which is how MinIO and moto are reached.
    return boto3.client("s3", config=config)


def open_lake(url: str, aws_conn_id: str | None = None) -> ObjectStore:
    """The lake behind ``LAKE_URL``: ``file:///abs/path`` or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        root = Path(parsed.netloc + parsed.path) if parsed.netloc else Path(parsed.path)
        return LocalStore(root.resolve())
    if parsed.scheme == "s3" and parsed.netloc:
        return S3Store(parsed.netloc, parsed.path, s3_client(aws_conn_id))
    raise ValueError(f"LAKE_URL={url!r} is not a file:// or s3:// URL")
