"""The data's health checks (include/alerts/health_checks.py), each through the evaluation itself
(include/alerts/evaluate.py, ``evaluate_alerts``) on a DuckDB warehouse: the incident opens once, a
second evaluation opens nothing new, and it resolves when the condition ends.

- a stalled stream: 1m candles (the exchange's own klines) whose newest closed long ago, then newer ones;
- incomplete candles: closed minutes left incomplete past the limit, then completed;
- an exchange-side hole: a sandbox whose market lacks three ids, a window of it repaired into a file
  lake (the repair records the holes in its ledger), loaded and built by dbt: one fact per run of ids;
- an altered candle: a mart row changed, the real audit against the sandbox records a mismatch; the
  audit row deleted (the runbook), the incident resolves;
- a reconnect storm: a real stream worker whose connections the sandbox keeps cutting; its heartbeat
  reports the reconnects, and a later heartbeat of the same writer with none in the window ends it.

The dbt build and its sandbox are shared by the module; each test evaluates a copy of the warehouse.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import fakesnow
import pytest

from include.alerts.checks import CheckInput
from include.alerts.evaluate import EvaluationResult, evaluate_alerts
from include.alerts.health_checks import (
    AUDIT_MISMATCH,
    EXCHANGE_HOLE,
    HEALTH_CHECKS,
    INCOMPLETE_CANDLES,
    RECONNECT_STORM,
    STALE_SYMBOL,
)
from include.alerts.model import Alert
from include.alerts.rules import RuleSet
from include.binance.client import BinanceClient
from include.config import Settings, load_settings
from include.ingest.batcher import MicroBatcher
from include.ingest.worker import StreamWorker
from include.lake.heartbeats import RECONNECT_WINDOW, read_heartbeats
from include.lake.store import ObjectStore, open_lake
from include.repair.repair import repair_window
from include.sandbox.server import RunningSandbox, serve_in_thread
from include.sandbox.symbols import spec_for
from include.sandbox.synthetic import SyntheticModel
from include.timeutil import MINUTE_US, from_us, now_us, to_us
from include.warehouse.audit import CandleAuditor, ensure_audit_table
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.snowflake_backend import SnowflakeWarehouse
from tests.support.candles import build, load
from tests.support.exchange import sandbox_config, stream_for
from tests.support.net import set_faults
from tests.support.waiting import wait_until
from tests.support.warehouse import FAKESNOW_FILE_ERRORS, create_candle_marts, fill_candles_from_exchange

SYMBOL = "BTCUSDT"
RATE = 1.0  # trades per second: a 20-minute window is about 1,200 trades
WINDOW_US = int(RECONNECT_WINDOW.total_seconds()) * 1_000_000


def _settings(**alerts: str) -> Settings:
    """The settings of an evaluation: two symbols streamed (ETHUSDT never has a candle here)."""
    return load_settings({"SYMBOLS": f"{SYMBOL},ETHUSDT", **{f"ALERT_{k.upper()}": v for k, v in alerts.items()}})


def _evaluate(path: Path, lake: ObjectStore, settings: Settings) -> EvaluationResult:
    with DuckDBWarehouse(path) as warehouse:
        result = evaluate_alerts(warehouse.execute, warehouse.dialect, lake, settings, RuleSet())
    assert result.failed_checks == []
    return result


def _fired(result: EvaluationResult, check: str) -> list:
    return [alert for alert in result.fired if alert.rule_id == check]


def _execute(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    with DuckDBWarehouse(path) as warehouse:
        return warehouse.execute(sql, params)


def _minute_floor(time_us: int) -> int:
    return time_us - time_us % MINUTE_US


def _assert_opens_once_then_resolves(
    path: Path, lake: ObjectStore, settings: Settings, check: str, subject: str, end_it: Callable[[], None]
) -> Alert:
    """Evaluate: one incident of ``check``, about ``subject``; again: nothing new; ``end_it()``; again:
    that incident resolved, nothing new. The incident."""
    first = _fired(_evaluate(path, lake, settings), check)
    assert [(alert.subject, alert.resolved_at) for alert in first] == [(subject, None)], first
    assert _fired(_evaluate(path, lake, settings), check) == [], "a lasting incident opened twice"
    end_it()
    after = _evaluate(path, lake, settings)
    assert after.resolved == [first[0].alert_id]
    assert _fired(after, check) == []
    return first[0]


# A stalled stream and incomplete candles, on marts filled with the exchange's klines -----------------


@pytest.fixture(scope="module")
def sandbox(holes) -> Iterator[RunningSandbox]:
    config = sandbox_config(symbols=(SYMBOL,), rate=RATE, history_seconds=3600, holes={SYMBOL: holes})
    with serve_in_thread(replace(config, weight_limit=10**6)) as running:
        yield running


def _fill(path: Path, sandbox: RunningSandbox, start_us: int, end_us: int) -> None:
    with DuckDBWarehouse(path) as warehouse, BinanceClient(sandbox.rest_url) as client:
        fill_candles_from_exchange(warehouse, client, SYMBOL, start_us, end_us)


def test_a_stalled_stream_is_a_stale_symbol_until_newer_candles_come(sandbox, tmp_path):
    path, lake, settings = tmp_path / "w.duckdb", open_lake(f"file://{tmp_path / 'lake'}"), _settings()
    now = _minute_floor(now_us())
    stalled_at = now - 20 * MINUTE_US
    _fill(path, sandbox, now - 40 * MINUTE_US, stalled_at)  # ETHUSDT: no candle yet, so never stale

    def caught_up() -> None:  # the stream and the warehouse caught up
        _fill(path, sandbox, stalled_at, now)

    alert = _assert_opens_once_then_resolves(path, lake, settings, STALE_SYMBOL, SYMBOL, caught_up)
    assert to_us(alert.event_time) == stalled_at - 1000, "the evidence: the newest close (the bucket's last ms)"
    assert "BTCUSDT is stale" in alert.message
    assert "the limit is 5 minutes" in alert.message


def test_closed_candles_incomplete_past_the_limit_are_one_incident_per_symbol(sandbox, tmp_path):
    path, lake, settings = tmp_path / "w.duckdb", open_lake(f"file://{tmp_path / 'lake'}"), _settings()
    now = _minute_floor(now_us())
    _fill(path, sandbox, now - 60 * MINUTE_US, now)
    # A gap left minutes 40 to 37 before now incomplete, and minute 3 before now (too recent to tell).
    gap = [from_us(now - minutes * MINUTE_US).isoformat() for minutes in (40, 39, 38, 37, 3)]
    marks = ", ".join(["cast(? as timestamptz)"] * len(gap))
    _execute(path, f"update marts.candles_1m set is_complete = false where open_time in ({marks})", gap)

    def repaired() -> None:  # the repair filled the gap, and the build completed the minutes
        _execute(path, "update marts.candles_1m set is_complete = true")

    alert = _assert_opens_once_then_resolves(path, lake, settings, INCOMPLETE_CANDLES, SYMBOL, repaired)
    assert (alert.value, to_us(alert.open_time)) == (4, now - 40 * MINUTE_US), "the recent one is not counted"
    assert "4 closed 1m candles still incomplete more than 15 minutes after closing" in alert.message


# An exchange-side hole and an altered candle, on a dbt build of a repaired window ----------------------


@dataclass(frozen=True)
class Built:
    path: Path  # the warehouse after the load and the build (copy it before changing it)
    lake: ObjectStore
    start: datetime  # the repaired window
    end: datetime


@pytest.fixture(scope="module")
def window() -> tuple[datetime, datetime]:
    end = _minute_floor(now_us()) - 10 * MINUTE_US
    return from_us(end - 20 * MINUTE_US), from_us(end)


@pytest.fixture(scope="module")
def holes(window) -> frozenset[int]:
    """Two consecutive ids and one apart, in the middle of the window: the market (seed, symbol, rate)
    gives every trade its id whatever else the sandbox does."""
    config = sandbox_config(symbols=(SYMBOL,), rate=RATE)
    first = SyntheticModel(spec_for(SYMBOL), config.rate, config.seed).first_id_at_or_after(
        to_us(window[0]) + 10 * MINUTE_US
    )
    return frozenset({first, first + 1, first + 5})


@pytest.fixture(scope="module")
def built(sandbox, window, tmp_path_factory) -> Built:
    folder = tmp_path_factory.mktemp("built")
    lake = open_lake(f"file://{folder / 'lake'}")
    with BinanceClient(sandbox.rest_url) as client:
        report = repair_window(client, lake, SYMBOL, *window)
    assert len(report.holes) == 3, report
    path = folder / "warehouse.duckdb"
    load(lake, path)
    build(path, folder / "dbt")
    return Built(path, lake, *window)


def _copy(built: Built, tmp_path: Path) -> Path:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built.path, copy)
    return copy


def test_exchange_side_holes_are_one_fact_per_run_of_ids_stored_once(built, holes, tmp_path):
    path, settings = _copy(built, tmp_path), _settings()
    facts = _fired(_evaluate(path, built.lake, settings), EXCHANGE_HOLE)
    first = min(holes)
    assert sorted((alert.subject, alert.value, alert.resolved_at is not None) for alert in facts) == [
        (SYMBOL, 1, True),
        (SYMBOL, 2, True),
    ]
    messages = " | ".join(alert.message for alert in facts)
    assert f"ids {first} to {first + 1} (2) do not exist on the exchange" in messages
    assert f"id {first + 5} does not exist" in messages
    assert _fired(_evaluate(path, built.lake, settings), EXCHANGE_HOLE) == [], "a fact is stored once"
    stored = _execute(
        path, "select count(*) from marts.alerts where rule_id = ? and resolved_at is not null", [EXCHANGE_HOLE]
    )
    assert stored == [(2,)]


def test_an_altered_candle_is_an_audit_mismatch_until_its_audit_row_is_deleted(built, sandbox, tmp_path):
    path, settings = _copy(built, tmp_path), _settings()
    altered = built.start + timedelta(minutes=5)
    _execute(
        path,
        "update marts.candles_1m set close = close + 0.00000001 "
        "where symbol = ? and open_time = cast(? as timestamptz)",
        [SYMBOL, altered.isoformat()],
    )
    with DuckDBWarehouse(path) as warehouse, BinanceClient(sandbox.rest_url) as client:
        audited = CandleAuditor(warehouse.execute, warehouse.dialect, client).audit(
            [SYMBOL], to_us(built.start), to_us(built.end), now_us(), intervals=("1m",)
        )
    assert audited.count("mismatch") == 1, audited.as_dict()
    assert audited.count("match") > 10, audited.as_dict()

    def runbook() -> None:  # dags/warehouse.py: repair, then delete the audit's row
        _execute(path, "delete from marts.candle_audit where status = 'mismatch'")

    subject = f"{SYMBOL} 1m {altered:%Y-%m-%d %H:%M}"
    alert = _assert_opens_once_then_resolves(path, built.lake, settings, AUDIT_MISMATCH, subject, runbook)
    assert (alert.symbol, alert.interval, alert.open_time) == (SYMBOL, "1m", altered)
    assert "close: warehouse" in alert.message


# A reconnect storm, from a real stream writer's heartbeat ----------------------------------------------


def test_a_stream_writer_that_keeps_reconnecting_is_a_storm_until_its_window_is_quiet(tmp_path):
    lake, path = open_lake(f"file://{tmp_path / 'lake'}"), tmp_path / "w.duckdb"
    settings = _settings(reconnects="3")

    def storm_reported(worker: StreamWorker) -> None:
        wait_until(lambda: len(worker.stats.reconnect_times) >= 3, 60, "three reconnects")

    with serve_in_thread(sandbox_config(symbols=(SYMBOL,), rate=5.0)) as running:
        set_faults(running, {"drop_connections_every": 0.3})
        worker = stream_for(lake, running.ws_url, 0.5, symbols=(SYMBOL,), before_stop=storm_reported)
    (heartbeat,) = read_heartbeats(lake)
    assert len(heartbeat["counters"]["recent_reconnects"]) >= 3, heartbeat["counters"]

    def window_passed() -> None:
        """The same writer's next heartbeat, once its reconnects are older than the window: none reported."""
        batcher = MicroBatcher(lake, frozenset({SYMBOL}), worker.writer)
        for moment in worker.stats.reconnect_times:
            batcher.stats.reconnected_at(moment - WINDOW_US - MINUTE_US)
        batcher.write_heartbeats()

    alert = _assert_opens_once_then_resolves(path, lake, settings, RECONNECT_STORM, worker.writer, window_passed)
    assert alert.value is not None
    assert alert.value >= 3
    assert f"stream writer {worker.writer} (1 symbols) reconnected" in alert.message


