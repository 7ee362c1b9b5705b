"""The Airflow checks' incidents as an evaluation into a real DuckDB file sees them (tests/alerts, tests/plugins)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from include.alerts.evaluate import evaluate_alerts
from include.alerts.model import Alert
from include.alerts.rules import RuleSet
from include.alerts.store import active_incidents
from include.alerts.task_checks import TASK_CHECKS
from include.config import load_settings
from include.lake.store import ObjectStore
from include.warehouse.duckdb_backend import DuckDBWarehouse


def evaluate_task_incidents(
    folder: Path, lake: ObjectStore, checks: Collection[str] = tuple(TASK_CHECKS)
) -> tuple[list[Alert], list[str]]:
    """Evaluate every alert once into ``folder``'s DuckDB file: the open incidents of ``checks`` (the
    task checks unless told) after it, and the ids of the incidents it resolved."""
    settings = load_settings({"DATA_DIR": str(folder), "LAKE_URL": lake.url})
    with DuckDBWarehouse(folder / "warehouse.duckdb") as warehouse:
        result = evaluate_alerts(warehouse.execute, warehouse.dialect, lake, settings, RuleSet())
        assert not [failed for failed in result.failed_checks if failed.split(":")[0] in checks]
        active = [alert for alert in active_incidents(warehouse.execute) if alert.rule_id in checks]
    return active, result.resolved
