"""The platform as ``make up`` runs it, end to end, under faults: every trade once, every candle the exchange's.

``python -m include.cli up`` starts everything (sandbox, Airflow, dashboard) in a temporary folder. The
sandbox drops every connection every 30 s, skips 5% of its trade messages and sends malformed frames.
While it runs:

- the stream task's process is killed mid-window (SIGKILL: nothing of it can clean up);
- the whole stack is stopped with Ctrl-C and started again on the same folders;
- the repair of one hour window is cleared and re-run through Airflow's REST API, as a user
  re-backfills an interval.

Then, over every trade from the start of the repaired hour to a cut-off after the restart:

- ``stg_trades`` holds exactly the exchange's trade ids, each once;
- every closed candle at every interval is complete and equals the exchange's kline;
- the audit found no mismatch;
- the lake's quarantine holds exactly the malformed frames the sandbox wrote to the stream's sockets;
- the dashboard draws the candles in Chromium;
- the lake watcher announced the flushes, each once, and the warehouse DAG loaded them in
  asset-triggered runs while the stream's window was still open.

Malformed frames are sent before the kill and not after: a frame a SIGKILLed process had read but not yet
written to the lake is gone with it (trades are not: the repair fetches them again by id), so the frames
stop, a flush later the quarantine must be complete, and only then is the stream killed.
"""

from __future__ import annotations

import json
import re
import signal
from collections import Counter
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import duckdb
import psutil
import pytest

from include.candles import INTERVALS
from include.config import Settings, load_settings
from include.lake.heartbeats import read_statuses
from include.lake.keys import QUARANTINE_PREFIX, hour_of_key
from include.lake.store import ObjectStore, open_lake
from include.timeutil import HOUR_US, from_us, now_us, to_us
from include.up import LOCALHOST
from include.warehouse.audit import compare
from tests.support.airflow_api import Airflow, first_stream_key, trigger_repairs
from tests.support.browser import chromium, new_page, wait_for_candles
from tests.support.candles import klines
from tests.support.net import admin, http_get, http_post_json, set_faults
from tests.support.up import STARTUP_LIVENESS_SECONDS, UpCommand, all_components_healthy, answers, listening_addresses
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

SYMBOLS = ("BTCUSDT", "XRPETH")
RATE = 5.0  # trades per second per symbol: the repaired hour is 18,000 trades a symbol
FAULTS = {"skip_fraction": 0.05, "drop_connections_every": 30.0}
MALFORMED = {"malformed_fraction": 0.05}
MALFORMED_FRAMES = 5  # sent before they are switched off
# Liveness only: the pipeline (first warehouse run, a repair of an hour, the fill after a restart)
# settles in a few minutes on a busy 2-core machine; several times that before a hung one fails.
PIPELINE_SECONDS = 900
CANDLE_FIELDS = (
    "open_time, open, high, low, close, volume, quote_volume, taker_buy_volume, taker_buy_quote_volume, "
    "trade_count, close_time, is_complete"
)


def first_id_at(rest_url: str, symbol: str, time_us: int) -> int:
    """The id of the exchange's first trade at or after ``time_us``: aggTrades from that time, its first id."""
    status, _, rows = http_get(f"{rest_url}/api/v3/aggTrades?symbol={symbol}&startTime={time_us // 1000}&limit=1")
    assert status == 200, rows
    assert rows, f"no trade of {symbol} at or after {from_us(time_us).isoformat()}"
    return rows[0]["f"]


