"""The stream sensor refuses what it cannot stream before it opens a connection."""

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from trade_stream_sensor import TradeStreamSensor


def poke_once(symbols: str) -> None:
    sensor = TradeStreamSensor(task_id="stream", symbols=symbols, window_end="2100-01-01T00:00:00+00:00")
    ti = SimpleNamespace(dag_id="stream_trades", task_id="stream", run_id="manual__1", map_index=0)
    try:
        sensor.poke({"ti": ti})
    finally:
        sensor.on_kill()


def test_symbols_the_exchange_does_not_list_fail_the_task_naming_them_without_retries(
    start_sandbox, tmp_path, monkeypatch
):
    with start_sandbox(symbols=("BTCUSDT",)) as sandbox:
        monkeypatch.setenv("BINANCE_REST_URL", sandbox.rest_url)
        monkeypatch.setenv("BINANCE_WS_URL", sandbox.ws_url)
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        with pytest.raises(AirflowFailException, match="'NOTACOIN'") as refused:
            poke_once("BTCUSDT,NOTACOIN")
    assert "BTCUSDT" not in str(refused.value)
    assert not (tmp_path / "lake").exists(), "refused before the first connection: nothing written"


def test_a_bad_setting_fails_the_task_naming_it_without_retries(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_PORT", "abc")
    with pytest.raises(AirflowFailException, match="SANDBOX_PORT='abc'"):
        poke_once("BTCUSDT")
