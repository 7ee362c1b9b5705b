"""What a channel is told about one event of one alert: a headline a person reads, the alert's fields
for a program, and the stable ids a receiver dedupes on.

The ids are made of the alert's id and the event only (``<alert_id>:<event>``; as an e-mail
Message-ID ``<alert_id>.<event>@cryptoflow``), never of when or how often it was sent: the outbox
(include/alerts/delivery.py) may send an event a second time after a crash between the send and its
record, and a receiver that keeps the ids it has seen drops that copy.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal

from include.alerts.model import MARKET, Alert
from include.alerts.store import Pending

MESSAGE_ID_DOMAIN = "cryptoflow"


def delivery_id(pending: Pending) -> str:
    """The id of this event of this alert, the same on every channel and every attempt."""
    return f"{pending.alert.alert_id}:{pending.event}"


def message_id(pending: Pending) -> str:
    """The e-mail Message-ID of this event (RFC 5322: ``<left@right>``, no colon on the left)."""
    return f"<{pending.alert.alert_id}.{pending.event}@{MESSAGE_ID_DOMAIN}>"


def headline(pending: Pending) -> str:
    """One line: a market alert's message as it fired (it names the rule, the symbol, the candle and
    the figure); a pipeline incident's event, check, subject and message."""
    alert = pending.alert
    if alert.kind == MARKET:
        return alert.message
    return f"{pending.event}: {alert.rule_id} {alert.subject}: {alert.message}"


def alert_fields(pending: Pending) -> dict[str, str | None]:
    """The alert as text fields (times in ISO 8601 UTC, the value as exact decimal text), with the event
    and its delivery id."""
    alert = pending.alert
    texts = {field.name: _text(getattr(alert, field.name)) for field in fields(Alert)}
    return {**texts, "event": pending.event, "delivery_id": delivery_id(pending)}


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # a warehouse may hand it back in its session's zone
        return (value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")  # never a float, never an exponent
    return str(value)
