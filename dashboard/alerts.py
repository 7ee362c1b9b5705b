"""The page's alerts: open incidents, the day's alerts with each channel's deliveries, and the market rules.

Two fragments below the chart and the health panel (dashboard/app.py):

- ``overview`` re-reads ``MarketQueries.alerts`` every ALERTS_REFRESH_SECONDS: the evaluation runs after
  each transform, so a refresh at the chart's pace (2 s) would read the same rows, at a cost on Snowflake.
- ``rules`` lists the rules the evaluation reads (include/alerts/evaluate.py ``load_rules``: the rules
  file's, then the dashboard's), each refused one as an error naming it, and adds and removes the
  dashboard's. DuckDB has one writer, so the dashboard never writes to the warehouse: a rule goes to
  the lake (include/alerts/user_rules.py), checked by the same ``parse_rule`` as the rules file, and
  the next evaluation reads it. Rules of the file are changed in the repo, never here.

Everything shown is text: values as the exact decimal text stored, times in UTC, errors escaped so a
rule id or a reason is never read as Markdown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import streamlit as st

from dashboard.queries import AlertHistory, AlertsOverview, Delivery, MarketQueries, NoData
from include.alerts.evaluate import load_rules
from include.alerts.model import FIRED, MARKET
from include.alerts.rules import DIRECTIONS, RULE_TYPES, Rule, RuleError, RuleInvalid, RuleSet
from include.alerts.user_rules import SOURCE, add_user_rule, remove_user_rule
from include.candles import INTERVAL_NAMES
from include.config import Settings
from include.lake.store import ObjectStore

ALERTS_REFRESH_SECONDS = 10
TYPE_LABELS = {"price_cross": "Price cross", "percent_move": "% move", "volume_spike": "Volume spike"}
# Each type's own fields in the form, after id, symbol and interval (include/alerts/rules.py).
TYPE_FIELDS = {
    "price_cross": ("level", "direction"),
    "percent_move": ("window", "percent", "direction"),
    "volume_spike": ("trailing", "factor"),
}
FIELD_HELP = {
    "level": "The price whose crossing fires, exact (e.g. 100000.5)",
    "window": "How far back the move is measured: a whole number of candles, like 15m, 4h or 1d",
    "percent": "The move, in percent of the open at the window's start (e.g. 2.5)",
    "trailing": "How many candles before it make the average volume (1 to 1000)",
    "factor": "How many times the average volume fires (e.g. 3)",
}
_OUTCOME = "_alert_rule_outcome"  # session state: what the last add or remove did, shown once
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def literal(text: str) -> str:
    """``text`` as Markdown shows it, character for character (no emphasis, links or :directives:)."""
    return _MARKDOWN.sub(r"\\\1", text)


def when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def _attempts(count: int) -> str:
    return f"{count} attempt{'' if count == 1 else 's'}"


def delivery_text(deliveries: Sequence[Delivery]) -> str:
    """Each channel's delivery of each event in one line, e.g. ``webhook: delivered 2026-11-24 08:00:05Z;
    email: not delivered, 3 attempts, last error: connection refused``."""
    if not deliveries:
        return "not sent yet"
    parts = []
    for item in deliveries:
        what = item.channel if item.event == FIRED else f"{item.channel} ({item.event})"
        if item.delivered_at is not None:
            retried = "" if item.attempts == 1 else f" after {_attempts(item.attempts)}"
            parts.append(f"{what}: delivered {when(item.delivered_at)}{retried}")
        else:
            parts.append(f"{what}: not delivered, {_attempts(item.attempts)}, last error: {item.last_error or '?'}")
    return "; ".join(parts)


def value_text(history: AlertHistory) -> str:
    value = history.alert.value
    return "" if value is None else format(value, "f")  # the stored text, every digit


def _table(rows: list[dict[str, object]], names: Sequence[str], whole: Sequence[str] = ()) -> pa.Table:
    """Rows as a table of text columns (``whole``: whole numbers), in the order of ``names``."""
    schema = pa.schema([(name, pa.int64() if name in whole else pa.string()) for name in names])
    return pa.Table.from_pylist(rows, schema=schema)


def active_table(active: Sequence[AlertHistory]) -> pa.Table:
    rows = [
        {
            "Since (UTC)": when(item.alert.event_time),
            "Check": item.alert.rule_id,
            "Subject": item.alert.subject,
            "Message": item.alert.message,
            "Delivery": delivery_text(item.deliveries),
        }
        for item in active
    ]
    return _table(rows, ("Since (UTC)", "Check", "Subject", "Message", "Delivery"))


def _state(history: AlertHistory) -> str:
    """A market alert is an event; an incident is open, or resolved at a time."""
    alert = history.alert
    if alert.kind == MARKET:
        return ""
    return f"resolved {when(alert.resolved_at)}" if alert.resolved_at else "open"


def recent_table(recent: Sequence[AlertHistory]) -> pa.Table:
    rows = [
        {
            "Fired (UTC)": when(item.alert.fired_at),
            "Kind": item.alert.kind,
            "Rule": item.alert.rule_id,
            "Subject": item.alert.subject,
            "Value": value_text(item),
            "State": _state(item),
            "Message": item.alert.message,
            "Delivery": delivery_text(item.deliveries),
        }
        for item in recent
    ]
    return _table(rows, ("Fired (UTC)", "Kind", "Rule", "Subject", "Value", "State", "Message", "Delivery"))


HISTORY_COLUMNS = ("Fired (UTC)", "Rule", "Subject", "Event", "Channel", "Attempts", "Delivered (UTC)")
HISTORY_COLUMNS += ("Last attempt (UTC)", "Last error")


def history_table(recent: Sequence[AlertHistory]) -> pa.Table:
    """Every delivery of every event of the recent alerts: attempts, when delivered, the last error."""
    rows = [
        {
            "Fired (UTC)": when(item.alert.fired_at),
            "Rule": item.alert.rule_id,
            "Subject": item.alert.subject,
            "Event": delivery.event,
            "Channel": delivery.channel,
            "Attempts": delivery.attempts,
            "Delivered (UTC)": when(delivery.delivered_at),
            "Last attempt (UTC)": when(delivery.last_attempt_at),
            "Last error": delivery.last_error or "",
        }
        for item in recent
        for delivery in item.deliveries
    ]
    return _table(rows, HISTORY_COLUMNS, whole=("Attempts",))


def _title(facts: AlertsOverview) -> None:
    title = st.container(horizontal=True, vertical_alignment="center")
    title.subheader("Alerts", anchor=False, width="content")
    if facts.active:
        title.badge(f"{len(facts.active)} active", color="red")
    elif facts.evaluated:
        title.badge("none active", color="green")
    title.badge(f"{len(facts.recent)} in 24 h", color="gray")


@st.fragment(run_every=ALERTS_REFRESH_SECONDS)
def overview(queries: MarketQueries) -> None:
    """The open incidents, then the day's alerts and their deliveries."""
    try:
        facts = queries.alerts(datetime.now(UTC))
    except NoData:  # no snapshot yet: the chart's place already says what to run
        return
    except duckdb.Error as error:  # e.g. a snapshot replaced by something unreadable: the chart says it too
        st.text(f"The alerts could not be read: {' '.join(str(error).split())[:200]}")
        return
    _title(facts)
    if not facts.evaluated:
        st.caption(
            "No alert evaluated yet: the alerts DAG evaluates the rules and the pipeline checks after each "
            "transform (by hand: python -m include.cli alerts evaluate)."
        )
        return
    if facts.active:
        st.dataframe(active_table(facts.active), hide_index=True, height="content", key="active_alerts")
    else:
        st.caption("No open incident.")
    if not facts.recent:
        st.caption(f"No alert since {when(facts.since)}.")
        return
    st.dataframe(recent_table(facts.recent), hide_index=True, height="content", key="recent_alerts")
    with st.expander("Delivery history"):
        st.dataframe(history_table(facts.recent), hide_index=True, key="alert_deliveries")


