"""The fill_gaps DAG under ``airflow dags test``: the gaps a real stream recorded are filled.

A stream worker streams a sandbox that skips messages, with a start boundary from REST, so the
lake holds its trades and its gap records (a start gap and jumps). ``airflow dags test fill_gaps``
then runs the DAG as the scheduler would on a ``lake_gaps`` event: one mapped ``fill`` per symbol
with a pending gap, in the ``exchange_rest`` pool. Afterwards the lake holds every trade of the
exchange from the start boundary to the last one streamed, once, and every gap has a complete fill
record; a second run finds nothing pending and writes nothing.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from pathlib import Path

import pytest

from include.binance.client import BinanceClient
from include.lake.keys import GAP_FILLS_PREFIX, TRADES_PREFIX
from include.lake.store import LocalStore
from include.lake.trades import read_trades
from include.pools import EXCHANGE_REST
from include.repair.boundary import start_boundary
from include.sandbox.faults import FaultSettings
from tests.support.airflow_env import airflow_subprocess_env, migrate_db
from tests.support.exchange import STREAMED_OR_BACKFILLED, assert_matches_exchange, history, stream_for
from tests.support.gaps import fill_records, gap_records, ids_of, objects
from tests.support.processes import run_to_end

SYMBOLS = ("BTCUSDT", "ETHUSDT")
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.mark.slow
@pytest.mark.timeout(1500)  # two `airflow dags test` runs, each with a 600 s liveness timeout
def test_dags_test_fills_the_gaps_a_stream_recorded(start_sandbox, tmp_path):
    migrate_db()
    pools = run_to_end([AIRFLOW, "pools", "set", EXCHANGE_REST.name, "2", "Binance REST"], airflow_subprocess_env())
    assert pools.returncode == 0, pools.stdout + pools.stderr
    lake_dir = tmp_path / "lake"
    lake = LocalStore(lake_dir)
    faults = FaultSettings(skip_fraction=0.05)
    with start_sandbox(symbols=SYMBOLS, rate=30.0, history_seconds=30, faults=faults) as sandbox:
        with BinanceClient(sandbox.rest_url) as client:
            stream_for(
                lake, sandbox.ws_url, 5.0, SYMBOLS, start_boundary=functools.partial(start_boundary, client, lake)
            )
        gaps = {symbol: gap_records(lake, symbol) for symbol in SYMBOLS}
        assert all(len(found) >= 2 for found in gaps.values()), gaps  # a start gap and jumps, per symbol
        env = airflow_subprocess_env(
            LAKE_URL=f"file://{lake_dir}",
            BINANCE_REST_URL=sandbox.rest_url,
            BINANCE_WS_URL=sandbox.ws_url,
            SYMBOLS=",".join(SYMBOLS),
        )

        def dags_test() -> str:
            result = run_to_end([AIRFLOW, "dags", "test", "fill_gaps"], env, timeout=600, cwd=tmp_path)
            log = result.stdout + result.stderr
            assert result.returncode == 0, log[-4000:]
            assert "state=success" in log, log[-4000:]
            return log

        dags_test()
        for symbol in SYMBOLS:
            (start,) = [gap for gap in gaps[symbol] if gap["kind"] == "start"]
            table = read_trades(lake, symbol)
            ids = table["trade_id"].to_pylist()
            first_id, last_id = start["first_id"], max(ids)
            truth = history(sandbox.rest_url, symbol, first_id, last_id)
            assert [i for i, n in Counter(ids).items() if n > 1] == [], f"{symbol}: ids stored twice"
            assert sorted(i for i in ids if i >= first_id) == sorted(truth), symbol
            assert_matches_exchange(table, truth, symbol, STREAMED_OR_BACKFILLED)
            backfilled = set(
                table.filter(table["source"].to_numpy(zero_copy_only=False) == "backfill")["trade_id"].to_pylist()
            )
            assert backfilled == ids_of(gaps[symbol])
            fills = fill_records(lake, symbol)
            assert sorted((f["first_id"], f["last_id"]) for f in fills) == [
                (g["first_id"], g["last_id"]) for g in gaps[symbol]
            ]
            assert all(f["missing"] == 0 for f in fills)

        # Nothing pending: the next run (the next gap's event) fills nothing and writes nothing.
        before = {**objects(lake, TRADES_PREFIX), **objects(lake, GAP_FILLS_PREFIX)}
        dags_test()
        assert {**objects(lake, TRADES_PREFIX), **objects(lake, GAP_FILLS_PREFIX)} == before
