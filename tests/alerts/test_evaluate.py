"""One evaluation into marts.alerts, on each backend: a rule fires once per candle it crosses on, with
a stable id; evaluating again, or after the candles are rebuilt, stores nothing new; an incomplete
candle fires only once it is complete; candles that closed before a rule was first seen do not fire."""

from datetime import datetime, timedelta
from decimal import Decimal

from include.alerts.evaluate import evaluate_alerts
from include.alerts.model import MARKET
from include.alerts.rules import parse_rules
from include.config import load_settings
from include.timeutil import from_us, now_us
from tests.support.alerts import insert_minutes

MINUTE = timedelta(minutes=1)
RULES = """
rules:
  - {id: up, type: price_cross, symbol: BTCUSDT, interval: 1m, level: "100.5", direction: up, since: SINCE}
  - {id: down, type: price_cross, symbol: BTCUSDT, interval: 1m, level: "99", direction: down, since: SINCE}
  - {id: later, type: price_cross, symbol: BTCUSDT, interval: 1m, level: "100.5"}
  - {id: bad, type: price_cross, symbol: DOGEUSDT, interval: 1m, level: "1"}
"""


def rules(since: datetime):
    return parse_rules(RULES.replace("SINCE", since.isoformat()), "rules.yaml", ("BTCUSDT",))


def evaluate(warehouse, lake, since):
    settings = load_settings({"SYMBOLS": "BTCUSDT", "LAKE_URL": lake.url})
    return evaluate_alerts(warehouse.execute, warehouse.dialect, lake, settings, rules(since))


def market_rows(warehouse) -> list[tuple]:
    rows = warehouse.execute(
        f"select rule_id, open_time, value, alert_id from marts.alerts where kind = '{MARKET}' order by open_time"
    )
    return [(rule_id, open_time, Decimal(value), alert_id) for rule_id, open_time, value, alert_id in rows]


def test_a_rule_fires_once_per_crossing_and_a_second_evaluation_or_a_rebuild_stores_nothing(each_warehouse, lake):
    start = from_us(now_us() // 60_000_000 * 60_000_000) - 30 * MINUTE
    insert_minutes(each_warehouse, start, ["100", "100", "100.6", "98", "100.6"])
    first = evaluate(each_warehouse, lake, start)
    assert [str(error) for error in first.refused] == [
        "rule bad in rules.yaml: symbol 'DOGEUSDT' is not streamed (SYMBOLS: BTCUSDT)"
    ]
    assert sorted((alert.rule_id, alert.open_time) for alert in first.fired if alert.kind == MARKET) == [
        ("down", start + 3 * MINUTE),
        ("up", start + 2 * MINUTE),
        ("up", start + 4 * MINUTE),
    ]
    stored = market_rows(each_warehouse)
    assert [row[2] for row in stored] == [Decimal("100.6"), Decimal("98"), Decimal("100.6")]
    assert [alert for alert in evaluate(each_warehouse, lake, start).fired if alert.kind == MARKET] == []
    insert_minutes(each_warehouse, start, ["100", "100", "100.6", "98", "100.6"])  # rebuilt: new built_at
    assert [alert for alert in evaluate(each_warehouse, lake, start).fired if alert.kind == MARKET] == []
    assert market_rows(each_warehouse) == stored
    # "later" has no since: it was first seen by the first evaluation, after these candles closed.
    assert "later" not in {row[0] for row in stored}


def test_an_incomplete_candle_fires_once_it_is_complete(each_warehouse, lake):
    start = from_us(now_us() // 60_000_000 * 60_000_000) - 30 * MINUTE
    closes = ["100", "100", "100.6"]
    insert_minutes(each_warehouse, start, closes, complete=[True, True, False])
    assert [alert for alert in evaluate(each_warehouse, lake, start).fired if alert.kind == MARKET] == []
    insert_minutes(each_warehouse, start, closes)  # the repair filled the gap: complete now
    fired = [alert for alert in evaluate(each_warehouse, lake, start).fired if alert.kind == MARKET]
    assert [(alert.rule_id, alert.open_time) for alert in fired] == [("up", start + 2 * MINUTE)]


def test_an_incident_of_a_check_that_no_longer_exists_is_resolved(each_warehouse, lake):
    from include.alerts.model import PIPELINE, Alert, alert_id
    from include.alerts.store import ensure_alert_tables, store_alerts, warehouse_now

    ensure_alert_tables(each_warehouse.execute, each_warehouse.dialect)
    now = warehouse_now(each_warehouse.execute)
    retired = Alert(alert_id("retired_check", "x"), PIPELINE, "retired_check", "x", "from a check since removed", now)
    store_alerts(each_warehouse.execute, each_warehouse.dialect, [retired], now)
    assert retired.alert_id in evaluate(each_warehouse, lake, now).resolved


def test_a_rule_that_fails_is_reported_and_the_others_still_fire(each_warehouse, lake, monkeypatch):
    import include.alerts.evaluate as evaluation

    start = from_us(now_us() // 60_000_000 * 60_000_000) - 30 * MINUTE
    insert_minutes(each_warehouse, start, ["100", "100", "98"])
    reads = evaluation.read_candles

    def read_or_fail(execute, dialect, rule, first_open):  # a fault in one rule's read, as a broken rule would
        if rule.rule_id == "up":
            raise OverflowError("date value out of range")
        return reads(execute, dialect, rule, first_open)

    monkeypatch.setattr(evaluation, "read_candles", read_or_fail)
    result = evaluate(each_warehouse, lake, start)
    assert "rule up: OverflowError: date value out of range" in result.failed_checks
    assert [(alert.rule_id, alert.open_time) for alert in result.fired if alert.kind == MARKET] == [
        ("down", start + 2 * MINUTE)
    ]
