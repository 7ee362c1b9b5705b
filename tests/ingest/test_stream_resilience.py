"""The streaming worker against a misbehaving exchange and lake, over real sockets.

Every run streams from a real sandbox exchange into a real lake (a folder, or S3 on a moto server)
and is judged against the exchange's own account of what happened: its REST trade history (the
truth, trade by trade) and its fault record (``GET /admin``: the ids it skipped, the broken frames
it sent, the connections it dropped). Nothing here trusts the worker's own counters alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from include.config import load_settings
from include.ingest.background import BackgroundWorker
from include.ingest.run import close_stream_lake, open_stream_lake
from include.ingest.stream import StreamSettings
from include.ingest.worker import StreamWorker, WorkerSettings
from include.ingest.writer import airflow_writer_id, writer_id
from include.lake.keys import batch_times_of_key
from include.lake.spool import SpoolFolder
from include.lake.store import LocalStore, ObjectStore, S3Store
from include.lake.trades import read_trades
from include.sandbox.server import RunningSandbox
from tests.support.exchange import (
    CutRecorder,
    assert_contiguous,
    assert_matches_exchange,
    assert_no_duplicates,
    history,
    lake_ids,
    stream_for,
)
from tests.support.exchange import assert_lake_is_the_exchange_history as exchange_history_check
from tests.support.net import admin, free_port, http_get, set_faults
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group
from tests.support.waiting import wait_until

SYMBOL = "BTCUSDT"
RATE = 100.0  # trades per second per symbol, on average (bursts run at 8x for a second or two)


# Helpers ------------------------------------------------------------------------------------------


def lake_table(lake: ObjectStore, symbol: str = SYMBOL) -> pa.Table:
    return read_trades(lake, symbol)


def assert_lake_is_the_exchange_history(lake: ObjectStore, rest_url: str, symbol: str = SYMBOL) -> np.ndarray:
    return exchange_history_check(lake, rest_url, symbol)


# In-process worker: handover, drops, skips, malformed frames, stalls -------------------------------


@pytest.mark.slow
def test_proactive_handover_before_the_lifetime_loses_nothing_and_drops_the_overlap(start_sandbox, tmp_path, caplog):
    """The sandbox ends every connection after 3 s; the worker hands over after 1 s, well before it."""
    caplog.set_level(logging.INFO, logger="include.ingest")
    lake = LocalStore(tmp_path / "lake")
    symbols = ("BTCUSDT", "ETHUSDT")
    with start_sandbox(symbols=symbols, rate=RATE, lifetime_seconds=3.0) as sandbox:
        worker = stream_for(
            lake, sandbox.ws_url, 12.0, symbols, refresh_after_seconds=1.0, overlap_seconds=0.5, silence_seconds=30
        )
        for symbol in symbols:
            ids = assert_lake_is_the_exchange_history(lake, sandbox.rest_url, symbol)
            assert len(ids) > 300, (symbol, len(ids))
        record = admin(sandbox)["record"]
    (connection,) = worker.state.shards
    assert connection.handovers >= 3, connection.handovers
    assert worker.reconnects() == connection.handovers  # every new connection was a handover, none a repair
    handovers = [r.getMessage() for r in caplog.records if r.getMessage().startswith("handover on")]
    assert handovers
    assert all(message.endswith(": lifetime") for message in handovers), handovers
    assert record["dropped_connections"] == 0
    # Both connections read during each overlap: the same trades came twice and were dropped once.
    stats = worker.stats
    assert stats.duplicates > 0
    assert stats.quarantined == 0
    assert stats.written == stats.received - stats.duplicates
    assert stats.written == sum(len(lake_ids(lake_table(lake, symbol))) for symbol in symbols)


@pytest.mark.slow
def test_abrupt_drops_lose_only_what_the_cuts_had_in_flight(start_sandbox, tmp_path):
    """Connections cut without a close frame every 2 s: the worker reconnects each time.

    Trades in flight when a connection is cut are lost (no stream can give them back): they are
    the gaps the repair job fills from REST. The sandbox notes what each cut could have lost; every
    id missing from the lake must be one of those, and what did reach the lake is exact and unique.
    """
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=(SYMBOL,), rate=RATE, lifetime_seconds=3.0) as sandbox:
        cuts = CutRecorder(sandbox)
        set_faults(sandbox, {"drop_connections_every": 2.0})
        worker = stream_for(lake, sandbox.ws_url, 12.0, silence_seconds=30)
        record = admin(sandbox)["record"]
        table = lake_table(lake)
        ids = lake_ids(table)
        assert_no_duplicates(ids)
        first, last = int(ids.min()), int(ids.max())
        exchange = history(sandbox.rest_url, SYMBOL, first, last)
    assert_matches_exchange(table, exchange, SYMBOL)
    assert record["dropped_connections"] >= 4, record
    # One reconnect per cut; a cut in the last moments before the stop may not be followed by one.
    assert worker.reconnects() >= record["dropped_connections"] - 1, (worker.reconnects(), record)
    assert worker.stats.reconnects == worker.reconnects()
    missing = set(range(first, last + 1)) - set(ids.tolist())
    print(f"\n{len(ids)} trades streamed, {len(missing)} lost in {record['dropped_connections']} cuts (left to repair)")
    assert cuts.unexplained(SYMBOL, missing) == [], (cuts.cuts, sorted(missing)[:50])


@pytest.mark.slow
def test_skipped_messages_are_exactly_the_gaps_in_the_lake(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=(SYMBOL,), rate=RATE) as sandbox:
        set_faults(sandbox, {"skip_fraction": 0.05})
        stream_for(lake, sandbox.ws_url, 8.0)
        record = admin(sandbox)["record"]
        ids = lake_ids(lake_table(lake))
        assert_no_duplicates(ids)
        first, last = int(ids.min()), int(ids.max())
        exchange = history(sandbox.rest_url, SYMBOL, first, last)
    assert sorted(exchange) == list(range(first, last + 1))
    skipped = {i for i in record["skipped_ids"].get(SYMBOL, []) if first <= i <= last}
    assert len(skipped) >= 5, record["skipped"]  # enough skipping to make the comparison mean something
    missing = set(exchange) - set(ids.tolist())
    assert missing == skipped
    assert set(ids.tolist()) == set(exchange) - skipped


_DECIMAL_TEXT = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_TRADE_FIELDS = {"e": str, "E": int, "s": str, "t": int, "p": str, "q": str, "T": int, "m": bool}


def _field_fault(data: dict[str, Any]) -> str | None:
    for name, kind in _TRADE_FIELDS.items():
        if name not in data:
            return "missing_field"
        if not isinstance(data[name], kind) or (kind is int and isinstance(data[name], bool)):
            return "wrong_type"
    return None


def _amount_fault(name: str, text: str) -> str | None:
    if text.startswith("-"):
        return "negative_price"
    if not _DECIMAL_TEXT.match(text):
        return "not_a_number"
    if len(text.partition(".")[2].rstrip("0")) > 8:
        return "excess_scale"
    if not text.replace(".", "").strip("0"):
        return "zero_quantity" if name == "q" else "zero_price"
    return None


def broken_kind(raw: str) -> str | None:
    """What is wrong with a combined-stream trade frame, judged independently of the worker's code;
    None for a good frame. Kinds are named as the sandbox names what it injects."""
    try:
        message = json.loads(raw)
    except json.JSONDecodeError:
        return "truncated_json"
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, dict) or not isinstance(message.get("stream"), str):
        return "missing_field"
    fault = _field_fault(data)
    if fault is None and (data["s"] != SYMBOL or message["stream"] != f"{data['s'].lower()}@trade"):
        fault = "unknown_symbol"
    return fault or _amount_fault("p", data["p"]) or _amount_fault("q", data["q"])


@pytest.mark.slow
def test_malformed_frames_are_quarantined_one_for_one_and_no_valid_trade_is_lost(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=(SYMBOL,), rate=RATE) as sandbox:
        set_faults(sandbox, {"malformed_fraction": 0.05})

        def end_faults_and_let_in_flight_frames_arrive(worker: StreamWorker) -> None:
            # The fault record counts a broken frame when it is written, each just before its good
            # copy; stop making them and wait until the worker has written the last trade made by
            # then: every broken frame queued before it has been written and has arrived too.
            set_faults(sandbox, {"malformed_fraction": 0.0})
            last_id = admin(sandbox)["symbols"][SYMBOL]["last_id"]
            wait_until(lambda: (worker.batcher.status[SYMBOL].last_trade_id or 0) >= last_id, 60, "the last trade")

        worker = stream_for(lake, sandbox.ws_url, 8.0, before_stop=end_faults_and_let_in_flight_frames_arrive)
        record = admin(sandbox)["record"]
        ids = assert_lake_is_the_exchange_history(lake, sandbox.rest_url)
    assert len(ids) > 300

    lines = []
    for info in lake.list("quarantine/"):
        assert info.key.endswith(".jsonl"), info.key
        lines += [json.loads(line) for line in lake.get(info.key).decode().splitlines()]
    assert record["malformed_total"] >= 10, record  # enough to mean something
    assert len(lines) == record["malformed_total"]
    assert all(set(line) >= {"raw", "reason", "received_at", "source"} and line["reason"] for line in lines)
    kinds = Counter(broken_kind(line["raw"]) for line in lines)
    assert None not in kinds, [line["raw"] for line in lines if broken_kind(line["raw"]) is None][:3]
    assert kinds == Counter(record["malformed"])
    assert worker.stats.quarantined == len(lines)
    assert sum(worker.stats.quarantine_reasons.values()) == len(lines)


@pytest.mark.slow
def test_a_stalled_connection_is_handed_over_without_losing_what_it_still_holds(start_sandbox, tmp_path, caplog):
    """Every 3 s the exchange goes quiet for 2.5 s (no data, no pings) and then sends what it held.

    The worker sees 1 s of silence and opens a new connection; the old one must stay open until the
    new one delivers, or what the old one still holds is lost.
    """
    caplog.set_level(logging.INFO, logger="include.ingest")
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=(SYMBOL,), rate=RATE) as sandbox:
        set_faults(sandbox, {"stall_every": 3.0, "stall_seconds": 2.5})
        worker = stream_for(lake, sandbox.ws_url, 12.0, silence_seconds=1.0)
        record = admin(sandbox)["record"]
        ids = assert_lake_is_the_exchange_history(lake, sandbox.rest_url)
    assert len(ids) > 300
    assert record["stalls"] >= 3, record
    silences = [r for r in caplog.records if r.getMessage().startswith("handover on") and "silence" in r.getMessage()]
    assert len(silences) >= 2, [r.getMessage() for r in caplog.records]
    assert worker.state.shards[0].handovers == len(silences)
    assert worker.stats.duplicates > 0  # the two connections overlapped


# A graceful exchange shutdown (serverShutdown) and a new exchange process on the same port -------


@contextlib.contextmanager
def sandbox_process(port: int, log: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """``include.cli sandbox`` in its own process group, answering on ``port``; ended with the block."""
    command = [sys.executable, "-m", "include.cli", "sandbox", "--port", str(port), "--symbols", SYMBOL]
    with (
        log.open("ab") as out,
        process_group([*command, "--rate", str(RATE), *extra], cwd=REPO_ROOT, stdout=out, stderr=out) as process,
    ):

        def up() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return http_get(f"http://127.0.0.1:{port}/api/v3/ping")[0] == 200
            except OSError:
                return False

        wait_until(up, 60, "the sandbox process to answer")
        yield process


@pytest.mark.slow
def test_server_shutdown_then_a_new_exchange_on_the_same_port(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="include.ingest")
    port = free_port()
    rest = f"http://127.0.0.1:{port}"
    lake = LocalStore(tmp_path / "lake")
    sandbox_log = tmp_path / "sandbox.log"
    settings = WorkerSettings(
        symbols=(SYMBOL,),
        stream=StreamSettings(ws_url=f"ws://127.0.0.1:{port}", backoff_cap_seconds=2.0),
        flush_seconds=1.0,
    )
    background = BackgroundWorker(StreamWorker(settings, lake))
    with contextlib.ExitStack() as processes:
        first = processes.enter_context(sandbox_process(port, sandbox_log))
        try:
            background.start()
            wait_until(lambda: len(lake_table(lake)) >= 50, 60, "trades from the first exchange")
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=30) == 0, sandbox_log.read_text()
            # The connection has read all the first exchange sent once it tries to reconnect; then
            # one flush writes it all.
            (connection,) = background.worker.state.shards
            wait_until(
                lambda: connection.state["state"] == "reconnecting", 60, "the worker to notice the exchange left"
            )
            background.flush()
            before = lake_ids(lake_table(lake))
            assert_contiguous(before)

            # The exchange comes back after its maintenance (with 300 s of history); trade ids carry on.
            processes.enter_context(sandbox_process(port, sandbox_log, "--history", "300"))
            boundary = int(before.max())
            wait_until(lambda: (lake_ids(lake_table(lake)) > boundary).sum() >= 200, 90, "trades after the restart")
            assert background.alive
            background.stop()
            table = lake_table(lake)
            ids = lake_ids(table)
            assert_no_duplicates(ids)
            old, new = ids[ids <= boundary], ids[ids > boundary]
            # Nothing of the first exchange came after it stopped; the new one's live trades start above.
            assert sorted(old.tolist()) == sorted(before.tolist())
            assert new.min() > boundary
            # After the restart: a new connection to a new process, again every trade as the exchange has it.
            assert_contiguous(new)
            after = table.filter(pc.greater(table["trade_id"], boundary))
            assert_matches_exchange(after, history(rest, SYMBOL, int(new.min()), int(new.max())), SYMBOL)
        finally:
            background.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("serverShutdown from") for message in messages), messages
    assert background.worker.reconnects() >= 1
    assert not background.alive


# The stream command as a process: SIGTERM, kill -9, and an S3 lake with an outage ------------------


@contextlib.contextmanager
def stream_process(
    env: dict[str, str], cwd: Path, log: Path, flush_seconds: str = "1"
) -> Iterator[subprocess.Popen[str]]:
    """``include.cli stream`` in its own process group, killed with the group when the block ends.

    Not ``process_group``: that also ends every process that appeared below the test while the block
    ran, and the S3 outage test restarts the session's moto server inside the block.
    """
    command = [sys.executable, "-m", "include.cli", "stream", "--symbols", SYMBOL, "--flush-seconds", flush_seconds]
    # Everything local (the spool) under the test's folder, never the repo's data/.
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", "DATA_DIR": str(cwd / "data")}
    environment.update(env)
    environment.pop("SYMBOLS", None)
    with log.open("w") as err:
        process = subprocess.Popen(
            command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=60)


def exchange_env(sandbox: RunningSandbox, lake_url: str) -> dict[str, str]:
    return {"BINANCE_WS_URL": sandbox.ws_url, "BINANCE_REST_URL": sandbox.rest_url, "LAKE_URL": lake_url}


def pause_market(sandbox: RunningSandbox) -> int:
    """Stop the sandbox's market (its clock stands still), wait until every frame queued for the
    worker has been handed to the socket, and return the last trade id: from then on the worker can
    receive nothing new, and a graceful stop reads everything up to the close."""
    frozen = sandbox.exchange.now_us()
    sandbox.exchange.clock_us = lambda: frozen
    last_id = admin(sandbox)["symbols"][SYMBOL]["last_id"]  # /admin ticks: every trade up to the frozen clock

    def all_sent() -> bool:
        connections = list(sandbox.hub.connections)
        return all(not c.queue and not (c.transport and c.transport.get_write_buffer_size()) for c in connections)

    wait_until(all_sent, 30, "the sandbox to send all")
    return last_id


def spooled_in(folder: Path) -> list[tuple[str, bytes]]:
    """``(key, data)`` of every object waiting in one writer's spool folder, oldest first.

    The running writer drains its spool while this reads it (``waiting`` skips what it uploads meanwhile).
    """
    if not folder.exists():
        return []  # not SpoolFolder(folder), which would create it
    try:
        return [(key, data) for _, key, data in SpoolFolder(folder).waiting()]
    except FileNotFoundError:
        return []  # the writer removed its emptied folder meanwhile


def spooled_trade_keys_in(folder: Path) -> list[str]:
    return [key for key, _ in spooled_in(folder) if key.startswith("trades/")]


def spooled(spool_root: Path) -> list[tuple[str, bytes]]:
    """What waits in every spool folder under ``spool_root``."""
    folders = sorted(spool_root.iterdir()) if spool_root.exists() else []
    return [item for folder in folders for item in spooled_in(folder)]


def last_time_of(key: str) -> int:
    """The last trade time a stream batch holds, from its key (``keys.batch_key``)."""
    times = batch_times_of_key(key)
    assert times is not None, f"{key} is not a stream batch"
    return times[1]


def writer_of(key: str) -> str:
    """The writer that flushed a stream batch, from its key (``<first>_<last>_<flushed>_<writer>.parquet``)."""
    return key.rsplit("/", 1)[-1].removesuffix(".parquet").split("_", 3)[3]


def spooled_trade_keys(spool_root: Path) -> list[str]:
    return [key for key, _ in spooled(spool_root) if key.startswith("trades/")]


def trade_files(lake: ObjectStore) -> list[str]:
    return [info.key for info in lake.list("trades/") if info.key.endswith(".parquet")]


@pytest.mark.slow
@pytest.mark.parametrize("flush_seconds", ["1", "600"], ids=["flushing-every-second", "only-the-final-flush"])
def test_sigterm_flushes_everything_received_and_exits_0(start_sandbox, tmp_path, flush_seconds):
    lake_dir = tmp_path / "lake"
    lake = LocalStore(lake_dir)
    log = tmp_path / "stream.log"
    with start_sandbox(symbols=(SYMBOL,), rate=RATE) as sandbox:
        with stream_process(exchange_env(sandbox, f"file://{lake_dir}"), tmp_path, log, flush_seconds) as process:
            wait_until(lambda: admin(sandbox)["connections"] >= 1, 60, "the worker to connect")
            if flush_seconds == "1":
                wait_until(lambda: len(trade_files(lake)) >= 3, 60, "a few flushes")
            else:
                made = admin(sandbox)["symbols"][SYMBOL]["last_id"]
                wait_until(lambda: admin(sandbox)["symbols"][SYMBOL]["last_id"] >= made + 200, 60, "more trades")
                assert trade_files(lake) == []  # trades were streamed, but nothing is written before the stop
            last_id = pause_market(sandbox)
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=60)
        assert process.returncode == 0, log.read_text()
        stats = json.loads(out.strip().splitlines()[-1])
        ids = assert_lake_is_the_exchange_history(lake, sandbox.rest_url)
    assert ids[-1] == last_id  # the last trade the exchange made was received, and flushed on the way out
    assert stats["written"] == stats["received"] - stats["quarantined"] - stats["duplicates"]
    assert stats["written"] == len(ids)
    assert stats["quarantined"] == 0
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
def test_kill_9_leaves_only_complete_objects_and_contiguous_ids(start_sandbox, tmp_path):
    lake_dir = tmp_path / "lake"
    lake = LocalStore(lake_dir)
    with start_sandbox(symbols=(SYMBOL,), rate=RATE * 3) as sandbox:
        with stream_process(exchange_env(sandbox, f"file://{lake_dir}"), tmp_path, tmp_path / "stream.log") as process:
            wait_until(lambda: len(trade_files(lake)) >= 4, 60, "a few flushes")
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=60) == -signal.SIGKILL
        rest_url = sandbox.rest_url
        listed = [info.key for info in lake.list()]
        # Everything on disk that is not a hidden temporary file is a listed, complete object.
        on_disk = [p.relative_to(lake_dir).as_posix() for p in lake_dir.rglob("*") if p.is_file()]
        visible = sorted(key for key in on_disk if not key.rsplit("/", 1)[-1].startswith("."))
        assert all(key.rsplit("/", 1)[-1].startswith(".tmp-") for key in set(on_disk) - set(visible))
        assert sorted(listed) == visible
        total = 0
        for key in listed:
            if key.endswith(".parquet"):
                table = pq.read_table(lake_dir / key)
                assert batch_times_of_key(key) is not None, key  # one batch per flush
                file_ids = table["trade_id"].to_pylist()
                assert file_ids == list(range(file_ids[0], file_ids[-1] + 1)), key
                total += len(file_ids)
            else:
                assert key.endswith(".json"), key
                json.loads((lake_dir / key).read_bytes())
        assert total >= 4
        assert_lake_is_the_exchange_history(lake, rest_url)


@pytest.mark.slow
def test_an_s3_outage_is_spooled_and_uploaded_in_order_when_s3_returns(start_sandbox, moto_s3, tmp_path):
    log = tmp_path / "stream.log"
    s3 = S3Store(moto_s3.bucket, "lake", moto_s3.client())
    spool = tmp_path / "data" / "spool"
    with start_sandbox(symbols=(SYMBOL,), rate=RATE) as sandbox:
        with stream_process(exchange_env(sandbox, moto_s3.url("lake")), tmp_path, log) as process:
            wait_until(lambda: len(trade_files(s3)) >= 2, 60, "a few flushes to S3")

            moto_s3.stop()
            wait_until(lambda: len(spooled_trade_keys(spool)) >= 3, 60, "trade batches in the spool", interval=0.2)
            assert process.poll() is None, log.read_text()
            # The command line is one writer, named by host and process: one folder of its own.
            (writer_folder,) = spool.iterdir()
            assert writer_folder.name == writer_id("stream", socket.gethostname(), process.pid, 1)
            snapshot = spooled(spool)

            moto_s3.start()  # empty, like any S3 after such an outage here: moto keeps nothing
            wait_until(lambda: not spooled(spool), 90, "the spool to drain")
            spooled_max = max(last_time_of(k) for k, _ in snapshot if k.startswith("trades/"))
            wait_until(
                lambda: any(last_time_of(k) > spooled_max for k in trade_files(s3)),
                60,
                "a flush after the spool drained",
            )
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=60)
        assert process.returncode == 0, log.read_text()
        rest_url = sandbox.rest_url

        stderr = log.read_text()
        assert "lake unreachable, spooling" in stderr
        # Every spooled object reached S3 as it was spooled, and trade objects are immutable.
        for key, data in snapshot:
            if key.startswith("trades/"):
                assert s3.get(key) == data, key
        # Uploaded in spool order: the snapshot is the head of the upload log.
        uploaded = re.findall(r"uploaded spooled (\S+)", stderr)
        assert uploaded[: len(snapshot)] == [key for key, _ in snapshot]
        uploaded_trades = [key for key in uploaded if key.startswith("trades/")]
        firsts = [batch_times_of_key(key)[0] for key in uploaded_trades]
        assert firsts == sorted(firsts)
        # S3 lost what it held before the outage; from the spool on, nothing is missing.
        ids = assert_lake_is_the_exchange_history(s3, rest_url)
        spooled_ids = set()
        for key, data in snapshot:
            if key.startswith("trades/"):
                spooled_ids |= set(pq.read_table(pa.BufferReader(data))["trade_id"].to_pylist())
        assert spooled_ids <= set(ids.tolist())
        assert ids[0] <= min(spooled_ids)
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["written"] == stats["received"] - stats["quarantined"] - stats["duplicates"]
    assert not writer_folder.exists()  # emptied, and removed when the writer ended


@pytest.mark.slow
def test_two_stream_shards_spool_into_their_own_folders_during_an_s3_outage(start_sandbox, moto_s3, tmp_path):
    """Two mapped shards of one DAG run, each its own writer: during the outage each spools into its
    own folder, and after it every trade of both, from the spool on, is in the lake once."""
    shards = {0: "BTCUSDT", 1: "ETHUSDT"}
    s3 = S3Store(moto_s3.bucket, "lake", moto_s3.client())
    with start_sandbox(symbols=tuple(shards.values()), rate=RATE) as sandbox:
        env = {**exchange_env(sandbox, moto_s3.url("lake")), "DATA_DIR": str(tmp_path / "data")}
        settings = load_settings(env)
        writers = {
            index: airflow_writer_id("stream_trades", "stream", "manual__2026-11-24T13:00:00+00:00", index)
            for index in shards
        }
        lakes = {index: open_stream_lake(settings, writer) for index, writer in writers.items()}
        workers = {
            index: BackgroundWorker(
                StreamWorker(
                    WorkerSettings(symbols=(symbol,), stream=StreamSettings(ws_url=sandbox.ws_url), flush_seconds=0.5),
                    lakes[index],
                    writers[index],
                )
            )
            for index, symbol in shards.items()
        }
        folders = {index: settings.spool_dir(writer) for index, writer in writers.items()}
        try:
            for worker in workers.values():
                worker.start()
            wait_until(
                lambda: {writer_of(k) for k in trade_files(s3)} >= set(writers.values()),
                60,
                "both shards in S3",
            )

            moto_s3.stop()
            wait_until(lambda: all(len(spooled_trade_keys_in(f)) >= 2 for f in folders.values()), 60, "both spools")
            snapshot = {index: spooled_in(folder) for index, folder in folders.items()}
            for index, symbol in shards.items():  # each shard's folder holds its own trades only
                batches = [data for key, data in snapshot[index] if key.startswith("trades/")]
                assert {s for data in batches for s in pq.read_table(pa.BufferReader(data))["symbol"].to_pylist()} == {
                    symbol
                }

            moto_s3.start()
            wait_until(lambda: not any(spooled_in(f) for f in folders.values()), 90, "both spools to drain")
            for index, writer in writers.items():
                spooled_last = max(last_time_of(key) for key, _ in snapshot[index] if key.startswith("trades/"))
                wait_until(
                    lambda last=spooled_last, w=writer: any(
                        last_time_of(k) > last for k in trade_files(s3) if writer_of(k) == w
                    ),
                    60,
                    "a later flush",
                )
        finally:
            for worker in workers.values():
                worker.stop()
            for lake in lakes.values():
                close_stream_lake(lake)
        for index, symbol in shards.items():
            ids = set(assert_lake_is_the_exchange_history(s3, sandbox.rest_url, symbol).tolist())
            spooled_ids = set()
            for key, data in snapshot[index]:
                if key.startswith("trades/"):
                    spooled_ids |= set(pq.read_table(pa.BufferReader(data))["trade_id"].to_pylist())
            assert spooled_ids <= ids
            assert min(ids) <= min(spooled_ids)
    # Each writer announced its own partitions in its own marker.
    assert {info.key for info in s3.list("status/writes/")} == {f"status/writes/{w}.json" for w in writers.values()}
    assert not any(folder.exists() for folder in folders.values())  # drained, and removed as each writer ended
