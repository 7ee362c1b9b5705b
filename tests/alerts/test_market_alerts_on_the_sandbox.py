"""Each rule type fires exactly once on a sandbox market steered to cross it: a replayed dump whose
price steps over a level and moves 6% in a minute, and whose volume spikes once. The trades go the
whole way a real market's do: the sandbox's REST API, the repair's import into the lake, the load, the
dbt build, then the evaluation. Evaluating again, or after a full rebuild of the same candles, fires
nothing new."""

import csv
from datetime import timedelta

import pytest

from include.alerts.evaluate import evaluate_alerts
from include.alerts.model import MARKET
from include.alerts.rules import parse_rules
from include.config import load_settings
from include.lake.store import LocalStore
from include.timeutil import HOUR_US, MINUTE_US, from_us, now_us
from include.warehouse.duckdb_backend import DuckDBWarehouse
from tests.support.candles import build, load
from tests.support.exchange import import_history

SYMBOL = "BTCUSDT"
FIRST_ID = 1000
RULES = """
rules:
  - {id: cross-1m, type: price_cross, symbol: BTCUSDT, interval: 1m, level: "105", direction: up, since: SINCE}
  - {id: cross-5m, type: price_cross, symbol: BTCUSDT, interval: 5m, level: "105", direction: both, since: SINCE}
  - {id: never-down, type: price_cross, symbol: BTCUSDT, interval: 1m, level: "103", direction: down, since: SINCE}
  - {id: move-5pct, type: percent_move, symbol: BTCUSDT, interval: 1m, window: 3m, percent: "5", since: SINCE}
  - {id: volume-3x, type: volume_spike, symbol: BTCUSDT, interval: 1m, trailing: 5, factor: "3", since: SINCE}
"""
EXPECTED = {  # rule -> (interval, minute of the hour of the candle that fires it, its value)
    "cross-1m": ("1m", 10, "106.00000000"),
    "cross-5m": ("5m", 10, "106.00000000"),
    "move-5pct": ("1m", 10, "6.000000"),  # from the open of minute 8 (100) to the close of minute 10 (106)
    "volume-3x": ("1m", 30, "30.00000000"),  # 6 trades of 5 against 5 minutes of 6 x 1
}


def steered_dump(path, hour_us: int) -> None:
    """Trades every 10 s from ``hour_us`` to 5 minutes past the hour: 100 until minute 10, then 106;
    a quantity of 1, but 5 in minute 30."""
    rows = []
    for index in range(65 * 6):
        minute = index // 6
        price = "100.00" if minute < 10 else "106.00"
        qty = "5.00000" if minute == 30 else "1.00000"
        quote = str(int(price.split(".")[0]) * int(qty.split(".")[0])) + ".00"
        rows.append([FIRST_ID + index, price, qty, quote, hour_us + index * 10_000_000, "false", "true"])
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


@pytest.fixture
def steered_market(start_sandbox, tmp_path):
    hour_us = (now_us() // HOUR_US - 3) * HOUR_US
    dump = tmp_path / f"{SYMBOL}-trades-2026-12-01.csv"
    steered_dump(dump, hour_us)
    with start_sandbox(replay=(dump,), replay_mode="historical", symbols=()) as sandbox:
        yield sandbox, hour_us


def fired_market(warehouse, lake, settings, rules) -> list:
    result = evaluate_alerts(warehouse.execute, warehouse.dialect, lake, settings, rules)
    return [alert for alert in result.fired if alert.kind == MARKET]


def test_each_rule_type_fires_once_and_never_again_after_a_rerun_or_a_rebuild(steered_market, tmp_path):
    sandbox, hour_us = steered_market
    lake, path, target = LocalStore(tmp_path / "lake"), tmp_path / "w.duckdb", tmp_path / "dbt"
    import_history(sandbox.rest_url, lake, (SYMBOL,), hour_us, hour_us + HOUR_US)
    load(lake, path)
    build(path, target)
    settings = load_settings({"SYMBOLS": SYMBOL, "LAKE_URL": lake.url, "DUCKDB_PATH": str(path)})
    rules = parse_rules(RULES.replace("SINCE", from_us(hour_us).isoformat()), "rules.yaml", (SYMBOL,))
    assert rules.errors == []

    with DuckDBWarehouse(path) as warehouse:
        fired = fired_market(warehouse, lake, settings, rules)
    got = {
        alert.rule_id: (alert.interval, (alert.open_time - from_us(hour_us)) // timedelta(minutes=1)) for alert in fired
    }
    assert len(fired) == len(got)  # each rule once
    assert got == {rule: (interval, minute) for rule, (interval, minute, _) in EXPECTED.items()}
    assert {alert.rule_id: format(alert.value, "f") for alert in fired} == {r: v for r, (_, _, v) in EXPECTED.items()}
    for alert in fired:
        assert alert.event_time == alert.open_time + timedelta(
            microseconds=(5 if alert.interval == "5m" else 1) * MINUTE_US - 1000
        )

    with DuckDBWarehouse(path) as warehouse:
        assert fired_market(warehouse, lake, settings, rules) == []
    build(path, target, full_refresh=True)  # every candle rebuilt from raw
    with DuckDBWarehouse(path) as warehouse:
        assert fired_market(warehouse, lake, settings, rules) == []
        stored = warehouse.execute(
            f"select rule_id, count(*) from marts.alerts where kind = '{MARKET}' group by rule_id"
        )
    assert dict(stored) == dict.fromkeys(EXPECTED, 1)