# The rules ----------------------------------------------------------------------------------------


def rules_table(rules: Iterable[Rule]) -> pa.Table:
    rows = [
        {
            "Rule": rule.rule_id,
            "From": "dashboard" if rule.source == SOURCE else "rules file",
            "Condition": rule.describe(),
            "Since (UTC)": when(rule.since),
            "Description": rule.description,
        }
        for rule in rules
    ]
    return _table(rows, ("Rule", "From", "Condition", "Since (UTC)", "Description"))


def _whole(text: str) -> object:
    """A whole number typed as text as an int (what ``parse_rule`` wants of ``trailing``); else the text,
    for ``parse_rule`` to refuse naming it."""
    return int(text) if re.fullmatch(r"-?\d{1,9}", text) else text


def form_fields(state: Mapping[str, object], rule_type: str) -> dict[str, object]:
    """The rule the form holds, as the rules file would spell it; an empty field is left out (missing)."""
    fields: dict[str, object] = {"id": str(state.get("rule_id") or "").strip(), "type": rule_type}
    fields |= {"symbol": state.get("rule_symbol"), "interval": state.get("rule_interval")}
    for name in TYPE_FIELDS[rule_type]:
        text = str(state.get(f"rule_{rule_type}_{name}") or "").strip()
        if text:
            fields[name] = _whole(text) if name == "trailing" else text
    description = str(state.get("rule_description") or "").strip()
    if description:
        fields["description"] = description
    return fields


