from pathlib import Path

import pytest

from include.config import BINANCE_REST_URL, BINANCE_WS_URL, ConfigError, load_settings


def test_defaults_point_at_the_local_sandbox():
    settings = load_settings({})
    assert settings.exchange == "sandbox"
    assert settings.rest_url == "http://127.0.0.1:9100"
    assert settings.ws_url == "ws://127.0.0.1:9100"
    repo = Path(__file__).resolve().parents[1]
    assert settings.data_dir == repo / "data"
    assert settings.lake_url == f"file://{repo / 'data' / 'lake'}"
    assert settings.warehouse == "duckdb"
    assert settings.duckdb_path == repo / "data" / "warehouse.duckdb"
    assert settings.spool_dir("stream-a") == repo / "data" / "spool" / "stream-a"
    assert settings.stream_shard_size == 50
    assert settings.maintenance_retention_days == 30
    assert settings.maintenance_db_url is None
    assert settings.symbols == ("BTCUSDT", "ETHUSDT")
    assert (settings.snowflake_conn_id, settings.snowflake_storage_integration) == (
        "snowflake_default",
        "cryptoflow_lake",
    )


def test_one_variable_switches_to_live_binance():
    settings = load_settings({"EXCHANGE": "binance"})
    assert (settings.rest_url, settings.ws_url) == (BINANCE_REST_URL, BINANCE_WS_URL)


def test_urls_and_symbols_can_be_overridden():
    settings = load_settings(
        {"BINANCE_REST_URL": "http://10.0.0.1:80/", "SANDBOX_PORT": "9200", "SYMBOLS": "XRPETH, BTCUSDT,XRPETH"}
    )
    assert settings.rest_url == "http://10.0.0.1:80"
    assert settings.ws_url == "ws://127.0.0.1:9200"
    assert settings.symbols == ("XRPETH", "BTCUSDT")


def test_the_sandbox_host_moves_both_sandbox_urls_and_not_binances():
    """Under compose the pipeline reaches the sandbox by its service name, not on 127.0.0.1."""
    sandbox = load_settings({"SANDBOX_HOST": "sandbox"})
    assert (sandbox.rest_url, sandbox.ws_url) == ("http://sandbox:9100", "ws://sandbox:9100")
    live = load_settings({"SANDBOX_HOST": "sandbox", "EXCHANGE": "binance"})
    assert (live.rest_url, live.ws_url) == (BINANCE_REST_URL, BINANCE_WS_URL)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXCHANGE", "kraken"),
        ("SANDBOX_HOST", ""),
        ("SANDBOX_HOST", "sand box"),
        ("SANDBOX_HOST", "sandbox:9100"),
        ("SANDBOX_HOST", "http://sandbox"),
        ("BINANCE_REST_URL", "ftp://example"),
        ("BINANCE_REST_URL", "api.binance.com"),
        ("BINANCE_WS_URL", "http://127.0.0.1:9100"),
        ("LAKE_URL", "gs://bucket"),
        ("WAREHOUSE", "postgres"),
        ("SYMBOLS", "btcusdt"),
        ("SYMBOLS", " , "),
        ("SNOWFLAKE_CONN_ID", "snowflake default"),
        ("SNOWFLAKE_STORAGE_INTEGRATION", "lake; drop table x"),
        ("SANDBOX_PORT", "abc"),
        ("SANDBOX_PORT", "70000"),
        ("SANDBOX_PORT", "0"),
        ("BINANCE_REST_URL", "http://127.0.0.1:abc"),
        ("BINANCE_WS_URL", "ws://:9100"),
        ("STREAM_SHARD_SIZE", "0"),
        ("STREAM_SHARD_SIZE", "many"),
        ("DUCKDB_PATH", "/dev/null/x"),
        ("DUCKDB_PATH", "/tmp"),
        ("DASHBOARD_SNAPSHOT", "/dev/null/marts.duckdb"),
        ("MAINTENANCE_RETENTION_DAYS", "0"),
        ("MAINTENANCE_RETENTION_DAYS", "thirty"),
        ("WAREHOUSE_DEADLINE_SECONDS", "0"),
        ("WAREHOUSE_DEADLINE_SECONDS", "10m"),
    ],
)
def test_a_bad_value_fails_fast_naming_variable_and_value(name, value):
    with pytest.raises(ConfigError) as error:
        load_settings({name: value})
    assert name in str(error.value)
    assert repr(value) in str(error.value) or value.strip() in str(error.value)


def test_relative_paths_are_taken_from_the_repo_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"DATA_DIR": "elsewhere", "DUCKDB_PATH": "w.duckdb"})
    repo = Path(__file__).resolve().parents[1]
    assert settings.data_dir == repo / "elsewhere"
    assert settings.duckdb_path == repo / "elsewhere" / "w.duckdb"
    assert settings.lake_url == f"file://{repo / 'elsewhere' / 'lake'}"
    absolute = load_settings({"DATA_DIR": str(tmp_path)})
    assert absolute.spool_dir("w") == tmp_path / "spool" / "w"


def test_data_dir_moves_every_local_default_and_explicit_settings_still_win(tmp_path):
    moved = load_settings({"DATA_DIR": str(tmp_path)})
    assert moved.lake_url == f"file://{tmp_path / 'lake'}"
    assert moved.duckdb_path == tmp_path / "warehouse.duckdb"
    assert moved.spool_dir("repair") == tmp_path / "spool" / "repair"
    explicit = load_settings(
        {"DATA_DIR": str(tmp_path), "LAKE_URL": "s3://bucket/lake", "DUCKDB_PATH": "/srv/w.duckdb"}
    )
    assert (explicit.lake_url, explicit.duckdb_path) == ("s3://bucket/lake", Path("/srv/w.duckdb"))


def test_the_warehouse_deadline_is_ten_minutes_unless_set_and_a_parse_keeps_it_on_a_bad_value():
    from include.config import warehouse_deadline_when_parsed

    assert load_settings({}).warehouse_deadline_seconds == 600
    assert load_settings({"WAREHOUSE_DEADLINE_SECONDS": "90"}).warehouse_deadline_seconds == 90
    assert warehouse_deadline_when_parsed({"WAREHOUSE_DEADLINE_SECONDS": "90"}) == 90
    assert warehouse_deadline_when_parsed({"WAREHOUSE_DEADLINE_SECONDS": "10m"}) == 600
