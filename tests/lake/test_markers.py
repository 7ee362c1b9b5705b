"""Write markers name every partition a writer touched recently, across writes and restarts."""

import json
from datetime import UTC, datetime, timedelta

from include.ingest.writer import airflow_writer_id
from include.lake.keys import marker_key, partition_of
from include.lake.markers import MarkerWriter, WriteMarker, mark_written, read_marker
from include.lake.store import LocalStore

P1 = "trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=10/"
P2 = "trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=11/"
P3 = "trades/exchange=binance/symbol=ETHUSDT/date=2026-11-24/hour=11/"


def test_partition_of_a_key_is_its_folder():
    assert partition_of(P1 + "stream-1-2.parquet") == P1


def test_a_marker_names_the_last_keys_and_every_partition_written(tmp_path):
    lake = LocalStore(tmp_path)
    writer = MarkerWriter(lake, "stream-a")
    writer.mark([P1 + "stream-1-2.parquet"])
    writer.mark([P2 + "stream-3-4.parquet", P3 + "stream-5-6.parquet"])
    marker = read_marker(lake, marker_key("stream-a"))
    assert marker.keys == [P2 + "stream-3-4.parquet", P3 + "stream-5-6.parquet"]
    assert set(marker.partitions) == {P1, P2, P3}


def test_a_restarted_writer_keeps_naming_its_predecessors_partitions(tmp_path):
    lake = LocalStore(tmp_path)
    MarkerWriter(lake, "stream-a").mark([P1 + "stream-1-2.parquet"])
    MarkerWriter(lake, "stream-a").mark([P2 + "stream-3-4.parquet"])
    assert set(read_marker(lake, marker_key("stream-a")).partitions) == {P1, P2}
    mark_written(lake, "repair-b", [P3 + "backfill-1-2.parquet"])
    assert set(read_marker(lake, marker_key("repair-b")).partitions) == {P3}


def test_partitions_not_written_for_two_days_are_forgotten(tmp_path):
    lake = LocalStore(tmp_path)
    old = (datetime.now(UTC) - timedelta(days=2, minutes=1)).isoformat()
    recent = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    lake.put(marker_key("stream-a"), WriteMarker("stream-a", recent, [], {P1: old, P2: recent}).to_json())
    MarkerWriter(lake, "stream-a").mark([P3 + "stream-1-2.parquet"])
    assert set(read_marker(lake, marker_key("stream-a")).partitions) == {P2, P3}


def test_a_marker_without_partitions_names_its_keys_partitions(tmp_path):
    lake = LocalStore(tmp_path)
    at = datetime.now(UTC).isoformat()
    lake.put(marker_key("old"), json.dumps({"writer": "old", "at": at, "keys": [P1 + "a.parquet"]}).encode())
    assert read_marker(lake, marker_key("old")).partitions == {P1: at}
    assert read_marker(lake, marker_key("missing")) is None


def test_a_retried_task_carries_on_its_marker_and_another_shard_keeps_its_own(tmp_path):
    """A retry of the same task instance makes the same writer id, so it names what its predecessor wrote."""
    lake = LocalStore(tmp_path)
    run = "scheduled__2026-11-24T13:00:00+00:00"
    MarkerWriter(lake, airflow_writer_id("stream_trades", "stream", run, 0)).mark([P1 + "stream-1-2.parquet"])
    MarkerWriter(lake, airflow_writer_id("stream_trades", "stream", run, 1)).mark([P3 + "stream-5-6.parquet"])
    retry = airflow_writer_id("stream_trades", "stream", run, 0)
    MarkerWriter(lake, retry).mark([P2 + "stream-3-4.parquet"])
    assert set(read_marker(lake, marker_key(retry)).partitions) == {P1, P2}
    other = airflow_writer_id("stream_trades", "stream", run, 1)
    assert set(read_marker(lake, marker_key(other)).partitions) == {P3}
