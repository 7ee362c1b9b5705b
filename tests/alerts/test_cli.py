"""``python -m include.cli alerts``: ``check`` names every bad rule and exits 1, 0 on a good file;
``evaluate`` stores what fired once and exits 1 naming a refused rule (the others still run)."""

import json
from datetime import timedelta

import pytest

from include.alerts.rules import RULES_FILE
from include.cli import main
from include.timeutil import from_us, now_us
from include.warehouse.duckdb_backend import DuckDBWarehouse
from tests.support.alerts import insert_minutes

MINUTE = timedelta(minutes=1)


def test_check_passes_the_shipped_rules(capsys):
    assert main(["alerts", "check"]) == 0
    assert json.loads(capsys.readouterr().out) == {"rules_file": str(RULES_FILE), "valid": 3, "refused": 0}


def test_check_names_every_bad_rule_and_exits_1(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {id: unknown-symbol, type: price_cross, symbol: DOGEUSDT, interval: 1m, level: 1}\n"
        "  - {id: good, type: price_cross, symbol: BTCUSDT, interval: 1m, level: 1}\n"
        "  - {id: negative-window, type: percent_move, symbol: BTCUSDT, interval: 1m, window: -1h, percent: 1}\n"
    )
    assert main(["alerts", "check", "--rules", str(rules)]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["valid"] == 1
    assert err.splitlines() == [
        f"error: rule unknown-symbol in {rules}: symbol 'DOGEUSDT' is not streamed (SYMBOLS: BTCUSDT, ETHUSDT)",
        f"error: rule negative-window in {rules}: window '-1h' is negative",
    ]


def test_check_of_malformed_yaml_or_a_missing_file_fails_naming_it(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{id: a\n")
    assert main(["alerts", "check", "--rules", str(rules)]) == 1
    assert f"error: rule (file) in {rules}: malformed YAML at line" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["alerts", "check", "--rules", str(tmp_path / "none.yaml")])
    assert exit_.value.code == 2
    assert "rules file" in capsys.readouterr().err


def test_evaluate_stores_a_crossing_once_and_names_a_refused_rule(tmp_path, monkeypatch, capsys):
    path = tmp_path / "w.duckdb"
    start = from_us(now_us() // 60_000_000 * 60_000_000) - 30 * MINUTE
    with DuckDBWarehouse(path) as warehouse:
        insert_minutes(warehouse, start, ["100", "100", "101"])
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - {id: up, type: price_cross, symbol: BTCUSDT, interval: 1m, level: '100.5', "
        f"since: '{start.isoformat()}'}}\n"
        "  - {id: gone, type: price_cross, symbol: ETHUSDT, interval: 1m, level: 1}\n"
    )
    for name, value in {
        "DUCKDB_PATH": str(path),
        "LAKE_URL": f"file://{tmp_path / 'lake'}",
        "SYMBOLS": "BTCUSDT",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ALERT_RULES", str(rules))
    assert main(["alerts", "evaluate"]) == 1
    out, err = capsys.readouterr()
    assert "error: rule gone in" in err
    assert [message.split(":")[0] for message in json.loads(out)["fired"] if message.startswith("up")] == ["up"]
    main(["alerts", "evaluate"])
    assert not [message for message in json.loads(capsys.readouterr().out)["fired"] if message.startswith("up")]
    with DuckDBWarehouse(path) as warehouse:
        stored = warehouse.execute("select rule_id, value from marts.alerts where kind = 'market'")
    assert stored == [("up", "101.00000000")]
