"""Rules: each type parsed exactly (decimals never floats), and every bad rule refused with a message
naming it while the good rules of the same file are kept."""

from decimal import Decimal

import pytest

from include.alerts.rules import RULES_FILE, parse_rules, read_rules_file, rule_as_mapping
from include.config import load_settings

SYMBOLS = ("BTCUSDT", "ETHUSDT")
GOOD = """
rules:
  - {id: btc-above, type: price_cross, symbol: BTCUSDT, interval: 1m, level: 100000.12345678, direction: up}
  - {id: eth-move, type: percent_move, symbol: ETHUSDT, interval: 5m, window: 1h, percent: 2.5}
  - {id: btc-volume, type: volume_spike, symbol: BTCUSDT, interval: 15m, trailing: 20, factor: "3"}
"""


def test_each_rule_type_is_read_exactly():
    parsed = parse_rules(GOOD, "rules.yaml", SYMBOLS)
    assert parsed.errors == []
    cross, move, spike = parsed.rules
    assert cross.level == Decimal("100000.12345678")
    assert isinstance(cross.level, Decimal)
    assert (cross.direction, cross.interval.name) == ("up", "1m")
    assert (move.window, move.percent, move.direction) == (12, Decimal("2.5"), "either")  # 1h of 5m candles
    assert (spike.trailing, spike.factor) == (20, Decimal(3))


@pytest.mark.parametrize(
    ("entry", "named", "reason"),
    [
        (
            "{id: r, type: price_cross, symbol: XRPUSDT, interval: 1m, level: 1}",
            "r",
            "symbol 'XRPUSDT' is not streamed",
        ),
        ("{id: r, type: percent_move, symbol: BTCUSDT, interval: 1m, window: -5m, percent: 1}", "r", "negative"),
        ("{id: r, type: percent_move, symbol: BTCUSDT, interval: 5m, window: 7m, percent: 1}", "r", "whole number"),
        ("{id: r, type: percent_move, symbol: BTCUSDT, interval: 1m, window: 0m, percent: 1}", "r", "positive"),
        ("{id: r, type: price_cross, symbol: BTCUSDT, interval: 2m, level: 1}", "r", "interval '2m'"),
        ("{id: r, type: price_cross, symbol: BTCUSDT, interval: 1m, level: -3}", "r", "not a positive number"),
        ("{id: r, type: price_cross, symbol: BTCUSDT, interval: 1m, level: lots}", "r", "not a number"),
        ("{id: r, type: price_cross, symbol: BTCUSDT, interval: 1m, level: 1, direction: sideways}", "r", "direction"),
        ("{id: r, type: volume_spike, symbol: BTCUSDT, interval: 1m, trailing: 0, factor: 2}", "r", "trailing '0'"),
        ("{id: r, type: volume_spike, symbol: BTCUSDT, interval: 1m, trailing: 5}", "r", "factor is missing"),
        ("{id: r, type: price_cross, symbol: BTCUSDT, interval: 1m, level: 1, colour: red}", "r", "unknown field"),
        ("{id: Bad Id, type: price_cross, symbol: BTCUSDT, interval: 1m, level: 1}", "Bad Id", "is not 1-64"),
        ("{type: price_cross, symbol: BTCUSDT, interval: 1m, level: 1}", "#4", "id is missing"),
        ("{id: r, type: moon, symbol: BTCUSDT}", "r", "type 'moon'"),
        ("{id: btc-above, type: price_cross, symbol: BTCUSDT, interval: 1m, level: 2}", "btc-above", "used twice"),
        # bounded reads: a window of more than 1000 candles would read (and date-shift) without limit
        (
            "{id: r, type: percent_move, symbol: BTCUSDT, interval: 1m, window: 1001m, percent: 1}",
            "r",
            "more than 1000",
        ),
        # YAML 1.1 reads these as 8, 31 and 90: a rule must say what it means in plain decimals
        ("{id: r, type: price_cross, symbol: BTCUSDT, interval: 1m, level: 010}", "r", "not a number like"),
        ("{id: r, type: price_cross, symbol: BTCUSDT, interval: 1m, level: 0x1F}", "r", "not a number like"),
        ("{id: r, type: price_cross, symbol: BTCUSDT, interval: 1m, level: 1:30}", "r", "not a number like"),
        ("{id: r, type: price_cross, symbol: BTCUSDT, interval: 1m, level: 1e3}", "r", "not a number like"),
        ("{id: r, type: volume_spike, symbol: BTCUSDT, interval: 1m, trailing: 010, factor: 2}", "r", "trailing '010'"),
    ],
)
def test_a_bad_rule_is_refused_by_name_and_the_others_still_run(entry, named, reason):
    parsed = parse_rules(f"{GOOD}  - {entry}\n", "rules.yaml", SYMBOLS)
    assert [rule.rule_id for rule in parsed.rules] == ["btc-above", "eth-move", "btc-volume"]
    assert len(parsed.errors) == 1
    error = parsed.errors[0]
    assert error.rule == named
    assert reason in error.reason
    assert str(error).startswith(f"rule {named} in rules.yaml: ")


def test_malformed_yaml_is_one_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {id: a, type: price_cross\n  - b: [\n")
    parsed = read_rules_file(path, SYMBOLS)
    assert parsed.rules == []
    assert [(error.rule, error.source) for error in parsed.errors] == [("(file)", str(path))]
    assert "malformed YAML at line" in parsed.errors[0].reason


def test_a_rule_read_back_from_its_fields_is_the_same_rule():
    for rule in parse_rules(GOOD, "rules.yaml", SYMBOLS).rules:
        again = parse_rules(f"rules:\n  - {rule_as_mapping(rule)}\n", "rules.yaml", SYMBOLS).rules
        assert [(r.fingerprint, r.level, r.percent, r.factor) for r in again] == [
            (rule.fingerprint, rule.level, rule.percent, rule.factor)
        ]


def test_an_edited_rule_is_a_new_rule_and_an_unchanged_one_keeps_its_fingerprint():
    first = parse_rules(GOOD, "a.yaml", SYMBOLS).rules[0]
    same = parse_rules(GOOD, "b.yaml", SYMBOLS).rules[0]
    edited = parse_rules(GOOD.replace("100000.12345678", "100001"), "a.yaml", SYMBOLS).rules[0]
    assert first.fingerprint == same.fingerprint != edited.fingerprint


def test_the_rules_shipped_in_the_repo_are_valid_for_the_default_symbols():
    parsed = read_rules_file(RULES_FILE, load_settings({}).symbols)
    assert parsed.errors == []
    assert {rule.type for rule in parsed.rules} == {"price_cross", "percent_move", "volume_spike"}
