"""The market rules users add on the dashboard, stored in the lake, one object per rule.

DuckDB allows one writing process, so the dashboard never writes to the warehouse: it stores a rule
where the evaluation reads it (``alerts/rules/<rule_id>.json``, include/lake/keys.py). A rule is
checked with the same ``parse_rule`` as the rules file before it is stored, and again when it is
read (the symbols streamed may have changed since). Removing a rule deletes its object; its alerts
stay in ``marts.alerts``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from include.alerts.rules import Rule, RuleError, RuleInvalid, RuleSet, parse_rule, rule_as_mapping
from include.lake.keys import ALERT_RULES_PREFIX, alert_rule_key
from include.lake.store import ObjectStore

SOURCE = "dashboard"


def read_user_rules(lake: ObjectStore, symbols: Iterable[str]) -> RuleSet:
    """Every rule the dashboard stored; one that no longer checks out is refused, naming it."""
    result, known = RuleSet(), frozenset(symbols)
    for info in sorted(lake.list(ALERT_RULES_PREFIX), key=lambda info: info.key):
        name = info.key.removeprefix(ALERT_RULES_PREFIX).removesuffix(".json")
        try:
            rule = parse_rule(json.loads(lake.get(info.key), parse_float=Decimal), known, SOURCE)
        except (RuleInvalid, ValueError) as error:  # json's errors are ValueErrors too
            result.errors.append(RuleError(name, str(error), SOURCE))
            continue
        if rule.rule_id != name:  # removing "name" must remove this rule: its key and id are one
            result.errors.append(RuleError(name, f"its object holds the rule {rule.rule_id!r}", SOURCE))
            continue
        result.rules.append(rule)
    return result


def add_user_rule(lake: ObjectStore, fields: dict[str, object], symbols: Iterable[str], taken: Iterable[str]) -> Rule:
    """Check a rule and store it; raises RuleInvalid naming what is wrong (an id already taken too)."""
    # From now on, unless it says otherwise: a rule removed and added again must not fire on the
    # crossings of the time it was away.
    fields = {"since": datetime.now(UTC).isoformat(timespec="seconds"), **fields}
    rule = parse_rule(fields, frozenset(symbols), SOURCE)
    if rule.rule_id in set(taken):
        raise RuleInvalid(f"the id {rule.rule_id!r} is taken: remove that rule first, or pick another id")
    lake.put(alert_rule_key(rule.rule_id), json.dumps(rule_as_mapping(rule), indent=2).encode())
    return rule


def remove_user_rule(lake: ObjectStore, rule_id: str) -> bool:
    """Delete a dashboard rule; False if there was none by that id (a rules-file rule is not removable here)."""
    key = alert_rule_key(rule_id)
    if not lake.exists(key):
        return False
    lake.delete(key)
    return True
