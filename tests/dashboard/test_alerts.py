"""The page's alerts (dashboard/alerts.py) under AppTest: what a snapshot holds is shown exactly, and the
rules form stores a rule in the lake, refuses a bad one naming it, and removes a dashboard rule."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.alerts import submit_rule
from include.alerts.rules import RuleError, parse_rule
from include.alerts.user_rules import SOURCE, add_user_rule, read_user_rules
from include.config import load_settings
from include.lake.keys import ALERT_RULES_PREFIX, alert_rule_key
from include.lake.store import LocalStore
from tests.support.apptest import badges, page, texts
from tests.support.dashboard import snapshot_with_candles

SYMBOLS = ("BTCUSDT", "ETHUSDT")
FILE_RULES = """
rules:
  - {id: btc-100k, type: price_cross, symbol: BTCUSDT, interval: 1h, level: 100000.5, direction: up}
  - {id: bad-window, type: percent_move, symbol: ETHUSDT, interval: 5m, window: -15m, percent: 2}
"""


@pytest.fixture
def lake(tmp_path, monkeypatch) -> LocalStore:
    """The page's settings: a snapshot path, the lake (where dashboard rules go) and a rules file."""
    monkeypatch.setenv("DASHBOARD_SNAPSHOT", str(tmp_path / "dashboard" / "marts.duckdb"))
    monkeypatch.setenv("LAKE_URL", f"file://{tmp_path / 'lake'}")
    monkeypatch.setenv("WAREHOUSE", "duckdb")
    monkeypatch.setenv("SYMBOLS", ",".join(SYMBOLS))
    rules = tmp_path / "rules.yaml"
    rules.write_text(FILE_RULES)
    monkeypatch.setenv("ALERT_RULES", str(rules))
    return LocalStore(tmp_path / "lake")


@pytest.fixture
def snapshot(lake, tmp_path) -> Path:
    """A snapshot whose alerts are minutes to hours old (tests/support/dashboard.py ``alert_rows``)."""
    return snapshot_with_candles(tmp_path / "dashboard" / "marts.duckdb", symbols=SYMBOLS, now=datetime.now(UTC)).path


def plain(markdown: str) -> str:
    """Escaped Markdown as it reads on the page."""
    return re.sub(r"\\(.)", r"\1", markdown)


def frame(app: AppTest, first_column: str, having: str = "") -> list[dict]:
    """The rows of the one table whose first column is ``first_column`` (and that has a column ``having``)."""
    [shown] = [
        item.value
        for item in app.dataframe
        if item.value.columns[0] == first_column and (not having or having in item.value.columns)
    ]
    return shown.to_dict("records")


