"""One evaluation of every alert: the market rules on the closed, complete candles, and the pipeline
checks, into ``marts.alerts``. Run by the ``alerts`` DAG after each transform (on the candle marts'
Assets) and by ``python -m include.cli alerts evaluate``.

- **Market rules**: the rules file and the dashboard's rules, each read on the candles of its symbol
  and interval from when it was first seen (or its ``since``), at most ``LOOKBACK`` back, with the
  candles before that its condition reads. Re-evaluating is idempotent: an alert's id is the rule as
  asked and the candle (include/alerts/model.py), and only ids not stored yet are inserted. So a
  re-run, or a backfill that rebuilds a candle, fires nothing new; a candle that was incomplete fires
  once the repair has made it complete, if it crosses.
- **Pipeline checks** (include/alerts/pipeline.py): an incident is opened when a check sees a subject
  with no open incident of that check, and resolved when the check no longer sees it. A check that
  fails is reported and changes nothing: its open incidents are not resolved on a failed look.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from include.alerts.checks import LOOKBACK, CheckInput
from include.alerts.market import Candle, evaluate_rule
from include.alerts.model import Alert
from include.alerts.pipeline import PIPELINE_CHECKS
from include.alerts.rules import Rule, RuleError, RuleSet, read_rules_file
from include.alerts.store import active_incidents, ensure_alert_tables, first_seen, resolve, store_alerts, warehouse_now
from include.alerts.user_rules import read_user_rules
from include.config import Settings
from include.lake.store import ObjectStore
from include.warehouse.shared import Dialect, Execute


@dataclass
class EvaluationResult:
    rules: int = 0
    fired: list[Alert] = field(default_factory=list)  # market and pipeline alerts stored by this run
    resolved: list[str] = field(default_factory=list)  # incidents this run resolved (their ids)
    refused: list[RuleError] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)  # "check: error", or "rule <id>: error"

    def as_dict(self) -> dict[str, object]:
        return {
            "rules": self.rules,
            "fired": [alert.message for alert in self.fired],
            "resolved": self.resolved,
            "refused": [str(error) for error in self.refused],
            "failed_checks": self.failed_checks,
        }


def load_rules(settings: Settings, lake: ObjectStore) -> RuleSet:
    """The rules file's rules, then the dashboard's; a bad one is refused, the others kept."""
    rules = read_rules_file(settings.alerts.rules_file, settings.symbols)
    rules.extend(read_user_rules(lake, settings.symbols))
    return rules


def evaluate_alerts(
    execute: Execute, dialect: Dialect, lake: ObjectStore, settings: Settings, rules: RuleSet
) -> EvaluationResult:
    """Evaluate every rule and pipeline check once; store what fired and resolve what ended."""
    ensure_alert_tables(execute, dialect)
    now = warehouse_now(execute)
    result = EvaluationResult(rules=len(rules.rules), refused=list(rules.errors))
    market = _market_alerts(execute, dialect, rules.rules, now, result)
    incidents, checked = _pipeline_incidents(CheckInput(execute, dialect, lake, settings, now), result)
    opened, resolved = _incident_changes(active_incidents(execute), incidents, checked, set(PIPELINE_CHECKS))
    result.fired = store_alerts(execute, dialect, [*market, *opened], now)
    resolve(execute, dialect, resolved, now)
    result.resolved = resolved
    return result


def _market_alerts(
    execute: Execute, dialect: Dialect, rules: Sequence[Rule], now: datetime, result: EvaluationResult
) -> list[Alert]:
    seen = first_seen(execute, dialect, {rule.fingerprint: rule.rule_id for rule in rules}, now)
    marts = _existing_marts(execute)
    alerts: list[Alert] = []
    for rule in rules:
        if rule.interval.mart not in marts:
            continue  # no build yet: nothing closed to evaluate
        since = max(rule.since or seen[rule.fingerprint], now - LOOKBACK)
        first_open = since - rule.interval.length * (rule.context + 1)
        try:
            alerts += evaluate_rule(rule, read_candles(execute, dialect, rule, first_open), since)
        except Exception as error:  # one rule must not stop the others, the checks or the delivery
            result.failed_checks.append(f"rule {rule.rule_id}: {type(error).__name__}: {error}")
    return alerts


def _existing_marts(execute: Execute) -> set[str]:
    rows = execute("select lower(table_name) from information_schema.tables where lower(table_schema) = 'marts'")
    return {row[0] for row in rows}


def read_candles(execute: Execute, dialect: Dialect, rule: Rule, first_open: datetime) -> list[Candle]:
    """The rule's symbol's candles of its interval opening at or after ``first_open``, oldest first."""
    p, ts = dialect.placeholder, dialect.timestamp_type
    rows = execute(
        "select open_time, close_time, open, close, volume, is_closed, is_complete "
        f"from marts.{rule.interval.mart} where symbol = {p} and open_time >= cast({p} as {ts}) order by open_time",
        [rule.symbol, first_open.isoformat()],
    )
    return [Candle(*row) for row in rows]


def _pipeline_incidents(check_input: CheckInput, result: EvaluationResult) -> tuple[list[Alert], set[str]]:
    """What every check sees now, and the names of the checks that ran (a failed one is reported)."""
    incidents, checked = [], set()
    for name, check in PIPELINE_CHECKS.items():
        try:
            incidents += check(check_input)
        except Exception as error:  # one broken check must not stop the others, nor the market rules
            result.failed_checks.append(f"{name}: {type(error).__name__}: {error}")
            continue
        checked.add(name)
    return incidents, checked


def _incident_changes(
    active: Sequence[Alert], seen: Sequence[Alert], checked: set[str], known: set[str]
) -> tuple[list[Alert], list[str]]:
    """The incidents to open (a subject seen with no open incident of its check; and every fact seen,
    stored once by its id) and the open ones to resolve (their check ran and no longer sees them, or
    the check is gone: renamed or removed, nothing will ever look again)."""
    open_subjects = {(alert.rule_id, alert.subject) for alert in active}
    seen_subjects = {(alert.rule_id, alert.subject) for alert in seen if alert.resolved_at is None}
    opened = [
        alert for alert in seen if alert.resolved_at is not None or (alert.rule_id, alert.subject) not in open_subjects
    ]
    ended = [
        alert.alert_id
        for alert in active
        if alert.rule_id not in known
        or (alert.rule_id in checked and (alert.rule_id, alert.subject) not in seen_subjects)
    ]
    return opened, ended
