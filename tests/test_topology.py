"""The distributed topology, proven without Docker: the same DAGs on two Celery workers, PostgreSQL and S3.

On this one machine: PostgreSQL 15 (Debian's server binaries) holds Airflow's metadata, Redis is
Celery's broker, two Celery workers run every task, a moto S3 server is the lake, and the DuckDB
warehouse takes its writers one at a time through its pool. The Airflow components are the ones
``make up`` starts (``include.up.airflow_services``); only settings differ.

The sandbox exchange has an hour of history and streams live. The DAGs do what they do in production:
the stream writes micro-batches into S3 and records the gap before its first trade, ``fill_gaps``
fills it, ``repair_gaps`` imports the past hours (triggered through the REST API without the grace
delay that its hourly schedule waits out), and the flushes run the warehouse DAG: load, dbt build
(Cosmos), audit against the exchange's klines, publish. Once the exchange stops trading (its clock
is stopped), the published candles must count every trade; Airflow is then stopped, and the
warehouse must hold exactly the exchange's trade ids, each once.

Each task instance records the worker that ran it (``tests/support/worker_hostname.py``): both
workers must have run tasks, and no task ran anywhere else. Every process the test starts ends when
it ends, pass or fail.
"""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest

from include.candles import INTERVALS
from include.config import load_settings
from include.lake.keys import hour_of_key
from include.lake.store import open_lake
from include.supervisor import Service
from include.timeutil import MICROS_PER_SECOND
from include.up import airflow_services
from tests.support.airflow_api import Airflow, first_stream_key, trigger_repairs
from tests.support.net import admin, free_port
from tests.support.services import Postgres, Redis, postgres, redis_server
from tests.support.up import running_services
from tests.support.worker_hostname import HOSTNAME_CALLABLE, WORKER_NAME

SYMBOL = "BTCUSDT"
RATE = 2.0  # trades per second: the hour of history is 7,200 trades, a few pages of REST to repair
HISTORY_SECONDS = 3600
WORKERS = ("worker-a", "worker-b")
DAGS = ("stream_trades", "fill_gaps", "repair_gaps", "warehouse")
# Liveness only: a cold start (migration on PostgreSQL, six components) took about 2 minutes on a
# busy 2-core machine, the pipeline about 2 more; several times that.
STARTUP_SECONDS = 600
PIPELINE_SECONDS = 900


def celery_deployment(metadata: Postgres, broker: Redis) -> dict[str, str]:
    """The Airflow settings that turn `make up`'s components into the distributed deployment."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata.url("airflow"),
        "AIRFLOW__CELERY__BROKER_URL": broker.url(),
        "AIRFLOW__CELERY__RESULT_BACKEND": metadata.url("airflow", scheme="db+postgresql"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
        # Two workers share this host: each task reports its worker's name as its hostname.
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
    }


def named_workers(plan: list[Service]) -> list[Service]:
    """The plan with each Celery worker's name (``worker-a`` of ``worker-a@host``) in its environment."""
    named = []
    for service in plan:
        if "--celery-hostname" in service.argv and service.env is not None:
            node = service.argv[list(service.argv).index("--celery-hostname") + 1]
            service = replace(service, env={**service.env, WORKER_NAME: node.split("@")[0]})
        named.append(service)
    return named


def components_healthy(airflow: Airflow) -> bool:
    health = airflow.get("/monitor/health")
    return all(health.get(name, {}).get("status") == "healthy" for name in ("scheduler", "dag_processor", "triggerer"))


def dags_parsed(airflow: Airflow) -> bool:
    parsed = {dag["dag_id"] for dag in airflow.get("/dags?limit=100")["dags"]}
    errors = airflow.get("/importErrors")["import_errors"]
    assert not errors, errors
    return set(DAGS) <= parsed


def published_trades(snapshot: Path) -> int:
    """The trades the published 1m candles count (the dashboard's snapshot, never the warehouse file)."""
    if not snapshot.exists():
        return 0
    with duckdb.connect(str(snapshot), read_only=True) as connection:
        query = "select coalesce(sum(trade_count), 0) from candles_1m where symbol = ?"
        return int(connection.execute(query, [SYMBOL]).fetchone()[0])