def stored(path: Path, sql: str) -> list[dict]:
    with duckdb.connect(":memory:") as connection:
        connection.execute("set TimeZone = 'UTC'")
        connection.execute(f"attach '{path}' as s (read_only)")
        result = connection.execute(sql.replace("{s}", "s.main"))
        names = [column[0] for column in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def at(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def rules_file() -> Path:
    return load_settings().alerts.rules_file


def dashboard_rules(lake: LocalStore) -> list[str]:
    return sorted(info.key for info in lake.list(ALERT_RULES_PREFIX))


# What the snapshot holds ---------------------------------------------------------------------------


def test_the_alerts_show_the_open_incident_and_the_days_alerts_with_their_deliveries_exactly(snapshot):
    app = page()
    alerts = {row["rule_id"]: row for row in stored(snapshot, "select * from {s}.alerts")}
    deliveries = stored(snapshot, "select * from {s}.alert_deliveries order by alert_id, event, channel")
    assert badges(app, "Alerts") == [":red-badge[1 active]", ":gray-badge[3 in 24 h]"]
    # The open incident: the stale symbol, since its evidence's time, its webhook delivery.
    stale = alerts["stale_symbol"]
    [stale_sent] = [row for row in deliveries if row["alert_id"] == stale["alert_id"]]
    assert frame(app, "Since (UTC)") == [
        {
            "Since (UTC)": at(stale["event_time"]),
            "Check": "stale_symbol",
            "Subject": "ETHUSDT",
            "Message": stale["message"],
            "Delivery": f"webhook: delivered {at(stale_sent['delivered_at'])}",
        }
    ]
    # The day's alerts, newest first; the value every digit of the stored text; the one of two days ago not.
    recent = frame(app, "Fired (UTC)", having="Value")
    assert [(row["Rule"], row["Kind"], row["Value"], row["State"]) for row in recent] == [
        ("stale_symbol", "pipeline", "", "open"),
        ("btcusdt-cross", "market", "60000.12345678", ""),
        ("reconnect_storm", "pipeline", "", f"resolved {at(alerts['reconnect_storm']['resolved_at'])}"),
    ]
    cross = alerts["btcusdt-cross"]
    assert recent[1]["Fired (UTC)"] == at(cross["fired_at"])
    assert recent[1]["Message"] == cross["message"]
    [webhook_at] = [
        row["delivered_at"]
        for row in deliveries
        if row["alert_id"] == cross["alert_id"] and row["channel"] == "webhook"
    ]
    assert recent[1]["Delivery"] == (
        "email: not delivered, 3 attempts, last error: SMTP 127.0.0.1:8025: connection refused; "
        f"webhook: delivered {webhook_at:%Y-%m-%d %H:%M:%S}Z"
    )
    resolved_at = at(alerts["reconnect_storm"]["resolved_at"])
    assert recent[2]["Delivery"].endswith(f"webhook (resolved): delivered {resolved_at} after 2 attempts")
    # The history: every delivery of every event of those alerts, as the outbox holds it.
    shown_ids = {alerts[rule]["alert_id"] for rule in ("stale_symbol", "btcusdt-cross", "reconnect_storm")}
    history = frame(app, "Fired (UTC)", having="Last error")
    assert sorted((row["Event"], row["Channel"], row["Attempts"], row["Last error"]) for row in history) == sorted(
        (row["event"], row["channel"], row["attempts"], row["last_error"] or "")
        for row in deliveries
        if row["alert_id"] in shown_ids
    )


def test_the_chart_comes_before_the_alerts(snapshot):
    app = page()
    order = [
        "chart" if node.type == "plotly_chart" else node.value
        for node in app.main
        if node.type == "plotly_chart" or node.type == "subheader"
    ]
    assert order == ["chart", "Pipeline health", "Alerts"]


def test_a_snapshot_without_alerts_says_none_evaluated_yet(lake, tmp_path):
    path = snapshot_with_candles(tmp_path / "dashboard" / "marts.duckdb", symbols=SYMBOLS).path
    with duckdb.connect(str(path)) as connection:  # published before the alerts' tables were
        connection.execute("drop table alert_deliveries")
        connection.execute("drop table alerts")
    app = page()
    assert badges(app, "Alerts") == [":gray-badge[0 in 24 h]"]
    assert any(text.startswith("No alert evaluated yet") for text in texts(app.caption))


# The rules -----------------------------------------------------------------------------------------


def test_the_rules_of_the_file_and_the_dashboard_are_listed_and_each_refused_one_named(snapshot, lake):
    add_user_rule(
        lake,
        {
            "id": "eth-spike",
            "type": "volume_spike",
            "symbol": "ETHUSDT",
            "interval": "1m",
            "trailing": 20,
            "factor": "3",
        },
        SYMBOLS,
        [],
    )
    gone = {"id": "sol-cross", "type": "price_cross", "symbol": "SOLUSDT", "interval": "1m", "level": "150"}
    lake.put(alert_rule_key("sol-cross"), json.dumps(gone).encode())  # stored when SOLUSDT was streamed
    app = page()
    assert [plain(text) for text in texts(app.error)] == [
        f"rule bad-window in {rules_file()}: window '-15m' is negative",
        "rule sol-cross in dashboard: symbol 'SOLUSDT' is not streamed (SYMBOLS: BTCUSDT, ETHUSDT)",
    ]
    assert [(row["Rule"], row["From"], row["Condition"]) for row in frame(app, "Rule")] == [
        ("btc-100k", "rules file", "BTCUSDT 1h: close crosses 100000.5 (up)"),
        ("eth-spike", "dashboard", "ETHUSDT 1m: volume >= 3 x the average of the 20 candles before"),
    ]
    assert any("cannot be removed here" in text for text in texts(app.caption))
    # Only the dashboard's rules can be removed here, the refused one too; never the file's.
    assert app.selectbox(key="remove_rule").options == ["eth-spike", "sol-cross"]


def add_through_the_form(app: AppTest, rule_type: str, fields: dict[str, str]) -> AppTest:
    app.segmented_control(key="rule_type").set_value(rule_type).run()
    for name, value in fields.items():
        if name in ("symbol", "interval"):
            app.selectbox(key=f"rule_{name}").select(value)
        elif name == "direction":
            app.selectbox(key=f"rule_{rule_type}_direction").select(value)
        elif name in ("id", "description"):
            app.text_input(key=f"rule_{name}").input(value)
        else:
            app.text_input(key=f"rule_{rule_type}_{name}").input(value)
    app.button(key="add_rule_submit").click().run()
    assert not app.exception, [item.value for item in app.exception]
    return app


ETH_MOVE = {"id": "eth-move", "symbol": "ETHUSDT", "interval": "5m", "window": "15m", "percent": "2.50"}


def test_a_rule_added_through_the_form_is_stored_in_the_lake_and_listed(snapshot, lake):
    app = add_through_the_form(page(), "percent_move", ETH_MOVE | {"direction": "up"})
    assert dashboard_rules(lake) == [alert_rule_key("eth-move")]
    expected = parse_rule({"type": "percent_move", "direction": "up"} | ETH_MOVE, frozenset(SYMBOLS), SOURCE)
    (stored,) = read_user_rules(lake, SYMBOLS).rules
    assert stored.since is not None  # evaluated from when it was added: not on crossings before
    assert datetime.now(UTC) - stored.since < timedelta(minutes=5)
    assert replace(stored, since=None) == expected  # parsed back equal: the percent exact
    assert json.loads(lake.get(alert_rule_key("eth-move")))["percent"] == "2.5"  # exact text, never a float
    assert [plain(text) for text in texts(app.success)] == [
        "rule eth-move added (ETHUSDT 5m: moves 2.5% within 3 x 5m (up)): the next evaluation reads it"
    ]
    assert ("eth-move", "dashboard") in [(row["Rule"], row["From"]) for row in frame(app, "Rule")]
    assert [plain(text).split(":")[0] for text in texts(app.error)] == [f"rule bad-window in {rules_file()}"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (ETH_MOVE | {"window": "-15m"}, "window '-15m' is negative"),
        (ETH_MOVE | {"percent": ""}, "percent is missing"),
        (ETH_MOVE | {"id": "btc-100k"}, "the id 'btc-100k' is taken: remove that rule first, or pick another id"),
        (ETH_MOVE | {"id": "Bad Id"}, "id 'Bad Id' is not 1-64 of a-z, 0-9, - and _ (starting with a letter or digit)"),
    ],
    ids=["negative window", "missing percent", "id of the rules file", "bad id"],
)
def test_a_bad_rule_from_the_form_is_refused_naming_it_and_nothing_is_stored(snapshot, lake, fields, reason):
    app = add_through_the_form(page(), "percent_move", fields)
    assert plain(texts(app.error)[-1]) == f"rule {fields['id']} in the form: {reason}"
    assert dashboard_rules(lake) == []
    assert app.success == []


def test_a_rule_for_a_symbol_not_streamed_is_refused_naming_it_and_nothing_is_stored(lake):
    """The form offers only SYMBOLS; what it submits is checked all the same (settings change, forms linger)."""
    fields = {"id": "doge-cross", "type": "price_cross", "symbol": "DOGEUSDT", "interval": "1m", "level": "0.1"}
    refused = submit_rule(lake, fields, load_settings())
    assert refused == RuleError(
        "doge-cross", "symbol 'DOGEUSDT' is not streamed (SYMBOLS: BTCUSDT, ETHUSDT)", "the form"
    )
    assert dashboard_rules(lake) == []


def test_removing_a_dashboard_rule_deletes_its_object(snapshot, lake):
    add_user_rule(
        lake,
        {"id": "eth-cross", "type": "price_cross", "symbol": "ETHUSDT", "interval": "1m", "level": "3000"},
        SYMBOLS,
        [],
    )
    app = page()
    app.selectbox(key="remove_rule").select("eth-cross")
    app.button(key="remove_rule_submit").click().run()
    assert dashboard_rules(lake) == []
    assert [plain(text) for text in texts(app.success)] == ["rule eth-cross removed: its alerts stay in the history"]
    assert [row["Rule"] for row in frame(app, "Rule")] == ["btc-100k"]  # the file's rule stays
    assert any(text == "No dashboard rule to remove." for text in texts(app.caption))
