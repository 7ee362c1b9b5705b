"""Servers a test runs itself, from Debian's packages: PostgreSQL 15 and Redis, on 127.0.0.1 only.

A package that is missing is installed with apt-get (as root, or with sudo), as the Makefile installs
Chromium: CI starts on a clean machine. Installing a package may start its system service; that one
is stopped at once, because each test starts its own server, on a free port, with its data under the
test's folder, and ends it when the test ends, pass or fail (``process_group``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import redis

from tests.support.net import free_port
from tests.support.processes import process_group, run_to_end
from tests.support.waiting import wait_until

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGRES_PACKAGE = "postgresql-15"
REDIS_PACKAGE = "redis-server"
LOCALHOST = "127.0.0.1"
START_SECONDS = 60.0
INSTALL_SECONDS = 900.0


def _as_root() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "-n"]


@contextlib.contextmanager
def _apt_lock() -> Iterator[None]:
    """One install at a time among the test processes of this run (the pytest workers share TMPDIR)."""
    with open(Path(tempfile.gettempdir()) / "cryptoflow-apt.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def apt_install(package: str, installed: Path) -> None:
    """``apt-get install package`` unless ``installed`` (a file it provides) exists already."""
    with _apt_lock():
        if installed.exists():
            return
        apt = [*_as_root(), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-qq", "-o", "DPkg::Lock::Timeout=600"]
        for command in ([*apt, "update"], [*apt, "install", "-y", "--no-install-recommends", package]):
            done = run_to_end(command, timeout=INSTALL_SECONDS)
            assert done.returncode == 0, f"{' '.join(command)} failed: {(done.stderr or done.stdout)[-2000:]}"
        assert installed.exists(), f"{package} was installed but {installed} is missing"


def _stop_system_service(command: Sequence[str]) -> None:
    """Stop the service a package's installation started (on systemd hosts; elsewhere Debian's
    policy-rc.d or our process group kept it from running): our own servers are the only ones."""
    with contextlib.suppress(FileNotFoundError):
        run_to_end([*_as_root(), *command], timeout=120)


def ensure_postgres() -> Path:
    """The folder of PostgreSQL 15's server binaries, installed from Debian's package when missing."""
    if not (POSTGRES_BIN / "postgres").exists():
        apt_install(POSTGRES_PACKAGE, POSTGRES_BIN / "postgres")
        _stop_system_service(["pg_ctlcluster", "15", "main", "stop"])
    return POSTGRES_BIN


def ensure_redis() -> Path:
    """The ``redis-server`` binary, installed from Debian's package when missing."""
    found = shutil.which("redis-server")
    if found is None:
        apt_install(REDIS_PACKAGE, Path("/usr/bin/redis-server"))
        _stop_system_service(["service", "redis-server", "stop"])
        found = "/usr/bin/redis-server"
    return Path(found)


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


# PostgreSQL ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    """A running server: superuser ``postgres`` with a password made for this run."""

    port: int
    password: str
    user: str = "postgres"

    def url(self, database: str, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://{self.user}:{self.password}@{LOCALHOST}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        """A psycopg2 connection to ``database``."""
        return psycopg2.connect(
            host=LOCALHOST, port=self.port, user=self.user, password=self.password, dbname=database, connect_timeout=5
        )


def _run_as_postgres_user(folder: Path) -> list[str]:
    """The prefix that runs PostgreSQL's programs: initdb and postgres refuse to run as root.

    As root they run as the ``postgres`` user the package made: it owns ``folder``, and may pass
    through the folders above it (search permission only: it can list none of them).
    """
    if os.geteuid() != 0:
        return []
    import pwd

    user = pwd.getpwnam("postgres")
    temporary = Path(tempfile.gettempdir()).resolve()
    assert folder.resolve().is_relative_to(temporary), f"{folder} is not under {temporary}"
    for path in (folder.resolve(), *folder.resolve().parents):
        if not path.is_relative_to(temporary):
            break  # above the temporary folders: left as they are
        path.chmod(path.stat().st_mode | stat.S_IXOTH)
    for path in (folder, *folder.rglob("*")):
        os.chown(path, user.pw_uid, user.pw_gid)
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]


def _connects(server: Postgres, process: subprocess.Popen, log: Path) -> bool:
    assert process.poll() is None, f"postgres exited with {process.returncode}: {_log_tail(log)}"
    try:
        server.connect().close()
    except psycopg2.OperationalError:  # not listening yet, or still starting up
        return False
    return True


@contextlib.contextmanager
def postgres(folder: Path, databases: Sequence[str] = ()) -> Iterator[Postgres]:
    """A PostgreSQL 15 server for the block, its data in ``folder``, listening on 127.0.0.1 only
    (no Unix socket), with ``databases`` created. Durability is off (fsync): a test's data dies with it."""
    binaries = ensure_postgres()
    folder.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    password_file = folder / "password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    as_postgres = _run_as_postgres_user(folder)
    data = folder / "data"
    initdb = [*as_postgres, str(binaries / "initdb"), "--pgdata", str(data), "--username", "postgres"]
    initdb += ["--auth", "scram-sha-256", "--pwfile", str(password_file), "--encoding", "UTF8", "--locale", "C"]
    done = run_to_end([*initdb, "--no-sync"], timeout=120)
    password_file.unlink()
    assert done.returncode == 0, f"initdb failed: {done.stderr[-2000:]}"
    server = Postgres(port=free_port(), password=password)
    settings = {
        "listen_addresses": LOCALHOST,
        "unix_socket_directories": "",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    argv = [*as_postgres, str(binaries / "postgres"), "-D", str(data), "-p", str(server.port)]
    argv += [item for name, value in settings.items() for item in ("-c", f"{name}={value}")]
    log = folder / "postgres.log"
    with log.open("wb") as output, process_group(argv, stdout=output, stderr=output) as process:
        try:
            wait_until(lambda: _connects(server, process, log), START_SECONDS, "PostgreSQL accepting connections")
            connection = server.connect()
            connection.autocommit = True  # create database refuses to run in a transaction
            try:
                with connection.cursor() as cursor:
                    for database in databases:
                        cursor.execute(f'create database "{database}"')
            finally:
                connection.close()
            yield server
        finally:
            # A fast shutdown (SIGINT), not the smart one of process_group's SIGTERM, which waits
            # for every client to leave, nor a kill of its helpers one by one.
            process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(START_SECONDS)


# Redis ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Redis:
    port: int

    def url(self, database: int = 0) -> str:
        return f"redis://{LOCALHOST}:{self.port}/{database}"


def _pongs(server: Redis, process: subprocess.Popen, log: Path) -> bool:
    assert process.poll() is None, f"redis-server exited with {process.returncode}: {_log_tail(log)}"
    try:
        with redis.Redis(host=LOCALHOST, port=server.port, socket_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[Redis]:
    """A Redis server for the block, on 127.0.0.1 only, keeping nothing on disk (no snapshot, no AOF)."""
    binary = ensure_redis()
    folder.mkdir(parents=True, exist_ok=True)
    server = Redis(port=free_port())
    argv = [str(binary), "--port", str(server.port), "--bind", LOCALHOST, "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(folder)]
    log = folder / "redis.log"
    with log.open("wb") as output, process_group(argv, stdout=output, stderr=output) as process:
        wait_until(lambda: _pongs(server, process, log), START_SECONDS, "Redis answering PING")
        yield server
