"""The stream DAG under ``airflow dags test``: the sensor streams the sandbox into the lake."""

import re
import sys
from datetime import datetime
from pathlib import Path

import pytest

from include.binance.client import BinanceClient
from include.ingest.writer import airflow_writer_id
from include.lake.store import LocalStore
from include.lake.trades import read_trades
from include.timeutil import to_us
from tests.support.airflow_env import airflow_subprocess_env, migrate_db
from tests.support.exchange import assert_lake_is_the_exchange_history
from tests.support.gaps import gap_records
from tests.support.processes import run_to_end

SYMBOLS = ("BTCUSDT", "XRPETH")


@pytest.mark.slow
def test_dags_test_streams_every_trade_into_the_lake(start_sandbox, tmp_path):
    migrate_db()
    with start_sandbox(symbols=SYMBOLS, rate=50.0) as sandbox:
        result = run_to_end(
            [
                str(Path(sys.executable).with_name("airflow")),
                "dags",
                "test",
                "stream_trades",
                "-c",
                '{"window_minutes": 0.5, "overlap_minutes": 0}',  # time for the thin XRPETH on a busy machine
            ],
            cwd=tmp_path,
            env=airflow_subprocess_env(
                LAKE_URL=f"file://{tmp_path / 'lake'}",
                DATA_DIR=str(tmp_path / "data"),
                BINANCE_WS_URL=sandbox.ws_url,
                BINANCE_REST_URL=sandbox.rest_url,
                SYMBOLS=",".join(SYMBOLS),
            ),
            timeout=240,
        )
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-3000:]
        assert "state=success" in log
        # Pokes flush micro-batches and say so.
        assert re.search(r"micro-batch: \d+ trades", log), log[-3000:]
        lake = LocalStore(tmp_path / "lake")
        starts = {}
        for symbol in SYMBOLS:
            assert len(read_trades(lake, symbol)), f"nothing streamed for {symbol}"
            # No duplicates, no gap from the first trade streamed to the last, every value as the exchange has it.
            ids = assert_lake_is_the_exchange_history(lake, sandbox.rest_url, symbol)
            # The sensor hands the worker its start boundary: the exchange's first trade of the hour.
            (start,) = [gap for gap in gap_records(lake, symbol) if gap["kind"] == "start"]
            with BinanceClient(sandbox.rest_url) as client:
                since = datetime.fromisoformat(start["since"])
                assert since == since.replace(minute=0, second=0, microsecond=0)
                assert start["first_id"] == client.first_trade_id_at_or_after(symbol, to_us(since))[0]
            assert start["last_id"] == ids[0] - 1
            starts[symbol] = start
    # The mapped task is a writer of its own, named by DAG, run and map index (``dags test`` runs
    # mapped tasks one after the other, so one shard here: a second would start after the window).
    run_id = re.search(r"run_id=(\S+?)[,\s]", log).group(1)
    writer = airflow_writer_id("stream_trades", "stream", run_id, 0)
    assert [info.key for info in lake.list("status/writes/")] == [f"status/writes/{writer}.json"], log[-3000:]
    assert {start["writer"] for start in starts.values()} == {writer}
    assert [info.key for info in lake.list("status/gap_writes/")] == [f"status/gap_writes/{writer}.json"]
