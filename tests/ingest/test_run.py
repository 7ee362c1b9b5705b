"""``run_worker``, the stream worker in the foreground (the ``stream`` command's): where it writes."""

from __future__ import annotations

from pathlib import Path

from include.config import load_settings
from include.ingest.run import run_worker
from include.lake.store import LocalStore
from include.lake.trades import read_trade_ids


def test_a_lake_given_to_the_worker_receives_its_writes_instead_of_lake_url(start_sandbox, tmp_path: Path):
    with start_sandbox(symbols=("BTCUSDT",), rate=50, history_seconds=60) as sandbox:
        settings = load_settings(
            {
                "BINANCE_REST_URL": sandbox.rest_url,
                "BINANCE_WS_URL": sandbox.ws_url,
                "LAKE_URL": f"file://{tmp_path / 'configured'}",
                "DATA_DIR": str(tmp_path / "data"),
            }
        )
        given = LocalStore(tmp_path / "given")
        stats = run_worker(settings, ("BTCUSDT",), duration=1.0, flush_seconds=0.5, lake=given)
    ids = read_trade_ids(given, "BTCUSDT")
    assert stats["written"] == len(ids) > 0
    assert not (tmp_path / "configured").exists()
