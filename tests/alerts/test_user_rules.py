"""The dashboard's rules in the lake: stored checked, read back exactly (JSON numbers as decimals, never
floats), a stored object whose key and id differ refused by name, and a rule added again after its
removal evaluated from when it was added, not from when it was first seen long ago."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from include.alerts.rules import RULE_TYPES
from include.alerts.store import ensure_alert_tables, first_seen
from include.alerts.user_rules import add_user_rule, read_user_rules, remove_user_rule
from include.lake.keys import alert_rule_key
from include.warehouse.duckdb_backend import DuckDBWarehouse

SYMBOLS = ("BTCUSDT", "ETHUSDT")
CROSS = {"id": "btc-up", "type": "price_cross", "symbol": "BTCUSDT", "interval": "1m", "level": "60000.5"}


def test_a_number_written_by_hand_into_a_stored_rule_is_read_as_an_exact_decimal(lake):
    text = json.dumps({**CROSS, "level": "LEVEL"}).replace('"LEVEL"', "60000.123456789012345678")
    lake.put(alert_rule_key("btc-up"), text.encode())  # a JSON number with more digits than a float holds
    (rule,) = read_user_rules(lake, SYMBOLS).rules
    assert rule.level == Decimal("60000.123456789012345678")


def test_a_stored_rule_whose_key_and_id_differ_is_refused_by_name(lake):
    lake.put(alert_rule_key("old-name"), json.dumps(CROSS).encode())
    read = read_user_rules(lake, SYMBOLS)
    assert read.rules == []
    assert [(error.rule, error.reason) for error in read.errors] == [("old-name", "its object holds the rule 'btc-up'")]


def test_an_added_rule_starts_when_it_is_added_and_its_removal_deletes_it(lake):
    before = datetime.now(UTC).replace(microsecond=0)
    rule = add_user_rule(lake, dict(CROSS), SYMBOLS, taken=())
    assert rule.since is not None
    assert before <= rule.since <= datetime.now(UTC)
    (stored,) = read_user_rules(lake, SYMBOLS).rules
    assert (stored.fingerprint, stored.since) == (rule.fingerprint, rule.since)
    assert remove_user_rule(lake, "btc-up")
    assert read_user_rules(lake, SYMBOLS).rules == []
    assert set(RULE_TYPES) >= {stored.type}


def test_a_rule_away_for_a_while_starts_anew_and_one_seen_every_run_keeps_its_start(tmp_path):
    t0 = datetime(2026, 12, 7, 12, tzinfo=UTC)
    with DuckDBWarehouse(tmp_path / "w.duckdb") as warehouse:
        ensure_alert_tables(warehouse.execute, warehouse.dialect)

        def seen(at, *fingerprints):
            return first_seen(warehouse.execute, warehouse.dialect, dict.fromkeys(fingerprints, "r"), at)

        assert seen(t0, "a", "b") == {"a": t0, "b": t0}
        for minutes in (10, 20):  # "a" is evaluated on and on; "b" is not (removed)
            assert seen(t0 + timedelta(minutes=minutes), "a") == {"a": t0}
        # "b" was not evaluated for 30 minutes (removed, then added again): it starts now
        later = t0 + timedelta(minutes=30)
        assert seen(later, "a", "b") == {"a": t0, "b": later}
