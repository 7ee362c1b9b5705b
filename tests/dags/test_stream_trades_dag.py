"""The stream DAG under ``airflow dags test``: the sensor streams the sandbox into the lake."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from include.lake.store import LocalStore
from include.lake.trades import read_trades
from tests.support.airflow_env import airflow_subprocess_env, migrate_db
from tests.support.net import http_get


@pytest.mark.slow
def test_dags_test_streams_every_trade_into_the_lake(start_sandbox, tmp_path):
    migrate_db()
    with start_sandbox(symbols=("BTCUSDT", "XRPETH"), rate=50.0) as sandbox:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("airflow")),
                "dags",
                "test",
                "stream_trades",
                "-c",
                '{"window_minutes": 0.25, "overlap_minutes": 0}',
            ],
            cwd=tmp_path,
            env=airflow_subprocess_env(
                LAKE_URL=f"file://{tmp_path / 'lake'}",
                BINANCE_WS_URL=sandbox.ws_url,
                BINANCE_REST_URL=sandbox.rest_url,
                SYMBOLS="BTCUSDT,XRPETH",
            ),
            capture_output=True,
            text=True,
            timeout=240,
        )
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-3000:]
        assert "state=success" in log
        # Every poke flushed a micro-batch and said so.
        pokes = re.findall(r"micro-batch: (\d+) trades", log)
        assert len(pokes) >= 3, log[-3000:]
        assert sum(map(int, pokes)) > 0
        lake = LocalStore(tmp_path / "lake")
        for symbol in ("BTCUSDT", "XRPETH"):
            table = read_trades(lake, symbol)
            ids = sorted(table["trade_id"].to_pylist())
            assert ids, f"nothing streamed for {symbol}"
            assert ids == list(range(ids[0], ids[-1] + 1)), f"{symbol}: gaps in what was streamed"
            _, _, history = http_get(
                f"{sandbox.rest_url}/api/v3/historicalTrades?symbol={symbol}&fromId={ids[0]}&limit=1000"
            )
            by_id = {row["id"]: row for row in history}
            for row in table.to_pylist()[:200]:
                expected = by_id[row["trade_id"]]
                assert f"{row['price']:.8f}" == expected["price"]
                assert f"{row['quantity']:.8f}" == expected["qty"]
        assert (tmp_path / "lake" / "status" / "writes").is_dir()
