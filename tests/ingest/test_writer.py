"""Writer identities: one per writer, safe as a folder name and a key, the same for a retry."""

import os
import re
import socket

import pytest

from include.ingest.writer import airflow_writer_id, process_writer_id, writer_id

SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@pytest.mark.parametrize(
    "run_id",
    ["manual__2026-11-24T13:00:00+00:00", "scheduled__2026-11-24T13:00:00+00:00", "../../etc", "a/b c", "x" * 400],
)
def test_an_airflow_writer_is_a_safe_name_whatever_the_run_id(run_id):
    writer = airflow_writer_id("stream_trades", "stream", run_id, 3)
    assert SAFE.match(writer), writer
    assert len(writer) <= 160
    assert writer.startswith("stream-stream_trades-stream-")


def test_a_retry_of_a_task_instance_is_the_same_writer_and_nothing_else_is():
    run = "manual__2026-11-24T13:00:00+00:00"
    writer = airflow_writer_id("stream_trades", "stream", run, 0)
    assert airflow_writer_id("stream_trades", "stream", run, 0) == writer  # the retry
    others = {
        airflow_writer_id("stream_trades", "stream", run, 1),  # the next shard
        airflow_writer_id("stream_trades", "stream", "manual__2026-11-24T14:00:00+00:00", 0),  # the next window
        airflow_writer_id("stream_trades", "stream", "manual__2026-11-24T13_00_00_00_00", 0),  # same once sanitised
        airflow_writer_id("other_dag", "stream", run, 0),
        airflow_writer_id("stream_trades", "stream", run, None),  # not mapped
    }
    assert len(others) == 5
    assert writer not in others


def test_a_command_line_writer_is_named_by_host_and_process_and_never_repeats():
    first, second = process_writer_id(), process_writer_id()
    assert first != second
    assert first.startswith(f"stream-{re.sub(r'[^A-Za-z0-9_.]+', '_', socket.gethostname())}-{os.getpid()}-")


def test_a_writer_needs_a_name():
    with pytest.raises(ValueError, match="at least one part"):
        writer_id()