def submit_rule(lake: ObjectStore, fields: dict[str, object], settings: Settings) -> Rule | RuleError:
    """Check and store a dashboard rule; a refused one comes back as a ``RuleError`` naming it."""
    taken = load_rules(settings, lake)
    ids = [rule.rule_id for rule in taken.rules]
    ids += [error.rule for error in taken.errors if error.source == SOURCE]  # stored, refused: still its key
    try:
        return add_user_rule(lake, fields, settings.symbols, ids)
    except RuleInvalid as error:
        return RuleError(str(fields.get("id") or "(no id)"), str(error), "the form")


def _on_add(lake: ObjectStore, settings: Settings) -> None:
    fields = form_fields(st.session_state, str(st.session_state["rule_type"]))
    try:
        outcome = submit_rule(lake, fields, settings)
    except (OSError, RuntimeError) as error:  # a LakeError: the rule is not stored
        st.session_state[_OUTCOME] = ("error", f"rule {fields['id']} was not stored: the lake failed: {error}")
        return
    if isinstance(outcome, RuleError):
        st.session_state[_OUTCOME] = ("error", str(outcome))
    else:
        added = f"rule {outcome.rule_id} added ({outcome.describe()}): the next evaluation reads it"
        st.session_state[_OUTCOME] = ("success", added)


def _on_remove(lake: ObjectStore) -> None:
    rule_id = str(st.session_state.get("remove_rule") or "")
    try:
        removed = remove_user_rule(lake, rule_id)
    except (OSError, RuntimeError) as error:
        st.session_state[_OUTCOME] = ("error", f"rule {rule_id} was not removed: the lake failed: {error}")
        return
    said = "removed: its alerts stay in the history" if removed else "was already gone"
    st.session_state[_OUTCOME] = ("success" if removed else "error", f"rule {rule_id} {said}")


def _type_field(rule_type: str, name: str) -> None:
    key = f"rule_{rule_type}_{name}"
    if name == "direction":
        options = DIRECTIONS[rule_type]
        st.selectbox("Direction", options, index=len(options) - 1, key=key)  # both / either by default
    else:
        st.text_input(name.capitalize(), key=key, help=FIELD_HELP[name])


def add_form(lake: ObjectStore, settings: Settings) -> None:
    rule_type = st.segmented_control(
        "New rule", RULE_TYPES, key="rule_type", required=True, default=RULE_TYPES[0], format_func=TYPE_LABELS.get
    )
    with st.form("add_rule", border=True):
        left, middle, right = st.columns(3)
        with left:
            st.text_input("Id", key="rule_id", help="1-64 of a-z, 0-9, - and _, unique among the rules")
        with middle:
            st.selectbox("Symbol", settings.symbols, key="rule_symbol")
        with right:
            st.selectbox("Interval", INTERVAL_NAMES, key="rule_interval")
        for column, name in zip(st.columns(len(TYPE_FIELDS[rule_type])), TYPE_FIELDS[rule_type], strict=True):
            with column:
                _type_field(rule_type, name)
        st.text_input("Description (optional)", key="rule_description")
        st.form_submit_button("Add rule", key="add_rule_submit", on_click=_on_add, args=(lake, settings))


def remove_control(lake: ObjectStore, rules: RuleSet) -> None:
    removable = sorted(
        {rule.rule_id for rule in rules.rules if rule.source == SOURCE}
        | {error.rule for error in rules.errors if error.source == SOURCE}
    )
    if not removable:
        st.caption("No dashboard rule to remove.")
        return
    row = st.container(horizontal=True, vertical_alignment="bottom")
    row.selectbox("Dashboard rule", removable, key="remove_rule")
    row.button("Remove rule", key="remove_rule_submit", on_click=_on_remove, args=(lake,))


def _show_outcome() -> None:
    outcome = st.session_state.pop(_OUTCOME, None)
    if outcome is None:
        return
    level, text = outcome
    (st.error if level == "error" else st.success)(literal(text))


@st.fragment
def rules(settings: Settings, lake: ObjectStore) -> None:
    """The rules evaluated and the refused ones, a form to add a rule and a control to remove one."""
    try:
        loaded = load_rules(settings, lake)
    except (OSError, RuntimeError) as error:  # the lake unreadable: nothing to list, nothing to change
        st.error(literal(f"The alert rules could not be read: {error}"))
        return
    refused = f", {len(loaded.errors)} refused" if loaded.errors else ""
    with st.expander(f"Alert rules: {len(loaded.rules)} evaluated{refused}", expanded=bool(loaded.errors)):
        for error in loaded.errors:
            st.error(literal(str(error)), icon=":material/block:")
        if loaded.rules:
            st.dataframe(rules_table(loaded.rules), hide_index=True, height="content", key="alert_rules")
        st.caption(
            f"Rules from the rules file (`{settings.alerts.rules_file}`) are changed in the repo and cannot be "
            "removed here; the ones added here are stored in the lake."
        )
        add_form(lake, settings)
        _show_outcome()
        remove_control(lake, loaded)
