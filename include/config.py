"""The one place settings come from: environment variables, validated once, failing fast.

``EXCHANGE`` is the one switch between the offline sandbox (the default) and live Binance; the
individual URLs can still be overridden with ``BINANCE_REST_URL`` and ``BINANCE_WS_URL``. The sandbox
is reached at ``SANDBOX_HOST``:``SANDBOX_PORT`` (127.0.0.1:9100; the ``sandbox`` service in
docker-compose.yaml).

``MAINTENANCE_DB_URL`` is a secret (the metadata database's password): no message and no repr shows
its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from include.binance.protocol import MAX_STREAMS_PER_CONNECTION, SYMBOL_PATTERN
from include.lake.heartbeats import MAX_RECENT_RECONNECTS

BINANCE_REST_URL = "https://api.binance.com"
BINANCE_WS_URL = "wss://stream.binance.com:9443"
# Where the pipeline reaches the sandbox: this machine under `make up`, the `sandbox` service under compose.
SANDBOX_HOST, SANDBOX_PORT = "127.0.0.1", 9100
# Relative paths in settings are taken from the repo, never from the working directory: Airflow's
# task processes, make up and the command line all start in different folders.
REPO_ROOT = Path(__file__).resolve().parents[1]
EXCHANGES = ("sandbox", "binance")
WAREHOUSES = ("duckdb", "snowflake")
EMAIL_PATTERN = re.compile(r"[^@\s,]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


class ConfigError(ValueError):
    """A setting with a bad value; the message names the variable and the value."""


@dataclass(frozen=True)
class AlertSettings:
    """Alerts (include/alerts/): the rules file, the pipeline checks' thresholds, and the channels.

    A channel is on when its Airflow connection exists (the webhook) or a recipient is set (e-mail);
    the connections hold the URLs and passwords, never these settings."""

    rules_file: Path = REPO_ROOT / "include" / "alerts" / "rules.yaml"
    stale_minutes: int = 5  # a symbol without a closed candle for this long is stale
    incomplete_minutes: int = 15  # a closed candle still incomplete after this long: a gap repair cannot fill
    reconnects: int = 5  # reconnects of one stream writer within RECONNECT_WINDOW: a reconnect storm
    webhook_conn_id: str = "alerts_webhook"
    smtp_conn_id: str = "smtp_default"
    email_to: tuple[str, ...] = ()
    email_from: str = "cryptoflow@localhost"


@dataclass(frozen=True)
class Settings:
    exchange: str
    data_dir: Path  # everything local: the default lake, the DuckDB file, the spools
    rest_url: str
    ws_url: str
    lake_url: str
    warehouse: str
    duckdb_path: Path
    snapshot_path: Path  # the dashboard's read-only copy of the marts (include/warehouse/snapshot.py)
    symbols: tuple[str, ...]
    snowflake_conn_id: str = "snowflake_default"
    snowflake_storage_integration: str = "cryptoflow_lake"
    stream_shard_size: int = 50  # symbols per mapped stream task
    maintenance_retention_days: int = 30  # Airflow's metadata rows and task logs older than this are removed
    # Airflow 3 hides its metadata database from task processes, so the maintenance DAG is given it here.
    maintenance_db_url: str | None = field(default=None, repr=False)
    # A warehouse run not finished this long after it was queued has missed its deadline (dags/warehouse.py).
    warehouse_deadline_seconds: int = 600
    alerts: AlertSettings = field(default_factory=AlertSettings)

    def spool_dir(self, writer: str) -> Path:
        """The local spool of one writer: its own folder, so two writers never share one."""
        return self.data_dir / "spool" / writer


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parsed = urlparse(value)
    try:
        port_ok = parsed.port is None or parsed.port > 0
    except ValueError:  # urlparse only checks the port when asked for it
        port_ok = False
    if parsed.scheme not in schemes or not parsed.hostname or not port_ok:
        raise ConfigError(f"{name}={value!r} is not a {' or '.join(schemes)} URL with a valid host and port")
    return value.rstrip("/")


def _integer(name: str, value: str, low: int, high: int) -> int:
    if not value.strip().isdigit() or not low <= int(value) <= high:
        raise ConfigError(f"{name}={value!r} is not a whole number from {low} to {high}")
    return int(value)


def _path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _folder_path(name: str, value: str, base: Path) -> Path:
    """A folder the code will create: refused now if it, or its nearest existing parent, is a file."""
    path = _path(value, base)
    existing = next(candidate for candidate in (path, *path.parents) if candidate.exists())
    if not existing.is_dir():
        raise ConfigError(f"{name}={value!r} cannot be a folder: {existing} is not a folder")
    return path


def _file_path(name: str, value: str, base: Path) -> Path:
    """A file the code will create: refused now if its nearest existing folder is not a folder
    (``/dev/null/x``), which would otherwise fail only when the file is opened, naming no setting."""
    path = _path(value, base)
    existing = next(parent for parent in path.parents if parent.exists())
    if not existing.is_dir():
        raise ConfigError(f"{name}={value!r} cannot be a file: {existing} is not a folder")
    if path.is_dir():
        raise ConfigError(f"{name}={value!r} is a folder, not a file")
    return path


def _database_url(name: str, value: str) -> str | None:
    """A SQLAlchemy URL (``postgresql+psycopg2://...``, ``sqlite:////path``), or None when empty.

    The message names the variable only: the value holds a password."""
    if not value:
        return None
    if not re.fullmatch(r"[a-z][a-z0-9]*(\+[a-z0-9_]+)?://.+", value):  # a path may hold spaces
        raise ConfigError(
            f"{name} is not a database URL like postgresql+psycopg2://user:password@host/airflow"
            " (its value is not shown: it holds a password)"
        )
    return value


def _host(name: str, value: str) -> str:
    """A host name or IPv4 address to put in a URL (``sandbox``, ``127.0.0.1``)."""
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", value):
        raise ConfigError(f"{name}={value!r} is not a host name or address like sandbox or 127.0.0.1")
    return value


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def _identifier(name: str, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", value):
        raise ConfigError(f"{name}={value!r} is not a plain identifier (letters, digits, _ and $)")
    return value


def parse_symbols(name: str, value: str) -> tuple[str, ...]:
    symbols = tuple(part.strip() for part in value.split(",") if part.strip())
    bad = [symbol for symbol in symbols if not SYMBOL_PATTERN.match(symbol)]
    if not symbols or bad:
        raise ConfigError(f"{name}={value!r}: {bad[0] if bad else 'no symbols'!r} is not a symbol like BTCUSDT")
    return tuple(dict.fromkeys(symbols))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    exchange = _choice("EXCHANGE", env.get("EXCHANGE", "sandbox"), EXCHANGES)
    sandbox_host = _host("SANDBOX_HOST", env.get("SANDBOX_HOST", SANDBOX_HOST))
    sandbox = f"{sandbox_host}:{_integer('SANDBOX_PORT', env.get('SANDBOX_PORT', str(SANDBOX_PORT)), 1, 65535)}"
    default_rest = BINANCE_REST_URL if exchange == "binance" else f"http://{sandbox}"
    default_ws = BINANCE_WS_URL if exchange == "binance" else f"ws://{sandbox}"
    data_dir = _folder_path("DATA_DIR", env.get("DATA_DIR", "data"), REPO_ROOT)
    lake_url = env.get("LAKE_URL", f"file://{data_dir / 'lake'}")
    if not re.match(r"^(file|s3)://.+", lake_url):
        raise ConfigError(f"LAKE_URL={lake_url!r} is not a file:// or s3:// URL")
    return Settings(
        exchange=exchange,
        data_dir=data_dir,
        rest_url=_url("BINANCE_REST_URL", env.get("BINANCE_REST_URL", default_rest), ("http", "https")),
        ws_url=_url("BINANCE_WS_URL", env.get("BINANCE_WS_URL", default_ws), ("ws", "wss")),
        lake_url=lake_url.rstrip("/"),
        warehouse=_choice("WAREHOUSE", env.get("WAREHOUSE", "duckdb"), WAREHOUSES),
        duckdb_path=_file_path("DUCKDB_PATH", env.get("DUCKDB_PATH", "warehouse.duckdb"), data_dir),
        snapshot_path=_file_path(
            "DASHBOARD_SNAPSHOT", env.get("DASHBOARD_SNAPSHOT", "dashboard/marts.duckdb"), data_dir
        ),
        symbols=parse_symbols("SYMBOLS", env.get("SYMBOLS", "BTCUSDT,ETHUSDT")),
        snowflake_conn_id=_identifier("SNOWFLAKE_CONN_ID", env.get("SNOWFLAKE_CONN_ID", "snowflake_default")),
        snowflake_storage_integration=_identifier(
            "SNOWFLAKE_STORAGE_INTEGRATION", env.get("SNOWFLAKE_STORAGE_INTEGRATION", "cryptoflow_lake")
        ),
        stream_shard_size=_integer(
            "STREAM_SHARD_SIZE", env.get("STREAM_SHARD_SIZE", "50"), 1, MAX_STREAMS_PER_CONNECTION
        ),
        maintenance_retention_days=_integer(
            "MAINTENANCE_RETENTION_DAYS", env.get("MAINTENANCE_RETENTION_DAYS", "30"), 1, 3650
        ),
        maintenance_db_url=_database_url("MAINTENANCE_DB_URL", env.get("MAINTENANCE_DB_URL", "")),
        warehouse_deadline_seconds=warehouse_deadline_seconds(env),
        alerts=_alert_settings(env),
    )


def warehouse_deadline_seconds(env: Mapping[str, str] | None = None) -> int:
    """``WAREHOUSE_DEADLINE_SECONDS`` alone (default 600): the warehouse DAG reads it when it is parsed,
    where loading every setting would be work, and a bad value of another setting must not stop the parse."""
    env = os.environ if env is None else env
    return _integer("WAREHOUSE_DEADLINE_SECONDS", env.get("WAREHOUSE_DEADLINE_SECONDS", "600"), 1, 86400)


def warehouse_deadline_when_parsed(env: Mapping[str, str] | None = None) -> int:
    """The deadline the warehouse DAG is parsed with: a bad value keeps the default there, since no bad
    setting may break a DAG's parse, and fails the run's ``load`` instead (``load_settings`` names it)."""
    try:
        return warehouse_deadline_seconds(env)
    except ConfigError:
        return Settings.warehouse_deadline_seconds


def _emails(name: str, value: str) -> tuple[str, ...]:
    addresses = tuple(part.strip() for part in value.split(",") if part.strip())
    bad = [address for address in addresses if not EMAIL_PATTERN.fullmatch(address)]
    if bad:
        raise ConfigError(f"{name}={value!r}: {bad[0]!r} is not an e-mail address like ops@example.com")
    return addresses


def _alert_settings(env: Mapping[str, str]) -> AlertSettings:
    rules = env.get("ALERT_RULES")
    email_from = env.get("ALERT_EMAIL_FROM", "cryptoflow@localhost")
    return AlertSettings(
        rules_file=_file_path("ALERT_RULES", rules, REPO_ROOT) if rules else AlertSettings.rules_file,
        stale_minutes=_integer("ALERT_STALE_MINUTES", env.get("ALERT_STALE_MINUTES", "5"), 1, 10080),
        incomplete_minutes=_integer("ALERT_INCOMPLETE_MINUTES", env.get("ALERT_INCOMPLETE_MINUTES", "15"), 1, 10080),
        reconnects=_integer("ALERT_RECONNECTS", env.get("ALERT_RECONNECTS", "5"), 1, MAX_RECENT_RECONNECTS),
        webhook_conn_id=_identifier("ALERT_WEBHOOK_CONN_ID", env.get("ALERT_WEBHOOK_CONN_ID", "alerts_webhook")),
        smtp_conn_id=_identifier("ALERT_SMTP_CONN_ID", env.get("ALERT_SMTP_CONN_ID", "smtp_default")),
        email_to=_emails("ALERT_EMAIL_TO", env.get("ALERT_EMAIL_TO", "")),
        email_from=_emails("ALERT_EMAIL_FROM", email_from)[0] if email_from.strip() else "cryptoflow@localhost",
    )
