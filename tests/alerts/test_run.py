"""One round of the alerts task (include/alerts/run.py): when the stream has stalled no transform runs
and the warehouse DAG publishes nothing, so the round itself publishes the dashboard's snapshot with
the new incident; a round where nothing changed publishes nothing."""

from datetime import timedelta

import duckdb

from include.alerts.run import run_alerts
from include.config import load_settings
from include.timeutil import from_us, now_us
from include.warehouse.duckdb_backend import DuckDBWarehouse
from tests.support.alerts import insert_minutes

MINUTE = timedelta(minutes=1)


def test_a_stalled_stream_reaches_the_dashboards_snapshot_without_a_transform(tmp_path):
    path, snapshot = tmp_path / "w.duckdb", tmp_path / "dashboard" / "marts.duckdb"
    with DuckDBWarehouse(path) as warehouse:  # the newest closed minute closed 20 minutes ago
        insert_minutes(warehouse, from_us(now_us() // 60_000_000 * 60_000_000) - 25 * MINUTE, ["100"] * 5)
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    settings = load_settings(
        {
            "SYMBOLS": "BTCUSDT",
            "DUCKDB_PATH": str(path),
            "DASHBOARD_SNAPSHOT": str(snapshot),
            "LAKE_URL": f"file://{tmp_path / 'lake'}",
            "ALERT_RULES": str(rules),
        }
    )
    first = run_alerts(settings, senders={})
    assert [alert.rule_id for alert in first.evaluated.fired] == ["stale_symbol"]
    assert first.published
    with duckdb.connect(str(snapshot), read_only=True) as shown:
        assert shown.execute("select rule_id, subject, resolved_at from alerts").fetchall() == [
            ("stale_symbol", "BTCUSDT", None)
        ]
    again = run_alerts(settings, senders={})
    assert (again.evaluated.fired, again.evaluated.resolved, again.published) == ([], [], False)
