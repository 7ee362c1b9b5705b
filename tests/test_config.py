from pathlib import Path

import pytest

from include.config import BINANCE_REST_URL, BINANCE_WS_URL, ConfigError, load_settings


def test_defaults_point_at_the_local_sandbox():
    settings = load_settings({})
    assert settings.exchange == "sandbox"
    assert settings.rest_url == "http://127.0.0.1:9100"
    assert settings.ws_url == "ws://127.0.0.1:9100"
    assert settings.lake_url.startswith("file://")
    assert settings.lake_url.endswith("/data/lake")
    assert settings.warehouse == "duckdb"
    assert settings.duckdb_path == Path("data/warehouse.duckdb")
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


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXCHANGE", "kraken"),
        ("BINANCE_REST_URL", "ftp://example"),
        ("BINANCE_REST_URL", "api.binance.com"),
        ("BINANCE_WS_URL", "http://127.0.0.1:9100"),
        ("LAKE_URL", "gs://bucket"),
        ("WAREHOUSE", "postgres"),
        ("SYMBOLS", "btcusdt"),
        ("SYMBOLS", " , "),
        ("SNOWFLAKE_CONN_ID", "snowflake default"),
        ("SNOWFLAKE_STORAGE_INTEGRATION", "lake; drop table x"),
    ],
)
def test_a_bad_value_fails_fast_naming_variable_and_value(name, value):
    with pytest.raises(ConfigError) as error:
        load_settings({name: value})
    assert name in str(error.value)
    assert repr(value) in str(error.value) or value.strip() in str(error.value)
