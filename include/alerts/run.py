"""One round of the alerts, as the ``alerts`` DAG's task runs it: evaluate, deliver, and publish the
dashboard's snapshot when anything changed. Plain functions, testable without a scheduler; the DAG
passes the senders its notifiers make (plugins/alert_notifiers.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass

from include.alerts.delivery import DeliveryResult, Send, deliver_pending
from include.alerts.evaluate import EvaluationResult, evaluate_alerts, load_rules
from include.config import Settings
from include.lake.store import open_lake
from include.warehouse.load import open_warehouse
from include.warehouse.snapshot import publish_snapshot


@dataclass
class AlertRound:
    evaluated: EvaluationResult
    delivered: DeliveryResult
    published: bool  # the dashboard's snapshot was published again

    def as_dict(self) -> dict[str, object]:
        return {**self.evaluated.as_dict(), **self.delivered.as_dict(), "published": self.published}


def run_alerts(settings: Settings, senders: Mapping[str, Send]) -> AlertRound:
    """Evaluate every rule and check once, send what is pending, and publish the snapshot if anything
    fired, resolved or was sent: the warehouse DAG publishes after each transform, and when the stream
    stalls no transform runs, so a stale symbol's incident would otherwise never reach the page."""
    lake = open_lake(settings.lake_url)
    rules = load_rules(settings, lake)
    with closing(open_warehouse(settings)) as warehouse:
        evaluated = evaluate_alerts(warehouse.execute, warehouse.dialect, lake, settings, rules)
    delivered = deliver_pending(lambda: closing(open_warehouse(settings)), senders)
    changed = bool(evaluated.fired or evaluated.resolved or delivered.delivered or delivered.failed)
    published = changed and publish_snapshot(settings).path is not None
    return AlertRound(evaluated, delivered, published)