def finished_task_hosts(metadata: Postgres) -> list[tuple[str, str, str]]:
    """(dag_id, task_id, hostname) of every successful task instance that a process ran, from Airflow's
    metadata database. Not the empty markers (Cosmos' ``dbt_producer_watcher_done``), which the
    scheduler marks done without running them anywhere: no process id, no host."""
    connection = metadata.connect("airflow")
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "select dag_id, task_id, hostname from task_instance where state = 'success' and pid is not null"
            )
            return cursor.fetchall()
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.timeout(2 * STARTUP_SECONDS + 2 * PIPELINE_SECONDS)
def test_the_dags_run_on_two_celery_workers_with_postgres_metadata_and_an_s3_lake(start_sandbox, moto_s3, tmp_path):
    airflow_home, data_dir = tmp_path / "airflow", tmp_path / "data"
    airflow_home.mkdir()
    api_port = free_port()
    with (
        start_sandbox(symbols=(SYMBOL,), rate=RATE, history_seconds=HISTORY_SECONDS) as sandbox,
        postgres(tmp_path / "postgres", databases=["airflow"]) as metadata,
        redis_server(tmp_path / "redis") as broker,
    ):
        settings = load_settings(
            {
                "DATA_DIR": str(data_dir),
                "LAKE_URL": moto_s3.url("cryptoflow"),
                "BINANCE_REST_URL": sandbox.rest_url,
                "BINANCE_WS_URL": sandbox.ws_url,
                "SYMBOLS": SYMBOL,
            }
        )
        lake = open_lake(settings.lake_url)  # AWS_ENDPOINT_URL points at moto (the moto_s3 fixture)
        nodes = [f"{worker}@{socket.gethostname()}" for worker in WORKERS]
        plan = airflow_services(settings, api_port, airflow_home, celery_deployment(metadata, broker), nodes)
        logs = [service.log_file for service in plan if service.log_file is not None]
        airflow = Airflow(f"http://127.0.0.1:{api_port}/api/v2", *logs)
        with running_services(named_workers(plan), STARTUP_SECONDS):
            airflow.wait(lambda: components_healthy(airflow), STARTUP_SECONDS, "every Airflow component healthy")
            airflow.wait(lambda: dags_parsed(airflow), STARTUP_SECONDS, f"the DAGs {DAGS} parsed")

            # The stream runs on a worker and writes into S3; the repair imports the hours before it.
            # (The stream's own gap covers its hour from the start: the repair, every hour before it.)
            stream_key = airflow.wait(lambda: first_stream_key(lake), PIPELINE_SECONDS, "a stream micro-batch in S3")
            history_start_us = sandbox.exchange.started_us - HISTORY_SECONDS * MICROS_PER_SECOND
            repairs = trigger_repairs(airflow, history_start_us, hour_of_key(stream_key))

            # The exchange stops trading: from here its history is final.
            frozen = sandbox.exchange.now_us()
            sandbox.exchange.clock_us = lambda: frozen
            traded = admin(sandbox)["symbols"][SYMBOL]
            expected = list(range(traded["first_id"], traded["last_id"] + 1))
            snapshot = settings.snapshot_path
            airflow.wait(
                lambda: published_trades(snapshot) >= len(expected),
                PIPELINE_SECONDS,
                f"the published candles counting all {len(expected)} trades",
            )
            assert published_trades(snapshot) == len(expected), "the candles count a trade twice"

            for run_id in repairs:
                run = f"/dags/repair_gaps/dagRuns/{quote(run_id)}"
                airflow.wait(lambda run=run: airflow.get(run)["state"] in ("success", "failed"), PIPELINE_SECONDS, run)
                assert airflow.get(run)["state"] == "success", run_id
            for dag_id in DAGS:
                assert airflow.runs(dag_id, "&state=failed") == [], f"a {dag_id} run failed"
            assert airflow.runs("fill_gaps", "&state=success"), "the gap before the stream's first trade was not filled"
            hosts = finished_task_hosts(metadata)
        counts = Counter(host for _, _, host in hosts)
        print(f"successful task instances per Celery worker: {dict(counts)}")
        elsewhere = [(dag_id, task_id, host) for dag_id, task_id, host in hosts if host not in WORKERS]
        assert not elsewhere, f"tasks that ran elsewhere than on the two workers: {elsewhere}"
        assert set(counts) == set(WORKERS), counts

    # Airflow is stopped: the warehouse file is free to read.
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as warehouse:
        staged = warehouse.execute(
            "select trade_id, price from staging.stg_trades where symbol = ? order by trade_id", [SYMBOL]
        ).fetchall()
    assert [trade_id for trade_id, _ in staged] == expected
    assert all(isinstance(price, Decimal) for _, price in staged)
    with duckdb.connect(str(snapshot), read_only=True) as published:
        for interval in INTERVALS:
            rows = published.execute(f"select count(*) from {interval.mart} where symbol = ?", [SYMBOL]).fetchone()
            assert rows[0] > 0, f"no {interval.mart} in the published snapshot"
        audit = dict(published.execute("select status, count(*) from candle_audit group by status").fetchall())
    assert audit.get("match", 0) > 0, audit
    assert audit.get("mismatch", 0) == 0, audit