# The same SQL on Snowflake ------------------------------------------------------------------------------


@pytest.fixture
def snowflake(monkeypatch) -> Iterator[SnowflakeWarehouse]:
    """A Snowflake warehouse through fakesnow, behind Airflow's hook (as tests/warehouse/conftest.py)."""
    connection = {"conn_type": "snowflake", "login": "loader", "password": "not-a-secret"}
    connection["extra"] = {"account": "cryptoflow", "database": "cryptoflow", "warehouse": "cryptoflow_wh"}
    monkeypatch.setenv("AIRFLOW_CONN_SNOWFLAKE_DEFAULT", json.dumps(connection))
    with fakesnow.patch(), SnowflakeWarehouse(file_errors=FAKESNOW_FILE_ERRORS) as warehouse:
        yield warehouse


def test_the_checks_read_snowflake_alike(snowflake, tmp_path):
    """Each check's SQL on Snowflake's dialect (its placeholders, timestamp_tz, upper-case catalog): an old,
    incomplete, mismatched minute and a recorded hole are seen as on DuckDB. The dbt view of the holes is
    stood in for by a table of its columns."""
    warehouse, p, ts = snowflake, snowflake.dialect.placeholder, snowflake.dialect.timestamp_type
    now = warehouse.execute("select current_timestamp")[0][0]
    opened = (now - timedelta(minutes=30)).replace(second=0, microsecond=0)
    create_candle_marts(warehouse)
    ensure_audit_table(warehouse.execute, warehouse.dialect)
    warehouse.execute(
        "insert into marts.candles_1m (symbol, open_time, close_time, volume, quote_volume, taker_buy_volume, "
        "taker_buy_quote_volume, trade_count, is_closed, is_complete, last_loaded_at, built_at) "
        f"values ({p}, cast({p} as {ts}), cast({p} as {ts}), 0, 0, 0, 0, 0, true, false, cast({p} as {ts}), "
        f"cast({p} as {ts}))",
        [SYMBOL, *(moment.isoformat() for moment in (opened, opened + timedelta(seconds=59.999), opened, opened))],
    )
    warehouse.execute(
        "insert into marts.candle_audit (symbol, interval, open_time, status, differences, audited_at) "
        f"values ({p}, '1m', cast({p} as {ts}), 'mismatch', 'close: warehouse 2 != exchange 1', cast({p} as {ts}))",
        [SYMBOL, opened.isoformat(), now.isoformat()],
    )
    warehouse.execute("create schema if not exists staging")
    warehouse.execute(
        f"create table staging.stg_trade_holes (exchange varchar, symbol varchar, trade_id bigint, loaded_at {ts})"
    )
    warehouse.execute(
        f"insert into staging.stg_trade_holes values ('binance', {p}, 7, cast({p} as {ts})), "
        f"('binance', {p}, 8, cast({p} as {ts}))",
        [SYMBOL, now.isoformat(), SYMBOL, now.isoformat()],
    )
    check = CheckInput(warehouse.execute, warehouse.dialect, open_lake(f"file://{tmp_path / 'lake'}"), _settings(), now)
    seen = {name: [alert.subject for alert in run(check)] for name, run in HEALTH_CHECKS.items()}
    assert seen == {
        STALE_SYMBOL: [SYMBOL],
        INCOMPLETE_CANDLES: [SYMBOL],
        EXCHANGE_HOLE: [SYMBOL],
        RECONNECT_STORM: [],
        AUDIT_MISMATCH: [f"{SYMBOL} 1m {opened:%Y-%m-%d %H:%M}"],
    }