def candle_problems(snapshot: Path, rest_url: str, first_us: int, end_us: int) -> list[str]:
    """Every candle at every interval that lies within [first_us, end_us), against the exchange's kline: what
    the published snapshot lacks, holds incomplete, or holds different."""
    if not snapshot.exists():
        return ["no snapshot published"]
    problems: list[str] = []
    with duckdb.connect(str(snapshot), read_only=True) as connection:
        for interval, width in ((i.name, i.length_us) for i in INTERVALS):
            first, last = -(-first_us // width) * width, end_us // width * width - width
            for symbol in SYMBOLS if last >= first else ():
                rows = connection.execute(
                    f"select {CANDLE_FIELDS} from candles_{interval} where symbol = ? and open_time between ? and ?",
                    [symbol, from_us(first), from_us(last)],
                ).fetchall()
                ours = {to_us(row[0]): dict(zip(CANDLE_FIELDS.split(", "), row, strict=True)) for row in rows}
                for open_us, kline in klines(rest_url, symbol, interval, first, last).items():
                    where = f"{symbol} {interval} {from_us(open_us).isoformat()}"
                    candle = ours.get(open_us)
                    if candle is None or not candle["is_complete"]:
                        problems.append(f"{where}: {'missing' if candle is None else 'incomplete'}")
                    elif differences := compare(kline, {**candle, "close_time": to_us(candle["close_time"])}):
                        problems.append(f"{where}: {differences}")
    return problems


def heartbeats_after(lake: ObjectStore, moment_us: int) -> int | None:
    """The oldest of the stream's symbols' heartbeats, once every one was written after ``moment_us``."""
    statuses = read_statuses(lake)
    if any(symbol not in statuses for symbol in SYMBOLS):
        return None
    times = [to_us(datetime.fromisoformat(statuses[symbol]["updated_at"])) for symbol in SYMBOLS]
    return min(times) if min(times) > moment_us else None


def quarantined_frames(lake: ObjectStore) -> Counter[str]:
    lines = [line for info in lake.list(QUARANTINE_PREFIX) for line in lake.get(info.key).decode().splitlines()]
    return Counter(json.loads(line)["raw"] for line in lines if line)


def announced_and_loaded_while_streaming(airflow: Airflow) -> None:
    """The lake watcher turns flushes into ``lake_trades`` asset events, each once, and the warehouse
    DAG loads them in asset-triggered runs while the stream's window is still open (not at its end)."""

    def watcher_events() -> list[dict] | None:
        events = airflow.get("/assets/events?limit=100")["asset_events"]
        flushes = [e for e in events if e["name"] == "lake_trades" and e["extra"].get("from_trigger")]
        return flushes if len(flushes) >= 2 else None

    events = airflow.wait(watcher_events, PIPELINE_SECONDS, "two lake_trades asset events from the lake watcher")
    assert len({event["extra"]["payload"]["fingerprint"] for event in events}) == len(events), "an event repeated"
    (run, *_) = airflow.wait(
        lambda: airflow.runs("warehouse", "&state=success&run_type=asset_triggered"),
        PIPELINE_SECONDS,
        "a successful asset-triggered warehouse run",
    )
    models_ended_by_the_triggerer(airflow, run["dag_run_id"])
    states = {run["state"] for run in airflow.runs("stream_trades")}
    assert "running" in states, states  # (an earlier window's run has ended when an hour boundary passed)
    assert "failed" not in states, states


def models_ended_by_the_triggerer(airflow: Airflow, run_id: str) -> None:
    """Each model's task of the run ended green, from the triggerer: never queued to a worker, no process
    (plugins/model_reports.py)."""
    found = airflow.get(f"/dags/warehouse/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
    models = {
        ti["task_id"]: (ti["state"], ti["pid"], ti["queued_when"]) for ti in found if ti["task_id"].endswith("_run")
    }
    assert len(models) == 12, sorted(models)
    assert set(models.values()) == {("success", None, None)}, models


def running_stream(airflow: Airflow) -> dict | None:
    found = airflow.get("/dags/stream_trades/dagRuns/~/taskInstances?task_id=stream&state=running")["task_instances"]
    return found[0] if found else None


def kill_task_process(task_instance_id: str) -> int:
    """SIGKILL the process that runs a task instance (Airflow titles it ``airflow worker -- <id>``)."""
    for process in psutil.process_iter(["cmdline"]):
        if f"airflow worker -- {task_instance_id}" in " ".join(process.info["cmdline"] or ()):
            process.send_signal(signal.SIGKILL)
            return process.pid
    raise AssertionError(f"no process runs task instance {task_instance_id}")


def stream_killed_and_retried(airflow: Airflow) -> None:
    """The running stream task's process is killed; Airflow retries it and it streams again."""
    stream = airflow.wait(lambda: running_stream(airflow), PIPELINE_SECONDS, "a running stream task")
    kill_task_process(stream["id"])
    airflow.wait(
        lambda: (again := running_stream(airflow)) and again["try_number"] > stream["try_number"],
        PIPELINE_SECONDS,
        f"the stream task retried after its process was killed (try {stream['try_number']})",
    )


def repair_cleared_and_rerun(airflow: Airflow, run_id: str) -> None:
    """Clear every ``repair`` task instance of a finished run, as a user re-backfills the window; it runs
    again, and a window already whole fetches nothing."""
    tasks = f"/dags/repair_gaps/dagRuns/{quote(run_id)}/taskInstances"
    repairs = [ti for ti in airflow.get(tasks)["task_instances"] if ti["task_id"] == "repair"]
    before = {ti["map_index"]: ti["try_number"] for ti in repairs}
    body = {"dry_run": False, "dag_run_id": run_id, "task_ids": ["repair"], "only_failed": False}

    def cleared() -> bool | None:
        status, answer = http_post_json(f"{airflow.api}/dags/repair_gaps/clearTaskInstances", body)
        # Airflow answers 500 "Database error" while SQLite is locked by the scheduler just after a
        # start: a user clicks again, and so does this.
        assert status in (200, 500), (status, answer)
        return status == 200 or None

    airflow.wait(cleared, PIPELINE_SECONDS, f"the repair of {run_id} cleared")

    def rerun() -> bool:
        repairs = [ti for ti in airflow.get(tasks)["task_instances"] if ti["task_id"] == "repair"]
        assert all(ti["state"] != "failed" for ti in repairs), repairs
        return all(ti["state"] == "success" and ti["try_number"] > before[ti["map_index"]] for ti in repairs)

    airflow.wait(rerun, PIPELINE_SECONDS, f"the cleared repair of {run_id} run again")
    for map_index in before:
        report = airflow.get(f"{tasks}/repair/xcomEntries/return_value?map_index={map_index}&deserialize=true")
        value = report["value"] if isinstance(report["value"], dict) else json.loads(report["value"])
        assert (value["filled"], value["missing"]) == (0, 0), value


def run_finished(airflow: Airflow, run_id: str) -> str | None:
    state = airflow.get(f"/dags/repair_gaps/dagRuns/{quote(run_id)}")["state"]
    return state if state in ("success", "failed") else None


def stop(up, output) -> str:
    up.send_signal(signal.SIGINT)
    assert up.wait(STARTUP_LIVENESS_SECONDS) == 0, output.text
    rest = output.finished(30)
    assert "stopped." in rest, rest
    return rest


def check_first_start(deployment: UpCommand, output_text: str, settings: Settings) -> None:
    """What a user sees after ``make up``: the URLs, the dashboard, the sandbox, a healthy Airflow whose
    pools existed before any DAG was parsed."""
    assert f"{deployment.rest_url}/admin" in output_text
    assert f"http://127.0.0.1:{deployment.api_port}" in output_text
    dashboard = re.escape(deployment.dashboard_url)
    assert re.search(rf"^ +Dashboard +{dashboard}$", output_text, re.MULTILINE), output_text
    assert http_get(f"{deployment.dashboard_url}/_stcore/health")[::2] == (200, "ok")
    assert '<div id="root">' in http_get(deployment.dashboard_url)[2]
    wait_until(
        lambda: all_components_healthy(deployment.api_port), STARTUP_LIVENESS_SECONDS, "every Airflow component healthy"
    )
    for log in deployment.airflow_home.glob("*.log"):
        assert "non-existent pool" not in log.read_text(errors="replace"), log


@pytest.mark.timeout(3 * STARTUP_LIVENESS_SECONDS + 3 * PIPELINE_SECONDS)
def test_every_trade_once_and_every_candle_the_exchanges_through_kills_restarts_and_a_cleared_repair(tmp_path):
    deployment = UpCommand(tmp_path, symbols=",".join(SYMBOLS), sandbox_rate=RATE)
    settings = load_settings({"DATA_DIR": str(deployment.data_dir)})
    lake, rest_url = open_lake(settings.lake_url), deployment.rest_url
    airflow = Airflow(
        f"http://127.0.0.1:{deployment.api_port}/api/v2",
        *(deployment.airflow_home / f"{name}.log" for name in ("scheduler", "dag-processor", "triggerer")),
    )

    with deployment.running() as (up, output):
        check_first_start(deployment, output.text, settings)
        set_faults(rest_url, FAULTS | MALFORMED)
        stream_key = airflow.wait(lambda: first_stream_key(lake), PIPELINE_SECONDS, "a stream micro-batch in the lake")
        # The stream's start gap reaches back to its hour's start; the hour before is imported by a repair.
        covered_from = hour_of_key(stream_key) - HOUR_US
        (repair_run,) = trigger_repairs(airflow, covered_from, covered_from + HOUR_US)

        wait_until(
            lambda: (
                (record := admin(rest_url)["record"])["malformed_total"] >= MALFORMED_FRAMES
                and record["dropped_connections"] >= 1
            ),
            PIPELINE_SECONDS,
            f"{MALFORMED_FRAMES} malformed frames sent and a connection dropped",
            interval=1,
        )
        set_faults(rest_url, {"malformed_fraction": 0.0})
        malformed_off = now_us()
        sent = Counter(admin(rest_url)["record"]["malformed_frames"])
        # Flushes run one after another: the second heartbeat after the frames stopped closes a flush that
        # took everything received before it.
        first = airflow.wait(lambda: heartbeats_after(lake, malformed_off + 2_000_000), PIPELINE_SECONDS, "a flush")
        airflow.wait(lambda: heartbeats_after(lake, first), PIPELINE_SECONDS, "the flush after it")
        assert quarantined_frames(lake) == sent

        stream_killed_and_retried(airflow)
        assert airflow.wait(lambda: run_finished(airflow, repair_run), PIPELINE_SECONDS, repair_run) == "success"
        stop(up, output)

    with deployment.running() as (up, output):
        restarted = now_us()
        set_faults(rest_url, FAULTS)
        # The cut-off: the restart, so the outage lies before it (the candles judged are those that closed
        # by then, the trades those made before it).
        cutoff = restarted // 1000 * 1000  # a whole millisecond: aggTrades' startTime below is in ms
        repair_cleared_and_rerun(airflow, repair_run)
        problems: list[str] = []

        def settled() -> bool:
            problems[:] = candle_problems(settings.snapshot_path, rest_url, covered_from, cutoff)
            return not problems

        airflow.wait(settled, PIPELINE_SECONDS, "every candle up to the cut-off complete and the exchange's")
        announced_and_loaded_while_streaming(airflow)
        expected = {s: range(first_id_at(rest_url, s, covered_from), first_id_at(rest_url, s, cutoff)) for s in SYMBOLS}
        with chromium() as browser:
            page = new_page(browser)
            page.goto(deployment.dashboard_url)
            assert wait_for_candles(page, timeout_seconds=120) > 0

        # Nothing listens beyond 127.0.0.1 (read from the kernel's socket table: nothing is sent).
        listeners = listening_addresses(psutil.Process(up.pid))
        ports = {deployment.api_port, deployment.sandbox_port, deployment.dashboard_port}
        assert ports <= {port for _, port in listeners}, listeners
        assert {address for address, _ in listeners} == {LOCALHOST}, listeners
        stop(up, output)
    for port in ports:
        assert not answers(LOCALHOST, port), f"port {port} still answers after the stop"

    # Everything is stopped: the warehouse file is free to read.
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as warehouse:
        for symbol, ids in expected.items():
            staged = [
                row[0]
                for row in warehouse.execute(
                    "select trade_id from staging.stg_trades where symbol = ? and trade_time >= ? and trade_time < ?"
                    " order by trade_id",
                    [symbol, from_us(covered_from), from_us(cutoff)],
                ).fetchall()
            ]
            assert staged == list(ids), f"{symbol}: {len(staged)} staged, {len(ids)} traded"
        duplicates = warehouse.execute(
            "select count(*) - count(distinct (symbol, trade_id)) from staging.stg_trades"
        ).fetchone()[0]
        assert duplicates == 0
    with duckdb.connect(str(settings.snapshot_path), read_only=True) as published:
        audit = dict(published.execute("select status, count(*) from candle_audit group by status").fetchall())
        filled = published.execute("select coalesce(sum(filled), 0) from gap_fills").fetchone()[0]
    assert audit.get("match", 0) > 0, audit
    assert audit.get("mismatch", 0) == 0, audit
    assert filled > 0, "no gap was filled by the live fill"
    assert quarantined_frames(lake) == sent, "the quarantine changed after the malformed frames stopped"
