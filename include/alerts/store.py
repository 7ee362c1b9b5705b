"""The alerts in the warehouse: ``marts.alerts`` (one row per alert, stored once by its id),
``marts.alert_deliveries`` (each channel's delivery of each event, the outbox), and
``marts.alert_rules`` (when the evaluation first saw each rule as it is asked).

Created by the alerts code itself, like ``marts.candle_audit``: dbt does not own them. Everything runs
through an ``execute`` and a ``Dialect``, so the same code serves DuckDB and Snowflake. Values are
bound, never formatted into SQL; a value is stored as exact decimal text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from include.alerts.model import FIRED, MARKET, RESOLVED, Alert
from include.warehouse.shared import Dialect, Execute
from include.warehouse.sql import in_transaction, row_chunks

# A delivery that keeps failing is tried again on every run for this long, then given up (and shown
# as such on the dashboard): a channel configured today is not sent a year of history.
DELIVERY_HORIZON = timedelta(days=7)
# A rule not evaluated for this long was away (removed, or edited and reverted): back, it starts anew.
# Longer than the alerts DAG's period (a minute) with room for a stalled scheduler.
RULE_ABSENCE = timedelta(minutes=15)
ALERT_COLUMNS = (
    "alert_id",
    "kind",
    "rule_id",
    "subject",
    "message",
    "event_time",
    "symbol",
    "interval",
    "open_time",
    "value",
    "fired_at",
    "resolved_at",
)
_TIMES = {"event_time", "open_time", "fired_at", "resolved_at"}


def ensure_alert_tables(execute: Execute, dialect: Dialect) -> None:
    execute("create schema if not exists marts")
    ts = dialect.timestamp_type
    execute(
        "create table if not exists marts.alerts (alert_id varchar not null primary key, kind varchar not null, "
        "rule_id varchar not null, subject varchar not null, message varchar not null, "
        f"event_time {ts} not null, symbol varchar, interval varchar, open_time {ts}, value varchar, "
        f"fired_at {ts} not null, resolved_at {ts})"
    )
    execute(
        "create table if not exists marts.alert_deliveries (alert_id varchar not null, channel varchar not null, "
        f"event varchar not null, attempts bigint not null, delivered_at {ts}, last_error varchar, "
        f"last_attempt_at {ts} not null, primary key (alert_id, channel, event))"
    )
    execute(
        "create table if not exists marts.alert_rules (fingerprint varchar not null primary key, "
        f"rule_id varchar not null, first_seen_at {ts} not null, last_seen_at {ts} not null)"
    )


def warehouse_now(execute: Execute) -> datetime:
    moment = execute("select current_timestamp")[0][0]
    assert isinstance(moment, datetime)
    return moment


def first_seen(execute: Execute, dialect: Dialect, rules: dict[str, str], now: datetime) -> dict[str, datetime]:
    """When each rule (fingerprint -> rule id) was first seen, as asked, in its current stretch of being
    there: a new rule, or one back after RULE_ABSENCE without being evaluated (a dashboard rule removed
    and added again, a rules-file edit reverted), starts ``now``, so it does not fire on the crossings
    of the time it was away. Every rule given is recorded as seen ``now``."""
    rows = execute("select fingerprint, first_seen_at, last_seen_at from marts.alert_rules")
    known = {fingerprint: (first, last) for fingerprint, first, last in rows}
    present = {fingerprint: known[fingerprint][0] for fingerprint in rules if fingerprint in known}
    present = {fp: first for fp, first in present.items() if known[fp][1] >= now - RULE_ABSENCE}
    starting = [(fingerprint, rule_id) for fingerprint, rule_id in rules.items() if fingerprint not in present]
    p, ts = dialect.placeholder, dialect.timestamp_type

    def write() -> None:
        for chunk in row_chunks(starting):
            marks = ", ".join([p] * len(chunk))
            execute(f"delete from marts.alert_rules where fingerprint in ({marks})", [fp for fp, _ in chunk])
            execute(
                "insert into marts.alert_rules (fingerprint, rule_id, first_seen_at, last_seen_at) values "
                + ", ".join([f"({p}, {p}, cast({p} as {ts}), cast({p} as {ts}))"] * len(chunk)),
                [value for fp, rule_id in chunk for value in (fp, rule_id, now.isoformat(), now.isoformat())],
            )
        for chunk in row_chunks(list(present)):
            execute(
                f"update marts.alert_rules set last_seen_at = cast({p} as {ts}) "
                f"where fingerprint in ({', '.join([p] * len(chunk))})",
                [now.isoformat(), *chunk],
            )

    if rules:
        in_transaction(execute, dialect, write)
    return {**present, **{fingerprint: now for fingerprint, _ in starting}}


def store_alerts(execute: Execute, dialect: Dialect, alerts: Sequence[Alert], now: datetime) -> list[Alert]:
    """Insert the alerts whose id is not stored yet, as fired ``now``; the ones inserted."""
    if not alerts:
        return []
    ids = list({alert.alert_id: None for alert in alerts})
    stored = set()
    for chunk in row_chunks(ids):
        marks = ", ".join([dialect.placeholder] * len(chunk))
        stored |= {row[0] for row in execute(f"select alert_id from marts.alerts where alert_id in ({marks})", chunk)}
    new = list({alert.alert_id: alert for alert in alerts if alert.alert_id not in stored}.values())
    if new:
        in_transaction(execute, dialect, lambda: _insert(execute, dialect, new, now))
    return [_with_fired_at(alert, now) for alert in new]


def _insert(execute: Execute, dialect: Dialect, alerts: Sequence[Alert], now: datetime) -> None:
    p, ts = dialect.placeholder, dialect.timestamp_type
    marks = "(" + ", ".join(f"cast({p} as {ts})" if name in _TIMES else p for name in ALERT_COLUMNS) + ")"
    for chunk in row_chunks(alerts):
        execute(
            f"insert into marts.alerts ({', '.join(ALERT_COLUMNS)}) values " + ", ".join([marks] * len(chunk)),
            [value for alert in chunk for value in _row(_with_fired_at(alert, now))],
        )


def _with_fired_at(alert: Alert, now: datetime) -> Alert:
    from dataclasses import replace

    return replace(alert, fired_at=alert.fired_at or now)


def _row(alert: Alert) -> list[object]:
    values: list[object] = []
    for name in ALERT_COLUMNS:
        value = getattr(alert, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = format(value, "f")
        values.append(value)
    return values


def _alert_of(row: Sequence[object]) -> Alert:
    fields = dict(zip(ALERT_COLUMNS, row, strict=True))
    if fields["value"] is not None:
        fields["value"] = Decimal(str(fields["value"]))
    return Alert(**fields)  # type: ignore[arg-type]


def active_incidents(execute: Execute) -> list[Alert]:
    """The pipeline alerts not resolved yet."""
    rows = execute(
        f"select {', '.join(ALERT_COLUMNS)} from marts.alerts where kind <> '{MARKET}' and resolved_at is null"
    )
    return [_alert_of(row) for row in rows]


def resolve(execute: Execute, dialect: Dialect, ids: Sequence[str], now: datetime) -> None:
    """Mark the incidents ``ids`` resolved ``now``."""
    if not ids:
        return
    p, ts = dialect.placeholder, dialect.timestamp_type

    def update() -> None:
        for chunk in row_chunks(ids):
            execute(
                f"update marts.alerts set resolved_at = cast({p} as {ts}) "
                f"where resolved_at is null and alert_id in ({', '.join([p] * len(chunk))})",
                [now.isoformat(), *chunk],
            )

    in_transaction(execute, dialect, update)


@dataclass(frozen=True)
class Pending:
    """One event of one alert a channel has not been told about yet."""

    alert: Alert
    channel: str
    event: str  # FIRED or RESOLVED
    attempts: int  # failed attempts so far


def pending_deliveries(execute: Execute, dialect: Dialect, channel: str, now: datetime) -> list[Pending]:
    """The events ``channel`` has not received, oldest first: every alert fired within the horizon, and
    the resolution of every resolved incident."""
    p, ts = dialect.placeholder, dialect.timestamp_type
    columns = ", ".join(f"alerts.{name}" for name in ALERT_COLUMNS)
    pending = []
    # A fact stored resolved (an exchange-side hole: resolved_at = fired_at) has no resolution to tell.
    events = (
        (FIRED, "alerts.fired_at", ""),
        (RESOLVED, "alerts.resolved_at", " and alerts.resolved_at > alerts.fired_at"),
    )
    for event, when, only in events:
        rows = execute(
            f"select {columns}, coalesce(sent.attempts, 0) from marts.alerts as alerts "
            "left join marts.alert_deliveries as sent on sent.alert_id = alerts.alert_id "
            f"and sent.channel = {p} and sent.event = {p} "
            f"where {when} is not null and {when} >= cast({p} as {ts}) and sent.delivered_at is null{only} "
            f"order by {when}, alerts.alert_id",
            [channel, event, (now - DELIVERY_HORIZON).isoformat()],
        )
        pending += [Pending(_alert_of(row[:-1]), channel, event, int(row[-1])) for row in rows]
    # One per event: Snowflake does not enforce marts.alerts' primary key, and two evaluations at once
    # (the command line beside the DAG) could both insert an id.
    return list({(item.alert.alert_id, item.event): item for item in pending}.values())


def record_deliveries(
    execute: Execute, dialect: Dialect, outcomes: Sequence[tuple[Pending, str | None]], now: datetime
) -> None:
    """Record each attempt: delivered (error None) or failed with its error. One transaction."""
    if not outcomes:
        return
    p, ts = dialect.placeholder, dialect.timestamp_type

    def write() -> None:
        for pending, error in outcomes:
            key = [pending.alert.alert_id, pending.channel, pending.event]
            execute(f"delete from marts.alert_deliveries where alert_id = {p} and channel = {p} and event = {p}", key)
            delivered = None if error else now.isoformat()
            execute(
                "insert into marts.alert_deliveries (alert_id, channel, event, attempts, delivered_at, last_error, "
                f"last_attempt_at) values ({p}, {p}, {p}, {p}, cast({p} as {ts}), {p}, cast({p} as {ts}))",
                [*key, pending.attempts + 1, delivered, error, now.isoformat()],
            )

    in_transaction(execute, dialect, write)
